#include "gsau/kafka/admin.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "conf.h"

namespace gsau::kafka {
namespace {

struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using Handle = std::unique_ptr<rd_kafka_t, HandleDeleter>;

// `type`: a consumer handle for metadata about a topic that may not exist: a producer's
// metadata requests allow the broker to create a topic they name (allow.auto.create.topics is
// true for producers, and a producer handle warns that it ignores it), with the broker's default
// partitions and policy; a consumer's do not.
Result<Handle> MakeHandle(const KafkaOptions& kafka, rd_kafka_type_t type = RD_KAFKA_PRODUCER) {
  GSAU_ASSIGN_OR_RETURN(rd_kafka_conf_t * conf, internal::BuildCConf(kafka, {}));
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof(err));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::InvalidArgument(std::string("creating a Kafka client: ") + err);
  }
  return Handle(rk);
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// True when metadata lists `topic` with every partition led and each leader answers ListOffsets.
// The metadata request names the topic, which also refreshes the handle's cached view of it.
// Each request waits at most 2 s and not past `deadline_ms`.
bool PartitionsReady(rd_kafka_t* rk, const std::string& topic, int64_t deadline_ms, std::string* why) {
  const auto wait_ms = [&] { return static_cast<int>(std::clamp<int64_t>(deadline_ms - NowMs(), 100, 2000)); };
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  if (rkt == nullptr) {
    *why = rd_kafka_err2str(rd_kafka_last_error());
    return false;
  }
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, wait_ms());
  rd_kafka_topic_destroy(rkt);
  std::vector<int32_t> partitions;
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const rd_kafka_metadata_topic_t* t = md->topic_cnt == 1 ? &md->topics[0] : nullptr;
    if (t == nullptr || topic != t->topic) {
      err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    } else if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      err = t->err;
    } else {
      for (int i = 0; i < t->partition_cnt; ++i) {
        if (t->partitions[i].leader < 0) err = RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
        partitions.push_back(t->partitions[i].id);
      }
    }
    rd_kafka_metadata_destroy(md);
  }
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR && partitions.empty()) err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {  // the latest offset of every partition at once
    const auto ends = internal::ListOffsets(rk, topic, partitions, RD_KAFKA_OFFSET_END, wait_ms());
    if (!ends.ok()) {
      *why = ends.status().message();
      return false;
    }
  }
  *why = rd_kafka_err2str(err);
  return err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

}  // namespace

namespace internal {

Result<std::vector<int64_t>> ListOffsets(rd_kafka_t* rk, const std::string& topic,
                                         const std::vector<int32_t>& partitions, int64_t which, int timeout_ms) {
  std::unique_ptr<rd_kafka_topic_partition_list_t, decltype(&rd_kafka_topic_partition_list_destroy)> list(
      rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())), &rd_kafka_topic_partition_list_destroy);
  for (int32_t p : partitions) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = which;
  if (const auto e = rd_kafka_offsets_for_times(rk, list.get(), timeout_ms); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Unavailable("offsets of " + topic + ": " + rd_kafka_err2str(e));
  }
  std::vector<int64_t> out;
  out.reserve(partitions.size());
  for (int32_t p : partitions) {
    const rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_list_find(list.get(), topic.c_str(), p);
    if (tp == nullptr || tp->err != RD_KAFKA_RESP_ERR_NO_ERROR || tp->offset < 0) {
      return Status::Unavailable("offsets of " + topic + " [" + std::to_string(p) + "]: " +
                                 (tp == nullptr || tp->err == RD_KAFKA_RESP_ERR_NO_ERROR ? std::string("none")
                                                                                        : rd_kafka_err2str(tp->err)));
    }
    out.push_back(tp->offset);
  }
  return out;
}

}  // namespace internal

