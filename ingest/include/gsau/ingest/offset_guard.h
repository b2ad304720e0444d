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

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <map>
#include <string_view>

#include "gsau/common/event.h"

namespace gsau::ingest {

// A record's fingerprint (PartitionOffset::last_record) over its key, value and timestamp
// (ms; -1 when it has none), never 0 (0 means none known). Stored with the state's offsets, so
// it must not change across versions. Taken of every record consumed: eight bytes a step (~25
// ns for a 100-byte record; byte-wise FNV-1a took ~140). Each step h -> (h ^ w) * odd is a
// bijection of h, so records of the same lengths that differ in one word always differ here.
inline uint64_t RecordFingerprint(std::string_view key, std::string_view value, int64_t timestamp_ms) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const auto step = [&h](uint64_t w) { h = (h ^ w) * 0x9e3779b97f4a7c15ULL; };
  const auto bytes = [&step](std::string_view s) {
    step(s.size());
    size_t k = 0;
    for (; k + 8 <= s.size(); k += 8) {
      uint64_t w = 0;
      if constexpr (std::endian::native == std::endian::little) {
        std::memcpy(&w, s.data() + k, 8);
      } else {
        for (int b = 0; b < 8; ++b) w |= static_cast<uint64_t>(static_cast<unsigned char>(s[k + b])) << (8 * b);
      }
      step(w);
    }
    if (k < s.size()) {
      uint64_t w = 0;
      for (int b = 0; k + b < s.size(); ++b) {
        w |= static_cast<uint64_t>(static_cast<unsigned char>(s[k + b])) << (8 * b);
      }
      step(w);
    }
  };
  bytes(key);
  bytes(value);
  step(static_cast<uint64_t>(timestamp_ms));
  // MurmurHash3's finaliser: every input bit reaches every output bit.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h == 0 ? 1 : h;
}

class OffsetGuard {
 public:
  enum class Verdict {
    kNew,    // take it: the partition's next offset moves past it
    kSeen,   // below the next offset: already taken, skip it
    kAhead,  // above the next offset before the partition is checked: seek back to Next(), call
             // Sought(), drop it (it comes again)
    kGap,    // take it, but the records from Next() up to it never came, though sought back
             // kMaxSeeks times: lost to this state (say so)
  };
  static constexpr int kMaxSeeks = 3;

  // The partition continues at `next` (the state's next offset; -1 when the state has none).
  // A partition the state has never read starts at offset 0, checked like any other: its
  // assignment from the beginning can be lost too, and the client then fetches from the group's
  // committed offset (another member's, in a group of several processes). A first record above 0
  // where the log's start really is higher (retention) costs one seek back.
  void Assign(const TopicPartition& tp, int64_t next) { next_[tp] = Position{std::max<int64_t>(next, 0), false}; }

  // The partition left this process: a later assignment says where it continues.
  void Revoke(const TopicPartition& tp) { next_.erase(tp); }

  // A partition is checked once a record at its next offset arrives, or one at or below the
  // highest dropped for a seek (the seek landed and the log has a gap there: retention,
  // transaction markers). One above it after a seek means the seek was lost (a pause or resume
  // in librdkafka < 2.4 can reset the position again): sought again, up to kMaxSeeks times.
  Verdict Take(const TopicPartition& tp, int64_t offset) {
    auto& p = next_.try_emplace(tp, Position{-1, true}).first->second;
    if (offset < p.next) return Verdict::kSeen;
    Verdict v = Verdict::kNew;
    if (!p.checked && offset > p.next && offset > p.dropped) {
      if (p.seeks < kMaxSeeks) return Verdict::kAhead;
      v = Verdict::kGap;
    }
    p.next = offset + 1;
    p.checked = true;
    return v;
  }

  // Where the partition continues (-1: a partition never assigned).
  int64_t Next(const TopicPartition& tp) const {
    auto it = next_.find(tp);
    return it == next_.end() ? -1 : it->second.next;
  }

  // The seek back for the kAhead record at `offset` was made.
  void Sought(const TopicPartition& tp, int64_t offset) {
    if (auto it = next_.find(tp); it != next_.end()) {
      it->second.dropped = std::max(it->second.dropped, offset);
      ++it->second.seeks;
    }
  }

  // The seek back failed: no more tries, the next record is taken (kGap when above Next()).
  void SeekFailed(const TopicPartition& tp) {
    if (auto it = next_.find(tp); it != next_.end()) it->second.seeks = kMaxSeeks;
  }

 private:
  struct Position {
    int64_t next = -1;
    bool checked = true;     // false from an assignment with an offset until its check
    int64_t dropped = -1;    // the highest record dropped for a seek back
    int seeks = 0;
  };
  std::map<TopicPartition, Position> next_;
};

}  // namespace gsau::ingest
