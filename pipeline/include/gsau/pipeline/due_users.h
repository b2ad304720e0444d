// The users whose embedding record is due for publishing, as the pipeline's user publisher
// thread keeps them between flushes. Part of gsau::pipeline's implementation, in a header so that
// its tests can reach it; not an interface for other modules.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>

#include "gsau/state/state_store.h"

namespace gsau::pipeline {

// first_seq of a user marked without a click (a refresh): its record holds no batch back.
inline constexpr uint64_t kNoClickSeq = std::numeric_limits<uint64_t>::max();

// oldest_click_ms of a user marked without a click.
inline constexpr int64_t kNoClickMs = std::numeric_limits<int64_t>::max();

// Why a user's record is due: the time of its newest click, and the first state batch with a
// click of it not published yet (what a checkpoint's users_published_through must stay below;
// kNoClickSeq: a refresh, which holds nothing back).
struct DueUser {
  int64_t ts_ms = 0;
  uint64_t first_seq = 1;  // batch numbers start at 1
  bool clicked = false;    // by a click this process applied (not marked again at start-up)
  // The event time of the oldest of those clicks: the record that reflects them all is as late
  // for it as for any (freshness counts from it).
  int64_t oldest_click_ms = kNoClickMs;

  void Merge(const DueUser& other) {
    ts_ms = std::max(ts_ms, other.ts_ms);
    first_seq = std::min(first_seq, other.first_seq);
    clicked = clicked || other.clicked;
    oldest_click_ms = std::min(oldest_click_ms, other.oldest_click_ms);
  }
};

// How many entries hold each state batch back (by the first_seq of their clicks), and the oldest
// held. Not thread-safe.
class HeldBatches {
 public:
  void Add(uint64_t first_seq) { ++count_[first_seq]; }
  // One entry Add()ed with `first_seq` no longer holds it.
  void Remove(uint64_t first_seq) {
    auto it = count_.find(first_seq);
    if (--it->second == 0) count_.erase(it);
  }
  // The oldest batch held; kNoClickSeq when none is (nothing held, or refreshes only).
  uint64_t Min() const { return count_.empty() ? kNoClickSeq : count_.begin()->first; }

 private:
  std::map<uint64_t, size_t> count_;  // first_seq -> entries (kNoClickSeq included)
};

// The due set. Those who clicked are kept apart from those marked again without a click (a
// start-up, a refresh: up to every user of the state), and the batches held back are counted
// per batch, so that a flush costs in proportion to the users it looks at (every one who
// clicked, a bounded share of the others), not to the number due: a single set copied whole and
// scanned at every flush took 74 ms a flush at four million users (make bench-due-users).
//
// Not thread-safe: one owner (the user publisher thread).
class DueUsers {
 public:
  // `user` is due (again): merged into its entry if it has one. A marked user who clicks joins
  // those who clicked; one marked again keeps its place in the order.
  void Merge(state::UserId user, const DueUser& d) {
    if (auto c = clicked_.find(user); c != clicked_.end()) {
      Recount(c->second, d);
      return;
    }
    auto m = marked_.find(user);
    if (m == marked_.end()) {
      held_.Add(d.first_seq);
      if (d.clicked) {
        clicked_.emplace(user, d);
      } else {
        marked_.emplace(user, Marked{d, next_tag_});
        order_.emplace_back(user, next_tag_++);
      }
      return;
    }
    Recount(m->second.due, d);
    if (m->second.due.clicked) {
      clicked_.emplace(user, m->second.due);
      marked_.erase(m);  // its place in order_ goes stale
    }
  }

  // No longer due (published, or never publishable). Nothing when `user` is not due.
  void Erase(state::UserId user) {
    if (auto c = clicked_.find(user); c != clicked_.end()) {
      held_.Remove(c->second.first_seq);
      clicked_.erase(c);
    } else if (auto m = marked_.find(user); m != marked_.end()) {
      held_.Remove(m->second.due.first_seq);
      marked_.erase(m);
    }
    if (marked_.empty()) order_.clear();  // only stale places left
  }

  size_t size() const { return clicked_.size() + marked_.size(); }
  bool empty() const { return size() == 0; }
  size_t marked() const { return marked_.size(); }

  // `user`'s entry, or nullopt when it is not due.
  std::optional<DueUser> Find(state::UserId user) const {
    if (auto c = clicked_.find(user); c != clicked_.end()) return c->second;
    if (auto m = marked_.find(user); m != marked_.end()) return m->second.due;
    return std::nullopt;
  }

