// KafkaPublisher's redelivery loop over a scripted producer: deliveries that fail and
// redeliveries refused before sending, in orders a broker cannot be made to give on demand
// (a topic recreated between a failed delivery and its next round). The Kafka path itself is
// tested against a real broker in publisher_test.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gsau/publisher/publisher.h"

namespace gsau::publisher {
namespace {

// Settles every record at once: the first `fail_deliveries` records accepted fail (kept for
// TakeFailed), the rest are delivered; while `refusals` holds statuses, each Produce() call
// takes the next one and refuses with it before sending (an Ok one lets its call through).
// Records of `held_topic` stay in flight instead (a partition without a leader), for good: the
// first of them caps reported_through() for the rest of the test.
class ScriptedProducer final : public kafka::Producer {
 public:
  int fail_deliveries = 0;
  std::deque<Status> refusals;
  int produce_calls = 0;
  bool fatal = false;
  bool one_in_flight = false;  // counts() shows one more record produced than settled: a steady flow
  int64_t reports_behind = 0;  // reported_through() lags the records produced by this many
  std::string held_topic;
  std::vector<std::string> values;             // of every record taken
  std::function<void()> after_produce = [] {};  // e.g. a clock that moves while records wait

  Status Produce(std::string_view topic, std::string_view key, std::string_view value, const kafka::Headers& headers,
                 int64_t /*timestamp_ms*/, bool tombstone) override {
    ++produce_calls;
    values.emplace_back(value);
    after_produce();
    if (!refusals.empty()) {
      Status s = refusals.front();
      refusals.pop_front();
      if (s.code() == StatusCode::kInternal) fatal = true;
      if (!s.ok()) return s;
    }
    ++counts_.produced;
    if (topic == held_topic) {
      if (first_held_ == 0) first_held_ = static_cast<uint64_t>(counts_.produced);
    } else if (fail_deliveries > 0) {
      --fail_deliveries;
      ++counts_.failed;
      ++failed_to_[std::string(topic)];
      kept_.push_back({std::string(topic), std::string(key), false, std::string(value), tombstone, headers,
                       "refused by the topic"});
    } else {
      ++counts_.delivered;
      ++delivered_;
    }
    return Status::Ok();
  }
  void Poll() override {}
  Status Flush(int) override { return Status::Ok(); }
  kafka::DeliveryCounts counts() const override {
    auto c = counts_;
    c.produced += one_in_flight ? 1 : 0;
    return c;
  }
  std::vector<kafka::FailedRecord> TakeFailed() override { return std::exchange(kept_, {}); }
  size_t KeptFailedCount() const override { return kept_.size(); }
  size_t KeptFailedCountOf(std::string_view topic) const override {
    return static_cast<size_t>(
        std::count_if(kept_.begin(), kept_.end(), [&](const auto& r) { return r.topic == topic; }));
  }
  uint64_t last_numbered() const override { return static_cast<uint64_t>(counts_.produced); }
  uint64_t reported_through() override {
    const auto through = static_cast<uint64_t>(counts_.produced - reports_behind);
    return first_held_ == 0 ? through : std::min(through, first_held_ - 1);
  }
  uint64_t reported_through_of(std::string_view topic) override {
    return topic == held_topic ? reported_through() : static_cast<uint64_t>(counts_.produced - reports_behind);
  }
  int64_t delivered_to(std::string_view) const override { return delivered_; }
  int64_t failed_to(std::string_view topic) const override {
    const auto it = failed_to_.find(std::string(topic));
    return it == failed_to_.end() ? 0 : it->second;
  }
  bool failed_fatally() const override { return fatal; }
  void RaiseFatalErrorForTesting() override { fatal = true; }
  std::string ConfigValueForTesting(const std::string&) const override { return ""; }
  int64_t max_message_bytes() const override { return 1 << 20; }

 private:
  kafka::DeliveryCounts counts_;
  uint64_t first_held_ = 0;  // the number of the first record of held_topic (0: none)
  std::map<std::string, int64_t> failed_to_;
  std::vector<kafka::FailedRecord> kept_;
  int64_t delivered_ = 0;
};

EmbeddingRecord User(const std::string& id, int64_t model_version = 1, EntityKind kind = EntityKind::kUser) {
  EmbeddingRecord r;
  r.id = id;
  r.kind = kind;
  r.model_version = model_version;
  r.embedding = {0.5f, -0.25f};
  return r;
}

struct Fixture {
  ScriptedProducer* producer = nullptr;
  std::unique_ptr<KafkaPublisher> pub;

