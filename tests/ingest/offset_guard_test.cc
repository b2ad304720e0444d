#include "gsau/ingest/offset_guard.h"

#include <gtest/gtest.h>

namespace gsau::ingest {
namespace {

const TopicPartition kP0{"clicks", 0};
const TopicPartition kP1{"clicks", 1};

TEST(OffsetGuard, SkipsRecordsBelowTheStatesOffsetAndTakesTheRest) {
  OffsetGuard g;
  g.Assign(kP0, 5);
  EXPECT_FALSE(g.Take(kP0, 0));
  EXPECT_FALSE(g.Take(kP0, 4));
  EXPECT_TRUE(g.Take(kP0, 5));
  EXPECT_FALSE(g.Take(kP0, 5)) << "the same record twice";
  EXPECT_TRUE(g.Take(kP0, 6));
  EXPECT_TRUE(g.Take(kP0, 9)) << "offsets have gaps (compaction, transaction markers)";
  EXPECT_FALSE(g.Take(kP0, 7)) << "a fetch restarted from a stale position";
  EXPECT_FALSE(g.Take(kP0, 9));
  EXPECT_TRUE(g.Take(kP0, 10));
}

TEST(OffsetGuard, WithoutAStoredOffsetTheFirstRecordSetsThePosition) {
  OffsetGuard g;
  g.Assign(kP0, -1);
  EXPECT_TRUE(g.Take(kP0, 100));  // retention may have removed the start of the partition
  EXPECT_FALSE(g.Take(kP0, 3));
  EXPECT_TRUE(g.Take(kP0, 101));
}

TEST(OffsetGuard, PartitionsAreIndependent) {
  OffsetGuard g;
  g.Assign(kP0, 10);
  g.Assign(kP1, 0);
  EXPECT_TRUE(g.Take(kP1, 0));
  EXPECT_TRUE(g.Take(kP1, 1));
  EXPECT_FALSE(g.Take(kP0, 1));
  EXPECT_TRUE(g.Take(kP0, 10));
  EXPECT_FALSE(g.Take(kP1, 1));
  const TopicPartition never_assigned{"other", 0};
  EXPECT_TRUE(g.Take(never_assigned, 5));
  EXPECT_FALSE(g.Take(never_assigned, 5));
}

TEST(OffsetGuard, ANewAssignmentContinuesWhereTheStateSays) {
  OffsetGuard g;
  g.Assign(kP0, 0);
  for (int64_t o = 0; o < 20; ++o) ASSERT_TRUE(g.Take(kP0, o));
  g.Revoke(kP0);
  // Assigned again from a state that holds less (a rollback to an older checkpoint): the
  // records after the state's offset are new to this state.
  g.Assign(kP0, 12);
  EXPECT_FALSE(g.Take(kP0, 11));
  EXPECT_TRUE(g.Take(kP0, 12));
}

}  // namespace
}  // namespace gsau::ingest
