#include "kafka_broker.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafkacpp.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <filesystem>
#include <set>
#include <stdexcept>

#include <sys/wait.h>
#include <unistd.h>

#include "temp_dir.h"

namespace gsau::testing {
namespace {

// Stops the broker this process started, at exit.
struct OwnBroker {
  std::string dir;
  ~OwnBroker() {
    if (!dir.empty()) {
      std::string out;
      RunCommand(SourceDir() + "/scripts/kafka_broker.sh stop --dir " + dir, &out);
    }
  }
};

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

void SetTopicConfigs(const std::string& bootstrap, const std::string& topic,
                     const std::vector<std::pair<std::string, std::string>>& configs) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_NE(rk, nullptr) << err;
  rd_kafka_ConfigResource_t* res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  for (const auto& [k, v] : configs) rd_kafka_ConfigResource_set_config(res, k.c_str(), v.c_str());
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_AlterConfigs(rk, &res, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  std::string error = ev == nullptr ? "no answer in 30 s" : "";
  if (ev != nullptr && rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) error = rd_kafka_event_error_string(ev);
  if (ev != nullptr && error.empty()) {
    size_t n = 0;
    const rd_kafka_ConfigResource_t** out =
        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &n);
    for (size_t i = 0; i < n; ++i) {
      if (rd_kafka_ConfigResource_error(out[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        error = rd_kafka_ConfigResource_error_string(out[i]);
      }
    }
  }
  if (ev != nullptr) rd_kafka_event_destroy(ev);
  rd_kafka_ConfigResource_destroy(res);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
  ASSERT_TRUE(error.empty()) << "altering " << topic << ": " << error;
}

void DeleteRecordsBefore(const std::string& bootstrap, const std::string& topic, int32_t partition, int64_t offset) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_NE(rk, nullptr) << err;
  rd_kafka_topic_partition_list_t* before = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(before, topic.c_str(), partition)->offset = offset;
  rd_kafka_DeleteRecords_t* del = rd_kafka_DeleteRecords_new(before);
  rd_kafka_topic_partition_list_destroy(before);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_DeleteRecords(rk, &del, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  std::string error = ev == nullptr ? "no answer in 30 s" : "";
  if (ev != nullptr && rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) error = rd_kafka_event_error_string(ev);
  if (ev != nullptr && error.empty()) {
    const rd_kafka_topic_partition_list_t* out =
        rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
    for (int i = 0; out != nullptr && i < out->cnt; ++i) {
      if (out->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) error = rd_kafka_err2str(out->elems[i].err);
    }
  }
  if (ev != nullptr) rd_kafka_event_destroy(ev);
  rd_kafka_DeleteRecords_destroy(del);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
  ASSERT_TRUE(error.empty()) << "deleting records of " << topic << ": " << error;
}

void DeleteTopic(const std::string& bootstrap, const std::string& topic) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_NE(rk, nullptr) << err;
  rd_kafka_DeleteTopic_t* del = rd_kafka_DeleteTopic_new(topic.c_str());
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_DeleteTopics(rk, &del, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  std::string error = ev == nullptr ? "no answer in 30 s" : "";
  if (ev != nullptr && rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) error = rd_kafka_event_error_string(ev);
  if (ev != nullptr && error.empty()) {
    size_t n = 0;
    const rd_kafka_topic_result_t** out = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
    for (size_t i = 0; i < n; ++i) {
      if (rd_kafka_topic_result_error(out[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        error = rd_kafka_topic_result_error_string(out[i]);
      }
    }
  }
  if (ev != nullptr) rd_kafka_event_destroy(ev);
  rd_kafka_DeleteTopic_destroy(del);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
  ASSERT_TRUE(error.empty()) << "deleting " << topic << ": " << error;
}

int RunCommand(const std::string& command, std::string* output) {
  output->clear();
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return -1;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) output->append(buf.data(), n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

PrivateBroker::PrivateBroker(const std::string& d, int max_lifetime_s) : dir(d) {
  std::string out;
  if (RunCommand(SourceDir() + "/scripts/kafka_broker.sh start --dir " + dir + " --max-lifetime " +
                     std::to_string(max_lifetime_s),
                 &out) != 0) {
    throw std::runtime_error("broker did not start: " + out);
  }
  bootstrap = out.substr(0, out.find('\n'));
}

PrivateBroker::~PrivateBroker() { Run("stop"); }

bool PrivateBroker::Run(const std::string& verb, std::string* output) {
  std::string out;
  return RunCommand(SourceDir() + "/scripts/kafka_broker.sh " + verb + " --dir " + dir, output ? output : &out) == 0;
}

const std::string& KafkaBootstrap() {
  static OwnBroker own;
  static const std::string bootstrap = [] {
    if (const char* dir = std::getenv("GSAU_TEST_KAFKA_DIR"); dir != nullptr) {
      const std::string b = ReadFirstLine(std::string(dir) + "/bootstrap");
      if (!b.empty()) return b;
    }
    own.dir = std::filesystem::temp_directory_path().string() + "/gsau-test-broker-" + std::to_string(getpid());
    std::string out;
    const int rc = RunCommand(SourceDir() + "/scripts/kafka_broker.sh start --dir " + own.dir + " --max-lifetime 7200",
                              &out);
    if (rc != 0 || out.empty()) {
      std::cerr << "cannot start the test Kafka broker (scripts/kafka_broker.sh, rc=" << rc << ")\n";
      std::abort();
    }
    return out.substr(0, out.find('\n'));
  }();
  return bootstrap;
}

std::string UniqueTopic(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000);
}

std::vector<ConsumedRecord> ConsumeAll(const std::string& bootstrap, const std::string& topic, int64_t expected,
                                       int timeout_ms) {
  std::string err;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  conf->set("bootstrap.servers", bootstrap, err);
  conf->set("group.id", UniqueTopic("test-reader"), err);
  conf->set("auto.offset.reset", "earliest", err);
  conf->set("enable.auto.commit", "false", err);
  conf->set("enable.partition.eof", "true", err);
  std::unique_ptr<RdKafka::KafkaConsumer> c(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!c) {
    std::cerr << "ConsumeAll: " << err << "\n";
    return {};
  }
  c->subscribe({topic});
  std::vector<ConsumedRecord> out;
  std::set<int32_t> at_eof;
  bool assigned = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (expected >= 0 && static_cast<int64_t>(out.size()) >= expected) break;
    std::unique_ptr<RdKafka::Message> m(c->consume(200));
    if (m->err() == RdKafka::ERR__PARTITION_EOF) {
      at_eof.insert(m->partition());
      std::vector<RdKafka::TopicPartition*> parts;
      c->assignment(parts);
      assigned = !parts.empty();
      const bool all = assigned && at_eof.size() >= parts.size();
      RdKafka::TopicPartition::destroy(parts);
      if (expected < 0 && all) break;
      continue;
    }
    if (m->err() != RdKafka::ERR_NO_ERROR) continue;
    at_eof.erase(m->partition());
    ConsumedRecord r;
    r.null_key = m->key() == nullptr;
    if (!r.null_key) r.key = *m->key();
    r.null_value = m->payload() == nullptr;
    if (!r.null_value) r.value.assign(static_cast<const char*>(m->payload()), m->len());
    r.partition = m->partition();
    r.offset = m->offset();
    r.timestamp_ms = m->timestamp().timestamp;
    if (RdKafka::Headers* h = m->headers(); h != nullptr) {
      for (const auto& hd : h->get_all()) {
        if (hd.value() == nullptr) {
          r.headers.emplace_back(hd.key(), std::string());
          r.null_headers.push_back(hd.key());
        } else {
          r.headers.emplace_back(hd.key(), std::string(static_cast<const char*>(hd.value()), hd.value_size()));
        }
      }
    }
    out.push_back(std::move(r));
  }
  c->close();
  return out;
}

MockCluster::MockCluster() {
  char err[512];
  host_ = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), err, sizeof(err));
  if (host_ == nullptr) {
    ADD_FAILURE() << "librdkafka handle for the mock cluster: " << err;
    return;
  }
  cluster_ = rd_kafka_mock_cluster_new(host_, 1);
  if (cluster_ == nullptr) ADD_FAILURE() << "rd_kafka_mock_cluster_new failed";
}

MockCluster::~MockCluster() {
  if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
  if (host_ != nullptr) rd_kafka_destroy(host_);
}

std::string MockCluster::bootstrap() const { return cluster_ ? rd_kafka_mock_cluster_bootstraps(cluster_) : ""; }

void MockCluster::CreateTopic(const std::string& topic, int partitions) {
  ASSERT_NE(cluster_, nullptr);
  EXPECT_EQ(rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, 1), RD_KAFKA_RESP_ERR_NO_ERROR) << topic;
}

}  // namespace gsau::testing
