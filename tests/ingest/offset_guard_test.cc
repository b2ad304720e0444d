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
constexpr auto kCompared = OffsetGuard::Verdict::kCompared;
constexpr auto kReplaced = OffsetGuard::Verdict::kReplaced;
constexpr auto kCompareAgain = OffsetGuard::Verdict::kCompareAgain;

// A record of the log the state read: its fingerprint follows from its offset.
uint64_t Read(int64_t offset) { return 0x1000 + static_cast<uint64_t>(offset); }
// A record of another log under the same name, at the same offset.
uint64_t Other(int64_t offset) { return 0x9000 + static_cast<uint64_t>(offset); }

OffsetGuard::Verdict Take(OffsetGuard& g, const TopicPartition& tp, int64_t offset) {
  return g.Take(tp, offset, Read(offset));
}

TEST(OffsetGuard, SkipsRecordsBelowTheStatesOffsetAndTakesTheRest) {
  OffsetGuard g;
  g.Assign(kP0, 5);
  EXPECT_EQ(kSeen, Take(g, kP0, 0));
  EXPECT_EQ(kSeen, Take(g, kP0, 4));
  EXPECT_EQ(kNew, Take(g, kP0, 5));
  EXPECT_EQ(kSeen, Take(g, kP0, 5)) << "the same record twice";
  EXPECT_EQ(kNew, Take(g, kP0, 6));
  EXPECT_EQ(kNew, Take(g, kP0, 9)) << "offsets have gaps (compaction, transaction markers)";
  EXPECT_EQ(kSeen, Take(g, kP0, 7)) << "a fetch restarted from a stale position";
  EXPECT_EQ(kSeen, Take(g, kP0, 9));
  EXPECT_EQ(kNew, Take(g, kP0, 10));
}

// A partition the state has never read is checked from offset 0: a first record above it is
// sought back. The assignment from the beginning can be lost (librdkafka #2190) and the client
// then starts at the group's committed offset, another member's: the records before it would be
// skipped without a trace (they were taken as the first ones).
TEST(OffsetGuard, WithoutAStoredOffsetThePartitionIsCheckedFromItsStart) {
  OffsetGuard g;
  g.Assign(kP0, -1);
  EXPECT_EQ(g.Next(kP0), 0);
  EXPECT_EQ(kAhead, Take(g, kP0, 500));  // the group's committed offset
  g.Sought(kP0, 500);
  EXPECT_EQ(kNew, Take(g, kP0, 0));
  EXPECT_EQ(kNew, Take(g, kP0, 1));
  // Retention removed the partition's start: the seek back lands on the log's first record.
  g.Assign(kP1, -1);
  EXPECT_EQ(kAhead, Take(g, kP1, 100));
  g.Sought(kP1, 100);
  EXPECT_EQ(kNew, Take(g, kP1, 100));
  EXPECT_EQ(kSeen, Take(g, kP1, 3));
  EXPECT_EQ(kNew, Take(g, kP1, 101));
}

TEST(OffsetGuard, PartitionsAreIndependent) {
  OffsetGuard g;
  g.Assign(kP0, 10);
  g.Assign(kP1, 0);
  EXPECT_EQ(kNew, Take(g, kP1, 0));
  EXPECT_EQ(kNew, Take(g, kP1, 1));
  EXPECT_EQ(kSeen, Take(g, kP0, 1));
  EXPECT_EQ(kNew, Take(g, kP0, 10));
  EXPECT_EQ(kSeen, Take(g, kP1, 1));
  const TopicPartition never_assigned{"other", 0};
  EXPECT_EQ(kNew, Take(g, never_assigned, 5));
  EXPECT_EQ(kSeen, Take(g, never_assigned, 5));
}

TEST(OffsetGuard, ANewAssignmentContinuesWhereTheStateSays) {
  OffsetGuard g;
  g.Assign(kP0, 0);
  for (int64_t o = 0; o < 20; ++o) ASSERT_EQ(kNew, Take(g, kP0, o));
  g.Revoke(kP0);
  // Assigned again from a state that holds less (a rollback to an older checkpoint): the
  // records after the state's offset are new to this state.
  g.Assign(kP0, 12);
  EXPECT_EQ(kSeen, Take(g, kP0, 11));
  EXPECT_EQ(kNew, Take(g, kP0, 12));
}