  Fixture() {
    auto p = std::make_unique<ScriptedProducer>();
    producer = p.get();
    pub = KafkaPublisher::CreateForTesting(PublisherOptions{}, std::move(p), nullptr);
  }
};

// A record whose delivery failed and whose redelivery is refused while its topic is recreated
// is tried again until Flush's deadline: Flush used to give up at the first refusal, long before it.
TEST(PublisherRedeliveryTest, FlushKeepsTryingARefusedRedeliveryUntilItsDeadline) {
  Fixture f;
  f.producer->fail_deliveries = 1;
  const std::vector<EmbeddingRecord> records = {User("u1")};
  ASSERT_TRUE(f.pub->Publish(records).ok());
  f.producer->refusals = {Status::Unavailable("produce to gsau.user-embeddings: Broker: Unknown topic or partition"),
                          Status::Unavailable("produce to gsau.user-embeddings: Broker: Unknown topic or partition")};
  Status s = f.pub->Flush(10000);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(f.producer->produce_calls, 4) << "published, refused twice, then produced again";
  EXPECT_TRUE(f.pub->WaitSettled(0));
}

// Refused until the deadline: the verdict says what is kept and why it was refused.
TEST(PublisherRedeliveryTest, FlushReportsTheLastRefusalAtItsDeadline) {
  Fixture f;
  f.producer->fail_deliveries = 1;
  const std::vector<EmbeddingRecord> records = {User("u1")};
  ASSERT_TRUE(f.pub->Publish(records).ok());
  for (int k = 0; k < 100; ++k) f.producer->refusals.push_back(Status::Unavailable("unknown topic"));
  Status s = f.pub->Flush(400);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("1 failed delivery"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("last refused: publisher: producing a failed record again: unknown topic"),
            std::string::npos)
      << s.message();
  EXPECT_GE(f.producer->produce_calls, 3) << "tried more than once within 400 ms";
  f.producer->refusals.clear();
  EXPECT_TRUE(f.pub->Flush(10000).ok()) << "kept: a later call gets it out";
}

// A fatal producer error ends Flush at once: nothing will be delivered any more.
TEST(PublisherRedeliveryTest, FlushReturnsAtOnceOnAFatalError) {
  Fixture f;
  f.producer->fail_deliveries = 1;
  const std::vector<EmbeddingRecord> records = {User("u1")};
  ASSERT_TRUE(f.pub->Publish(records).ok());
  f.producer->refusals = {Status::Internal("produce: fatal producer error: raised by a test")};
  Status s = f.pub->Flush(60000);
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.ToString();
  EXPECT_EQ(f.producer->produce_calls, 2);
}

// A full queue refuses the first redelivery after the producer's queue_full_timeout_ms (1 s):
// the round stops there and keeps the rest, rather than waiting that long for each of them (an
// outage's thousands of failed records held pub_mu, and the learner, for hours). All go out in
// a later round once there is room.
TEST(PublisherRedeliveryTest, AFullQueueEndsARedeliveryRoundAtItsFirstRefusal) {
  Fixture f;
  f.producer->fail_deliveries = 50;
  std::vector<EmbeddingRecord> records;
  for (int u = 0; u < 50; ++u) records.push_back(User("u" + std::to_string(u)));
  ASSERT_TRUE(f.pub->Publish(records).ok());
  ASSERT_EQ(f.producer->produce_calls, 50);
  for (int k = 0; k < 50; ++k) {
    f.producer->refusals.push_back(Status::ResourceExhausted("produce to gsau.user-embeddings: the local queue stayed "
                                                             "full for 1000 ms"));
  }
  EXPECT_EQ(f.pub->Publish({}).code(), StatusCode::kOk) << "a redelivery error is logged, not returned";
  EXPECT_EQ(f.producer->produce_calls, 51) << "one try for the round, not one per record";
  EXPECT_FALSE(f.pub->WaitSettled(0)) << "all 50 kept";
  f.producer->refusals.clear();
  EXPECT_TRUE(f.pub->Flush(10000).ok());
  EXPECT_EQ(f.producer->produce_calls, 101);
  EXPECT_TRUE(f.pub->WaitSettled(0));
}

// A full queue refusing a batch part-way: Publish says how many of it went out, so that the
// caller keeps only the rest (it kept the whole batch and produced the first ones again at its
// next interval, each twice in the topic with its freshness observed twice).
TEST(PublisherRedeliveryTest, APublishRefusedPartWaySaysHowManyRecordsWentOut) {
  Fixture f;
  std::vector<EmbeddingRecord> records;
  for (int u = 0; u < 10; ++u) records.push_back(User("u" + std::to_string(u), 3));
  records[2].embedding[0] = std::numeric_limits<float>::quiet_NaN();  // not publishable: done with too
  f.producer->refusals = {Status::Ok(), Status::Ok(), Status::Ok(), Status::Ok(),
                          Status::ResourceExhausted("produce: the local queue stayed full for 1000 ms")};
  size_t handed_over = 99;
  EXPECT_EQ(f.pub->Publish(records, &handed_over).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(handed_over, 5u) << "u0, u1, u3, u4 produced, u2 not publishable; u5 refused";
  EXPECT_EQ(f.producer->counts().produced, 4);
  ASSERT_TRUE(f.pub->Publish(std::span(records).subspan(handed_over), &handed_over).ok());
  EXPECT_EQ(handed_over, 5u);
  EXPECT_EQ(f.producer->counts().produced, 9) << "each publishable record once";
  const std::vector<EmbeddingRecord> older = {User("u0", 2)};
  EXPECT_EQ(f.pub->Publish(older, &handed_over).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(handed_over, 0u);
}

// Each record carries the time it was produced, not the time its Publish call began: a full
// queue can hold one Produce for a second, and the records after it were stamped (and their
// freshness measured) as if produced before it.
TEST(PublisherRedeliveryTest, EachRecordIsStampedWithItsOwnProductionTime) {
  ManualClock clock(1'800'000'000'000);
  auto p = std::make_unique<ScriptedProducer>();
  ScriptedProducer* producer = p.get();
  producer->after_produce = [&clock] { clock.AdvanceMs(1000); };
  auto pub = KafkaPublisher::CreateForTesting(PublisherOptions{}, std::move(p), nullptr, clock);
  const std::vector<EmbeddingRecord> records = {User("u1"), User("u2"), User("u3")};
  ASSERT_TRUE(pub->Publish(records).ok());
  ASSERT_EQ(producer->values.size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    const std::string want = "\"produced_at_ms\":" + std::to_string(1'800'000'000'000 + 1000 * static_cast<int64_t>(k));
    EXPECT_NE(producer->values[k].find(want), std::string::npos) << producer->values[k];
  }
}

// model_version never decreases, within a batch either: [v10, v5] for one id went out as v10,
// then v5 (each record was compared with the versions published before the batch only).
TEST(PublisherRedeliveryTest, ABatchWhoseVersionsDecreaseIsRefusedWhole) {
  Fixture f;
  const std::vector<EmbeddingRecord> backwards = {User("u1", 10), User("u1", 5)};
  EXPECT_EQ(f.pub->Publish(backwards).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(f.producer->produce_calls, 0);
  const std::vector<EmbeddingRecord> forwards = {User("u1", 5), User("u2", 5), User("u1", 10)};
  EXPECT_TRUE(f.pub->Publish(forwards).ok());
  EXPECT_EQ(f.pub->last_model_version(), 10);
}

// A fatal producer error with nothing left to redeliver: Publish({}), which an idle pipeline
// calls now and then, said Ok, and the pipeline ran on a producer that would deliver nothing.
TEST(PublisherRedeliveryTest, PublishFailsOnceTheProducerFailedFatallyEvenWithNothingToSend) {
  Fixture f;
  ASSERT_TRUE(f.pub->Publish({}).ok());
  f.producer->fatal = true;
  EXPECT_EQ(f.pub->Publish({}).code(), StatusCode::kInternal);
  const std::vector<EmbeddingRecord> records = {User("u1")};
  EXPECT_EQ(f.pub->Publish(records).code(), StatusCode::kInternal);
  EXPECT_EQ(f.producer->produce_calls, 0);
}

// After an outage the redelivery backoff goes back to its shortest once a round's records were
// delivered, though other records are in flight: under a steady flow there is never a moment
// with none, and an isolated failure long after the outage waited the outage's longest backoff.
TEST(PublisherRedeliveryTest, TheBackoffResetsAfterASuccessfulRoundUnderASteadyFlow) {
  Fixture f;
  f.producer->one_in_flight = true;
  const auto until_redelivered = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    while (f.producer->KeptFailedCount() > 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10)) {
      f.pub->Publish({}).IgnoreError();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return std::chrono::steady_clock::now() - t0;
  };
  // An outage: the first delivery and four redeliveries fail (backoff 100, 200, 400, 800, then
  // 1600 ms), the fifth goes through.
  f.producer->fail_deliveries = 5;
  const std::vector<EmbeddingRecord> first = {User("u1")};
  ASSERT_TRUE(f.pub->Publish(first).ok());
  for (int round = 0; round < 5; ++round) until_redelivered();
  ASSERT_EQ(f.producer->KeptFailedCount(), 0u);
  ASSERT_TRUE(f.pub->Publish({}).ok());  // a round with nothing failed: the reset is due here
  // Later, one record fails: it goes again after the shortest backoff, not 1600 ms.
  f.producer->fail_deliveries = 1;
  const std::vector<EmbeddingRecord> later = {User("u2")};
  ASSERT_TRUE(f.pub->Publish(later).ok());
  ASSERT_EQ(f.producer->KeptFailedCount(), 1u);
  const auto waited = until_redelivered();
  EXPECT_LT(waited, std::chrono::milliseconds(1000))
      << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count() << " ms";
}

// Not before the round's records have been reported: a delivery still on its way back may fail
// (a round per round trip otherwise, through an outage).
TEST(PublisherRedeliveryTest, TheBackoffHoldsWhileTheLastRoundsRecordsAreUnreported) {
  Fixture f;
  f.producer->fail_deliveries = 3;  // the record and its first two rounds (backoff 100, 200 ms)
  const std::vector<EmbeddingRecord> first = {User("u1")};
  ASSERT_TRUE(f.pub->Publish(first).ok());
  for (const auto t = std::chrono::steady_clock::now();
       f.producer->KeptFailedCount() > 0 && std::chrono::steady_clock::now() - t < std::chrono::seconds(10);) {
    f.pub->Publish({}).IgnoreError();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // The third round produced it again (the next round not before 400 ms after it); its report
  // has not come back.
  ASSERT_EQ(f.producer->produce_calls, 4);
  f.producer->reports_behind = 1;
  const auto t0 = std::chrono::steady_clock::now();
  f.producer->fail_deliveries = 1;
  const std::vector<EmbeddingRecord> later = {User("u2")};
  ASSERT_TRUE(f.pub->Publish(later).ok());
  const int calls = f.producer->produce_calls;
  while (f.producer->produce_calls == calls && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
    f.pub->Publish({}).IgnoreError();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(250)) << "the backoff was reset";
}

// Delivery marks follow one topic: an item record in flight (its partition without a leader,
// for up to message.timeout.ms) or failing holds no user mark back; a user record failing
// breaks it. Marks covered every record of both topics: with an item topic refusing its
// records, no user delivery was ever confirmed.
TEST(PublisherRedeliveryTest, DeliveryMarksFollowTheirOwnTopic) {
  using State = KafkaPublisher::MarkState;
  Fixture f;
  f.producer->held_topic = PublisherOptions{}.item_topic;
  ASSERT_TRUE(f.pub->Publish(std::vector<EmbeddingRecord>{User("i1", 1, EntityKind::kItem)}).ok());
  ASSERT_TRUE(f.pub->Publish(std::vector<EmbeddingRecord>{User("u1", 2)}).ok());
  const auto users = f.pub->Mark(EntityKind::kUser);
  ASSERT_TRUE(users.has_value());
  EXPECT_EQ(f.pub->Check(*users), State::kDelivered) << "held back by the item record in flight";
  EXPECT_TRUE(f.pub->Settled(EntityKind::kUser));
  EXPECT_FALSE(f.pub->Settled(EntityKind::kItem));
  EXPECT_FALSE(f.pub->WaitSettled(0));

  f.producer->held_topic.clear();
  const auto items = f.pub->Mark(EntityKind::kItem);
  ASSERT_TRUE(items.has_value());
  f.producer->fail_deliveries = 1;
  ASSERT_TRUE(f.pub->Publish(std::vector<EmbeddingRecord>{User("i2", 3, EntityKind::kItem)}).ok());
  EXPECT_EQ(f.pub->Check(*items), State::kBroken);
  EXPECT_EQ(f.pub->Check(*users), State::kDelivered) << "broken by an item record's failure";
  EXPECT_FALSE(f.pub->Mark(EntityKind::kItem).has_value()) << "i2 waits to go again";
  const auto later = f.pub->Mark(EntityKind::kUser);
  ASSERT_TRUE(later.has_value()) << "refused while an item record waits to go again";
  f.producer->fail_deliveries = 2;  // u2's, and i2's if this publish produces it again first
  ASSERT_TRUE(f.pub->Publish(std::vector<EmbeddingRecord>{User("u2", 4)}).ok());
  EXPECT_EQ(f.pub->Check(*later), State::kBroken);
}

}  // namespace
}  // namespace gsau::publisher
