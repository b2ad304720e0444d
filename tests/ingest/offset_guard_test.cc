#include "gsau/ingest/offset_guard.h"

#include <gtest/gtest.h>

#include <string>

namespace gsau::ingest {
namespace {

const TopicPartition kP0{"clicks", 0};
const TopicPartition kP1{"clicks", 1};
constexpr auto kNew = OffsetGuard::Verdict::kNew;
constexpr auto kSeen = OffsetGuard::Verdict::kSeen;
constexpr auto kAhead = OffsetGuard::Verdict::kAhead;

TEST(OffsetGuard, SkipsRecordsBelowTheStatesOffsetAndTakesTheRest) {
  OffsetGuard g;
  g.Assign(kP0, 5);
  EXPECT_EQ(kSeen, g.Take(kP0, 0));
  EXPECT_EQ(kSeen, g.Take(kP0, 4));
  EXPECT_EQ(kNew, g.Take(kP0, 5));
  EXPECT_EQ(kSeen, g.Take(kP0, 5)) << "the same record twice";
  EXPECT_EQ(kNew, g.Take(kP0, 6));
  EXPECT_EQ(kNew, g.Take(kP0, 9)) << "offsets have gaps (compaction, transaction markers)";
  EXPECT_EQ(kSeen, g.Take(kP0, 7)) << "a fetch restarted from a stale position";
  EXPECT_EQ(kSeen, g.Take(kP0, 9));
  EXPECT_EQ(kNew, g.Take(kP0, 10));
}

// A partition the state has never read is checked from offset 0: a first record above it is
// sought back. The assignment from the beginning can be lost (librdkafka #2190) and the client
// then starts at the group's committed offset, another member's: the records before it would be
// skipped without a trace (they were taken as the first ones).
TEST(OffsetGuard, WithoutAStoredOffsetThePartitionIsCheckedFromItsStart) {
  OffsetGuard g;
  g.Assign(kP0, -1);
  EXPECT_EQ(g.Next(kP0), 0);
  EXPECT_EQ(kAhead, g.Take(kP0, 500));  // the group's committed offset
  g.Sought(kP0, 500);
  EXPECT_EQ(kNew, g.Take(kP0, 0));
  EXPECT_EQ(kNew, g.Take(kP0, 1));
  // Retention removed the partition's start: the seek back lands on the log's first record.
  g.Assign(kP1, -1);
  EXPECT_EQ(kAhead, g.Take(kP1, 100));
  g.Sought(kP1, 100);
  EXPECT_EQ(kNew, g.Take(kP1, 100));
  EXPECT_EQ(kSeen, g.Take(kP1, 3));
  EXPECT_EQ(kNew, g.Take(kP1, 101));
}

TEST(OffsetGuard, PartitionsAreIndependent) {
  OffsetGuard g;
  g.Assign(kP0, 10);
  g.Assign(kP1, 0);
  EXPECT_EQ(kNew, g.Take(kP1, 0));
  EXPECT_EQ(kNew, g.Take(kP1, 1));
  EXPECT_EQ(kSeen, g.Take(kP0, 1));
  EXPECT_EQ(kNew, g.Take(kP0, 10));
  EXPECT_EQ(kSeen, g.Take(kP1, 1));
  const TopicPartition never_assigned{"other", 0};
  EXPECT_EQ(kNew, g.Take(never_assigned, 5));
  EXPECT_EQ(kSeen, g.Take(never_assigned, 5));
}

TEST(OffsetGuard, ANewAssignmentContinuesWhereTheStateSays) {
  OffsetGuard g;
  g.Assign(kP0, 0);
  for (int64_t o = 0; o < 20; ++o) ASSERT_EQ(kNew, g.Take(kP0, o));
  g.Revoke(kP0);
  // Assigned again from a state that holds less (a rollback to an older checkpoint): the
  // records after the state's offset are new to this state.
  g.Assign(kP0, 12);
  EXPECT_EQ(kSeen, g.Take(kP0, 11));
  EXPECT_EQ(kNew, g.Take(kP0, 12));
}

// A start above the state's offset (a client that lost the assigned offset and fetched from
// the group's committed one, ahead of the state) is not taken: the partition is sought back,
// and then the records from the state's offset on are taken.
TEST(OffsetGuard, AFirstRecordAboveTheStatesOffsetIsSoughtBack) {
  const auto kGap = OffsetGuard::Verdict::kGap;
  OffsetGuard g;
  g.Assign(kP0, 5);
  EXPECT_EQ(g.Take(kP0, 9), kAhead);
  EXPECT_EQ(g.Take(kP0, 10), kAhead) << "until the seek back";
  EXPECT_EQ(g.Next(kP0), 5);
  g.Sought(kP0, 10);
  EXPECT_EQ(g.Take(kP0, 5), kNew);
  EXPECT_EQ(g.Take(kP0, 6), kNew);
  EXPECT_EQ(g.Take(kP0, 9), kNew) << "a gap after the first record is taken";
  g.Revoke(kP0);
  g.Assign(kP0, 20);
  EXPECT_EQ(g.Take(kP0, 30), kAhead) << "checked again at each assignment";
  // A seek that did not land (a pause reset the position again): the next record is still
  // above the one dropped, so the partition is sought again, up to kMaxSeeks times; then the
  // record is taken and the records before it are said to be skipped.
  g.Sought(kP0, 30);
  EXPECT_EQ(g.Take(kP0, 31), kAhead);
  g.Sought(kP0, 31);
  EXPECT_EQ(g.Take(kP0, 32), kAhead);
  g.Sought(kP0, 32);
  EXPECT_EQ(g.Take(kP0, 33), kGap) << OffsetGuard::kMaxSeeks << " seeks made";
  EXPECT_EQ(g.Next(kP0), 34);
  // A failed seek: taken at once, as a gap.
  g.Assign(kP1, 3);
  EXPECT_EQ(g.Take(kP1, 7), kAhead);
  g.SeekFailed(kP1);
  EXPECT_EQ(g.Take(kP1, 7), kGap);
  EXPECT_EQ(g.Take(kP1, 8), kNew);
}

// The seek back brings the same record, or one below it: the log has a gap at the state's
// offset (retention, transaction markers), and it is taken.
TEST(OffsetGuard, AGapAtTheStatesOffsetIsTakenAfterTheSeekBack) {
  OffsetGuard g;
  g.Assign(kP0, 5);
  g.Assign(kP1, -1);
  EXPECT_EQ(g.Take(kP0, 9), kAhead);
  EXPECT_EQ(g.Take(kP1, 0), kNew) << "no offset in the state: from the start";
  g.Sought(kP0, 9);
  EXPECT_EQ(g.Take(kP0, 9), kNew);
  EXPECT_EQ(g.Take(kP0, 8), kSeen);
  EXPECT_EQ(g.Next(kP0), 10);
  g.Assign(kP0, 10);
  EXPECT_EQ(g.Take(kP0, 10), kNew) << "at the state's offset: no check needed";
  EXPECT_EQ(g.Take(kP0, 15), kNew);
  g.Assign(kP0, 20);
  EXPECT_EQ(g.Take(kP0, 28), kAhead);
  g.Sought(kP0, 28);
  EXPECT_EQ(g.Take(kP0, 25), kNew) << "the seek landed; the log has a gap up to 25";
}

// The fingerprint is stored with the state's offsets and compared by later versions: fixed
// values (the steps of offset_guard.h over the key's length, its little-endian words, the
// value's, the timestamp, then MurmurHash3's finaliser, computed apart in Python), and each part
// of the record counts.
TEST(RecordFingerprint, IsFixedAndCoversKeyValueAndTimestamp) {
  const std::string value = R"({"user_id":"u1","item_id":"i1"})";
  EXPECT_EQ(RecordFingerprint("u1", value, 1'700'000'000'000), 0x9dd7d63d9ee3937bULL);
  EXPECT_EQ(RecordFingerprint("", "", -1), 0x10eaca483ba88e96ULL);
  EXPECT_NE(RecordFingerprint("u2", value, 1'700'000'000'000), RecordFingerprint("u1", value, 1'700'000'000'000));
  EXPECT_NE(RecordFingerprint("u1", value, 1'700'000'000'001), RecordFingerprint("u1", value, 1'700'000'000'000));
  EXPECT_NE(RecordFingerprint("u1", value + " ", 1'700'000'000'000),
            RecordFingerprint("u1", value, 1'700'000'000'000));
  // The lengths keep the key's and the value's bytes apart.
  EXPECT_NE(RecordFingerprint("ab", "c", 0), RecordFingerprint("a", "bc", 0));
}

}  // namespace
}  // namespace gsau::ingest
