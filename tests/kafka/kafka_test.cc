// The Kafka adapter against the real broker (and, for failures, against no broker at all).
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string_view>
#include <thread>

#include "gsau/common/log.h"
#include "gsau/kafka/admin.h"
#include "gsau/kafka/options.h"
#include "gsau/kafka/producer.h"
#include "gsau/kafka/tail.h"
#include "kafka_broker.h"
#include "process.h"

namespace gsau::kafka {
namespace {

using gsau::testing::ConsumeAll;
using gsau::testing::KafkaBootstrap;
using gsau::testing::MockCluster;
using gsau::testing::UniqueTopic;

KafkaOptions Real() {
  KafkaOptions k;
  k.bootstrap_servers = KafkaBootstrap();
  k.client_id = "gsau-kafka-test";
  return k;
}

// Partitions of `topic` (of `partitions`) for which group `group` has a committed offset.
int CommittedPartitions(const std::string& group, const std::string& topic, int partitions) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", KafkaBootstrap().c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof(err));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  EXPECT_NE(rk, nullptr) << err;
  if (rk == nullptr) return -1;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  int n = -1;
  if (rd_kafka_committed(rk, list, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    n = 0;
    for (int i = 0; i < list->cnt; ++i) n += list->elems[i].offset >= 0;
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return n;
}

// ReadLastRecords: the record at each partition's end, as a full read from the beginning sees it
// (key, value or tombstone, headers); the last n of each partition in order, all of them when
// asked for more than there are; nothing for empty partitions and missing topics. It commits
// nothing, even told to by kafka.properties naming a group: that group has no offsets after it.
TEST(KafkaTest, ReadLastRecordsGivesEachPartitionsLastRecordsAndCommitsNothing) {
  const std::string topic = UniqueTopic("last-records");
  const std::string empty = UniqueTopic("last-records-empty");
  ASSERT_TRUE(EnsureTopics(Real(), {{topic, 3, 1, {}}, {empty, 2, 1, {}}}, 20000).ok());
  auto producer = Producer::Create(Real(), {});
  ASSERT_TRUE(producer.ok()) << producer.status();
  for (int i = 0; i < 60; ++i) {
    const std::string key = "k" + std::to_string(i % 7);
    Headers h = {{"n", std::to_string(i)}};
    if (i % 5 == 0) h.emplace_back("none", std::nullopt);
    ASSERT_TRUE((*producer)->Produce(topic, key, "v" + std::to_string(i), h, 0, /*tombstone=*/i >= 56).ok());
  }
  ASSERT_TRUE((*producer)->Flush(20000).ok());
  const auto all = ConsumeAll(KafkaBootstrap(), topic, 60);
  ASSERT_EQ(all.size(), 60u);
  std::map<int32_t, gsau::testing::ConsumedRecord> last;
  for (const auto& r : all) last[r.partition] = r;
  ASSERT_GE(last.size(), 2u) << "the keys should spread over the partitions";

  KafkaOptions k = Real();
  const std::string group = UniqueTopic("last-records-group");
  k.properties = {{"group.id", group}, {"enable.auto.commit", "true"}, {"auto.commit.interval.ms", "10"}};
  auto got = ReadLastRecords(k, topic, 1, 20000);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), last.size());
  for (const auto& r : *got) {
    ASSERT_TRUE(last.count(r.partition)) << r.partition;
    const auto& want = last[r.partition];
    EXPECT_EQ(r.offset, want.offset);
    EXPECT_EQ(r.key, want.key);
    EXPECT_EQ(!r.value.has_value(), want.null_value);
    if (r.value) {
      EXPECT_EQ(*r.value, want.value);
    }
    std::vector<std::pair<std::string, std::string>> headers;
    for (const auto& [name, v] : r.headers) headers.emplace_back(name, v.value_or(""));
    EXPECT_EQ(headers, want.headers) << r.partition;
  }
  // Tombstones among the last records (56-59 are the last four, over 4 keys), and a null header.
  EXPECT_TRUE(std::any_of(got->begin(), got->end(), [](const LastRecord& r) { return !r.value; }));