  // The smallest first_seq of the users due (the oldest batch whose users are not all handed
  // out); kNoClickSeq when none holds a batch back (nobody due, or refreshes only).
  uint64_t MinFirstSeq() const { return held_.Min(); }

  // Every user who clicked, in no particular order (a copy: publishing them erases them). As
  // many as clicked since the last flush or wait for an item: not the whole state.
  template <typename Fn>
  void ForEachClicked(Fn&& fn) const {
    for (const auto& [u, d] : clicked_) fn(u, d);
  }

  // The marked user whose turn it is (the oldest mark first), moved to the back of the order:
  // one that cannot go out yet, or whose publishing failed, comes round again after the others.
  // nullopt when none is marked. `marked()` calls in a row visit each marked user once.
  std::optional<std::pair<state::UserId, DueUser>> NextMarked() {
    while (!order_.empty()) {
      const auto [u, tag] = order_.front();
      order_.pop_front();
      auto m = marked_.find(u);
      if (m == marked_.end() || m->second.tag != tag) continue;  // published, clicked or re-marked since
      order_.emplace_back(u, tag);
      return std::make_pair(u, m->second.due);
    }
    return std::nullopt;
  }

 private:
  struct Marked {
    DueUser due;
    uint64_t tag = 0;  // which place in order_ is this entry's
  };

  void Recount(DueUser& entry, const DueUser& d) {
    const uint64_t before = entry.first_seq;
    entry.Merge(d);
    if (entry.first_seq != before) {
      held_.Remove(before);
      held_.Add(entry.first_seq);
    }
  }

  std::unordered_map<state::UserId, DueUser> clicked_;
  std::unordered_map<state::UserId, Marked> marked_;
  // Marked users in turn order, with the tag of the entry each place belongs to; places whose
  // entry is gone (or a newer one's) are dropped when they come up.
  std::deque<std::pair<state::UserId, uint64_t>> order_;
  uint64_t next_tag_ = 0;
  HeldBatches held_;  // the first_seq of each user due
};

// Which users a refresh of every user marks next, a part at a time: user ids are dense (0 ..
// users-1). From `next` up to the number of users when the pass began (at its first Next), then
// from the first user up to where it began. Users added later are not waited for: each came with
// a click, published with a model at least as new as the one the refresh is for (a pass that
// chased the live count never ended while users grew by more than a part between parts). A
// refresh asked while one is under way goes on from where that one stands, round every user of
// then again (starting again from the first user, a pass longer than the interval between
// refreshes never reached the last ones).
// Not thread-safe: one owner.
class RefreshPass {
 public:
  // Round every user again, from where the pass stands (a new pass: from the first user), up to
  // the number of users at the next Next.
  void Extend() {
    until_ = next_;
    wrapped_ = false;
    end_.reset();
  }

  // The next ids to mark, [first, first + count), at most `part` of them, of `users` users (the
  // number now); count 0 and *done once every user was marked.
  std::pair<state::UserId, size_t> Next(size_t users, size_t part, bool* done) {
    if (!end_) end_ = std::max(users, static_cast<size_t>(next_));
    if (!wrapped_ && next_ >= *end_) {
      wrapped_ = true;
      next_ = 0;
    }
    const size_t end = wrapped_ ? std::min<size_t>(until_, *end_) : *end_;
    const size_t count = std::min(std::max<size_t>(part, 1), end > next_ ? end - next_ : 0);
    const state::UserId first = next_;
    next_ = static_cast<state::UserId>(next_ + count);
    marked_ += count;
    *done = wrapped_ && next_ >= end;
    return {first, count};
  }

  // Users not marked yet, of `users` (the number now: the pass's own once it has begun).
  size_t Left(size_t users) const {
    const size_t end = end_.value_or(std::max(users, static_cast<size_t>(next_)));
    if (wrapped_) return next_ < until_ ? std::min<size_t>(until_, end) - next_ : 0;
    return (end > next_ ? end - next_ : 0) + until_;
  }
  state::UserId next() const { return next_; }
  size_t marked() const { return marked_; }

 private:
  state::UserId next_ = 0;
  state::UserId until_ = 0;
  std::optional<size_t> end_;  // the users of the lap under way (taken at its first Next)
  bool wrapped_ = false;
  size_t marked_ = 0;
};

}  // namespace gsau::pipeline
