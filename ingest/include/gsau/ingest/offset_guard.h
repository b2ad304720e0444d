// OffsetGuard: the next offset each assigned partition should deliver, so that a record this
// process has already taken (or its state already holds) is recognised when the client hands
// it over again.
//
// On assignment the consumer seeks to the state's offsets, so a record below them should never
// arrive; librdkafka versions before 2.4 can still restart a fetch from a stale position after a
// cooperative rebalance (librdkafka #4636) or lose an assign offset to a pause in the same
// callback (#2190). Such a record would otherwise be applied twice, or make the state refuse a
// batch whose offsets go back. Records above the expected offset are taken: offsets have gaps
// (compaction, transaction markers).
//
// Thread safety: none; Run()'s thread only (the rebalance callback runs there too).
#pragma once

#include <cstdint>
#include <map>

#include "gsau/common/event.h"

namespace gsau::ingest {

class OffsetGuard {
 public:
  // The partition continues at `next` (the state's next offset; -1 when the state has none,
  // i.e. from wherever the client starts).
  void Assign(const TopicPartition& tp, int64_t next) { next_[tp] = next; }

  // The partition left this process: a later assignment says where it continues.
  void Revoke(const TopicPartition& tp) { next_.erase(tp); }

  // True for a new record (the partition's next offset moves past it); false for one below
  // the next offset: already taken, to be skipped.
  bool Take(const TopicPartition& tp, int64_t offset) {
    auto [it, inserted] = next_.try_emplace(tp, -1);
    if (offset < it->second) return false;
    it->second = offset + 1;
    return true;
  }

 private:
  std::map<TopicPartition, int64_t> next_;
};

}  // namespace gsau::ingest
