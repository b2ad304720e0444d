// The ingest stage in process, against the real broker.
#include <gtest/gtest.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <librdkafka/rdkafkacpp.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "gsau/ingest/ingestor.h"
#include "ingest_helpers.h"
#include "kafka_broker.h"
#include "temp_dir.h"

namespace gsau::ingest {
namespace {

using namespace gsau::testing;

IngestOptions Options(const std::string& topic) {
  IngestOptions o;
  o.kafka = KafkaAt(KafkaBootstrap());
  o.topic = topic;
  o.dead_letter_topic = topic + ".dlq";
  o.group_id = UniqueTopic("group");
  o.batch_max_events = 100;
  o.batch_max_wait_ms = 50;
  o.session_timeout_ms = 6000;
  return o;
}

std::unique_ptr<state::StateStore> OpenState(const std::string& path) {
  state::StateOptions o;
  o.path = path;
  auto s = state::StateStore::Open(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(s).value();
}

// Runs the ingestor on a thread until `done` holds, Run returns by itself, or 60 s; then stops it.
template <typename Done>
Status RunUntil(Ingestor& ingestor, Done done) {
  std::atomic<bool> stop{false}, returned{false};
  Status result;
  std::thread t([&] {
    result = ingestor.Run(stop);
    returned = true;
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!returned && !done() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  t.join();
  return result;
}

TEST(IngestTest, GoodEventsReachTheStateBadOnesTheDeadLetterTopic) {
  const std::string topic = UniqueTopic("mixed");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 3, 1, {}}}, 20000).ok());
  auto producer = kafka::Producer::Create(KafkaAt(KafkaBootstrap()), {});
  ASSERT_TRUE(producer.ok());

  // Bad events, each with the code it must get and a part of the reason (the message) it must get.
  const std::string long_id(300, 'x');
  std::string garbage;
  for (int i = 0; i < 64; ++i) garbage.push_back(static_cast<char>((i * 37 + 11) & 0xff));
  struct Bad {
    std::string value, code, reason;
  };
  const std::vector<Bad> bad = {
      {"not json at all", "not_json", "not valid JSON"},
      {R"({"item_id":"i1","ts":1700000000000})", "missing_field", "missing user_id"},
      {R"({"user_id":")" + long_id + R"(","item_id":"i1","ts":1700000000000})", "bad_id", "user_id is 300 bytes"},
      {R"({"user_id":"u1","item_id":"i1","ts":-1})", "bad_time", "ts -1 is negative"},
      {R"({"user_id":"u1","item_id":"i1","ts":1700000000})", "bad_time", "seconds, not milliseconds?"},
      // Two days ahead of the clock (decoder.max_ahead_ms below: a day).
      {R"({"user_id":"u1","item_id":"i1","ts":)" +
           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count() +
                          2 * 86'400'000) +
           "}",
       "bad_time", "ahead of this machine's clock"},
      {R"({"user_id":{"a":1},"item_id":"i1","ts":1700000000000})", "wrong_type", "user_id must be a string"},
      {R"({"user_id":"u1","item_id":"i1","ts":"noon"})", "wrong_type", "ts must be an integer"},
      {"", "empty_value", "empty value"},
      {garbage, "not_json", "not valid JSON"},
      {R"({"user_id":"u1","item_id":"i1","pad":")" + std::string(100000, 'p') + "\"}", "too_large",
       "is over the limit"},
      {"[]", "not_object", "not a JSON object"},
      {R"({"user_id":"u1","item_id":"i1","user_id":"u2","ts":1700000000000})", "duplicate_field",
       "user_id appears more than once"},
  };
  const auto good = MakeClicks(3000, 200, 300, 7);
  size_t next_bad = 0;
  // A trace id, a header with a null value and one with an empty value: the dead letter gives
  // each back as it was.
  const auto bad_headers = [](size_t k) -> kafka::Headers {
    return {{"trace", "t" + std::to_string(k)}, {"absent", std::nullopt}, {"blank", ""}};
  };
  for (size_t i = 0; i < good.size(); ++i) {
    ASSERT_TRUE((*producer)->Produce(topic, good[i].user_id, ClickJson(good[i].user_id, good[i].item_id, good[i].ts_ms)).ok());
    if (i % 250 == 0 && next_bad < bad.size()) {
      ASSERT_TRUE(
          (*producer)->Produce(topic, "bad-" + std::to_string(next_bad), bad[next_bad].value, bad_headers(next_bad)).ok());
      ++next_bad;
    }
  }
  while (next_bad < bad.size()) {
    ASSERT_TRUE(
        (*producer)->Produce(topic, "bad-" + std::to_string(next_bad), bad[next_bad].value, bad_headers(next_bad)).ok());
    ++next_bad;
  }
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  const int64_t total = static_cast<int64_t>(good.size() + bad.size());

  TempDir dir;
  auto store = OpenState(dir.File("state"));
  IngestOptions options = Options(topic);
  options.decoder.max_ahead_ms = 86'400'000;
  Ingestor ingestor(options, store.get(), nullptr, nullptr);
  ASSERT_TRUE(RunUntil(ingestor, [&] { return ingestor.counters().consumed >= total; }).ok());

  const auto c = ingestor.counters();
  EXPECT_EQ(c.consumed, total);
  EXPECT_EQ(c.applied, static_cast<int64_t>(good.size()));
  EXPECT_EQ(c.dead_lettered, static_cast<int64_t>(bad.size()));
  EXPECT_EQ(c.consumed, c.applied + c.dead_lettered + c.skipped);

  // The state holds exactly the good events: compare with a store fed them directly.
  TempDir ref_dir;
  auto ref = OpenState(ref_dir.File("state"));
  ASSERT_TRUE(ref->ApplyBatch(good, {}).ok());
  EXPECT_EQ(Dump(*store), Dump(*ref));
  // The source topic as the broker holds it: where each partition ends, where each bad record is.
  std::map<int32_t, int64_t> ends;
  std::map<std::string, std::pair<int32_t, int64_t>> source;  // key of a bad record -> (partition, offset)
  std::set<int32_t> bad_partitions;
  for (const auto& r : ConsumeAll(KafkaBootstrap(), topic, total)) {
    ends[r.partition] = std::max(ends[r.partition], r.offset + 1);
    if (r.key.rfind("bad-", 0) == 0) {
      source[r.key] = {r.partition, r.offset};
      bad_partitions.insert(r.partition);
    }
  }
  ASSERT_EQ(source.size(), bad.size());
  ASSERT_EQ(bad_partitions.size(), 3u) << "bad records on every partition (a wrong partition shows)";

  // Offsets: every partition's next offset is its end.
  std::map<int32_t, int64_t> stored;
  for (const auto& o : store->Offsets()) stored[o.tp.partition] = o.next_offset;
  EXPECT_EQ(stored, ends);

  // The dead-letter topic holds every bad one, with its key, value, headers and reason, and the
  // coordinates of exactly the source record it stands for.
  const auto dlq = ConsumeAll(KafkaBootstrap(), options.dead_letter_topic, static_cast<int64_t>(bad.size()));
  ASSERT_EQ(dlq.size(), bad.size());
  std::set<std::string> keys;
  for (const auto& r : dlq) {
    ASSERT_EQ(r.key.rfind("bad-", 0), 0u) << r.key;
    keys.insert(r.key);
    const size_t k = std::stoul(r.key.substr(4));
    EXPECT_EQ(r.value, bad[k].value) << "original value kept";
    std::map<std::string, std::string> h(r.headers.begin(), r.headers.end());
    EXPECT_EQ(h["trace"], "t" + std::to_string(k)) << "original headers kept";
    // A null header value stays null, and an empty one empty (the null one went out as empty).
    EXPECT_TRUE(h.count("blank") && h["blank"].empty()) << r.key;
    EXPECT_EQ(r.null_headers, std::vector<std::string>{"absent"}) << r.key;
    EXPECT_EQ(h["gsau.error.code"], bad[k].code) << bad[k].value.substr(0, 80);
    EXPECT_NE(h["gsau.error.reason"].find(bad[k].reason), std::string::npos)
        << h["gsau.error.reason"] << " for " << bad[k].value.substr(0, 80);
    EXPECT_EQ(h["gsau.error.topic"], topic);
    EXPECT_EQ(h["gsau.error.partition"], std::to_string(source[r.key].first)) << r.key;
    EXPECT_EQ(h["gsau.error.offset"], std::to_string(source[r.key].second)) << r.key;
  }
  EXPECT_EQ(keys.size(), bad.size()) << "one dead letter per bad record";
}

// Ingests `topic` into a fresh state until `records` were consumed, expects `applied` and
// `dead_lettered` of them, and returns the dead-letter topic's records.
std::vector<ConsumedRecord> IngestAndReadDeadLetters(const std::string& topic, int64_t records, int64_t applied,
                                                     int64_t dead_lettered) {
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  const IngestOptions options = Options(topic);
  Ingestor ingestor(options, store.get(), nullptr, nullptr);
  EXPECT_TRUE(RunUntil(ingestor, [&] { return ingestor.counters().consumed >= records; }).ok());
  EXPECT_EQ(ingestor.counters().applied, applied);
  EXPECT_EQ(ingestor.counters().dead_lettered, dead_lettered);
  return ConsumeAll(KafkaBootstrap(), options.dead_letter_topic, dead_lettered);
}