  for (const int64_t n : {int64_t{4}, int64_t{1000}}) {
    auto tail = ReadLastRecords(k, topic, n, 20000);
    ASSERT_TRUE(tail.ok()) << tail.status();
    std::map<int32_t, std::vector<std::pair<int64_t, std::string>>> want, have;
    for (const auto& r : all) want[r.partition].emplace_back(r.offset, r.key);
    for (auto& [p, records] : want) {
      if (static_cast<int64_t>(records.size()) > n) records.erase(records.begin(), records.end() - n);
    }
    for (const auto& r : *tail) have[r.partition].emplace_back(r.offset, r.key);
    EXPECT_EQ(have, want) << "last " << n;
  }
  EXPECT_EQ(ReadLastRecords(k, topic, 0, 20000).status().code(), StatusCode::kInvalidArgument);

  auto none = ReadLastRecords(Real(), empty, 1, 20000);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  auto missing = ReadLastRecords(Real(), UniqueTopic("last-records-missing"), 1, 20000);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_TRUE(missing->empty());

  // Neither the group named in the properties nor the reader's own has an offset for the topic.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(CommittedPartitions(group, topic, 3), 0);
  EXPECT_EQ(CommittedPartitions("gsau-last-record-reader", topic, 3), 0);
}

TEST(KafkaTest, ProducerDeliversKeysValuesHeadersAndTombstones) {
  const std::string topic = UniqueTopic("producer");
  ASSERT_TRUE(EnsureTopics(Real(), {{topic, 2, 1, {}}}, 20000).ok());
  auto p = Producer::Create(Real(), {});
  ASSERT_TRUE(p.ok()) << p.status();
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE((*p)->Produce(topic, "k" + std::to_string(i % 7), "v" + std::to_string(i)).ok());
  }
  ASSERT_TRUE((*p)->Produce(topic, "h", "with-headers", {{"gsau.error.reason", "bad json"}, {"x", "1"}}).ok());
  ASSERT_TRUE((*p)->Produce(topic, "gone", "", {}, 0, /*tombstone=*/true).ok());
  // An empty value is not a tombstone, however it is spelled (a null data() was sent as one).
  ASSERT_TRUE((*p)->Produce(topic, "empty", std::string_view{}).ok());
  ASSERT_TRUE((*p)->Flush(30000).ok());
  EXPECT_EQ((*p)->counts().produced, 103);
  EXPECT_EQ((*p)->counts().delivered, 103);
  EXPECT_EQ((*p)->counts().failed, 0);

  const auto records = ConsumeAll(Real().bootstrap_servers, topic, 103);
  ASSERT_EQ(records.size(), 103u);
  int with_headers = 0, tombstones = 0;
  for (const auto& r : records) {
    if (r.key == "empty") {
      EXPECT_FALSE(r.null_value);
      EXPECT_EQ(r.value, "");
    }
    if (r.key == "h") {
      ++with_headers;
      ASSERT_EQ(r.headers.size(), 2u);
      EXPECT_EQ(r.headers[0].first, "gsau.error.reason");
      EXPECT_EQ(r.headers[0].second, "bad json");
    }
    if (r.key == "gone") {
      ++tombstones;
      EXPECT_TRUE(r.null_value);
    }
  }
  EXPECT_EQ(with_headers, 1);
  EXPECT_EQ(tombstones, 1);
}

TEST(KafkaTest, EnsureTopicsCreatesOnceWithPartitionsAndConfigs) {
  const std::string topic = UniqueTopic("compacted");
  const TopicSpec spec{topic, 3, 1, {{"cleanup.policy", "compact"}}};
  ASSERT_TRUE(EnsureTopics(Real(), {spec}, 20000).ok());
  ASSERT_TRUE(EnsureTopics(Real(), {spec}, 20000).ok()) << "an existing topic is not an error";
  auto n = PartitionCount(Real(), topic, 10000);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3);
  // Asked twice: the first question must not create it (the test broker auto-creates topics that
  // a producer's metadata request names).
  const std::string absent = UniqueTopic("absent");
  EXPECT_EQ(PartitionCount(Real(), absent, 10000).status().code(), StatusCode::kNotFound);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(PartitionCount(Real(), absent, 10000).status().code(), StatusCode::kNotFound) << "created by the question";
  // A name librdkafka will not take (over 512 bytes) is an error, not a crash (SIGSEGV).
  EXPECT_EQ(PartitionCount(Real(), std::string(600, 'a'), 10000).status().code(), StatusCode::kInvalidArgument);
}