// A start above the state's offset (a client that lost the assigned offset and fetched from
// the group's committed one, ahead of the state) is not taken: the partition is sought back,
// and then the records from the state's offset on are taken.
TEST(OffsetGuard, AFirstRecordAboveTheStatesOffsetIsSoughtBack) {
  const auto kGap = OffsetGuard::Verdict::kGap;
  OffsetGuard g;
  g.Assign(kP0, 5);
  EXPECT_EQ(Take(g, kP0, 9), kAhead);
  EXPECT_EQ(Take(g, kP0, 10), kAhead) << "until the seek back";
  EXPECT_EQ(g.Next(kP0), 5);
  g.Sought(kP0, 10);
  EXPECT_EQ(Take(g, kP0, 5), kNew);
  EXPECT_EQ(Take(g, kP0, 6), kNew);
  EXPECT_EQ(Take(g, kP0, 9), kNew) << "a gap after the first record is taken";
  g.Revoke(kP0);
  g.Assign(kP0, 20);
  EXPECT_EQ(Take(g, kP0, 30), kAhead) << "checked again at each assignment";
  // A seek that did not land (a pause reset the position again): the next record is still
  // above the one dropped, so the partition is sought again, up to kMaxSeeks times; then the
  // record is taken and the records before it are said to be skipped.
  g.Sought(kP0, 30);
  EXPECT_EQ(Take(g, kP0, 31), kAhead);
  g.Sought(kP0, 31);
  EXPECT_EQ(Take(g, kP0, 32), kAhead);
  g.Sought(kP0, 32);
  EXPECT_EQ(Take(g, kP0, 33), kGap) << OffsetGuard::kMaxSeeks << " seeks made";
  EXPECT_EQ(g.Next(kP0), 34);
  // A failed seek: taken at once, as a gap.
  g.Assign(kP1, 3);
  EXPECT_EQ(Take(g, kP1, 7), kAhead);
  g.SeekFailed(kP1);
  EXPECT_EQ(Take(g, kP1, 7), kGap);
  EXPECT_EQ(Take(g, kP1, 8), kNew);
}

// The seek back brings the same record, or one below it: the log has a gap at the state's
// offset (retention, transaction markers), and it is taken.
TEST(OffsetGuard, AGapAtTheStatesOffsetIsTakenAfterTheSeekBack) {
  OffsetGuard g;
  g.Assign(kP0, 5);
  g.Assign(kP1, -1);
  EXPECT_EQ(Take(g, kP0, 9), kAhead);
  EXPECT_EQ(Take(g, kP1, 0), kNew) << "no offset in the state: from the start";
  g.Sought(kP0, 9);
  EXPECT_EQ(Take(g, kP0, 9), kNew);
  EXPECT_EQ(Take(g, kP0, 8), kSeen);
  EXPECT_EQ(g.Next(kP0), 10);
  g.Assign(kP0, 10);
  EXPECT_EQ(Take(g, kP0, 10), kNew) << "at the state's offset: no check needed";
  EXPECT_EQ(Take(g, kP0, 15), kNew);
  g.Assign(kP0, 20);
  EXPECT_EQ(Take(g, kP0, 28), kAhead);
  g.Sought(kP0, 28);
  EXPECT_EQ(Take(g, kP0, 25), kNew) << "the seek landed; the log has a gap up to 25";
}

// An assignment started one record early (the state knows the record before its offset): the
// record there is compared, not taken; another one there is another log of the same name.
TEST(OffsetGuard, TheRecordBeforeTheStatesOffsetIsComparedWhenFetchedFirst) {
  OffsetGuard g;
  g.Assign(kP0, 10, Read(9));
  g.Assign(kP1, 4, Read(3));
  EXPECT_FALSE(g.Comparing(kP0));
  ASSERT_TRUE(g.CompareFirst(kP0));
  ASSERT_TRUE(g.CompareFirst(kP1));
  EXPECT_TRUE(g.Comparing(kP0));
  EXPECT_EQ(Take(g, kP0, 9), kCompared);
  EXPECT_FALSE(g.Comparing(kP0));
  EXPECT_TRUE(g.Comparing(kP1)) << "the other partition's record has not come";
  g.Revoke(kP1);
  EXPECT_FALSE(g.Comparing(kP1));
  EXPECT_EQ(g.Next(kP0), 10) << "compared, not taken";
  EXPECT_EQ(Take(g, kP0, 10), kNew);
  // The topic created again and refilled past the offset.
  g.Revoke(kP0);
  g.Assign(kP0, 10, Read(9));
  ASSERT_TRUE(g.CompareFirst(kP0));
  EXPECT_EQ(g.Take(kP0, 9, Other(9)), kReplaced);
  // Nothing to compare without the fingerprint (a state written before it was kept), or at 0.
  g.Assign(kP1, 10);
  EXPECT_FALSE(g.CompareFirst(kP1));
  g.Assign(kP1, 0, Read(-1));
  EXPECT_FALSE(g.CompareFirst(kP1));
  EXPECT_EQ(Take(g, kP1, 0), kNew);
}