// A dead letter keeps the original's key as it was: none stays none, empty stays empty
// (consumers of the dead-letter topic may partition or compact by key).
TEST(IngestTest, ADeadLetterKeepsANullKeyNullAndAnEmptyKeyEmpty) {
  const std::string topic = UniqueTopic("keys");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {}}}, 20000).ok());
  auto producer = kafka::Producer::Create(KafkaAt(KafkaBootstrap()), {});
  ASSERT_TRUE(producer.ok());
  ASSERT_TRUE((*producer)->Produce(topic, std::string_view(), "no key", {{"trace", "null"}}).ok());
  ASSERT_TRUE((*producer)->Produce(topic, std::string_view("", 0), "empty key", {{"trace", "empty"}}).ok());
  ASSERT_TRUE((*producer)->Produce(topic, "u1", ClickJson("u1", "i1", 1700000000000)).ok());
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  const auto sent = ConsumeAll(KafkaBootstrap(), topic, 3);
  ASSERT_EQ(sent.size(), 3u);
  ASSERT_TRUE(sent[0].null_key) << "the producer sent no key";
  ASSERT_FALSE(sent[1].null_key) << "the producer sent an empty key";

  const auto dlq = IngestAndReadDeadLetters(topic, 3, 1, 2);
  ASSERT_EQ(dlq.size(), 2u);
  for (const auto& r : dlq) {
    std::map<std::string, std::string> h(r.headers.begin(), r.headers.end());
    EXPECT_EQ(h["gsau.error.code"], "not_json");
    EXPECT_EQ(r.null_key, h["trace"] == "null") << h["trace"];
    EXPECT_EQ(r.key, "");
  }
}

std::string RandomBytes(size_t n, uint64_t seed) {
  std::string out(n, '\0');
  for (auto& ch : out) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    ch = static_cast<char>(seed >> 56);
  }
  return out;
}

// Produces 200 good clicks to `topic` with `bad` (key "huge", a "trace" header) after the 100th,
// uncompressed, up to 2,000,000 bytes a record (as a Java client's ~1 MiB default would allow),
// then ingests them and returns the dead-letter record(s).
std::vector<ConsumedRecord> IngestAroundOneBadRecord(const std::string& topic, const std::string& bad) {
  kafka::KafkaOptions big = KafkaAt(KafkaBootstrap());
  big.properties = {{"message.max.bytes", "2000000"}};
  kafka::ProducerOptions uncompressed;
  uncompressed.compression = "none";
  auto producer = kafka::Producer::Create(big, uncompressed);
  EXPECT_TRUE(producer.ok()) << producer.status();
  if (!producer.ok()) return {};
  const auto good = MakeClicks(200, 20, 30, 3);
  for (size_t i = 0; i < good.size(); ++i) {
    if (i == 100) {
      EXPECT_TRUE((*producer)->Produce(topic, "huge", bad, {{"trace", "t-huge"}}).ok());
    }
    const auto& c = good[i];
    EXPECT_TRUE((*producer)->Produce(topic, c.user_id, ClickJson(c.user_id, c.item_id, c.ts_ms)).ok());
  }
  EXPECT_TRUE((*producer)->Flush(30000).ok());

  return IngestAndReadDeadLetters(topic, 201, 200, 1);
}

void ExpectTheHeadOf(const std::string& bad, const ConsumedRecord& r, size_t at_most) {
  EXPECT_EQ(r.key, "huge");
  std::map<std::string, std::string> h(r.headers.begin(), r.headers.end());
  EXPECT_EQ(h["gsau.error.code"], "too_large");
  EXPECT_EQ(h["trace"], "t-huge");
  EXPECT_EQ(h["gsau.error.value_bytes"], std::to_string(bad.size())) << "the original size";
  EXPECT_GT(r.value.size(), at_most / 2) << "cut no further than needed";
  EXPECT_LE(r.value.size(), at_most);
  EXPECT_EQ(r.value, bad.substr(0, r.value.size())) << "the head of the original value";
}

// A record the broker took can still be too large for the dead-letter producer (librdkafka
// sends at most message.max.bytes, 1,000,000 by default): its dead letter carries the head of
// the value and the original size instead of stalling ingest.
TEST(IngestTest, AValueTooLargeForTheDeadLetterProducerIsCutNotStuckOn) {
  const std::string topic = UniqueTopic("huge");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {}}}, 20000).ok());
  const std::string bad = RandomBytes(1'040'000, 12345);
  const auto dlq = IngestAroundOneBadRecord(topic, bad);
  ASSERT_EQ(dlq.size(), 1u);
  ExpectTheHeadOf(bad, dlq[0], 1'000'000);
}

// The same when only the dead-letter topic's own limit (max.message.bytes) is smaller: the
// broker refuses the dead letter, which is cut further until it is taken.
TEST(IngestTest, ADeadLetterTheTopicRefusesAsTooLargeIsCutFurther) {
  const std::string topic = UniqueTopic("big");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()),
                                  {{topic, 1, 1, {}}, {topic + ".dlq", 1, 1, {{"max.message.bytes", "200000"}}}},
                                  20000)
                  .ok());
  const std::string bad = RandomBytes(500'000, 777);
  const auto dlq = IngestAroundOneBadRecord(topic, bad);
  ASSERT_EQ(dlq.size(), 1u);
  ExpectTheHeadOf(bad, dlq[0], 200'000);
}

// Many small dead letters and a dead-letter topic with a small max.message.bytes: the broker
// checks the limit against a whole batch of records, and librdkafka does not split a refused
// batch, so cutting each record could never make them fit (ingest stalled on them for ever).
// Also with a batch.size in kafka.properties (for the publisher's throughput, say), which came
// after ingest's own and undid its shrinking.
void ExpectManySmallDeadLettersToFit(const std::vector<std::pair<std::string, std::string>>& properties,
                                     const std::string& dlq_max_message_bytes = "20000") {
  const std::string topic = UniqueTopic("many-bad");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()),
                                  {{topic, 1, 1, {}},
                                   {topic + ".dlq", 1, 1, {{"max.message.bytes", dlq_max_message_bytes}}}},
                                  20000)
                  .ok());
  auto producer = kafka::Producer::Create(KafkaAt(KafkaBootstrap()), {});
  ASSERT_TRUE(producer.ok());
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE((*producer)->Produce(topic, "bad-" + std::to_string(i), RandomBytes(1000, 100 + i)).ok());
  }
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  IngestOptions options = Options(topic);
  options.kafka.properties = properties;
  options.batch_max_events = 1000;  // one micro-batch, its dead letters produced together
  options.retry_backoff_max_ms = 200;
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  Ingestor ingestor(options, store.get(), nullptr, nullptr);
  ASSERT_TRUE(RunUntil(ingestor, [&] { return ingestor.counters().dead_lettered >= 200; }).ok());
  EXPECT_EQ(ingestor.counters().dead_lettered, 200);
  // Batches the broker took before a refusal are produced again with the rest: at-least-once.
  const auto dlq = ConsumeAll(KafkaBootstrap(), options.dead_letter_topic, -1);
  std::set<std::string> keys;
  for (const auto& r : dlq) keys.insert(r.key);
  EXPECT_EQ(keys.size(), 200u);
}

TEST(IngestTest, ManySmallDeadLettersFitATopicWithASmallLimit) { ExpectManySmallDeadLettersToFit({}); }

TEST(IngestTest, ManySmallDeadLettersFitATopicWithASmallLimitWhateverBatchSizeIsSet) {
  ExpectManySmallDeadLettersToFit({{"batch.size", "1000000"}});
}

// Below 4 KiB too: cutting stopped there, and a topic of a smaller limit refused every letter
// for ever (ingest stalled on them).
TEST(IngestTest, DeadLettersFitATopicOfTwoKilobytes) { ExpectManySmallDeadLettersToFit({}, "2000"); }

// librdkafka's mock cluster, for failures on demand: `bad` (a value that is not JSON, key "bad")
// and then `good` written to its topic "clicks".
void ProduceToMock(const kafka::KafkaOptions& k, bool bad, const std::vector<ClickEvent>& good) {
  auto p = kafka::Producer::Create(k, {});
  ASSERT_TRUE(p.ok()) << p.status();
  if (bad) {
    ASSERT_TRUE((*p)->Produce("clicks", "bad", "not json").ok());
  }
  for (const auto& c : good) {
    ASSERT_TRUE((*p)->Produce("clicks", c.user_id, ClickJson(c.user_id, c.item_id, c.ts_ms)).ok());
  }
  ASSERT_TRUE((*p)->Flush(10000).ok());
}

// The mock cluster refuses the next `n` requests of the API (Kafka's key: 0 Produce, 8
// OffsetCommit) with `err`.
constexpr int16_t kProduceApiKey = 0;
constexpr int16_t kOffsetCommitApiKey = 8;
void RefuseRequests(MockCluster& cluster, int16_t api_key, size_t n, rd_kafka_resp_err_t err) {
  std::vector<rd_kafka_resp_err_t> refusals(n, err);
  rd_kafka_mock_push_request_errors_array(cluster.get(), api_key, refusals.size(), refusals.data());
}