// A stop ends the wait for brokers that do not answer (Aborted, naming them), long before its
// timeout; without a stop the same wait runs to its timeout (Unavailable). Brokers that answer
// are not given up on for a stop (the start-up then ends through the run, with its checkpoint).
TEST(KafkaTest, WaitForClusterEndsWhenStopped) {
  KafkaOptions k;
  k.bootstrap_servers = "127.0.0.1:1";  // nothing listens: connections are refused
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    stop = true;
  });
  const Status s = WaitForCluster(k, 60000, &stop);
  stopper.join();
  EXPECT_EQ(s.code(), StatusCode::kAborted) << s;
  EXPECT_NE(s.message().find("127.0.0.1:1"), std::string::npos) << s;
  KafkaOptions real;
  real.bootstrap_servers = KafkaBootstrap();
  EXPECT_TRUE(WaitForCluster(real, 20000, &stop).ok()) << "stopped, but the brokers answer";
  std::atomic<bool> never{false};
  EXPECT_EQ(WaitForCluster(k, 1000, &never).code(), StatusCode::kUnavailable);
}

// A "broker" that takes connections and never answers (a stalled one, or another service on the
// port): EnsureTopics gives up within its timeout. Its metadata request and then CreateTopics
// each took the whole timeout (and 2 s more), so start-up hung twice as long as asked.
TEST(KafkaTest, EnsureTopicsEndsWithinItsTimeoutAgainstASilentBroker) {
  const gsau::testing::SilentListener silent;
  ASSERT_GT(silent.port(), 0);
  KafkaOptions k;
  k.bootstrap_servers = "127.0.0.1:" + std::to_string(silent.port());
  const auto start = std::chrono::steady_clock::now();
  const Status s = EnsureTopics(k, {{UniqueTopic("silent"), 1, 1, {}}}, 2000);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_LT(took, 3.5) << s;  // the whole timeout twice (4 s) was the defect
}

// Sum of the partitions' end offsets (records written), from a plain librdkafka client; -1
// when the client cannot be made.
int64_t RecordsWritten(const std::string& bootstrap, const std::string& topic, int partitions) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  std::unique_ptr<rd_kafka_t, decltype(&rd_kafka_destroy)> rk(
      rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)), &rd_kafka_destroy);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    ADD_FAILURE() << err;
    return -1;
  }
  int64_t sum = 0;
  for (int p = 0; p < partitions; ++p) {
    int64_t low = 0, high = 0;
    EXPECT_EQ(rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &low, &high, 10000),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    sum += high;
  }
  return sum;
}

// The same on librdkafka's mock cluster, which `gsau demo` runs on: it answers the offsets query
// and the fetch at the partition's end.
TEST(KafkaTest, ReadLastRecordsWorksOnTheMockCluster) {
  MockCluster cluster;
  cluster.CreateTopic("tail", 2);
  KafkaOptions k;
  k.bootstrap_servers = cluster.bootstrap();
  auto p = Producer::Create(k, {});
  ASSERT_TRUE(p.ok()) << p.status();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE((*p)->Produce("tail", "k" + std::to_string(i), std::to_string(i)).ok());
  ASSERT_TRUE((*p)->Flush(10000).ok());
  auto got = ReadLastRecords(k, "tail", 1, 10000);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_FALSE(got->empty());
  int64_t records = 0;
  for (const auto& r : *got) {
    ASSERT_TRUE(r.value.has_value());
    EXPECT_EQ("k" + *r.value, r.key);  // each value names its own key
    records += r.offset + 1;
  }
  EXPECT_EQ(records, 10) << "the last offsets of the partitions hold all ten records";
}

