// The Kafka adapter against the real broker (and, for failures, against no broker at all).
#include <gtest/gtest.h>

#include <chrono>

#include "gsau/kafka/admin.h"
#include "gsau/kafka/options.h"
#include "gsau/kafka/producer.h"
#include "kafka_broker.h"

namespace gsau::kafka {
namespace {

using gsau::testing::ConsumeAll;
using gsau::testing::KafkaBootstrap;
using gsau::testing::UniqueTopic;

KafkaOptions Real() {
  KafkaOptions k;
  k.bootstrap_servers = KafkaBootstrap();
  k.client_id = "gsau-kafka-test";
  return k;
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
  ASSERT_TRUE((*p)->Flush(30000).ok());
  EXPECT_EQ((*p)->counts().produced, 102);
  EXPECT_EQ((*p)->counts().delivered, 102);
  EXPECT_EQ((*p)->counts().failed, 0);

  const auto records = ConsumeAll(Real().bootstrap_servers, topic, 102);
  ASSERT_EQ(records.size(), 102u);
  int with_headers = 0, tombstones = 0;
  for (const auto& r : records) {
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
