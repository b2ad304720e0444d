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
// The record just below the next offset is known by its fingerprint (the state's, then each one
// taken): when it comes again (an assignment started one record early, or the position reset
// while reading) another record there means another log under the partition's name.
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
    kCompared,  // the record before the state's offset, fetched to be compared (CompareFirst), is
                // the one read there: skip it (read already)
    kReplaced,  // the record just below the next offset is another one than this state read
                // there: another log under the partition's name (stop)
    kCompareAgain,  // past the record to compare, before it came: seek back to Next() - 1 once, call
                    // SoughtToCompare() (or CompareFailed() when the seek fails), drop it
  };
  static constexpr int kMaxSeeks = 3;

  // The partition continues at `next` (the state's next offset; -1 when the state has none);
  // `last_record` is the fingerprint of the record at next - 1 (RecordFingerprint; 0: not known).
  // A partition the state has never read starts at offset 0, checked like any other: its
  // assignment from the beginning can be lost too, and the client then fetches from the group's
  // committed offset (another member's, in a group of several processes). A first record above 0
  // where the log's start really is higher (retention) costs one seek back.
  void Assign(const TopicPartition& tp, int64_t next, uint64_t last_record = 0) {
    Position p;
    p.next = std::max<int64_t>(next, 0);
    p.checked = false;
    p.last = p.applied_last = next > 0 ? last_record : 0;
    p.applied = next - 1;
    next_[tp] = p;
  }

  // The state now holds the partition's records up to `offset`, the last one with `fingerprint`
  // (a batch applied): that record is compared too when it comes again, also while the records
  // taken after it wait in the next batch.
  void Applied(const TopicPartition& tp, int64_t offset, uint64_t fingerprint) {
    if (auto it = next_.find(tp); it != next_.end()) {
      it->second.applied = offset;
      it->second.applied_last = fingerprint;
    }
  }

  // The consumer starts the partition one record early, at Next() - 1, whose fingerprint
  // Assign was given: that record comes first and is compared. It tells a log of the same name
  // that already reaches past the state's offset (the topic created again and refilled) from the
  // one this state read, where the offset alone cannot. False (nothing to compare) when Assign
  // had no fingerprint.
  bool CompareFirst(const TopicPartition& tp) {
    auto it = next_.find(tp);
    if (it == next_.end() || it->second.last == 0) return false;
    it->second.compare = true;
    return true;
  }
  bool Comparing(const TopicPartition& tp) const {
    auto it = next_.find(tp);
    return it != next_.end() && it->second.compare;
  }

  // The partition left this process: a later assignment says where it continues.
  void Revoke(const TopicPartition& tp) { next_.erase(tp); }

  // A partition is checked once a record at its next offset arrives, or one at or below the
  // highest dropped for a seek (the seek landed and the log has a gap there: retention,
  // transaction markers). One above it after a seek means the seek was lost (a pause or resume
  // in librdkafka < 2.4 can reset the position again): sought again, up to kMaxSeeks times.
  // A record at Next() - 1 delivered again while reading (the position reset to an earlier
  // one) is compared with the one taken there too, and so is one at the state's last offset
  // (Applied). `fingerprint`: the record's
  // RecordFingerprint.
  Verdict Take(const TopicPartition& tp, int64_t offset, uint64_t fingerprint) {
    auto& p = next_.try_emplace(tp, Position{-1, true}).first->second;
    if (p.compare && offset >= p.next - 1) {
      if (offset == p.next - 1) {
        p.compare = false;
        return fingerprint == p.last ? Verdict::kCompared : Verdict::kReplaced;
      }
      // Past it: that record is gone (compaction), or the early position was lost (#2190: the
      // client fetches from the group's committed offset, which a member that read another log
      // may have moved past it). One seek back tells which; then it is taken as gone.
      if (!p.compare_sought) return Verdict::kCompareAgain;
      p.compare = false;
    }
    if (offset < p.next) {
      if (offset == p.next - 1 && p.last != 0 && fingerprint != p.last) return Verdict::kReplaced;
      if (offset == p.applied && p.applied_last != 0 && fingerprint != p.applied_last) return Verdict::kReplaced;
      return Verdict::kSeen;
    }
    Verdict v = Verdict::kNew;
    if (!p.checked && offset > p.next && offset > p.dropped) {
      if (p.seeks < kMaxSeeks) return Verdict::kAhead;
      v = Verdict::kGap;
    }
    p.next = offset + 1;
    p.last = fingerprint;
    p.checked = true;
    return v;
  }

  // Whether the partition is read on from Next(): assigned, and a record taken since (its
  // start checked).
  bool Checked(const TopicPartition& tp) const {
    auto it = next_.find(tp);
    return it != next_.end() && it->second.checked && it->second.next >= 0;
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

  // The seek back to the record to compare (kCompareAgain) was made; or it failed, and the
  // comparison is given up.
  void SoughtToCompare(const TopicPartition& tp) {
    if (auto it = next_.find(tp); it != next_.end()) it->second.compare_sought = true;
  }
  void CompareFailed(const TopicPartition& tp) {
    if (auto it = next_.find(tp); it != next_.end()) it->second.compare = false;
  }

 private:
  struct Position {
    int64_t next = -1;
    bool checked = true;     // false from an assignment with an offset until its check
    int64_t dropped = -1;    // the highest record dropped for a seek back
    int seeks = 0;
    uint64_t last = 0;       // the fingerprint of the record at next - 1 (0: not known)
    int64_t applied = -1;    // the state's last record (Applied), and its fingerprint
    uint64_t applied_last = 0;
    bool compare = false;    // the record at next - 1 comes first, to be compared (CompareFirst)
    bool compare_sought = false;  // sought back to it once already
  };
  std::map<TopicPartition, Position> next_;
};

}  // namespace gsau::ingest
