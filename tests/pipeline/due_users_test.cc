// The user publisher's due set: what a flush looks at, in which order, and which state batch it
// still holds back, against a plain map kept beside it.
#include "gsau/pipeline/due_users.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <vector>

namespace gsau::pipeline {
namespace {

DueUser Click(int64_t ts_ms, uint64_t seq) { return {ts_ms, seq, /*clicked=*/true, ts_ms}; }
DueUser StartUp(int64_t ts_ms) { return {ts_ms, 1, false}; }
DueUser Refresh(int64_t ts_ms) { return {ts_ms, kNoClickSeq, false}; }

std::set<state::UserId> Clicked(const DueUsers& due) {
  std::set<state::UserId> out;
  due.ForEachClicked([&](state::UserId u, const DueUser& d) {
    EXPECT_TRUE(d.clicked);
    out.insert(u);
  });
  return out;
}

// marked() calls of NextMarked, in the order they come.
std::vector<state::UserId> Turns(DueUsers& due) {
  std::vector<state::UserId> out;
  for (size_t k = 0, n = due.marked(); k < n; ++k) {
    auto next = due.NextMarked();
    EXPECT_TRUE(next.has_value());
    if (next) out.push_back(next->first);
  }
  return out;
}

TEST(DueUsers, EmptyHoldsNothingBack) {
  DueUsers due;
  EXPECT_TRUE(due.empty());
  EXPECT_EQ(due.MinFirstSeq(), kNoClickSeq);
  EXPECT_FALSE(due.NextMarked().has_value());
  EXPECT_FALSE(due.Find(3).has_value());
}

TEST(DueUsers, MarkedUsersComeInTurnOldestMarkFirst) {
  DueUsers due;
  for (state::UserId u : {7u, 3u, 9u, 1u}) due.Merge(u, Refresh(100));
  EXPECT_EQ(due.marked(), 4u);
  EXPECT_EQ(Turns(due), (std::vector<state::UserId>{7, 3, 9, 1}));
  // Two taken and not published: they come round again after the other two.
  EXPECT_EQ(due.NextMarked()->first, 7u);
  EXPECT_EQ(due.NextMarked()->first, 3u);
  EXPECT_EQ(Turns(due), (std::vector<state::UserId>{9, 1, 7, 3}));
  EXPECT_TRUE(Clicked(due).empty());
}

TEST(DueUsers, AClickMovesAMarkedUserToThoseWhoClicked) {
  DueUsers due;
  due.Merge(1, StartUp(100));
  due.Merge(2, StartUp(200));
  due.Merge(2, Click(250, 8));
  EXPECT_EQ(due.size(), 2u);
  EXPECT_EQ(due.marked(), 1u);
  EXPECT_EQ(Clicked(due), (std::set<state::UserId>{2}));
  const auto two = due.Find(2);
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->ts_ms, 250);
  EXPECT_EQ(two->first_seq, 1u);  // the start-up's hold is kept: its record has not gone out
  EXPECT_TRUE(two->clicked);
  // Its place among the marked is gone: user 1 alone takes turns.
  EXPECT_EQ(Turns(due), (std::vector<state::UserId>{1}));
  // A later mark without a click leaves it with those who clicked.
  due.Merge(2, Refresh(300));
  EXPECT_EQ(Clicked(due), (std::set<state::UserId>{2}));
  EXPECT_EQ(due.Find(2)->ts_ms, 300);
  EXPECT_EQ(due.marked(), 1u);
}

// A record reflecting several clicks is as late for the oldest as for any: freshness counts
// from it (from the newest, a click that waited 30 s for its item showed as the next click's
// 0.1 s). Marks without a click have no click time to give.
TEST(DueUsers, AnEntryKeepsItsNewestAndItsOldestClick) {
  DueUsers due;
  due.Merge(4, Click(500, 3));
  due.Merge(4, Click(200, 4));  // events need not come in time order
  due.Merge(4, Click(900, 5));
  due.Merge(4, Refresh(0));
  ASSERT_TRUE(due.Find(4).has_value());
  EXPECT_EQ(due.Find(4)->ts_ms, 900);
  EXPECT_EQ(due.Find(4)->oldest_click_ms, 200);
  due.Merge(5, StartUp(700));
  EXPECT_EQ(due.Find(5)->oldest_click_ms, kNoClickMs);
  due.Merge(5, Click(800, 6));
  EXPECT_EQ(due.Find(5)->oldest_click_ms, 800) << "a start-up's session time is no click";
  due.Erase(4);
  due.Merge(4, Click(1000, 7));
  EXPECT_EQ(due.Find(4)->oldest_click_ms, 1000) << "a published entry's clicks are not carried on";
}

TEST(DueUsers, MarkedAgainKeepsItsPlace) {
  DueUsers due;
  due.Merge(5, Refresh(1));
  due.Merge(6, Refresh(1));
  due.Merge(5, StartUp(2));  // a start-up's hold over a refresh
  EXPECT_EQ(Turns(due), (std::vector<state::UserId>{5, 6}));
  EXPECT_EQ(due.Find(5)->first_seq, 1u);
  EXPECT_EQ(due.MinFirstSeq(), 1u);
}

TEST(DueUsers, ErasedUsersLeaveTheTurnsAndTheHold) {
  DueUsers due;
  due.Merge(1, StartUp(10));
  due.Merge(2, Click(20, 5));
  due.Merge(3, Refresh(30));
  EXPECT_EQ(due.MinFirstSeq(), 1u);
  due.Erase(1);
  EXPECT_EQ(due.MinFirstSeq(), 5u);
  EXPECT_EQ(Turns(due), (std::vector<state::UserId>{3}));
  due.Erase(2);
  EXPECT_EQ(due.MinFirstSeq(), kNoClickSeq);  // a refresh holds nothing back
  due.Erase(3);
  due.Erase(3);  // not due: nothing
  EXPECT_TRUE(due.empty());
  EXPECT_FALSE(due.NextMarked().has_value());
  // Erased, then marked again: one turn, not two.
  due.Merge(3, Refresh(40));
  due.Merge(4, Refresh(40));
  due.Erase(3);
  due.Merge(3, Refresh(50));
  EXPECT_EQ(Turns(due), (std::vector<state::UserId>{4, 3}));
}

TEST(DueUsers, ClicksHoldTheirOldestBatch) {
  DueUsers due;
  due.Merge(1, Click(10, 7));
  due.Merge(1, Click(20, 9));
  due.Merge(2, Click(20, 8));
  EXPECT_EQ(due.MinFirstSeq(), 7u);
  due.Erase(1);
  EXPECT_EQ(due.MinFirstSeq(), 8u);
}

// Random operations against a plain map: the set, each entry, the hold, and that marked()
// turns visit every marked user once, the oldest place first.
TEST(DueUsers, AgreesWithAPlainMapOverRandomOperations) {
  std::mt19937_64 rng(2020);
  for (int trial = 0; trial < 20; ++trial) {
    DueUsers due;
    std::map<state::UserId, DueUser> ref;
    const auto users = static_cast<state::UserId>(5 + trial * 3);
    std::uniform_int_distribution<state::UserId> pick(0, users - 1);
    for (int op = 0; op < 3000; ++op) {
      const state::UserId u = pick(rng);
      const int what = static_cast<int>(rng() % 10);
      if (what < 2) {
        due.Erase(u);
        ref.erase(u);
      } else if (what < 3) {
        if (auto next = due.NextMarked()) {
          ASSERT_TRUE(ref.count(next->first));
          EXPECT_FALSE(ref[next->first].clicked);
          EXPECT_EQ(next->second.ts_ms, ref[next->first].ts_ms);
        } else {
          EXPECT_TRUE(std::all_of(ref.begin(), ref.end(), [](const auto& e) { return e.second.clicked; }));
        }
      } else {
        const DueUser d = what < 5   ? Click(static_cast<int64_t>(rng() % 1000), 1 + rng() % 50)
                          : what < 7 ? StartUp(static_cast<int64_t>(rng() % 1000))
                                     : Refresh(static_cast<int64_t>(rng() % 1000));
        due.Merge(u, d);
        auto [it, inserted] = ref.emplace(u, d);
        if (!inserted) it->second.Merge(d);
      }
      ASSERT_EQ(due.size(), ref.size());
      uint64_t min_seq = kNoClickSeq;
      std::set<state::UserId> clicked;
      size_t marked = 0;
      for (const auto& [v, d] : ref) {
        min_seq = std::min(min_seq, d.first_seq);
        if (d.clicked) clicked.insert(v);
        marked += d.clicked ? 0 : 1;
        const auto got = due.Find(v);
        ASSERT_TRUE(got.has_value());
        EXPECT_EQ(got->ts_ms, d.ts_ms);
        EXPECT_EQ(got->first_seq, d.first_seq);
        EXPECT_EQ(got->clicked, d.clicked);
        EXPECT_EQ(got->oldest_click_ms, d.oldest_click_ms);
      }
      ASSERT_EQ(due.MinFirstSeq(), min_seq);
      ASSERT_EQ(Clicked(due), clicked);
      ASSERT_EQ(due.marked(), marked);
      if (op % 100 == 99) {
        std::vector<state::UserId> turns = Turns(due);
        std::set<state::UserId> once(turns.begin(), turns.end());
        EXPECT_EQ(once.size(), turns.size());
        EXPECT_EQ(once.size(), marked);
      }
    }
  }
}

// Marks of a refresh pass until it is done, `users(k)` users at the k-th part; each id's count.
std::map<state::UserId, int> RunPass(RefreshPass& pass, size_t part, const std::function<size_t(int)>& users,
                                     int max_parts = 1000) {
  std::map<state::UserId, int> marked;
  bool done = false;
  for (int k = 0; !done && k < max_parts; ++k) {
    const size_t n = users(k);
    const size_t left = pass.Left(n);
    const auto [first, count] = pass.Next(n, part, &done);
    EXPECT_LE(count, part);
    EXPECT_EQ(pass.Left(n), left - count);
    for (size_t i = 0; i < count; ++i) ++marked[static_cast<state::UserId>(first + i)];
  }
  EXPECT_TRUE(done) << "the pass did not end";
  return marked;
}

TEST(RefreshPass, MarksEveryUserOnceInParts) {
  for (size_t part : {1u, 3u, 10u, 64u}) {
    RefreshPass pass;
    EXPECT_EQ(pass.Left(10), 10u);
    const auto marked = RunPass(pass, part, [](int) { return size_t{10}; });
    ASSERT_EQ(marked.size(), 10u) << part;
    for (const auto& [u, n] : marked) EXPECT_EQ(n, 1) << "user " << u << ", parts of " << part;
    EXPECT_EQ(marked.begin()->first, 0u);
    EXPECT_EQ(pass.marked(), 10u);
  }
  RefreshPass empty;
  EXPECT_TRUE(RunPass(empty, 5, [](int) { return size_t{0}; }).empty());
}

// Users added during the pass are left to their clicks (each new user came with one), so a pass
// ends however fast users are added (chasing the live count, it never ended while they grew by
// more than a part between parts); one asked part-way goes round every user from there, the
// users added before it included (a count of the users at the first request missed them).
TEST(RefreshPass, EndsWhileUsersGrowAndGoesRoundAgainWhenExtended) {
  RefreshPass pass;
  auto grown = RunPass(pass, 4, [](int k) { return size_t(10 + k / 2); });
  EXPECT_EQ(grown.size(), 10u);
  for (state::UserId u = 0; u < 10; ++u) EXPECT_EQ(grown[u], 1) << u;
  RefreshPass outrun;  // 8 users more at every part of 4
  const auto reached = RunPass(outrun, 4, [](int k) { return size_t(10 + 8 * k); }, 50);
  EXPECT_EQ(reached.size(), 10u);

  RefreshPass extended;
  bool done = false;
  for (int k = 0; k < 3; ++k) extended.Next(80, 20, &done);  // users 0..59 of 80 marked
  ASSERT_FALSE(done);
  EXPECT_EQ(extended.next(), 60u);
  extended.Extend();
  EXPECT_EQ(extended.Left(100), 100u);
  // 100 users when it goes on (20 of them added since its first part), 105 from its next part.
  std::map<state::UserId, int> second = RunPass(extended, 20, [](int k) { return size_t(k == 0 ? 100 : 105); });
  for (state::UserId u = 0; u < 100; ++u) EXPECT_EQ(second[u], 1) << "user " << u << " after the extension";
  EXPECT_EQ(second.size(), 100u);
  // Extended again after wrapping round, part-way through the lap back to where it was extended
  // first: from there round every user once more.
  RefreshPass twice;
  for (int k = 0; k < 3; ++k) twice.Next(50, 10, &done);  // 0..29
  twice.Extend();                                          // round to 30 again
  for (int k = 0; k < 3; ++k) twice.Next(50, 10, &done);  // 30..49, wrapped, then 0..9
  ASSERT_FALSE(done);
  EXPECT_EQ(twice.next(), 10u);
  EXPECT_EQ(twice.Left(50), 20u);
  twice.Extend();
  const auto third = RunPass(twice, 10, [](int) { return size_t{50}; });
  EXPECT_EQ(third.size(), 50u);
  for (const auto& [u, n] : third) EXPECT_EQ(n, 1) << u;
}

}  // namespace
}  // namespace gsau::pipeline