// librdkafka's mock broker turns down the first produce request with NOT_LEADER (as a just
// created partition does). Five records, one per request, wait for the topic's metadata and go
// out together when allowed; with several requests in flight librdkafka then reports the
// refused record as delivered ("implicit ack") although the log never got it (4 of 5
// written, every run). The producer must not.
TEST(KafkaTest, NotLeaderOnTheFirstRequestLosesNothing) {
  MockCluster cluster;
  rd_kafka_mock_cluster_t* mock = cluster.get();
  cluster.CreateTopic("warm-up", 1);
  cluster.CreateTopic("fresh", 1);

  KafkaOptions k;
  k.bootstrap_servers = cluster.bootstrap();
  k.properties = {{"linger.ms", "0"}, {"batch.num.messages", "1"}};  // one record per request
  {
    auto p = Producer::Create(k, {});
    ASSERT_TRUE(p.ok()) << p.status();
    // The producer id and the broker connection first, so the refusal hits a record.
    ASSERT_TRUE((*p)->Produce("warm-up", "w", "w").ok());
    ASSERT_TRUE((*p)->Flush(10000).ok());
    rd_kafka_mock_broker_set_rtt(mock, 1, 100);
    constexpr int16_t kProduceApiKey = 0;
    rd_kafka_mock_push_request_errors(mock, kProduceApiKey, 1, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE((*p)->Produce("fresh", "k", "v" + std::to_string(i)).ok());
      (*p)->Poll();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_TRUE((*p)->Flush(20000).ok());
    EXPECT_EQ((*p)->counts().delivered, 6);
    EXPECT_EQ((*p)->counts().failed, 0);
  }
  rd_kafka_mock_broker_set_rtt(mock, 1, 0);
  EXPECT_EQ(RecordsWritten(k.bootstrap_servers, "fresh", 1), 5) << "every acknowledged record is in the log";
}

// The same hazard on the real broker: records produced the moment a topic exists, whether
// EnsureTopics made it or the first produce did (auto.create.topics.enable), are all written.
TEST(KafkaTest, RecordsProducedToAJustCreatedTopicAreAllWritten) {
  for (int round = 0; round < 10; ++round) {
    const std::string topic = UniqueTopic("fresh");
    const bool ensure = round % 2 == 0;
    if (ensure) {
      const Status s = EnsureTopics(Real(), {{topic, 4, 1, {}}}, 20000);
      ASSERT_TRUE(s.ok()) << s;
    }
    auto p = Producer::Create(Real(), {});
    ASSERT_TRUE(p.ok()) << p.status();
    // Spread over ~0.3 s, so that more requests follow the first before it is answered.
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE((*p)->Produce(topic, "user-" + std::to_string(i % 31), "v" + std::to_string(i)).ok());
      (*p)->Poll();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE((*p)->Flush(60000).ok());
    ASSERT_EQ((*p)->counts().delivered, 300);
    const auto partitions = PartitionCount(Real(), topic, 10000);
    ASSERT_TRUE(partitions.ok()) << partitions.status();
    EXPECT_EQ(RecordsWritten(Real().bootstrap_servers, topic, *partitions), 300)
        << "round " << round << (ensure ? " (EnsureTopics)" : " (auto-created)");
  }
}

// A producer made with `properties` over ours, pointed at a port where nothing listens: Create()
// connects in the background only, so what it accepts or refuses shows at once.
using Properties = std::vector<std::pair<std::string, std::string>>;
Result<std::unique_ptr<Producer>> UnconnectedProducer(const Properties& properties, bool idempotent,
                                                      const std::string& name = "kafka producer") {
  KafkaOptions k;
  k.bootstrap_servers = "127.0.0.1:1";
  k.properties = properties;
  ProducerOptions o;
  o.idempotent = idempotent;
  o.close_timeout_ms = 100;
  o.name = name;
  return Producer::Create(k, o);
}

// A user property may raise the limit of one request in flight again (throughput over a slow
// link), but start-up names the risk; the project's own setting says nothing.
TEST(KafkaTest, MoreThanOneRequestInFlightIsWarnedAbout) {
  log::Init();  // logs to stderr
  log::SetLevel(log::Level::kInfo);  // whatever GSAU_LOG_LEVEL says
  auto warning = [](const Properties& properties, bool idempotent) {
    ::testing::internal::CaptureStderr();
    auto p = UnconnectedProducer(properties, idempotent);
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_TRUE(p.ok()) << p.status();
    return err.find("max.in.flight.requests.per.connection = ") != std::string::npos;
  };
  EXPECT_FALSE(warning({}, true));
  EXPECT_FALSE(warning({{"max.in.flight.requests.per.connection", "1"}}, true));
  EXPECT_TRUE(warning({{"max.in.flight.requests.per.connection", "5"}}, true));
  EXPECT_TRUE(warning({{"max.in.flight", "3"}}, true)) << "librdkafka's alias of the same property";
  EXPECT_FALSE(warning({{"max.in.flight", "3"}}, false)) << "not idempotent: no acknowledgement promised";
}

// kafka.properties are applied after the project's own settings, and librdkafka takes a producer
// without idempotence and with acks=1 silently: an idempotent one refuses to be made so.
TEST(KafkaTest, PropertiesCannotTakeIdempotenceOrAcksAllAway) {
  auto create = [](const Properties& properties, bool idempotent) {
    return UnconnectedProducer(properties, idempotent, "publisher").status();
  };
  for (const auto& props : std::vector<Properties>{
           {{"enable.idempotence", "false"}, {"acks", "1"}},
           {{"enable.idempotence", "false"}},
           {{"enable.idempotence", "false"}, {"acks", "all"}}}) {
    const Status s = create(props, true);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << props.size() << " " << s;
    EXPECT_NE(s.message().find("publisher must run with enable.idempotence=true and acks=all"), std::string::npos)
        << s;
  }
  EXPECT_TRUE(create({{"acks", "all"}}, true).ok());
  EXPECT_TRUE(create({{"acks", "-1"}, {"enable.idempotence", "true"}}, true).ok());
  EXPECT_TRUE(create({{"enable.idempotence", "false"}, {"acks", "1"}}, false).ok()) << "not idempotent: its choice";
}

// Lines of text in `text` that contain every one of `needles`.
int LinesWith(const std::string& text, std::initializer_list<std::string_view> needles) {
  int n = 0;
  for (size_t at = 0; at < text.size();) {
    const size_t end = std::min(text.find('\n', at), text.size());
    const std::string_view line = std::string_view(text).substr(at, end - at);
    n += std::all_of(needles.begin(), needles.end(), [&](auto x) { return line.find(x) != std::string_view::npos; });
    at = end + 1;
  }
  return n;
}

// With the broker away librdkafka reports a failed connection about every second, on stderr in
// its own format unless told otherwise. Producers and admin clients pass their lines through
// gsau's log instead, naming the client, at most one warning per 5 s with the count.
TEST(KafkaTest, TheClientsLinesGoThroughOurLogNamingTheClientAndThrottled) {
  log::Init();
  log::SetLevel(log::Level::kInfo);
  KafkaOptions k;
  k.bootstrap_servers = "127.0.0.1:1";  // nothing listens: connections are refused
  ProducerOptions o;
  o.name = "test producer";
  o.close_timeout_ms = 100;
  ::testing::internal::CaptureStderr();
  {
    auto p = Producer::Create(k, o);
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_TRUE((*p)->Produce("t", "k", "v").ok());
    EXPECT_FALSE((*p)->Flush(3000).ok()) << "nothing to deliver to";
    EXPECT_GE((*p)->counts().client_errors, 1) << "the refused connections, counted";
  }
  EXPECT_FALSE(WaitForCluster(k, 1500).ok());
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(LinesWith(err, {"test producer: librdkafka (", "Connection refused"}), 1)
      << "a refused connection every second, one line within 5 s\n" << err;
  EXPECT_GE(LinesWith(err, {"kafka admin gsau#", "Connection refused"}), 1) << "named with its handle\n" << err;
  EXPECT_EQ(LinesWith(err, {"|FAIL|"}), 0) << "a line in librdkafka's own format\n" << err;
}

// After a fatal error (an idempotent producer that can no longer keep order) every Produce
// fails, and says so with kInternal, the code its owners stop on (the pipeline exits and its
// restart takes a new producer), rather than a retryable kUnavailable they would retry for ever.
TEST(KafkaTest, AFatalProducerErrorIsReportedAsSuch) {
  const std::string topic = UniqueTopic("fatal");
  ASSERT_TRUE(EnsureTopics(Real(), {{topic, 1, 1, {}}}, 20000).ok());
  auto p = Producer::Create(Real(), {});
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE((*p)->Produce(topic, "k", "before").ok());
  ASSERT_TRUE((*p)->Flush(30000).ok());
  EXPECT_FALSE((*p)->failed_fatally());
  (*p)->RaiseFatalErrorForTesting();
  EXPECT_TRUE((*p)->failed_fatally()) << "what the publisher's owner stops on";
  const Status s = (*p)->Produce(topic, "k", "after");
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s;
  EXPECT_NE(s.message().find("fatal producer error"), std::string::npos) << s;
  EXPECT_NE(s.message().find("raised by a test"), std::string::npos) << "the client's reason: " << s;
  const auto got = ConsumeAll(KafkaBootstrap(), topic, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "before");
}

// Kafka's Java client (Utils.murmur2): the partition of a keyed record is
// (murmur2(key) & 0x7fffffff) % partitions. Written from the Java source, checked against
// the values Kafka's own UtilsTest asserts.
int32_t JavaMurmur2(std::string_view key) {
  const uint32_t m = 0x5bd1e995;
  const auto* d = reinterpret_cast<const unsigned char*>(key.data());
  const size_t n = key.size();
  uint32_t h = 0x9747b28c ^ static_cast<uint32_t>(n);
  for (size_t i = 0; i + 4 <= n; i += 4) {
    uint32_t k = d[i] | (d[i + 1] << 8) | (d[i + 2] << 16) | (static_cast<uint32_t>(d[i + 3]) << 24);
    k *= m;
    k ^= k >> 24;
    k *= m;
    h *= m;
    h ^= k;
  }
  const size_t tail = n & ~size_t{3};
  switch (n % 4) {
    case 3:
      h ^= d[tail + 2] << 16;
      [[fallthrough]];
    case 2:
      h ^= d[tail + 1] << 8;
      [[fallthrough]];
    case 1:
      h ^= d[tail];
      h *= m;
  }
  h ^= h >> 13;
  h *= m;
  h ^= h >> 15;
  return static_cast<int32_t>(h);
}

TEST(KafkaTest, KeysGoToThePartitionsJavaClientsChoose) {
  EXPECT_EQ(JavaMurmur2("21"), -973932308);
  EXPECT_EQ(JavaMurmur2("foobar"), -790332482);
  EXPECT_EQ(JavaMurmur2("a-little-bit-long-string"), -985981536);
  EXPECT_EQ(JavaMurmur2("abc"), 479470107);

  const int partitions = 7;
  const std::string topic = UniqueTopic("partitioner");
  ASSERT_TRUE(EnsureTopics(Real(), {{topic, partitions, 1, {}}}, 20000).ok());
  auto p = Producer::Create(Real(), {});
  ASSERT_TRUE(p.ok()) << p.status();
  const int n = 200;
  for (int i = 0; i < n; ++i) ASSERT_TRUE((*p)->Produce(topic, "user-" + std::to_string(i), "v").ok());
  ASSERT_TRUE((*p)->Flush(30000).ok());
  const auto records = ConsumeAll(Real().bootstrap_servers, topic, n);
  ASSERT_EQ(records.size(), static_cast<size_t>(n));
  std::set<int32_t> used;
  for (const auto& r : records) {
    EXPECT_EQ(r.partition, (JavaMurmur2(r.key) & 0x7fffffff) % partitions) << r.key;
    used.insert(r.partition);
  }
  EXPECT_EQ(used.size(), static_cast<size_t>(partitions));
}

TEST(KafkaTest, NoBrokerFailsInTime) {
  KafkaOptions k;
  k.bootstrap_servers = "127.0.0.1:1";
  const auto start = std::chrono::steady_clock::now();
  const Status s = WaitForCluster(k, 1500);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_LT(took, 10.0);
}

// With queue_full_timeout_ms, a local queue that stays full (here: no broker, a queue of 4
// records, records that would only time out after 60 s) refuses the record instead of waiting
// for room, and the record is not counted as produced; room comes back as deliveries settle.
// Without it, Produce waited the 60 s out (the publisher held its lock through it).
TEST(KafkaTest, AFullQueueRefusesTheRecordAfterQueueFullTimeout) {
  KafkaOptions k;
  k.bootstrap_servers = "127.0.0.1:1";
  k.properties = {{"queue.buffering.max.messages", "4"}};
  ProducerOptions po;
  po.message_timeout_ms = 60000;
  po.close_timeout_ms = 0;
  po.queue_full_timeout_ms = 200;
  po.keep_failed = true;
  auto p = Producer::Create(k, po);
  ASSERT_TRUE(p.ok()) << p.status();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE((*p)->Produce("t", "k" + std::to_string(i), "v").ok());
  const Status s = (*p)->Produce("t", "k4", "v");
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("the local queue stayed full for 200 ms"), std::string::npos) << s;
  EXPECT_EQ((*p)->counts().produced, 4);
  EXPECT_EQ((*p)->KeptFailedCount(), 0u);
}