// A first record past the one to compare: that record is gone (compaction) or the early
// position was lost (librdkafka #2190). One seek back to it, then it is taken as gone; a
// record below it is a stale fetch, skipped while the comparison waits.
TEST(OffsetGuard, PastTheRecordToCompareItIsSoughtOnceThenTakenAsGone) {
  OffsetGuard g;
  g.Assign(kP0, 10, Read(9));
  ASSERT_TRUE(g.CompareFirst(kP0));
  EXPECT_EQ(Take(g, kP0, 3), kSeen);
  EXPECT_TRUE(g.Comparing(kP0));
  EXPECT_EQ(Take(g, kP0, 14), kCompareAgain);
  EXPECT_EQ(Take(g, kP0, 15), kCompareAgain) << "until the seek";
  g.SoughtToCompare(kP0);
  EXPECT_EQ(Take(g, kP0, 9), kCompared) << "the seek brought it";
  EXPECT_EQ(Take(g, kP0, 10), kNew);
  // Compacted away: the seek back lands past it again; then the partition is checked as usual
  // (a first record above the state's offset is sought back to it).
  g.Assign(kP0, 20, Read(19));
  ASSERT_TRUE(g.CompareFirst(kP0));
  EXPECT_EQ(Take(g, kP0, 21), kCompareAgain);
  g.SoughtToCompare(kP0);
  EXPECT_EQ(Take(g, kP0, 21), kAhead);
  g.Sought(kP0, 21);
  EXPECT_EQ(Take(g, kP0, 21), kNew) << "the log's next record after the state's offset";
  EXPECT_FALSE(g.Comparing(kP0));
  // A failed seek gives the comparison up: the record at the state's offset is taken.
  g.Assign(kP1, 5, Read(4));
  ASSERT_TRUE(g.CompareFirst(kP1));
  EXPECT_EQ(Take(g, kP1, 5), kCompareAgain);
  g.CompareFailed(kP1);
  EXPECT_EQ(Take(g, kP1, 5), kNew);
}

// While reading, a record delivered again just below the next offset (the position reset to an
// earlier one: a topic created again under a running ingest) is compared with the one taken
// there: the state's record at first, then each record taken.
TEST(OffsetGuard, ARecordDeliveredAgainJustBelowTheNextOffsetIsCompared) {
  OffsetGuard g;
  g.Assign(kP0, 10, Read(9));
  EXPECT_EQ(Take(g, kP0, 9), kSeen) << "the same record again";
  EXPECT_EQ(g.Take(kP0, 9, Other(9)), kReplaced);
  EXPECT_EQ(g.Take(kP0, 8, Other(8)), kSeen) << "only the record just below is known";
  EXPECT_EQ(Take(g, kP0, 10), kNew);
  EXPECT_EQ(Take(g, kP0, 11), kNew);
  EXPECT_EQ(g.Take(kP0, 11, Other(11)), kReplaced) << "the last record taken";
  EXPECT_EQ(g.Take(kP0, 10, Other(10)), kSeen) << "neither the last taken nor the state's";
  // Without a fingerprint from the state, the records taken give one.
  g.Assign(kP1, 10);
  EXPECT_EQ(g.Take(kP1, 9, Other(9)), kSeen);
  EXPECT_EQ(Take(g, kP1, 10), kNew);
  EXPECT_EQ(g.Take(kP1, 10, Other(10)), kReplaced);
  // While the records taken wait in a batch, the state's last record is compared too; once a
  // batch is applied, its last record is the state's.
  g.Assign(kP0, 20, Read(19));
  EXPECT_EQ(Take(g, kP0, 20), kNew);
  EXPECT_EQ(Take(g, kP0, 21), kNew);
  EXPECT_EQ(g.Take(kP0, 19, Other(19)), kReplaced) << "the state's record, a batch pending";
  EXPECT_EQ(Take(g, kP0, 19), kSeen);
  g.Applied(kP0, 21, Read(21));
  EXPECT_EQ(g.Take(kP0, 19, Other(19)), kSeen) << "no longer the state's last";
  EXPECT_EQ(g.Take(kP0, 21, Other(21)), kReplaced);
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