Status WaitForCluster(const KafkaOptions& kafka, int timeout_ms, const std::atomic<bool>* stop) {
  GSAU_ASSIGN_OR_RETURN(Handle rk, MakeHandle(kafka));
  const int64_t deadline = NowMs() + timeout_ms;
  rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR_NO_ERROR;
  const auto stopped = [&] {
    return Status::Aborted("stopped while waiting for Kafka at " + kafka.bootstrap_servers + " (last: " +
                           rd_kafka_err2str(last) + ")");
  };
  while (true) {
    const int left = static_cast<int>(std::max<int64_t>(100, deadline - NowMs()));
    const rd_kafka_metadata_t* md = nullptr;
    // Shorter requests when a stop may come: a SIGTERM waited out the whole timeout (30 s).
    last = rd_kafka_metadata(rk.get(), 0, nullptr, &md, std::min(left, stop != nullptr ? 1000 : 2000));
    if (last == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const bool has_brokers = md->broker_cnt > 0;
      rd_kafka_metadata_destroy(md);
      if (has_brokers) return Status::Ok();
    }
    // After a failed request only: brokers that answer are waited for even when stopping, so that
    // a stop during the start-up before this still ends through the run (its last checkpoint).
    if (stop != nullptr && *stop) return stopped();
    if (NowMs() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return Status::Unavailable("Kafka at " + kafka.bootstrap_servers + " did not answer within " +
                             std::to_string(timeout_ms) + " ms: " + rd_kafka_err2str(last));
}

Status EnsureTopics(const KafkaOptions& kafka, const std::vector<TopicSpec>& topics, int timeout_ms) {
  if (topics.empty()) return Status::Ok();
  const int64_t deadline = NowMs() + timeout_ms;
  GSAU_ASSIGN_OR_RETURN(Handle rk, MakeHandle(kafka));
  // Only the missing ones are created: topics that exist need no CreateTopics rights (and
  // brokers without the admin API, like librdkafka's mock cluster, are fine when they exist).
  // Missing means listed as unknown or not listed (an all-topics request leaves out the topics
  // this account may not describe; CreateTopics then says it may not). A failed metadata request
  // is asked again, and a topic listed with another error (no leader during an election) is
  // waited for: both were taken as missing, and an account without create rights (Kafka checks
  // them before existence) failed on topics that were there.
  std::vector<const TopicSpec*> missing, waited_for;
  {
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_metadata(rk.get(), 1, nullptr, &md,
                                  static_cast<int>(std::max<int64_t>(1, deadline - NowMs())))) !=
           RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (NowMs() >= deadline) {
        return Status::Unavailable("Kafka at " + kafka.bootstrap_servers + " did not answer a metadata request " +
                                   "within " + std::to_string(timeout_ms) + " ms: " + rd_kafka_err2str(e));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    for (const auto& t : topics) {
      const rd_kafka_metadata_topic_t* listed = nullptr;
      for (int k = 0; k < md->topic_cnt && listed == nullptr; ++k) {
        if (t.name == md->topics[k].topic) listed = &md->topics[k];
      }
      if (listed == nullptr || listed->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        missing.push_back(&t);
      } else if (listed->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        waited_for.push_back(&t);
      }
    }
    rd_kafka_metadata_destroy(md);
  }
  if (missing.empty() && waited_for.empty()) return Status::Ok();
  // What is left of timeout_ms: each wait below is bounded by the one deadline (each took the
  // whole timeout, and a broker that took connections but never answered held start-up twice
  // as long as asked).
  const int left_ms = static_cast<int>(std::max<int64_t>(1, deadline - NowMs()));
  char err[512];
  std::vector<rd_kafka_NewTopic_t*> news;
  Status status;
  for (const TopicSpec* spec : missing) {
    const TopicSpec& t = *spec;
    rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(t.name.c_str(), t.partitions, t.replication_factor, err, sizeof(err));
    if (nt == nullptr) {
      status = Status::InvalidArgument("topic " + t.name + ": " + err);
      break;
    }
    news.push_back(nt);
    for (const auto& [k, v] : t.configs) {
      if (rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        status = Status::InvalidArgument("topic " + t.name + ": bad config " + k);
      }
    }
  }
  if (status.ok() && !news.empty()) {
    rd_kafka_queue_t* queue = rd_kafka_queue_new(rk.get());
    rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, left_ms, err, sizeof(err));
    rd_kafka_AdminOptions_set_request_timeout(opts, left_ms, err, sizeof(err));
    rd_kafka_CreateTopics(rk.get(), news.data(), news.size(), opts, queue);
    // A moment past the request's timeout, for librdkafka's own report of it.
    rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, left_ms + 200);
    if (ev == nullptr) {
      status = Status::Unavailable("creating topics: no answer within " + std::to_string(timeout_ms) + " ms");
    } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      status = Status::Unavailable(std::string("creating topics: ") + rd_kafka_event_error_string(ev));
    } else {
      size_t n = 0;
      const rd_kafka_topic_result_t** results =
          rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
      for (size_t i = 0; i < n && status.ok(); ++i) {
        const auto e = rd_kafka_topic_result_error(results[i]);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
          const char* msg = rd_kafka_topic_result_error_string(results[i]);
          status = Status::Unavailable(std::string("creating topic ") + rd_kafka_topic_result_name(results[i]) +
                                       ": " + (msg != nullptr ? msg : rd_kafka_err2str(e)));
        }
      }
    }
    if (ev != nullptr) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(queue);
  }
  rd_kafka_NewTopic_destroy_array(news.data(), news.size());
  GSAU_RETURN_IF_ERROR(status);
  // KRaft answers CreateTopics, and lists a leader in Metadata, before the leader's partition
  // takes writes; the first produce then fails NOT_LEADER. A partition whose leader answers
  // ListOffsets is ready, so the topics are returned writable.
  const size_t created = missing.size();
  missing.insert(missing.end(), waited_for.begin(), waited_for.end());
  for (size_t k = 0; k < missing.size(); ++k) {
    const TopicSpec* spec = missing[k];
    std::string why;
    while (!PartitionsReady(rk.get(), spec->name, deadline, &why)) {
      if (NowMs() >= deadline) {
        return Status::Unavailable("topic " + spec->name + (k < created ? " was created but" : "") +
                                   " is not ready for writes within " + std::to_string(timeout_ms) + " ms: " + why);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return Status::Ok();
}

Result<int> PartitionCount(const KafkaOptions& kafka, const std::string& topic, int timeout_ms) {
  GSAU_ASSIGN_OR_RETURN(Handle rk, MakeHandle(kafka, RD_KAFKA_CONSUMER));
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr);
  if (rkt == nullptr) {  // a name librdkafka refuses (over 512 bytes): destroying null crashed
    return Status::InvalidArgument("topic name '" + topic.substr(0, 64) + (topic.size() > 64 ? "...'" : "'") + ": " +
                                   rd_kafka_err2str(rd_kafka_last_error()));
  }
  const rd_kafka_metadata_t* md = nullptr;
  const auto err = rd_kafka_metadata(rk.get(), 0, rkt, &md, timeout_ms);
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Unavailable("metadata for " + topic + ": " + rd_kafka_err2str(err));
  }
  // Only an unknown topic is a missing one: a leader election or a refused authorisation is not
  // (a caller taking "none there" for them would go on as if the topic were empty).
  int count = -1;
  rd_kafka_resp_err_t topic_err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
  if (md->topic_cnt == 1) {
    topic_err = md->topics[0].err;
    if (topic_err == RD_KAFKA_RESP_ERR_NO_ERROR) count = md->topics[0].partition_cnt;
  }
  rd_kafka_metadata_destroy(md);
  if (topic_err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    return Status::NotFound("topic " + topic + " does not exist");
  }
  if (count < 0) return Status::Unavailable("metadata for " + topic + ": " + rd_kafka_err2str(topic_err));
  return count;
}