// The mock cluster as a broker to connect to.
kafka::KafkaOptions MockKafka(const MockCluster& cluster) {
  kafka::KafkaOptions k;
  k.bootstrap_servers = cluster.bootstrap();
  return k;
}

// Ingest of the mock cluster's "clicks" (dead letters to "clicks.dlq") as `group`.
IngestOptions MockOptions(const kafka::KafkaOptions& k, const std::string& group) {
  IngestOptions options;
  options.kafka = k;
  options.topic = "clicks";
  options.dead_letter_topic = "clicks.dlq";
  options.group_id = group;
  options.batch_max_wait_ms = 50;
  return options;
}

// A dead letter whose delivery fails for good (here: the broker refuses produce requests until
// message.timeout.ms runs out) is gone from the producer; the batch commits only once it has
// been produced again and acknowledged. (librdkafka's mock cluster: failures on demand.)
TEST(IngestTest, ADeadLetterWhoseDeliveryFailedIsProducedAgainBeforeTheBatchCommits) {
  MockCluster cluster;
  cluster.CreateTopic("clicks", 1);
  cluster.CreateTopic("clicks.dlq", 1);
  const kafka::KafkaOptions k = MockKafka(cluster);
  ProduceToMock(k, /*bad=*/true, MakeClicks(20, 5, 5, 9));
  // Every produce request from now on is refused (retriably) until 25 refusals are used up: each
  // try of the dead letter times out after ~1 s of them, at least once.
  RefuseRequests(cluster, kProduceApiKey, 25, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);

  TempDir dir;
  auto store = OpenState(dir.File("state"));
  IngestOptions options = MockOptions(k, "dlq-retry");
  options.kafka.properties = {{"message.timeout.ms", "1000"}};
  options.retry_backoff_max_ms = 200;
  Ingestor ingestor(options, store.get(), nullptr, nullptr);
  ASSERT_TRUE(RunUntil(ingestor, [&] { return ingestor.counters().consumed >= 21; }).ok());
  EXPECT_EQ(ingestor.counters().dead_lettered, 1);
  EXPECT_EQ(ingestor.counters().applied, 20);
  const auto dlq = ConsumeAll(k.bootstrap_servers, "clicks.dlq", 1, 10000);
  ASSERT_FALSE(dlq.empty()) << "the dead letter was lost: its batch committed after its delivery failed";
  for (const auto& r : dlq) EXPECT_EQ(r.value, "not json");
}

// A dead letter carries the time it was dead-lettered (the topic's time-based retention counts
// from it) and the original's in gsau.error.timestamp: a bad record of a month-old backfill
// must not fall to a 7-day retention at once. The source topic keeps its records for ever: the
// test broker checks retention every minute, and a check between produce and ingest deleted the
// month-old original (CI, stop 44).
TEST(IngestTest, ADeadLetterIsTimestampedWhenProducedAndKeepsTheOriginalTime) {
  const std::string topic = UniqueTopic("dlq-time");
  ASSERT_TRUE(
      kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {{"retention.ms", "-1"}}}}, 20000).ok());
  auto producer = kafka::Producer::Create(KafkaAt(KafkaBootstrap()), {});
  ASSERT_TRUE(producer.ok());
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  const int64_t month_ago = now_ms - int64_t{30} * 24 * 3600 * 1000;
  ASSERT_TRUE((*producer)->Produce(topic, "old", "not json", {}, month_ago).ok());
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  const auto dlq = IngestAndReadDeadLetters(topic, 1, 0, 1);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_GE(dlq[0].timestamp_ms, now_ms - 1000);
  EXPECT_LE(dlq[0].timestamp_ms, now_ms + 120000);
  std::map<std::string, std::string> h(dlq[0].headers.begin(), dlq[0].headers.end());
  EXPECT_EQ(h["gsau.error.timestamp"], std::to_string(month_ago));
}

// After a fatal error the dead-letter producer takes nothing more: a new one takes over, and no
// bad event is lost or holds ingest up.
TEST(IngestTest, AFatalErrorOfTheDeadLetterProducerIsSurvived) {
  const std::string topic = UniqueTopic("dlq-fatal");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {}}}, 20000).ok());
  auto producer = kafka::Producer::Create(KafkaAt(KafkaBootstrap()), {});
  ASSERT_TRUE(producer.ok());
  const auto good = MakeClicks(200, 20, 20, 5);
  auto produce_good = [&](size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      ASSERT_TRUE(
          (*producer)->Produce(topic, good[i].user_id, ClickJson(good[i].user_id, good[i].item_id, good[i].ts_ms)).ok());
    }
    ASSERT_TRUE((*producer)->Flush(30000).ok());
  };
  produce_good(0, 100);
  ASSERT_TRUE((*producer)->Produce(topic, "bad-0", "not json").ok());
  ASSERT_TRUE((*producer)->Flush(30000).ok());

  TempDir dir;
  auto store = OpenState(dir.File("state"));
  prometheus::Registry registry;
  IngestOptions options = Options(topic);
  options.retry_backoff_max_ms = 200;
  Ingestor ingestor(options, store.get(), nullptr, &registry);
  bool raised = false;
  const Status run = RunUntil(ingestor, [&] {
    const auto c = ingestor.counters();
    if (!raised && c.dead_lettered >= 1) {
      ingestor.RaiseDeadLetterFatalErrorForTesting();
      raised = true;
      produce_good(100, 200);
      EXPECT_TRUE((*producer)->Produce(topic, "bad-1", "still not json").ok());
      EXPECT_TRUE((*producer)->Flush(30000).ok());
    }
    return c.consumed >= 202;
  });
  ASSERT_TRUE(run.ok()) << run;
  ASSERT_TRUE(raised);
  EXPECT_EQ(ingestor.counters().applied, 200);
  EXPECT_EQ(ingestor.counters().dead_lettered, 2);
  const auto dlq = ConsumeAll(KafkaBootstrap(), options.dead_letter_topic, -1);  // at-least-once: read all
  std::set<std::string> keys;
  for (const auto& r : dlq) keys.insert(r.key);
  EXPECT_EQ(keys, (std::set<std::string>{"bad-0", "bad-1"}));
}

// A state that has read a partition further than the partition now reaches (the topic deleted
// and created again, or another cluster): ingest stops, saying so, instead of skipping every
// record below the state's offset as one it had read. Every partition so is named, and those
// whose record below the state's offset was still to be compared are counted.
TEST(IngestTest, AStateAheadOfThePartitionStopsIngest) {
  const std::string topic = UniqueTopic("recreated");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 3, 1, {}}}, 20000).ok());
  ProduceClicks(KafkaAt(KafkaBootstrap()), topic, MakeClicks(50, 10, 10, 21));
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  // The old topic's offsets; partition 2's within the new log, with its record's fingerprint.
  const std::vector<PartitionOffset> ahead = {{{topic, 0}, 500}, {{topic, 1}, 600}, {{topic, 2}, 1, 0x1234}};
  ASSERT_TRUE(store->ApplyBatch({}, ahead).ok());
  Ingestor ingestor(Options(topic), store.get(), nullptr, nullptr);
  std::atomic<bool> stop{false}, returned{false};
  Status result;
  std::thread t([&] {
    result = ingestor.Run(stop);
    returned = true;
  });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!returned && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop = true;
  t.join();
  EXPECT_EQ(result.code(), StatusCode::kFailedPrecondition) << result;
  EXPECT_NE(result.message().find("partition " + topic + "/0 ends at offset "), std::string::npos) << result;
  EXPECT_NE(result.message().find(" but the state has consumed it up to 500 (found at its assignment)"),
            std::string::npos)
      << result;
  EXPECT_NE(result.message().find("; partition " + topic + "/1 ends at offset "), std::string::npos) << result;
  EXPECT_NE(result.message().find(" but the state has consumed it up to 600 (found at its assignment)"),
            std::string::npos)
      << result;
  // Partition 2 is named when its record to compare came before ingest stopped, else counted.
  const bool named = result.message().find("; partition " + topic + "/2 holds another record at offset 0 than the "
                                           "one this state read there") != std::string::npos;
  const bool counted = result.message().find("(1 other partition(s) of the assignment were not compared before "
                                             "ingest stopped)") != std::string::npos;
  EXPECT_TRUE(named != counted) << result;
  // One explanation, after the list.
  const size_t explained = result.message().find(": the topic was deleted and created again");
  ASSERT_NE(explained, std::string::npos) << result;
  EXPECT_GT(explained, result.message().rfind("(found at its assignment)")) << result;
  EXPECT_EQ(explained, result.message().rfind(": the topic was deleted and created again")) << result;
  EXPECT_EQ(store->Counts().events, 0u);
  EXPECT_EQ(*store->Offset({topic, 0}), 500);
  EXPECT_EQ(*store->Offset({topic, 2}), 1);
}

