// The embedding publisher against the real broker, both formats.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <prometheus/registry.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "gsau/common/log.h"
#include "gsau/kafka/admin.h"
#include "gsau/metrics/metrics.h"
#include "gsau/publisher/publisher.h"
#include "kafka_broker.h"
#include "process.h"

namespace gsau::publisher {
namespace {

using gsau::testing::ConsumeAll;
using gsau::testing::KafkaBootstrap;
using gsau::testing::SetTopicConfigs;
using gsau::testing::UniqueTopic;

EmbeddingRecord Rec(EntityKind kind, std::string id, int64_t version, std::vector<float> v) {
  EmbeddingRecord r;
  r.kind = kind;
  r.id = std::move(id);
  r.model_version = version;
  r.event_time_ms = 1700000000000 + version;
  r.embedding = std::move(v);
  return r;
}

PublisherOptions Options(Format format) {
  PublisherOptions o;
  o.kafka.bootstrap_servers = KafkaBootstrap();
  o.user_topic = UniqueTopic("users");
  o.item_topic = UniqueTopic("items");
  o.format = format;
  o.partitions = 2;
  return o;
}

TEST(PublisherEncodeTest, JsonFloatsReadBackExactly) {
  const auto r = Rec(EntityKind::kUser, "u\"1", 17, {0.1f, -3.4028235e38f, 1e-45f, 0.0f, 123456.789f});
  const auto j = nlohmann::json::parse(EncodeJson(r, 42));
  EXPECT_EQ(j["id"], "u\"1");
  EXPECT_EQ(j["kind"], "user");
  EXPECT_EQ(j["model_version"], 17);
  EXPECT_EQ(j["dim"], 5);
  EXPECT_EQ(j["produced_at_ms"], 42);
  EXPECT_EQ(j["event_time_ms"], 1700000000017);
  ASSERT_EQ(j["embedding"].size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(static_cast<float>(j["embedding"][i].get<double>()), r.embedding[i]);
}

TEST(PublisherTest, JsonRecordsTombstonesAndCompactedTopics) {
  const auto o = Options(Format::kJson);
  prometheus::Registry registry;
  auto p = KafkaPublisher::Create(o, &registry);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*kafka::TopicConfigValue(o.kafka, o.user_topic, "cleanup.policy", 10000), "compact");
  EXPECT_EQ(*kafka::TopicConfigValue(o.kafka, o.item_topic, "cleanup.policy", 10000), "compact");
  // Idempotent with acks=all, one request in flight (SYSTEM.md: never a torn record; producer.cc
  // says why one): as the client holds them, whatever the options passed in said.
  EXPECT_EQ((*p)->ProducerConfigForTesting("enable.idempotence"), "true");
  EXPECT_EQ((*p)->ProducerConfigForTesting("acks"), "-1");
  EXPECT_EQ((*p)->ProducerConfigForTesting("max.in.flight"), "1");

  std::vector<EmbeddingRecord> batch1 = {Rec(EntityKind::kUser, "u1", 1, {1, 2, 3}),
                                         Rec(EntityKind::kItem, "i1", 1, {4, 5, 6})};
  ASSERT_TRUE((*p)->Publish(batch1).ok());
  EmbeddingRecord gone = Rec(EntityKind::kItem, "i9", 2, {});
  gone.tombstone = true;
  std::vector<EmbeddingRecord> batch2 = {Rec(EntityKind::kUser, "u1", 2, {7, 8, 9}), gone};
  ASSERT_TRUE((*p)->Publish(batch2).ok());
  std::vector<EmbeddingRecord> stale = {Rec(EntityKind::kUser, "u2", 1, {0, 0, 0})};
  EXPECT_EQ((*p)->Publish(stale).code(), StatusCode::kInvalidArgument) << "model_version never goes back";
  double refused = -1;  // gsau_errors_total{stage="publisher",kind="produce"}: every failed Publish, once
  for (const auto& f : registry.Collect()) {
    for (const auto& m : f.metric) {
      std::map<std::string, std::string> l;
      for (const auto& x : m.label) l[x.name] = x.value;
      if (f.name == "gsau_errors_total" && l["stage"] == "publisher" && l["kind"] == "produce") refused = m.counter.value;
    }
  }
  EXPECT_EQ(refused, 1);
  ASSERT_TRUE((*p)->Flush(30000).ok());

  // Everything on the topics (to the end of every partition, not the first two found): the
  // refused u2 must be nowhere.
  const auto users = ConsumeAll(KafkaBootstrap(), o.user_topic, -1);
  ASSERT_EQ(users.size(), 2u);
  int64_t last_version = 0;
  for (const auto& u : users) {
    EXPECT_EQ(u.key, "u1");
    // The format named as binary records name theirs: a topic whose format changed holds both.
    EXPECT_EQ(u.headers, (decltype(u.headers){{"gsau.format", "json"}}));
    const auto j = nlohmann::json::parse(u.value);
    EXPECT_GT(j["model_version"].get<int64_t>(), last_version) << "in order per key";
    last_version = j["model_version"];
    EXPECT_EQ(j["dim"], 3);
  }
  const auto items = ConsumeAll(KafkaBootstrap(), o.item_topic, -1);
  ASSERT_EQ(items.size(), 2u);
  std::map<std::string, const gsau::testing::ConsumedRecord*> by_key;
  for (const auto& r : items) by_key[r.key] = &r;
  EXPECT_TRUE(by_key.at("i9")->null_value) << "a removed id is a tombstone";
  EXPECT_EQ(by_key.at("i9")->headers, (decltype(by_key.at("i9")->headers){{"gsau.format", "json"}}));
  EXPECT_EQ(nlohmann::json::parse(by_key.at("i1")->value)["embedding"], nlohmann::json::parse("[4.0,5.0,6.0]"));
}

// The topics are created with the replication factor asked for (topics.replication_factor):
// the suite's one broker cannot hold two replicas, and says so.
TEST(PublisherTest, TopicsAreCreatedWithTheReplicationFactorAskedFor) {
  auto o = Options(Format::kJson);
  o.replication_factor = 2;
  o.connect_timeout_ms = 10000;
  auto p = KafkaPublisher::Create(o, nullptr);
  ASSERT_FALSE(p.ok()) << "two replicas on one broker";
  EXPECT_NE(p.status().message().find("replication"), std::string::npos) << p.status();
  o.replication_factor = 1;
  EXPECT_TRUE(KafkaPublisher::Create(o, nullptr).ok());
}

// A NaN or an infinity in an embedding (a diverged model) would replace the id's last usable
// vector in the compacted topic (JSON has no NaN: it was written as null); it is counted instead.
TEST(PublisherTest, ANonFiniteEmbeddingIsCountedNotPublished) {
  const auto o = Options(Format::kJson);
  prometheus::Registry registry;
  auto p = KafkaPublisher::Create(o, &registry);
  ASSERT_TRUE(p.ok()) << p.status();
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<EmbeddingRecord> batch = {Rec(EntityKind::kUser, "u-nan", 1, {1, nan, 3}),
                                        Rec(EntityKind::kUser, "u-ok", 1, {1, 2, 3}),
                                        Rec(EntityKind::kItem, "i-inf", 1, {-inf, 0, 0})};
  ASSERT_TRUE((*p)->Publish(batch).ok()) << "the others go out";
  ASSERT_TRUE((*p)->Flush(30000).ok());
  const auto users = ConsumeAll(KafkaBootstrap(), o.user_topic, -1);
  ASSERT_EQ(users.size(), 1u);
  EXPECT_EQ(users[0].key, "u-ok");
  EXPECT_TRUE(ConsumeAll(KafkaBootstrap(), o.item_topic, -1).empty());
  double nonfinite = -1;
  for (const auto& f : registry.Collect()) {
    for (const auto& m : f.metric) {
      std::map<std::string, std::string> l;
      for (const auto& x : m.label) l[x.name] = x.value;
      if (f.name == "gsau_errors_total" && l["stage"] == "publisher" && l["kind"] == "nonfinite") {
        nonfinite = m.counter.value;
      }
    }
  }
  EXPECT_EQ(nonfinite, 2);
}

// RecordModelVersion reads what either encoder wrote; an id holding the field's own text does not
// mislead it (its quotes are escaped).
TEST(PublisherEncodeTest, RecordModelVersionReadsBothFormats) {
  const auto r = Rec(EntityKind::kItem, "i\",\"model_version\":9", 1796000000123, {0.5f});
  EXPECT_EQ(RecordModelVersion(EncodeJson(r, 1), {}), 1796000000123);
  EXPECT_EQ(RecordModelVersion(EncodeBinaryValue(r), BinaryHeaders(r, 1)), 1796000000123);
  EXPECT_EQ(RecordModelVersion(std::nullopt, {}), std::nullopt);  // a tombstone
  EXPECT_EQ(RecordModelVersion(std::string("{\"id\":\"x\"}"), {}), std::nullopt);
  EXPECT_EQ(RecordModelVersion(std::string("\x01\x02"), {{"gsau.model_version", "abc"}}), std::nullopt);
}

// RecordDim likewise: an id holding ,"dim": is escaped, so the field found is the record's own.
TEST(PublisherEncodeTest, RecordDimReadsBothFormats) {
  const auto r = Rec(EntityKind::kUser, "u,\"dim\":7", 1796000000123, {0.5f, 0.25f, 1.0f});
  EXPECT_EQ(RecordDim(EncodeJson(r, 1), {}), 3);
  EXPECT_EQ(RecordDim(EncodeBinaryValue(r), BinaryHeaders(r, 1)), 3);
  EXPECT_EQ(RecordDim(std::nullopt, {}), std::nullopt);
  EXPECT_EQ(RecordDim(std::string("{\"id\":\"x\"}"), {}), std::nullopt);
}

// NewestPublishedVersion: the largest model_version at the end of the two topics' partitions, in
// the format written (0 before anything was), also when it was not the last written: a second
// publisher (a restart) writes older versions to the other topic after it, and then, as a record
// delivered again after a failure does, an older version of a key behind its newest.
TEST(PublisherTest, NewestPublishedVersionIsTheLargestAtTheTopicsEnds) {
  for (const Format format : {Format::kJson, Format::kBinary}) {
    const std::string name = format == Format::kJson ? "json" : "binary";
    const auto o = Options(format);
    {
      auto p = KafkaPublisher::Create(o, nullptr);
      ASSERT_TRUE(p.ok()) << p.status();
      auto none = (*p)->NewestPublishedVersion(20000);
      ASSERT_TRUE(none.ok()) << none.status();
      EXPECT_EQ(*none, 0) << name;
      std::vector<EmbeddingRecord> users;
      for (int k = 0; k < 20; ++k) users.push_back(Rec(EntityKind::kUser, "u" + std::to_string(k), 880 + k, {1.0f}));
      ASSERT_TRUE((*p)->Publish(users).ok());
      ASSERT_TRUE((*p)->Flush(30000).ok());
    }
    auto p = KafkaPublisher::Create(o, nullptr);
    ASSERT_TRUE(p.ok()) << p.status();
    std::vector<EmbeddingRecord> items;
    for (int k = 0; k < 20; ++k) items.push_back(Rec(EntityKind::kItem, "i" + std::to_string(k), 500 + k, {1.0f}));
    ASSERT_TRUE((*p)->Publish(items).ok());
    ASSERT_TRUE((*p)->Flush(30000).ok());
    std::set<int64_t> dims;
    auto newest = (*p)->NewestPublishedVersion(20000, &dims);
    ASSERT_TRUE(newest.ok()) << newest.status();
    EXPECT_EQ(*newest, 899) << name;
    EXPECT_EQ(dims, std::set<int64_t>{1}) << name << ": the dims of the records read";

    // Every user again at older versions: each partition of the user topic now ends with one.
    std::vector<EmbeddingRecord> again;
    for (int k = 0; k < 20; ++k) again.push_back(Rec(EntityKind::kUser, "u" + std::to_string(k), 700 + k, {1.0f}));
    auto late = KafkaPublisher::Create(o, nullptr);
    ASSERT_TRUE(late.ok()) << late.status();
    ASSERT_TRUE((*late)->Publish(again).ok());
    ASSERT_TRUE((*late)->Flush(30000).ok());
    newest = (*late)->NewestPublishedVersion(20000);
    ASSERT_TRUE(newest.ok()) << newest.status();
    EXPECT_EQ(*newest, 899) << name << ": behind the older records";
  }
}

TEST(PublisherTest, BinaryValueIsFloat32LittleEndianWithMetadataHeaders) {
  const auto o = Options(Format::kBinary);
  auto p = KafkaPublisher::Create(o, nullptr);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::vector<float> v = {0.5f, -1.25f, 3.0e-7f, 42.0f};
  std::vector<EmbeddingRecord> batch = {Rec(EntityKind::kUser, "user-7", 5, v)};
  ASSERT_TRUE((*p)->Publish(batch).ok());
  ASSERT_TRUE((*p)->Flush(30000).ok());
  const auto got = ConsumeAll(KafkaBootstrap(), o.user_topic, 1);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(got[0].value.size(), v.size() * 4);
  std::vector<float> back(v.size());
  std::memcpy(back.data(), got[0].value.data(), got[0].value.size());
  EXPECT_EQ(back, v);
  std::map<std::string, std::string> h(got[0].headers.begin(), got[0].headers.end());
  EXPECT_EQ(h["gsau.id"], "user-7");
  EXPECT_EQ(h["gsau.kind"], "user");
  EXPECT_EQ(h["gsau.model_version"], "5");
  EXPECT_EQ(h["gsau.dim"], "4");
  EXPECT_EQ(h["gsau.format"], "f32le");
  EXPECT_EQ(h["gsau.event_time_ms"], "1700000000005");
  EXPECT_FALSE(h["gsau.produced_at_ms"].empty());
}

std::vector<float> Row(float x) {
  std::vector<float> v(64);
  for (size_t i = 0; i < v.size(); ++i) v[i] = x + 0.001f * static_cast<float>(i * i);
  return v;
}

int64_t VersionOf(const gsau::testing::ConsumedRecord& r) {
  return nlohmann::json::parse(r.value)["model_version"].get<int64_t>();
}

// Creates o's item topic with max.message.bytes 300, so that it refuses every record (a JSON
// record of 64 floats is over 600 bytes); no compression, as the topic checks the batch's size
// on the wire.
Status ItemTopicRefusesRecords(PublisherOptions& o) {
  o.producer.compression = "none";
  const std::vector<std::pair<std::string, std::string>> small = {{"cleanup.policy", "compact"},
                                                                  {"max.message.bytes", "300"}};
  return kafka::EnsureTopics(o.kafka, {{o.item_topic, 1, 1, small}}, 20000);
}

// Deliveries the topic refuses (its max.message.bytes below a record's size, as a broker would
// also refuse for an ACL or after message.timeout.ms in an outage) used to vanish: Publish had
// returned, the records were forgotten and no error was counted. Now the newest record of each
// id is produced again until the topic takes it, and a record superseded meanwhile is not.
TEST(PublisherTest, RecordsWhoseDeliveryFailedAreDeliveredOnceTheTopicTakesThem) {
  auto o = Options(Format::kJson);
  ASSERT_TRUE(ItemTopicRefusesRecords(o).ok());
  metrics::Metrics m;
  metrics::MetricsOptions mo;
  mo.listen_address = "127.0.0.1:0";
  ASSERT_TRUE(m.Serve(mo).ok());
  auto p = KafkaPublisher::Create(o, &m.registry());
  ASSERT_TRUE(p.ok()) << p.status();

  // Each JSON record of 64 floats is over 600 bytes: every delivery to the item topic fails.
  std::vector<EmbeddingRecord> first = {Rec(EntityKind::kItem, "i1", 1, Row(0.25f)),
                                        Rec(EntityKind::kItem, "i2", 1, Row(0.5f)),
                                        Rec(EntityKind::kUser, "u1", 1, Row(1.0f))};
  ASSERT_TRUE((*p)->Publish(first).ok());
  const Status undelivered = (*p)->Flush(3000);
  EXPECT_EQ(undelivered.code(), StatusCode::kUnavailable) << "a refused record is reported, not forgotten";
  std::vector<EmbeddingRecord> second = {Rec(EntityKind::kItem, "i2", 2, Row(0.75f))};  // supersedes i2 v1
  ASSERT_TRUE((*p)->Publish(second).ok());
  const auto failed = gsau::testing::ScrapeMetric(m.port(), R"(gsau_errors_total{kind="delivery",stage="publisher"})");
  ASSERT_TRUE(failed.has_value());
  EXPECT_GE(*failed, 2) << "each refused delivery counted";

  SetTopicConfigs(KafkaBootstrap(), o.item_topic, {{"cleanup.policy", "compact"}, {"max.message.bytes", "1000000"}});
  // Publish() alone (an empty batch, as the pipeline calls it every interval) delivers them.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::vector<gsau::testing::ConsumedRecord> items;
  while (std::chrono::steady_clock::now() < deadline) {
    ASSERT_TRUE((*p)->Publish({}).ok());
    items = ConsumeAll(KafkaBootstrap(), o.item_topic, -1, 2000);
    if (items.size() >= 2) break;
  }
  ASSERT_TRUE((*p)->Flush(30000).ok());
  items = ConsumeAll(KafkaBootstrap(), o.item_topic, -1, 5000);
  std::map<std::string, std::vector<int64_t>> versions;
  for (const auto& r : items) versions[r.key].push_back(VersionOf(r));
  EXPECT_EQ(versions["i1"], std::vector<int64_t>{1}) << "delivered once the topic took it";
  // v1 may have gone out before v2 (a retry still in flight when v2 was published), never after.
  ASSERT_FALSE(versions["i2"].empty());
  EXPECT_EQ(versions["i2"].back(), 2) << "the superseded v1 never follows v2";
  EXPECT_EQ(std::count(versions["i2"].begin(), versions["i2"].end(), 2), 1);
  EXPECT_EQ(versions.size(), 2u);
  const auto users = ConsumeAll(KafkaBootstrap(), o.user_topic, 1);
  ASSERT_EQ(users.size(), 1u) << "the user topic was never in trouble";
  EXPECT_EQ(VersionOf(users[0]), 1);
  const auto again = gsau::testing::ScrapeMetric(m.port(), "gsau_publisher_redelivered_total");
  ASSERT_TRUE(again.has_value());
  EXPECT_GE(*again, 2);
}

// An embedding topic deleted under a running publisher came back at its next record as the
// broker makes one: cleanup.policy=delete, so readers lost the ids that stopped changing after
// its retention, and only the next start said so. Its deliveries now fail (time out), counted,
// and the topic stays away until a start creates it compacted.
TEST(PublisherTest, ATopicDeletedWhileRunningIsNotCreatedAgainWithTheBrokersDefaults) {
  auto o = Options(Format::kJson);
  o.producer.message_timeout_ms = 4000;
  prometheus::Registry registry;
  auto p = KafkaPublisher::Create(o, &registry);
  ASSERT_TRUE(p.ok()) << p.status();
  gsau::testing::DeleteTopic(KafkaBootstrap(), o.user_topic);
  const auto gone = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (kafka::TopicConfigValue(o.kafka, o.user_topic, "cleanup.policy", 2000).status().code() !=
             StatusCode::kNotFound &&
         std::chrono::steady_clock::now() < gone) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_EQ(kafka::TopicConfigValue(o.kafka, o.user_topic, "cleanup.policy", 2000).status().code(),
            StatusCode::kNotFound);
  std::vector<EmbeddingRecord> records = {Rec(EntityKind::kUser, "u1", 1, Row(1.0f))};
  ASSERT_TRUE((*p)->Publish(records).ok());
  const Status flushed = (*p)->Flush(15000);
  EXPECT_FALSE(flushed.ok()) << "delivered to a topic the broker made";
  const auto policy = kafka::TopicConfigValue(o.kafka, o.user_topic, "cleanup.policy", 2000);
  EXPECT_EQ(policy.status().code(), StatusCode::kNotFound)
      << "created again: cleanup.policy=" << (policy.ok() ? *policy : policy.status().ToString());
  // A start creates it as it should be.
  auto again = KafkaPublisher::Create(o, nullptr);
  ASSERT_TRUE(again.ok()) << again.status();
  const auto created = kafka::TopicConfigValue(o.kafka, o.user_topic, "cleanup.policy", 5000);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(*created, "compact");
}

// After a restart the version gauge shows the checkpoint's model_version (it read -1 until the
// first record); freshness is observed for user records only, from their oldest click (an item's event time is when its
// row was taken, so items once swamped the histogram with zeros).
TEST(PublisherTest, VersionGaugeResumesAndFreshnessCountsUsersOnly) {
  metrics::Metrics m;
  metrics::MetricsOptions mo;
  mo.listen_address = "127.0.0.1:0";
  ASSERT_TRUE(m.Serve(mo).ok());
  auto p = KafkaPublisher::Create(Options(Format::kJson), &m.registry());
  ASSERT_TRUE(p.ok()) << p.status();
  (*p)->ResumeAfter(1000);
  ASSERT_TRUE((*p)->Publish({}).ok());
  EXPECT_EQ(gsau::testing::ScrapeMetric(m.port(), "gsau_model_version"), 1000.0);
  EXPECT_EQ(gsau::testing::ScrapeMetric(m.port(), "gsau_publisher_last_delivery_timestamp_seconds"), 0.0)
      << "nothing delivered yet";
  const std::vector<EmbeddingRecord> old = {Rec(EntityKind::kUser, "u0", 999, Row(1.0f))};
  EXPECT_EQ((*p)->Publish(old).code(), StatusCode::kInvalidArgument) << "older than the resumed version";

  const int64_t now = SystemClock::Get().NowMs();
  auto user = Rec(EntityKind::kUser, "u1", 1001, Row(1.0f));
  user.event_time_ms = now - 2000;
  user.oldest_event_time_ms = now - 20000;  // it coalesces an older click too: measured from that
  auto item = Rec(EntityKind::kItem, "i1", 1001, Row(0.5f));
  item.event_time_ms = now - 100000;
  auto again = Rec(EntityKind::kUser, "u2", 1001, Row(1.0f));  // published again after a restart
  again.event_time_ms = now - 3600000;
  again.observe_freshness = false;
  ASSERT_TRUE((*p)->Publish(std::vector<EmbeddingRecord>{user, item, again}).ok());
  ASSERT_TRUE((*p)->Flush(30000).ok());
  EXPECT_EQ(gsau::testing::ScrapeMetric(m.port(), "gsau_publisher_freshness_seconds_count"), 1.0);
  const auto sum = gsau::testing::ScrapeMetric(m.port(), "gsau_publisher_freshness_seconds_sum");
  ASSERT_TRUE(sum.has_value());
  EXPECT_GE(*sum, 20.0) << "not from the record's oldest click";
  EXPECT_LT(*sum, 60.0) << "neither the item's 100 s nor the republished user's hour are in it";
  EXPECT_EQ(gsau::testing::ScrapeMetric(m.port(), "gsau_model_version"), 1001.0);
  // The time of the last acknowledgement seen (the dashboard's "since the last delivery").
  const auto delivered_at = gsau::testing::ScrapeMetric(m.port(), "gsau_publisher_last_delivery_timestamp_seconds");
  ASSERT_TRUE(delivered_at.has_value());
  EXPECT_GE(*delivered_at, static_cast<double>(now) / 1000.0 - 1);
  EXPECT_LE(*delivered_at, static_cast<double>(SystemClock::Get().NowMs()) / 1000.0 + 1);
  // Handed over and acknowledged, by kind (the resumed version's empty publish delivered nothing).
  EXPECT_EQ(gsau::testing::ScrapeMetric(m.port(), R"(gsau_publisher_embeddings_delivered_total{kind="user"})"), 2.0);
  EXPECT_EQ(gsau::testing::ScrapeMetric(m.port(), R"(gsau_publisher_embeddings_delivered_total{kind="item"})"), 1.0);
}

// Under a steady flow there may be no moment with nothing in flight (WaitSettled(0) false at
// every look): a delivery mark says when every record of its kind before it was delivered,
// whatever came after, and breaks when a delivery of its kind fails after it (so checkpoints
// never confirm too much).
TEST(PublisherTest, DeliveryMarksSettleWhileLaterRecordsAreInFlight) {
  using State = KafkaPublisher::MarkState;
  auto o = Options(Format::kJson);
  o.producer.linger_ms = 5000;  // a record waits in the client until Flush()
  ASSERT_TRUE(ItemTopicRefusesRecords(o).ok());
  auto p = KafkaPublisher::Create(o, nullptr);
  ASSERT_TRUE(p.ok()) << p.status();
  auto& pub = **p;
  ASSERT_TRUE(pub.Publish(std::vector<EmbeddingRecord>{Rec(EntityKind::kUser, "u1", 1, Row(1.0f))}).ok());
  const auto m1 = pub.Mark(EntityKind::kUser);
  ASSERT_TRUE(m1.has_value());
  EXPECT_EQ(pub.Check(*m1), State::kPending) << "u1 still lingers";
  ASSERT_TRUE(pub.Flush(30000).ok());
  ASSERT_TRUE(pub.Publish(std::vector<EmbeddingRecord>{Rec(EntityKind::kUser, "u2", 2, Row(2.0f))}).ok());
  EXPECT_EQ(pub.Check(*m1), State::kDelivered) << "u1 is delivered, u2 after the mark does not matter";
  EXPECT_FALSE(pub.WaitSettled(0)) << "u2 is in flight: nothing-in-flight would not have confirmed u1";
  // The mark's state once it is no longer pending (30 s at most).
  const auto settled = [&](const KafkaPublisher::DeliveryMark& mark) {
    State s = State::kPending;
    for (int k = 0; k < 300 && s == State::kPending; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      s = pub.Check(mark);
    }
    return s;
  };
  const auto m2 = pub.Mark(EntityKind::kUser);
  ASSERT_TRUE(m2.has_value());
  EXPECT_EQ(settled(*m2), State::kDelivered);

  // An item record over the topic's 300 bytes fails after the marks: the item mark breaks; the
  // user mark holds (any failure broke every mark: an item topic refusing every record froze
  // the users' confirmations, and each restart published every user since again).
  const auto items = pub.Mark(EntityKind::kItem);
  ASSERT_TRUE(items.has_value());
  ASSERT_TRUE(pub.Publish(std::vector<EmbeddingRecord>{Rec(EntityKind::kUser, "u3", 3, Row(3.0f))}).ok());
  const auto users = pub.Mark(EntityKind::kUser);
  ASSERT_TRUE(users.has_value());
  ASSERT_TRUE(pub.Publish(std::vector<EmbeddingRecord>{Rec(EntityKind::kItem, "i1", 4, Row(0.5f))}).ok());
  EXPECT_FALSE(pub.Flush(3000).ok());
  EXPECT_EQ(pub.Check(*items), State::kBroken);
  EXPECT_EQ(pub.Check(*users), State::kDelivered) << "u3 was delivered; i1's failure is another topic's";
  // While i1 keeps failing, a user mark is taken and settles.
  const auto later = pub.Mark(EntityKind::kUser);
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(settled(*later), State::kDelivered);
}

// Flush's deadline runs on real time: with a clock that stands still (or a wall clock stepped
// back) it never came while a record kept failing.
TEST(PublisherTest, FlushEndsAtItsDeadlineWhateverTheInjectedClockSays) {
  auto o = Options(Format::kJson);
  ASSERT_TRUE(ItemTopicRefusesRecords(o).ok());
  static ManualClock still(1700000000000);  // outlives a Flush that might never end
  auto p = KafkaPublisher::Create(o, nullptr, still);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE((*p)->Publish(std::vector<EmbeddingRecord>{Rec(EntityKind::kItem, "i1", 1, Row(0.5f))}).ok());
  auto done = std::make_shared<std::promise<Status>>();
  auto result = done->get_future();
  std::thread([pub = p->get(), done] { done->set_value(pub->Flush(2000)); }).detach();
  if (result.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    (void)p->release();  // the stuck Flush still uses it
    FAIL() << "Flush(2000) never returned";
  }
  EXPECT_EQ(result.get().code(), StatusCode::kUnavailable) << "the record the topic refuses is reported";
}

// After a fatal producer error nothing is delivered any more: no mark may say otherwise, even
// once the failed records' redelivery has been refused (they were dropped then, and a mark
// taken after found nothing waiting).
TEST(PublisherTest, NoDeliveryMarkHoldsAfterAFatalError) {
  using State = KafkaPublisher::MarkState;
  auto o = Options(Format::kJson);
  o.producer.linger_ms = 5000;
  auto p = KafkaPublisher::Create(o, nullptr);
  ASSERT_TRUE(p.ok()) << p.status();
  auto& pub = **p;
  ASSERT_TRUE(pub.Publish(std::vector<EmbeddingRecord>{Rec(EntityKind::kUser, "u1", 1, Row(1.0f))}).ok());
  const auto before = pub.Mark(EntityKind::kUser);
  ASSERT_TRUE(before.has_value());
  pub.RaiseFatalErrorForTesting();
  for (int k = 0; k < 20 && !pub.failed_fatally(); ++k) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(pub.failed_fatally());
  // Serves u1's failure report, then tries it again, refused.
  Status again;
  for (int k = 0; k < 100 && again.ok(); ++k) {
    again = pub.Publish({});
    if (again.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(again.ok());
  EXPECT_EQ(pub.Check(*before), State::kBroken);
  EXPECT_FALSE(pub.Mark(EntityKind::kUser).has_value());
  EXPECT_FALSE(pub.WaitSettled(0)) << "u1 was never delivered (the refused redelivery once dropped it)";
}

// An existing embedding topic is used as it is: one that is not compacted (only) is warned about.
TEST(PublisherTest, AnExistingTopicThatDeletesByAgeIsWarnedAbout) {
  log::Init();
  log::SetLevel(log::Level::kInfo);
  auto o = Options(Format::kJson);
  ASSERT_TRUE(kafka::EnsureTopics(o.kafka, {{o.user_topic, 1, 1, {{"cleanup.policy", "delete"}}}}, 20000).ok());
  ::testing::internal::CaptureStderr();
  auto p = KafkaPublisher::Create(o, nullptr);
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NE(err.find("topic " + o.user_topic + " has cleanup.policy=delete"), std::string::npos) << err;
  EXPECT_EQ(err.find("topic " + o.item_topic + " has cleanup.policy"), std::string::npos) << "created compacted";
  EXPECT_EQ(*kafka::TopicConfigValue(o.kafka, o.item_topic, "cleanup.policy", 10000), "compact");
}

// A broker the publisher cannot reach shows in gsau_errors_total{stage="publisher",kind="broker"}
// within seconds, not only when its records time out (message.timeout.ms, minutes later). On
// librdkafka's mock cluster: a broker taken down and brought back on cue.
TEST(PublisherTest, ABrokerAwayShowsInTheErrorsAtOnce) {
  gsau::testing::MockCluster cluster;
  metrics::Metrics m;
  metrics::MetricsOptions mo;
  mo.listen_address = "127.0.0.1:0";
  ASSERT_TRUE(m.Serve(mo).ok());
  PublisherOptions o;
  o.kafka.bootstrap_servers = cluster.bootstrap();
  o.user_topic = UniqueTopic("users");
  o.item_topic = UniqueTopic("items");
  o.partitions = 1;
  o.policy_check_timeout_ms = 0;  // the mock cluster does not describe configs
  cluster.CreateTopic(o.user_topic, 1);  // nor create topics
  cluster.CreateTopic(o.item_topic, 1);
  auto p = KafkaPublisher::Create(o, &m.registry());
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE((*p)->Publish(std::vector<EmbeddingRecord>{Rec(EntityKind::kUser, "u1", 1, Row(1.0f))}).ok());
  ASSERT_TRUE((*p)->WaitSettled(10000));
  const std::string broker_errors = R"(gsau_errors_total{kind="broker",stage="publisher"})";
  EXPECT_EQ(gsau::testing::ScrapeMetric(m.port(), broker_errors).value_or(-1), 0.0);

  rd_kafka_mock_broker_set_down(cluster.get(), 1);
  ASSERT_TRUE((*p)->Publish(std::vector<EmbeddingRecord>{Rec(EntityKind::kUser, "u2", 2, Row(2.0f))}).ok());
  double seen = 0;
  for (int k = 0; k < 50 && seen == 0; ++k) {
    (*p)->WaitSettled(200);
    seen = gsau::testing::ScrapeMetric(m.port(), broker_errors).value_or(0);
  }
  EXPECT_GT(seen, 0) << "10 s with the broker away and no error counted";
  const std::string delivered = R"(gsau_publisher_embeddings_delivered_total{kind="user"})";
  EXPECT_EQ(gsau::testing::ScrapeMetric(m.port(), delivered), 1.0) << "u2 is handed over, not delivered";
  EXPECT_EQ(gsau::testing::ScrapeMetric(m.port(), "gsau_publisher_embeddings_published_total{kind=\"user\"}"), 2.0);
  rd_kafka_mock_broker_set_up(cluster.get(), 1);
  EXPECT_TRUE((*p)->WaitSettled(30000)) << "delivered once the broker is back";
  EXPECT_EQ(gsau::testing::ScrapeMetric(m.port(), delivered), 2.0);
}

TEST(PublisherTest, UnreachableClusterIsAnErrorNotAHang) {
  PublisherOptions o;
  o.kafka.bootstrap_servers = "127.0.0.1:1";
  o.connect_timeout_ms = 1500;
  auto p = KafkaPublisher::Create(o, nullptr);
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace gsau::publisher
