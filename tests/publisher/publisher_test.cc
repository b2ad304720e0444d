// The embedding publisher against the real broker, both formats.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <map>

#include "gsau/kafka/admin.h"
#include "gsau/publisher/publisher.h"
#include "kafka_broker.h"

namespace gsau::publisher {
namespace {

using gsau::testing::ConsumeAll;
using gsau::testing::KafkaBootstrap;
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
  auto p = KafkaPublisher::Create(o, nullptr);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*kafka::TopicConfigValue(o.kafka, o.user_topic, "cleanup.policy", 10000), "compact");
  EXPECT_EQ(*kafka::TopicConfigValue(o.kafka, o.item_topic, "cleanup.policy", 10000), "compact");

  std::vector<EmbeddingRecord> batch1 = {Rec(EntityKind::kUser, "u1", 1, {1, 2, 3}),
                                         Rec(EntityKind::kItem, "i1", 1, {4, 5, 6})};
  ASSERT_TRUE((*p)->Publish(batch1).ok());
  EmbeddingRecord gone = Rec(EntityKind::kItem, "i9", 2, {});
  gone.tombstone = true;
  std::vector<EmbeddingRecord> batch2 = {Rec(EntityKind::kUser, "u1", 2, {7, 8, 9}), gone};
  ASSERT_TRUE((*p)->Publish(batch2).ok());
  std::vector<EmbeddingRecord> stale = {Rec(EntityKind::kUser, "u2", 1, {0, 0, 0})};
  EXPECT_EQ((*p)->Publish(stale).code(), StatusCode::kInvalidArgument) << "model_version never goes back";
  ASSERT_TRUE((*p)->Flush(30000).ok());

  const auto users = ConsumeAll(KafkaBootstrap(), o.user_topic, 2);
  ASSERT_EQ(users.size(), 2u);
  int64_t last_version = 0;
  for (const auto& u : users) {
    EXPECT_EQ(u.key, "u1");
    const auto j = nlohmann::json::parse(u.value);
    EXPECT_GT(j["model_version"].get<int64_t>(), last_version) << "in order per key";
    last_version = j["model_version"];
    EXPECT_EQ(j["dim"], 3);
  }
  const auto items = ConsumeAll(KafkaBootstrap(), o.item_topic, 2);
  ASSERT_EQ(items.size(), 2u);
  std::map<std::string, const gsau::testing::ConsumedRecord*> by_key;
  for (const auto& r : items) by_key[r.key] = &r;
  EXPECT_TRUE(by_key.at("i9")->null_value) << "a removed id is a tombstone";
  EXPECT_EQ(nlohmann::json::parse(by_key.at("i1")->value)["embedding"], nlohmann::json::parse("[4.0,5.0,6.0]"));
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

TEST(PublisherTest, UnreachableClusterIsAnErrorNotAHang) {
  PublisherOptions o;
  o.kafka.bootstrap_servers = "127.0.0.1:1";
  o.connect_timeout_ms = 1500;
  auto p = KafkaPublisher::Create(o, nullptr);
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace gsau::publisher