// keep_failed: a record refused at once (a full queue) does not supersede the one of its key
// still in flight, whose failure is then kept for TakeFailed(), whether it is reported after
// the refusal or during the wait for room before it. It was forgotten, so it was never produced
// again.
TEST(KafkaTest, ARefusedRecordLeavesTheOlderOneOfItsKeyKeptWhenThatFails) {
  struct Timing {
    int message_timeout_ms, queue_full_timeout_ms;
  };
  for (const Timing t : {Timing{1000, 100}, Timing{300, 3000}}) {
    KafkaOptions k;
    k.bootstrap_servers = "127.0.0.1:1";
    k.properties = {{"queue.buffering.max.messages", "1"}};
    ProducerOptions po;
    po.message_timeout_ms = t.message_timeout_ms;
    po.close_timeout_ms = 0;
    po.queue_full_timeout_ms = t.queue_full_timeout_ms;
    po.keep_failed = true;
    auto p = Producer::Create(k, po);
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_TRUE((*p)->Produce("t", "user-1", "old").ok());
    const Status refused = (*p)->Produce("t", "user-1", "new");
    if (t.message_timeout_ms < t.queue_full_timeout_ms) {
      // The old one timed out during the wait, which made room: the new one got in after all.
      // Its own failure is then what is kept (the newest of the key), and the old one's is not.
      ASSERT_TRUE(refused.ok() || refused.code() == StatusCode::kResourceExhausted) << refused;
      if (refused.ok()) {
        for (int i = 0; i < 100 && (*p)->counts().failed < 2; ++i) (*p)->Flush(100).IgnoreError();
        const auto kept = (*p)->TakeFailed();
        ASSERT_EQ(kept.size(), 1u);
        EXPECT_EQ(kept[0].value, "new");
        continue;
      }
    } else {
      ASSERT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused;
    }
    for (int i = 0; i < 100 && (*p)->counts().failed == 0; ++i) (*p)->Flush(100).IgnoreError();
    ASSERT_EQ((*p)->counts().failed, 1);
    const auto kept = (*p)->TakeFailed();
    ASSERT_EQ(kept.size(), 1u) << "message timeout " << t.message_timeout_ms;
    EXPECT_EQ(kept[0].key, "user-1");
    EXPECT_EQ(kept[0].value, "old");
  }
}

TEST(KafkaTest, BadPropertiesAreNamedAndSecretsRedacted) {
  KafkaOptions k;
  k.bootstrap_servers = "127.0.0.1:9092";
  k.properties = {{"sasl.password", "hunter2"}, {"no.such.thing", "1"}};
  const Status s = ValidateKafkaOptions(k);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no.such.thing"), std::string::npos) << s;
  EXPECT_EQ(RedactedProperties(k).find("hunter2"), std::string::npos);
  EXPECT_TRUE(IsSecretProperty("ssl.key.password"));
  EXPECT_TRUE(IsSecretProperty("sasl.oauthbearer.config"));
  EXPECT_FALSE(IsSecretProperty("security.protocol"));
}

}  // namespace
}  // namespace gsau::kafka