// The other side: a state behind the partition's start (retention deleted records it never
// read). Those are gone; ingest says so and goes on from the start, it does not stop. The same
// for a state that has never read the partition: checked from offset 0 (offset_guard.h), its
// first record is sought back once and the log's first one is taken.
TEST(IngestTest, AStateBehindThePartitionsStartGoesOnFromIt) {
  for (const std::optional<int64_t> read_before : {std::optional<int64_t>(20), std::optional<int64_t>()}) {
    SCOPED_TRACE(read_before ? "a state at offset 20" : "a state that never read it");
    const std::string topic = UniqueTopic("retention");
    ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {}}}, 20000).ok());
    ProduceClicks(KafkaAt(KafkaBootstrap()), topic, MakeClicks(100, 10, 10, 23));
    DeleteRecordsBefore(KafkaBootstrap(), topic, 0, 60);
    TempDir dir;
    auto store = OpenState(dir.File("state"));
    if (read_before) {
      const PartitionOffset at{{topic, 0}, *read_before};
      ASSERT_TRUE(store->ApplyBatch({}, std::span(&at, 1)).ok());
    }
    Ingestor ingestor(Options(topic), store.get(), nullptr, nullptr);
    const Status run = RunUntil(ingestor, [&] { return ingestor.counters().applied >= 40; });
    ASSERT_TRUE(run.ok()) << run;
    EXPECT_EQ(ingestor.counters().applied, 40);
    EXPECT_EQ(*store->Offset({topic, 0}), 100);
    // Lost to this state: those from its offset on (none where it never read the partition).
    EXPECT_EQ(ingestor.counters().lost, read_before ? 60 - *read_before : 0);
  }
}

// The topic deleted and created again while ingest reads it: the client finds its position
// past the new log's end and, by auto.offset.reset, starts the partition again at offset 0
// without an error, and every record of the new log below the state's offset came as one read
// before and was skipped (counted as redelivered). Ingest stops, saying so, as it does when a
// state ahead of its partition is assigned.
TEST(IngestTest, ATopicCreatedAgainWhileIngestReadsItStopsIngest) {
  const std::string topic = UniqueTopic("recreated-live");
  const auto k = KafkaAt(KafkaBootstrap());
  ASSERT_TRUE(kafka::EnsureTopics(k, {{topic, 1, 1, {}}}, 20000).ok());
  ProduceClicks(k, topic, MakeClicks(50, 10, 10, 31));
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  Ingestor ingestor(Options(topic), store.get(), nullptr, nullptr);
  std::atomic<bool> stop{false}, returned{false};
  Status result;
  std::thread t([&] {
    result = ingestor.Run(stop);
    returned = true;
  });
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Joiner() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } joiner{stop, t};
  auto wait = [&](auto done, int seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (!done() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return done();
  };
  ASSERT_TRUE(wait([&] { return ingestor.counters().applied >= 50; }, 60));
  DeleteTopic(KafkaBootstrap(), topic);
  // Created again as soon as the broker lets it (the deletion completes in the background).
  ASSERT_TRUE(wait([&] { return kafka::EnsureTopics(k, {{topic, 1, 1, {}}}, 5000).ok(); }, 60));
  ProduceClicks(k, topic, MakeClicks(20, 10, 10, 37));
  EXPECT_TRUE(wait([&] { return returned.load(); }, 60)) << "ingest went on over the new log";
  stop = true;
  t.join();
  EXPECT_EQ(result.code(), StatusCode::kFailedPrecondition) << result;
  // Found while reading when the client never stopped fetching the partition (recreated at
  // once); at its assignment when a metadata refresh saw the topic gone first and it was
  // revoked and assigned again. Either way it is named.
  const bool reading =
      result.message().find("but the state has consumed it up to 50 (found while reading it)") != std::string::npos;
  const bool assigned =
      result.message().find("but the state has consumed it up to 50 (found at its assignment)") != std::string::npos;
  EXPECT_TRUE(reading || assigned) << result;
  EXPECT_EQ(store->Counts().events, 50u);
  EXPECT_EQ(*store->Offset({topic, 0}), 50);
  // Read on, the new log's records came as ones read before; found at the assignment, none was fetched.
  if (reading) {
    EXPECT_GT(ingestor.counters().redelivered, 0) << "the new log's records came as ones read before";
  }
}

// The topic deleted and created again while ingest was stopped, and refilled past the state's
// offset: the log's end says nothing (it reaches the offset), and ingest went on from the
// state's offset, skipping every record of the new log below it without a trace. Each offset
// keeps the fingerprint of the record before it; ingest is assigned one record early, compares,
// and stops when the record there is another. The same log reads on as before (the compared
// record is neither applied again nor counted as redelivered).
TEST(IngestTest, ATopicCreatedAgainAndRefilledWhileIngestWasStoppedStopsIt) {
  const std::string topic = UniqueTopic("recreated-offline");
  const auto k = KafkaAt(KafkaBootstrap());
  ASSERT_TRUE(kafka::EnsureTopics(k, {{topic, 1, 1, {}}}, 20000).ok());
  ProduceClicks(k, topic, MakeClicks(50, 10, 10, 41));
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  // A new ingestor until `done` or until Run returns by itself: Run's status and its counters.
  auto run = [&](auto done) {
    Ingestor ingestor(Options(topic), store.get(), nullptr, nullptr);
    const Status result = RunUntil(ingestor, [&] { return done(ingestor); });
    return std::make_pair(result, ingestor.counters());
  };
  auto [first, c1] = run([](const Ingestor& i) { return i.counters().applied >= 50; });
  ASSERT_TRUE(first.ok()) << first;
  ASSERT_EQ(*store->Offset({topic, 0}), 50);
  ASSERT_TRUE(store->LastRecord({topic, 0}).has_value());
  // The same log, 20 more records: read on from the state's offset.
  ProduceClicks(k, topic, MakeClicks(20, 10, 10, 43));
  auto [same, c2] = run([](const Ingestor& i) { return i.counters().applied >= 20; });
  ASSERT_TRUE(same.ok()) << same;
  EXPECT_EQ(c2.applied, 20);
  EXPECT_EQ(c2.redelivered, 0);
  EXPECT_EQ(store->Counts().events, 70u);
  ASSERT_EQ(*store->Offset({topic, 0}), 70);
  // Retention deleted everything up to the state's offset, the compared record too: nothing to
  // compare, the log reads on.
  DeleteRecordsBefore(KafkaBootstrap(), topic, 0, 70);
  ProduceClicks(k, topic, MakeClicks(10, 10, 10, 45));
  auto [trimmed, c4] = run([](const Ingestor& i) { return i.counters().applied >= 10; });
  ASSERT_TRUE(trimmed.ok()) << trimmed;
  EXPECT_EQ(c4.applied, 10);
  ASSERT_EQ(*store->Offset({topic, 0}), 80);

  DeleteTopic(KafkaBootstrap(), topic);
  // Gone first: created "again" while the old one was still being deleted, records went to the
  // old log and the new one ended below the state's offset (the cut-short stop, not this one).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (kafka::PartitionCount(k, topic, 2000).status().code() != StatusCode::kNotFound &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(kafka::EnsureTopics(k, {{topic, 1, 1, {}}}, 30000).ok());
  ProduceClicks(k, topic, MakeClicks(100, 10, 10, 47));  // past the state's offset 80
  auto [other, c3] = run([](const Ingestor&) { return false; });
  EXPECT_EQ(other.code(), StatusCode::kFailedPrecondition) << other;
  EXPECT_NE(other.message().find("holds another record at offset 79 than the one this state read there (found at "
                                 "its assignment)"),
            std::string::npos)
      << other;
  // A rollback cannot help (every checkpoint's offset lies in the old log): not advised.
  EXPECT_NE(other.message().find("start from an empty state.path and learner.checkpoint_dir"), std::string::npos);
  EXPECT_EQ(other.message().find("--rollback"), std::string::npos) << other;
  EXPECT_EQ(c3.applied, 0);
  EXPECT_EQ(store->Counts().events, 80u);
  EXPECT_EQ(*store->Offset({topic, 0}), 80);
}

// librdkafka 2.0's cooperative-sticky assignor aborts the process when a consumer that joined its
// group is destroyed before its first assignment (librdkafka #4312; seen once in a pipeline test):
// stops within a moment of the subscription, each in a child process (an abort ends only that
// one). (Not reproduced here without Ingestor's wait for the first assignment, in 110 tries.)
TEST(IngestTest, AStopRightAfterTheSubscriptionEndsCleanly) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string topic = UniqueTopic("early-stop");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {}}}, 20000).ok());
  for (int k = 0; k < 12; ++k) {
    SCOPED_TRACE("stop after " + std::to_string(k * 5) + " ms");
    EXPECT_EXIT(
        {
          TempDir dir;
          auto store = OpenState(dir.File("state"));
          {
            IngestOptions o = Options(topic);
            o.group_id = topic + "-g" + std::to_string(k);
            Ingestor ingestor(o, store.get(), nullptr, nullptr);
            std::atomic<bool> stop{false};
            Status result;
            std::thread t([&] { result = ingestor.Run(stop); });
            // The subscription comes after the dead-letter topic's check (~0.1 s).
            std::this_thread::sleep_for(std::chrono::milliseconds(100 + k * 5));
            stop = true;
            t.join();
          }
          std::exit(0);
        },
        ::testing::ExitedWithCode(0), "");
  }
}

