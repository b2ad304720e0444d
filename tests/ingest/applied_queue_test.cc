#include "gsau/ingest/applied_queue.h"

#include <gtest/gtest.h>

namespace gsau::ingest {
namespace {

AppliedBatch Batch(uint64_t seq, size_t events) {
  AppliedBatch b;
  b.batch_seq = seq;
  b.events.resize(events);
  b.applied_at_ms = static_cast<int64_t>(seq) * 10;
  return b;
}

// Batches of skipped or dead-lettered records only (no events) kept one queue entry each: a
// stream of bad records grew the queue without bound while the learner was held up, since
// the bound counts events. Consecutive ones now make one entry with the newest sequence.
TEST(AppliedQueue, BatchesWithoutEventsInARowMakeOneEntry) {
  AppliedQueue q(100);
  q.Push(Batch(1, 3));
  for (uint64_t seq = 2; seq <= 10000; ++seq) q.Push(Batch(seq, 0));
  q.Push(Batch(10001, 2));
  q.Push(Batch(10002, 0));
  EXPECT_EQ(q.queued_events(), 5u);
  auto b = q.Pop(0);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->batch_seq, 1u);
  EXPECT_EQ(b->events.size(), 3u);
  b = q.Pop(0);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->batch_seq, 10000u) << "the newest of the run";
  EXPECT_EQ(b->applied_at_ms, 100000);
  EXPECT_TRUE(b->events.empty());
  b = q.Pop(0);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->batch_seq, 10001u);
  b = q.Pop(0);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->batch_seq, 10002u);
  EXPECT_FALSE(q.Pop(0).has_value());
  EXPECT_EQ(q.queued_events(), 0u);
}

TEST(AppliedQueue, HasRoomCountsEvents) {
  AppliedQueue q(10);
  EXPECT_TRUE(q.HasRoom(10));
  q.Push(Batch(1, 6));
  EXPECT_TRUE(q.HasRoom(4));
  EXPECT_FALSE(q.HasRoom(5));
  q.Push(Batch(2, 0));
  EXPECT_TRUE(q.HasRoom(4));
  ASSERT_TRUE(q.Pop(0).has_value());
  EXPECT_TRUE(q.HasRoom(10));
}

}  // namespace
}  // namespace gsau::ingest