Result<std::string> TopicConfigValue(const KafkaOptions& kafka, const std::string& topic, const std::string& name,
                                     int timeout_ms) {
  GSAU_ASSIGN_OR_RETURN(Handle rk, MakeHandle(kafka));
  rd_kafka_ConfigResource_t* res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk.get());
  rd_kafka_DescribeConfigs(rk.get(), &res, 1, nullptr, queue);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, timeout_ms);
  Result<std::string> out = Status::NotFound("config " + name + " of topic " + topic + " not found");
  if (ev == nullptr) {
    out = Status::Unavailable("describing topic " + topic + ": no answer within " + std::to_string(timeout_ms) + " ms");
  } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    out = Status::Unavailable(std::string("describing topic ") + topic + ": " + rd_kafka_event_error_string(ev));
  } else {
    size_t n = 0;
    const rd_kafka_ConfigResource_t** rs =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n);
    for (size_t i = 0; i < n; ++i) {
      if (const auto e = rd_kafka_ConfigResource_error(rs[i]); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        // Missing only when unknown: a refused DescribeConfigs (no permission) is not "no topic".
        const std::string why = std::string("topic ") + topic + ": " + rd_kafka_ConfigResource_error_string(rs[i]);
        out = e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? Status::NotFound(why) : Status::Unavailable(why);
        break;
      }
      size_t m = 0;
      const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(rs[i], &m);
      for (size_t j = 0; j < m; ++j) {
        if (name == rd_kafka_ConfigEntry_name(entries[j])) {
          const char* v = rd_kafka_ConfigEntry_value(entries[j]);
          out = std::string(v != nullptr ? v : "");
        }
      }
    }
  }
  if (ev != nullptr) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(queue);
  rd_kafka_ConfigResource_destroy(res);
  return out;
}

}  // namespace gsau::kafka