// The consumer's own settings are refused as properties here too (config refuses them at
// start-up; a library user's options reach the consumer directly).
TEST(IngestTest, TheConsumersOwnSettingsAreRefusedAsProperties) {
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  IngestOptions options = Options(UniqueTopic("owned"));
  options.kafka.properties = {{"auto.offset.reset", "latest"}};
  Ingestor ingestor(options, store.get(), nullptr, nullptr);
  const std::atomic<bool> stop{false};
  const Status s = ingestor.Run(stop);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("kafka property auto.offset.reset is set by gsau's consumer"), std::string::npos) << s;
}

TEST(IngestTest, RestartResumesFromTheStateOffsetsNotKafkas) {
  const std::string topic = UniqueTopic("resume");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 2, 1, {}}}, 20000).ok());
  auto producer = kafka::Producer::Create(KafkaAt(KafkaBootstrap()), {});
  const auto clicks = MakeClicks(2000, 50, 80, 11);
  for (size_t i = 0; i < 1000; ++i) {
    ASSERT_TRUE((*producer)->Produce(topic, clicks[i].user_id, ClickJson(clicks[i].user_id, clicks[i].item_id, clicks[i].ts_ms)).ok());
  }
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  TempDir dir;
  IngestOptions options = Options(topic);
  {
    auto store = OpenState(dir.File("state"));
    Ingestor first(options, store.get(), nullptr, nullptr);
    ASSERT_TRUE(RunUntil(first, [&] { return first.counters().consumed >= 1000; }).ok());
  }
  for (size_t i = 1000; i < clicks.size(); ++i) {
    ASSERT_TRUE((*producer)->Produce(topic, clicks[i].user_id, ClickJson(clicks[i].user_id, clicks[i].item_id, clicks[i].ts_ms)).ok());
  }
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  // A new group id: Kafka has no committed offsets for it, so only the state can say where to go on.
  options.group_id = UniqueTopic("other-group");
  auto store = OpenState(dir.File("state"));
  Ingestor second(options, store.get(), nullptr, nullptr);
  ASSERT_TRUE(RunUntil(second, [&] { return second.counters().consumed >= 1000; }).ok());
  EXPECT_EQ(second.counters().consumed, 1000) << "only the new events";
  TempDir ref_dir;
  auto ref = OpenState(ref_dir.File("state"));
  ASSERT_TRUE(ref->ApplyBatch(clicks, {}).ok());
  EXPECT_EQ(Dump(*store), Dump(*ref));
}

TEST(IngestTest, FullLearnerQueuePausesAndDrainingResumes) {
  const std::string topic = UniqueTopic("backpressure");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 2, 1, {}}}, 20000).ok());
  auto producer = kafka::Producer::Create(KafkaAt(KafkaBootstrap()), {});
  const auto clicks = MakeClicks(3000, 100, 100, 3);
  for (const auto& c : clicks) {
    ASSERT_TRUE((*producer)->Produce(topic, c.user_id, ClickJson(c.user_id, c.item_id, c.ts_ms)).ok());
  }
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  AppliedQueue queue(500);  // room for a few batches of 100
  Ingestor ingestor(Options(topic), store.get(), &queue, nullptr);
  std::atomic<bool> stop{false};
  std::thread t([&] { ASSERT_TRUE(ingestor.Run(stop).ok()); });
  // Nobody drains yet: ingest must stop near the bound instead of buffering everything.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (ingestor.counters().paused == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_GE(ingestor.counters().paused, 1);
  EXPECT_LE(queue.queued_events(), 600u) << "bounded by the capacity plus one batch";
  EXPECT_LT(ingestor.counters().applied, 1000);
  // Room for a batch again, but the queue more than half full: still paused (resumed at the first
  // room, ingest paused and resumed once a learner round for as long as a backlog lasted).
  int64_t drained = 0;
  while (!queue.HasRoom(100) && std::chrono::steady_clock::now() < until + std::chrono::seconds(10)) {
    if (auto b = queue.Pop(200)) drained += static_cast<int64_t>(b->events.size());
  }
  ASSERT_TRUE(queue.HasRoom(100));
  ASSERT_GT(queue.queued_events(), 250u) << "batches larger than the test assumes";
  const uint64_t applied_paused = ingestor.counters().applied;
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(ingestor.counters().applied, applied_paused) << "resumed before the queue drained to half";
  EXPECT_EQ(ingestor.counters().paused, 1);
  // Drain: everything arrives, in batches, each event once.
  while (drained < static_cast<int64_t>(clicks.size()) && std::chrono::steady_clock::now() < until + std::chrono::seconds(30)) {
    if (auto b = queue.Pop(200)) drained += static_cast<int64_t>(b->events.size());
  }
  stop = true;
  t.join();
  EXPECT_EQ(drained, static_cast<int64_t>(clicks.size()));
  EXPECT_EQ(store->Counts().events, clicks.size());
}

// Polls `done` every 20 ms for up to `seconds`; its last answer.
template <typename Done>
bool WaitUntil(Done done, int seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (!done() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

// A value of the registry (first series of `name` whose labels include `labels`); -1 when none.
double Value(prometheus::Registry& registry, const std::string& name,
             const std::map<std::string, std::string>& labels = {}) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      size_t matched = 0;
      for (const auto& l : m.label) matched += labels.count(l.name) && labels.at(l.name) == l.value;
      if (matched != labels.size()) continue;
      return family.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
    }
  }
  return -1;
}

// Clicks keyed otherwise than by their user (another id, an empty key, none) are applied like
// the others and counted: their user's clicks may lie on several partitions, out of order.
TEST(IngestTest, EventsKeyedOtherwiseThanByTheirUserAreAppliedAndCounted) {
  const std::string topic = UniqueTopic("miskeyed");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 2, 1, {}}}, 20000).ok());
  auto producer = kafka::Producer::Create(KafkaAt(KafkaBootstrap()), {});
  ASSERT_TRUE(producer.ok());
  const auto clicks = MakeClicks(200, 20, 30, 5);
  int64_t miskeyed = 0;
  for (size_t i = 0; i < clicks.size(); ++i) {
    const auto& c = clicks[i];
    std::string_view key = c.user_id;
    const std::string session = "session-" + std::to_string(i % 7);
    if (i % 10 == 3) key = session;
    if (i % 10 == 5) key = std::string_view("", 0);
    if (i % 10 == 7) key = std::string_view();
    miskeyed += key.data() != c.user_id.data() ? 1 : 0;
    ASSERT_TRUE((*producer)->Produce(topic, key, ClickJson(c.user_id, c.item_id, c.ts_ms)).ok());
  }
  // A bad event is not counted as miskeyed (it is dead-lettered, whatever its key).
  ASSERT_TRUE((*producer)->Produce(topic, "someone", R"({"user_id":"u1"})").ok());
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  ASSERT_EQ(miskeyed, 60);

  TempDir dir;
  auto store = OpenState(dir.File("state"));
  prometheus::Registry registry;
  Ingestor ingestor(Options(topic), store.get(), nullptr, &registry);
  const int64_t total = static_cast<int64_t>(clicks.size()) + 1;
  ASSERT_TRUE(RunUntil(ingestor, [&] { return ingestor.counters().consumed >= total; }).ok());
  EXPECT_EQ(ingestor.counters().applied, static_cast<int64_t>(clicks.size()));
  EXPECT_EQ(ingestor.counters().miskeyed, miskeyed);
  EXPECT_EQ(Value(registry, "gsau_ingest_events_miskeyed_total"), static_cast<double>(miskeyed));
  TempDir ref_dir;
  auto ref = OpenState(ref_dir.File("state"));
  ASSERT_TRUE(ref->ApplyBatch(clicks, {}).ok());
  EXPECT_EQ(store->Counts().events, ref->Counts().events);
  EXPECT_EQ(store->Counts().users, ref->Counts().users);
}

// Each reason's dead-letter series is there, at 0, before any bad event: dashboards and rate()
// see a 0, not "no data".
TEST(IngestTest, EveryDeadLetterReasonIsExportedFromTheStart) {
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  prometheus::Registry registry;
  Ingestor ingestor(Options(UniqueTopic("reasons")), store.get(), nullptr, &registry);
  for (int k = 0; k < kBadReasonCount; ++k) {
    const std::string reason(BadReasonName(static_cast<BadReason>(k)));
    EXPECT_EQ(Value(registry, "gsau_ingest_events_dead_lettered_total", {{"reason", reason}}), 0) << reason;
  }
}

// A state store below its free-space floor: it opens (that needs 64 MiB) and refuses every write.
Result<std::unique_ptr<state::StateStore>> OpenStateRefusingWrites(const std::string& path) {
  state::StateOptions so;
  so.path = path;
  so.min_free_disk_bytes = uint64_t{1} << 62;  // no disk has this much free
  return state::StateStore::Open(so);
}

