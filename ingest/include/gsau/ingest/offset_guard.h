// OffsetGuard: the next offset each assigned partition should deliver, so that a record this
// process has already taken (or its state already holds) is recognised when the client hands
// it over again, and a start above the state's offset is checked before records are skipped.
//
// On assignment the consumer seeks to the state's offsets, so a record below them should never
// arrive; librdkafka versions before 2.4 can still restart a fetch from a stale position after a
// cooperative rebalance or a resume (librdkafka #4636, #4686) or lose an assign offset to a
// pause or resume in the same callback (#2190), and then fetch from the group's committed
// offset. A record below would otherwise be applied twice, or make the state refuse a batch
// whose offsets go back: it is skipped. A first record above the state's offset (a committed
// offset ahead of the state: a rollback's, or an emptied state's) would skip the records between
// without a trace: the partition is sought back once. Later records above the expected offset
// are taken: offsets have gaps (compaction, transaction markers, retention).
//
// Thread safety: none; Run()'s thread only (the rebalance callback runs there too).
#pragma once

#include <cstdint>
#include <map>

#include "gsau/common/event.h"

namespace gsau::ingest {

class OffsetGuard {
 public:
  enum class Verdict {
    kNew,    // take it: the partition's next offset moves past it
    kSeen,   // below the next offset: already taken, skip it
    kAhead,  // the first record since the assignment, above it: seek back to Next(), drop it
  };

  // The partition continues at `next` (the state's next offset; -1 when the state has none,
  // i.e. from wherever the client starts).
  void Assign(const TopicPartition& tp, int64_t next) { next_[tp] = {next, next < 0}; }

  // The partition left this process: a later assignment says where it continues.
  void Revoke(const TopicPartition& tp) { next_.erase(tp); }

  Verdict Take(const TopicPartition& tp, int64_t offset) {
    auto& p = next_.try_emplace(tp, Position{-1, true}).first->second;
    if (offset < p.next) return Verdict::kSeen;
    if (!p.checked && offset > p.next) return Verdict::kAhead;
    p.next = offset + 1;
    p.checked = true;
    return Verdict::kNew;
  }

  // Where the partition continues (-1: wherever the client starts).
  int64_t Next(const TopicPartition& tp) const {
    auto it = next_.find(tp);
    return it == next_.end() ? -1 : it->second.next;
  }

  // After the seek back of a kAhead (made or failed): the next record is taken whatever its
  // offset above Next() (the log has a gap there).
  void Checked(const TopicPartition& tp) {
    if (auto it = next_.find(tp); it != next_.end()) it->second.checked = true;
  }

 private:
  struct Position {
    int64_t next = -1;
    bool checked = true;  // false until the first record at or after an assignment's offset
  };
  std::map<TopicPartition, Position> next_;
};

}  // namespace gsau::ingest