// While ingest is paused for backpressure no batch commits, yet the lag must keep growing with
// the topic (it stayed at its last batch's value: lag alerts never fired while ingest stood).
TEST(IngestTest, TheLagGaugeGrowsWhilePaused) {
  const std::string topic = UniqueTopic("lag");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {}}}, 20000).ok());
  const auto clicks = MakeClicks(3000, 100, 100, 13);
  auto produce = [&](long from, long to) {
    ProduceClicks(KafkaAt(KafkaBootstrap()), topic,
                  std::vector<ClickEvent>(clicks.begin() + from, clicks.begin() + to));
  };
  produce(0, 1000);
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  AppliedQueue queue(200);  // nobody drains it: ingest pauses after a few batches
  prometheus::Registry registry;
  Ingestor ingestor(Options(topic), store.get(), &queue, &registry);
  std::atomic<bool> stop{false};
  std::thread t([&] { EXPECT_TRUE(ingestor.Run(stop).ok()); });
  EXPECT_TRUE(WaitUntil([&] { return ingestor.counters().paused > 0; }, 20));
  produce(1000, 3000);
  const int64_t applied = ingestor.counters().applied;
  EXPECT_LE(applied, 400);
  EXPECT_TRUE(WaitUntil([&] { return Value(registry, "gsau_ingest_consumer_lag_messages") >= 3000.0 - applied; }, 15))
      << "lag " << Value(registry, "gsau_ingest_consumer_lag_messages") << ", applied " << applied;
  // And it stays there: between the brokers' answers (every 5 s while paused) it went back to
  // the client's cached end, which a paused partition no longer moves (the lag at the pause).
  for (int k = 0; k < 35; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ASSERT_GE(Value(registry, "gsau_ingest_consumer_lag_messages"), 3000.0 - applied) << "after " << (k + 1) * 200
                                                                                       << " ms";
  }
  EXPECT_EQ(ingestor.counters().applied, applied) << "still paused";
  stop = true;
  t.join();
}

// Retention deleting records while ingest is paused behind them (backpressure): on resuming, the
// client finds its position gone and goes on from the log's start with only a warning of its own,
// and the records between were skipped without a trace (no metric, no error). Counted as lost and
// said, as at an assignment; ingest goes on from the log's start.
TEST(IngestTest, RecordsRetentionDeletesWhilePausedAreCountedAsLost) {
  const std::string topic = UniqueTopic("lost-paused");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {}}}, 20000).ok());
  ProduceClicks(KafkaAt(KafkaBootstrap()), topic, MakeClicks(1000, 100, 100, 17));
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  AppliedQueue queue(200);  // not drained until the records are deleted: ingest pauses
  prometheus::Registry registry;
  Ingestor ingestor(Options(topic), store.get(), &queue, &registry);
  std::atomic<bool> stop{false}, drain{false};
  std::thread t([&] { EXPECT_TRUE(ingestor.Run(stop).ok()); });
  std::thread learner([&] {
    while (!stop) {
      if (drain) {
        queue.Pop(50);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  });
  ASSERT_TRUE(WaitUntil([&] { return ingestor.counters().paused > 0; }, 20));
  const int64_t read = ingestor.counters().applied;
  ASSERT_LT(read, 800) << "ingest read past the records to delete before it paused";
  DeleteRecordsBefore(KafkaBootstrap(), topic, 0, 800);
  drain = true;
  const bool done = WaitUntil([&] { return ingestor.counters().applied == read + 200; }, 30);
  const int64_t lost = ingestor.counters().lost;
  const double lost_metric = Value(registry, "gsau_ingest_records_lost_total");
  stop = true;
  t.join();
  learner.join();
  ASSERT_TRUE(done) << "applied " << ingestor.counters().applied << " of " << read + 200;
  EXPECT_EQ(*store->Offset({topic, 0}), 1000);
  EXPECT_EQ(lost, 800 - read);
  EXPECT_EQ(lost_metric, static_cast<double>(800 - read));
}

// Partitions lost with the group session (their broker away) keep counting in the lag until the
// group assigns again: the lag read 0 through an outage, as nothing was consumed (and the lag
// alert could not fire). A broker of its own, paused: the suite's is shared.
TEST(IngestTest, TheLagOfPartitionsLostInAnOutageStaysUntilTheyAreAssignedAgain) {
  TempDir dir;
  PrivateBroker broker(dir.File("broker"), 300);
  const std::string topic = "lost-lag";
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(broker.bootstrap), {{topic, 1, 1, {}}}, 20000).ok());
  ProduceClicks(KafkaAt(broker.bootstrap), topic, MakeClicks(1000, 100, 100, 29));
  auto store = OpenState(dir.File("state"));
  AppliedQueue queue(200);  // nobody drains it: ingest pauses after a few batches, behind the end
  prometheus::Registry registry;
  IngestOptions options = Options(topic);
  options.kafka = KafkaAt(broker.bootstrap);
  Ingestor ingestor(options, store.get(), &queue, &registry);
  std::atomic<bool> stop{false};
  std::thread t([&] { ingestor.Run(stop).IgnoreError(); });
  EXPECT_TRUE(WaitUntil([&] { return ingestor.counters().paused > 0; }, 30));
  const double behind = 1000.0 - static_cast<double>(ingestor.counters().applied);
  EXPECT_TRUE(WaitUntil([&] { return Value(registry, "gsau_ingest_consumer_lag_messages") >= behind; }, 15))
      << Value(registry, "gsau_ingest_consumer_lag_messages") << " of " << behind;
  std::string out;
  ASSERT_TRUE(broker.Run("pause", &out)) << out;
  // The session (6 s) runs out and the assignment is lost.
  EXPECT_TRUE(WaitUntil([&] { return Value(registry, "gsau_ingest_assigned_partitions") == 0; }, 40));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // the lag's updates after the loss
  EXPECT_GE(Value(registry, "gsau_ingest_consumer_lag_messages"), behind) << "the lag after the loss";
  ASSERT_TRUE(broker.Run("resume", &out)) << out;
  stop = true;
  t.join();
}

// While a batch cannot be applied (here: the state keeps more free disk than any disk has),
// ingest retries it without consuming; the lag must still grow as records arrive. It froze at
// its last value, and the lag alert stayed silent through the stall.
TEST(IngestTest, TheLagGrowsWhileABatchCannotBeApplied) {
  const std::string topic = UniqueTopic("stuck");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {}}}, 20000).ok());
  const auto clicks = MakeClicks(1200, 100, 100, 17);
  auto produce = [&](long from, long to) {
    ProduceClicks(KafkaAt(KafkaBootstrap()), topic,
                  std::vector<ClickEvent>(clicks.begin() + from, clicks.begin() + to));
  };
  produce(0, 200);
  TempDir dir;
  auto store = OpenStateRefusingWrites(dir.File("state"));
  ASSERT_TRUE(store.ok()) << store.status();
  prometheus::Registry registry;
  IngestOptions options = Options(topic);
  options.retry_backoff_max_ms = 200;
  Ingestor ingestor(options, store->get(), nullptr, &registry);
  std::atomic<bool> stop{false};
  std::thread t([&] { ingestor.Run(stop).IgnoreError(); });
  const std::map<std::string, std::string> apply = {{"stage", "ingest"}, {"kind", "apply"}};
  EXPECT_TRUE(WaitUntil([&] { return Value(registry, "gsau_errors_total", apply) >= 1; }, 30));
  produce(200, 1200);
  EXPECT_TRUE(WaitUntil([&] { return Value(registry, "gsau_ingest_consumer_lag_messages") >= 1200; }, 20))
      << "lag " << Value(registry, "gsau_ingest_consumer_lag_messages");
  // And it stays there (between broker queries it fell back to the client's stale figure).
  for (int k = 0; k < 15; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_GE(Value(registry, "gsau_ingest_consumer_lag_messages"), 1200) << "after " << (k + 1) * 200 << " ms";
  }
  EXPECT_EQ(ingestor.counters().applied, 0);
  stop = true;
  t.join();
}

// A stop during a retry's backoff (here: a state that refuses every write) ends it at once; the
// backoff doubles up to retry_backoff_max_ms, and the stop used to wait it out.
TEST(IngestTest, AStopCutsARetrysBackoffShort) {
  const std::string topic = UniqueTopic("backoff-stop");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {}}}, 20000).ok());
  ProduceClicks(KafkaAt(KafkaBootstrap()), topic, MakeClicks(50, 10, 10, 23));
  TempDir dir;
  auto store = OpenStateRefusingWrites(dir.File("state"));
  ASSERT_TRUE(store.ok()) << store.status();
  prometheus::Registry registry;
  IngestOptions options = Options(topic);
  options.retry_backoff_max_ms = 60000;
  Ingestor ingestor(options, store->get(), nullptr, &registry);
  std::atomic<bool> stop{false};
  std::thread t([&] { ingestor.Run(stop).IgnoreError(); });
  // Backoffs of 0.1, 0.2, ... 6.4 s have gone by; the 8th failure starts one of 12.8 s.
  const std::map<std::string, std::string> apply = {{"stage", "ingest"}, {"kind", "apply"}};
  EXPECT_TRUE(WaitUntil([&] { return Value(registry, "gsau_errors_total", apply) >= 8; }, 60));
  const auto stopped_at = std::chrono::steady_clock::now();
  stop = true;
  t.join();
  const double stop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped_at).count();
  // Of 12.8 s; the stop also commits and leaves the group, with a test beside this one on the other core.
  EXPECT_LT(stop_s, 9.0) << "the stop waited out the backoff";
}

// Commits to Kafka are asynchronous: a refused one must still be counted (lag tools then read
// stale offsets), not vanish with its callback.
TEST(IngestTest, ARefusedOffsetCommitIsCounted) {
  MockCluster cluster;
  cluster.CreateTopic("clicks", 1);
  const kafka::KafkaOptions k = MockKafka(cluster);
  ProduceToMock(k, /*bad=*/false, MakeClicks(50, 5, 5, 3));
  RefuseRequests(cluster, kOffsetCommitApiKey, 20, RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE);
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  IngestOptions options = MockOptions(k, "commit-refused");
  options.commit_interval_ms = 1;
  prometheus::Registry registry;
  Ingestor ingestor(options, store.get(), nullptr, &registry);
  const std::map<std::string, std::string> commit{{"stage", "ingest"}, {"kind", "commit"}};
  ASSERT_TRUE(RunUntil(ingestor, [&] {
                return ingestor.counters().applied >= 50 && Value(registry, "gsau_errors_total", commit) >= 1;
              }).ok());
  EXPECT_EQ(ingestor.counters().applied, 50);
  EXPECT_GE(Value(registry, "gsau_errors_total", commit), 1);
}

// A stop while the dead-letter topic does not acknowledge ends in a few seconds, not after three
// whole dlq_flush_timeout_ms waits and the producer's close (past a container's grace period);
// the batch is not applied, and is consumed again after a restart.
TEST(IngestTest, AStopWhileDeadLettersAreUnacknowledgedEndsWithinSeconds) {
  MockCluster cluster;
  cluster.CreateTopic("clicks", 1);
  cluster.CreateTopic("clicks.dlq", 1);
  const kafka::KafkaOptions k = MockKafka(cluster);
  ProduceToMock(k, /*bad=*/true, MakeClicks(20, 5, 5, 9));
  // Every produce request is refused (retriably) from now on, for far longer than the test.
  RefuseRequests(cluster, kProduceApiKey, 5000, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  IngestOptions options = MockOptions(k, "dlq-stop");
  options.dlq_flush_timeout_ms = 10000;
  prometheus::Registry registry;
  Ingestor ingestor(options, store.get(), nullptr, &registry);
  std::atomic<bool> stop{false};
  Status result;
  std::thread t([&] { result = ingestor.Run(stop); });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (Value(registry, "gsau_ingest_assigned_partitions") < 1 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // The records are there: consumed at once, the batch then waits on its dead letter.
  EXPECT_EQ(Value(registry, "gsau_ingest_assigned_partitions"), 1) << "never assigned: the stop below tests nothing";
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(store->Counts().events, 0u) << "applied before its dead letter was acknowledged";
  const auto stopped_at = std::chrono::steady_clock::now();
  stop = true;
  t.join();
  const double stop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped_at).count();
  EXPECT_LT(stop_s, 8.0) << "the stop waited on the dead-letter topic";
  EXPECT_EQ(store->Counts().events, 0u) << "a batch whose dead letter was never acknowledged was applied";
  EXPECT_EQ(ingestor.counters().dead_lettered, 0);
}

// Kafka's committed offsets (for lag tools) catch up after a burst even when nothing follows
// it: the burst's last batches come within commit_interval_ms of the first one's commit.
TEST(IngestTest, CommittedOffsetsReachTheEndOfABurstOnAnIdleTopic) {
  const std::string topic = UniqueTopic("commit-idle");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {}}}, 20000).ok());
  IngestOptions options = Options(topic);
  options.batch_max_events = 10;
  options.commit_interval_ms = 1000;
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  prometheus::Registry registry;
  Ingestor ingestor(options, store.get(), nullptr, &registry);
  std::atomic<bool> stop{false};
  Status result;
  std::thread t([&] { result = ingestor.Run(stop); });
  struct Join {  // ASSERTs below return early: stop and join first
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      t.join();
    }
  } join{stop, t};
  // The burst lands after the assignment, so that its batches follow each other closely.
  ASSERT_TRUE(WaitUntil([&] { return Value(registry, "gsau_ingest_assigned_partitions") >= 1; }, 30));
  const auto clicks = MakeClicks(200, 20, 30, 17);
  ProduceClicks(KafkaAt(KafkaBootstrap()), topic, clicks);
  WaitUntil([&] { return ingestor.counters().applied >= 200; }, 30);
  ASSERT_EQ(ingestor.counters().applied, 200);
  ASSERT_GT(ingestor.counters().batches, 2);
  std::string err;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  conf->set("bootstrap.servers", KafkaBootstrap(), err);
  conf->set("group.id", options.group_id, err);
  std::unique_ptr<RdKafka::KafkaConsumer> reader(RdKafka::KafkaConsumer::create(conf.get(), err));
  ASSERT_TRUE(reader) << err;
  int64_t committed = -1;
  // A few commit intervals, and the reader's coordinator lookup (each committed() may take 5 s).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (committed != 200 && std::chrono::steady_clock::now() < deadline) {
    std::vector<RdKafka::TopicPartition*> at = {RdKafka::TopicPartition::create(topic, 0)};
    if (reader->committed(at, 5000) == RdKafka::ERR_NO_ERROR) committed = at[0]->offset();
    RdKafka::TopicPartition::destroy(at);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(committed, 200) << "the group's committed offset stopped short of what ingest applied";
  reader->close();
}

// Ingest running with the learner's queue full from the start: paused before its first
// assignment. Stop() (or the destructor) ends it.
struct PausedIngest {
  explicit PausedIngest(const IngestOptions& options)
      : store(OpenState(dir.File("state"))), ingestor(options, store.get(), &queue, &registry) {
    AppliedBatch full;  // no room left, as with a learner behind
    full.events.resize(200);
    queue.Push(std::move(full));
    thread = std::thread([this] { result = ingestor.Run(stop); });
  }
  ~PausedIngest() { Stop(); }
  void Stop() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
  double Assigned() { return Value(registry, "gsau_ingest_assigned_partitions"); }

  TempDir dir;
  std::unique_ptr<state::StateStore> store;
  AppliedQueue queue{200};
  prometheus::Registry registry;
  Ingestor ingestor;
  std::atomic<bool> stop{false};
  Status result;
  std::thread thread;
};

// A partition assigned while ingest is paused (the learner's queue full, the usual state while
// it lags) is paused right after assign(); librdkafka #2190 (open) describes that sequence
// losing the assigned offset, so that resume() fetches from the group's committed offset, and
// a committed offset ahead of the state (another instance's, or one a rollback left behind)
// would skip the records between. Not seen with the librdkafka here (2.0.2: 6 runs of 6); kept
// to catch it should an upgrade bring it.
TEST(IngestTest, APartitionAssignedWhilePausedStartsFromTheStateOffset) {
  const std::string topic = UniqueTopic("assigned-paused");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {}}}, 20000).ok());
  auto producer = kafka::Producer::Create(KafkaAt(KafkaBootstrap()), {});
  ASSERT_TRUE(producer.ok());
  const auto clicks = MakeClicks(600, 50, 60, 5);
  for (const auto& c : clicks) {
    ASSERT_TRUE((*producer)->Produce(topic, c.user_id, ClickJson(c.user_id, c.item_id, c.ts_ms)).ok());
  }
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  IngestOptions options = Options(topic);
  {
    // The group's committed offset, ahead of this (empty) state.
    std::string err;
    std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
    conf->set("bootstrap.servers", KafkaBootstrap(), err);
    conf->set("group.id", options.group_id, err);
    std::unique_ptr<RdKafka::KafkaConsumer> c(RdKafka::KafkaConsumer::create(conf.get(), err));
    ASSERT_TRUE(c) << err;
    std::vector<RdKafka::TopicPartition*> at = {RdKafka::TopicPartition::create(topic, 0, 500)};
    ASSERT_EQ(c->commitSync(at), RdKafka::ERR_NO_ERROR);
    RdKafka::TopicPartition::destroy(at);
    c->close();
  }
  PausedIngest in(options);
  WaitUntil([&] { return in.Assigned() >= 1; }, 30);
  ASSERT_EQ(in.Assigned(), 1) << "the partition was never assigned";
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // paused, as assigned
  EXPECT_GE(in.ingestor.counters().paused, 1);
  EXPECT_EQ(in.store->Counts().events, 0u) << "nothing applied while paused";
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (in.store->Counts().events < clicks.size() && std::chrono::steady_clock::now() < until) in.queue.Pop(100);
  in.Stop();
  EXPECT_TRUE(in.result.ok()) << in.result;
  EXPECT_EQ(in.store->Counts().events, clicks.size()) << "the records before the committed offset were skipped";
  EXPECT_EQ(in.ingestor.counters().applied, static_cast<int64_t>(clicks.size()));
}

// librdkafka keeps the application's pause on a partition through its revocation and a later
// assignment (librdkafka #1849), and ingest resumes only what it holds when the learner's queue
// drains. A partition that moved to another member while ingest was paused, and came back
// after it had resumed, was never fetched again: its events stayed unapplied, silently.
TEST(IngestTest, APartitionThatLeftWhilePausedIsConsumedWhenItComesBack) {
  const std::string topic = UniqueTopic("moved-paused");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 2, 1, {}}}, 20000).ok());
  const auto clicks = MakeClicks(600, 60, 60, 9);
  ProduceClicks(KafkaAt(KafkaBootstrap()), topic, clicks);
  IngestOptions options = Options(topic);
  PausedIngest in(options);
  ASSERT_TRUE(WaitUntil([&] { return in.Assigned() == 2; }, 30)) << "both partitions, paused";
  // A second member of the group takes one partition while ingest is paused.
  std::string err;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"bootstrap.servers", KafkaBootstrap()},
           {"group.id", options.group_id},
           {"partition.assignment.strategy", "cooperative-sticky"},
           {"session.timeout.ms", "6000"},
           {"enable.auto.commit", "false"}}) {
    ASSERT_EQ(conf->set(k, v, err), RdKafka::Conf::CONF_OK) << k << ": " << err;
  }
  std::unique_ptr<RdKafka::KafkaConsumer> other(RdKafka::KafkaConsumer::create(conf.get(), err));
  ASSERT_TRUE(other) << err;
  ASSERT_EQ(other->subscribe({topic}), RdKafka::ERR_NO_ERROR);
  std::atomic<bool> other_stop{false};
  std::thread other_thread([&] {
    while (!other_stop) std::unique_ptr<RdKafka::Message>(other->consume(50));
  });
  const bool moved = WaitUntil([&] { return in.Assigned() == 1; }, 30);
  // The learner drains: ingest resumes the partition it holds and applies it.
  std::thread drain([&] {
    while (!in.stop) in.queue.Pop(50);
  });
  const bool half =
      WaitUntil([&] { return in.store->Counts().events > 0 && in.ingestor.counters().paused >= 1; }, 30);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  // The other member leaves: the partition comes back to ingest, which is not paused now.
  other_stop = true;
  other_thread.join();
  other->close();
  const bool back = WaitUntil([&] { return in.Assigned() == 2; }, 30);
  const bool all = WaitUntil([&] { return in.store->Counts().events == clicks.size(); }, 30);
  in.Stop();
  drain.join();
  EXPECT_TRUE(moved) << "the other member never took a partition";
  EXPECT_TRUE(half);
  EXPECT_TRUE(back) << "the partition never came back";
  EXPECT_TRUE(all) << in.store->Counts().events << " of " << clicks.size() << " events applied";
  EXPECT_TRUE(in.result.ok()) << in.result;
}

TEST(IngestTest, MissingTopicIsRetriedThenConsumed) {
  const std::string topic = UniqueTopic("late-topic");
  TempDir dir;
  auto store = OpenState(dir.File("state"));
  prometheus::Registry registry;
  Ingestor ingestor(Options(topic), store.get(), nullptr, &registry);
  std::atomic<bool> stop{false};
  Status result;
  std::thread t([&] { result = ingestor.Run(stop); });
  // Subscribed to a topic that does not exist: retried, and counted where operators look.
  const auto topic_errors = [&] {
    return Value(registry, "gsau_errors_total", {{"stage", "ingest"}, {"kind", "topic_missing"}});
  };
  EXPECT_TRUE(WaitUntil([&] { return topic_errors() >= 1; }, 30)) << "errors counted: " << topic_errors();
  EXPECT_EQ(ingestor.counters().applied, 0);
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 1, 1, {}}}, 20000).ok());
  auto producer = kafka::Producer::Create(KafkaAt(KafkaBootstrap()), {});
  const auto clicks = MakeClicks(100, 10, 10, 5);
  for (const auto& c : clicks) {
    ASSERT_TRUE((*producer)->Produce(topic, c.user_id, ClickJson(c.user_id, c.item_id, c.ts_ms)).ok());
  }
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  while (ingestor.counters().applied < 100 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop = true;
  t.join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_EQ(ingestor.counters().applied, 100);
}

// The JSON of a good event of type `type` (none: the field is left out, which means "click").
std::string EventJson(const ClickEvent& e, const std::string& type) {
  std::string json = R"({"user_id":")" + e.user_id + R"(","item_id":")" + e.item_id + R"(","ts":)" +
                     std::to_string(e.ts_ms);
  if (!type.empty()) json += R"(,"event":")" + type + "\"";
  return json + "}";
}

// ingest.accepted_event_types = {click, view}: purchases are skipped (counted, in the counters
// and in gsau_ingest_events_skipped_total), never applied, and their offsets are still taken:
// each partition ends with purchases, and its stored next offset must still be its end.
TEST(IngestTest, EventTypesNotAcceptedAreSkippedAndTheirOffsetsTaken) {
  const std::string topic = UniqueTopic("types");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 3, 1, {}}}, 20000).ok());
  auto producer = kafka::Producer::Create(KafkaAt(KafkaBootstrap()), {});
  ASSERT_TRUE(producer.ok());

  // Clicks (with and without the field), views and purchases, in turn; then only purchases,
  // by every user (so that every partition's last records are purchases), and by a user and of
  // an item that only purchases name.
  auto events = MakeClicks(900, 60, 80, 21);
  std::vector<std::string> types;
  for (size_t i = 0; i < events.size(); ++i) {
    types.push_back(i % 3 == 0 ? (i % 2 == 0 ? "" : "click") : i % 3 == 1 ? "view" : "purchase");
  }
  for (int u = 0; u < 60; ++u) {
    events.push_back({"user-" + std::to_string(u), "item-" + std::to_string(u), 1700000001000 + u, "purchase"});
    types.push_back("purchase");
  }
  events.push_back({"buyer-only", "bought-only", 1700000002000, "purchase"});
  types.push_back("purchase");
  std::vector<ClickEvent> accepted;
  int64_t purchases = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    ASSERT_TRUE((*producer)->Produce(topic, events[i].user_id, EventJson(events[i], types[i])).ok());
    if (types[i] == "purchase") {
      ++purchases;
    } else {
      accepted.push_back(events[i]);
      accepted.back().event_type = types[i].empty() ? "click" : types[i];
    }
  }
  ASSERT_TRUE((*producer)->Flush(30000).ok());
  const int64_t total = static_cast<int64_t>(events.size());
  ASSERT_EQ(purchases, 300 + 61);

  // Where each partition ends, and a check that it ends with a purchase (else the test is moot).
  std::map<int32_t, std::pair<int64_t, std::string>> last;  // partition -> (offset, value)
  for (const auto& r : ConsumeAll(KafkaBootstrap(), topic, total)) {
    auto& l = last[r.partition];
    if (l.second.empty() || r.offset > l.first) l = {r.offset, r.value};
  }
  ASSERT_EQ(last.size(), 3u) << "every partition has records";
  for (const auto& [p, l] : last) {
    ASSERT_NE(l.second.find(R"("event":"purchase")"), std::string::npos) << "partition " << p << ": " << l.second;
  }

  TempDir dir;
  auto store = OpenState(dir.File("state"));
  IngestOptions options = Options(topic);
  options.accepted_event_types = {"click", "view"};
  prometheus::Registry registry;
  Ingestor ingestor(options, store.get(), nullptr, &registry);
  ASSERT_TRUE(RunUntil(ingestor, [&] { return ingestor.counters().consumed >= total; }).ok());

  const auto c = ingestor.counters();
  EXPECT_EQ(c.consumed, total);
  EXPECT_EQ(c.skipped, purchases);
  EXPECT_EQ(c.applied, static_cast<int64_t>(accepted.size()));
  EXPECT_EQ(c.dead_lettered, 0);
  EXPECT_EQ(Value(registry, "gsau_ingest_events_skipped_total"), static_cast<double>(purchases));
  EXPECT_EQ(Value(registry, "gsau_ingest_events_applied_total"), static_cast<double>(accepted.size()));
  EXPECT_EQ(Value(registry, "gsau_ingest_events_consumed_total"), static_cast<double>(total));

  // The state holds the accepted events only.
  EXPECT_EQ(Dump(*store), Reference(accepted));
  EXPECT_FALSE(store->FindUser("buyer-only").has_value()) << "a user only purchases name";
  EXPECT_FALSE(store->FindItem("bought-only").has_value()) << "an item only purchases name";

  // Every partition's stored next offset is its end, though its last records were skipped.
  std::map<int32_t, int64_t> stored;
  for (const auto& o : store->Offsets()) {
    EXPECT_EQ(o.tp.topic, topic);
    stored[o.tp.partition] = o.next_offset;
  }
  std::map<int32_t, int64_t> ends;
  for (const auto& [p, l] : last) ends[p] = l.first + 1;
  EXPECT_EQ(stored, ends);
}

}  // namespace
}  // namespace gsau::ingest
