// CatchUpEvents: the learner's view of the state batches after a checkpoint's watermark, against
// the events the live path (TakeBatch: the user's previous max_len items) would have handed over;
// the test keeps every user's whole history. With sessions long enough for every click since the
// watermark and its prefix, the two must be equal; with short ones, the prefixes are cut where the
// session begins and clicks that left it come back as graph pairs alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gsau/pipeline/pipeline.h"
#include "temp_dir.h"

namespace gsau::pipeline {
namespace {

using learner::OnlineEvent;

bool operator==(const OnlineEvent& a, const OnlineEvent& b) {
  return a.user == b.user && a.item == b.item && a.ts_ms == b.ts_ms && a.prefix == b.prefix;
}

std::string Show(const OnlineEvent& e) {
  std::string s = std::to_string(e.user) + "/" + std::to_string(e.item) + "@" + std::to_string(e.ts_ms) + " [";
  for (auto i : e.prefix) s += std::to_string(i) + " ";
  return s + "]";
}

// A small store in `dir` keeping sessions of `session_length` clicks.
Result<std::unique_ptr<state::StateStore>> OpenStore(const gsau::testing::TempDir& dir, uint32_t session_length) {
  state::StateOptions o;
  o.path = dir.File("state");
  o.session_length = session_length;
  o.block_cache_bytes = 8 << 20;
  o.write_buffer_bytes = 1 << 20;
  return state::StateStore::Open(o);
}

void CheckCatchUp(uint32_t session_length) {
  gsau::testing::TempDir dir("gsau-catch-up");
  constexpr size_t kMaxLen = 3;  // learner.max_len
  constexpr int64_t kNow = 999999;
  auto opened = OpenStore(dir, session_length);
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto& store = **opened;

  // Twelve users of very different activity (user k clicks with weight k + 1: some click more
  // than a session holds after the watermark), 30 items, batches of 1-40 clicks.
  std::mt19937_64 rng(11);
  std::discrete_distribution<int> user_of({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  std::uniform_int_distribution<int> item_of(0, 29), batch_size(1, 40);
  std::map<state::UserId, std::vector<std::pair<state::ItemId, int64_t>>> history;  // every click
  std::map<state::UserId, size_t> clicks_at_watermark;
  std::set<std::pair<state::UserId, state::ItemId>> touched_after;
  uint64_t watermark = 0;
  for (int batch = 0; batch < 60; ++batch) {
    std::vector<ClickEvent> events;
    for (int k = batch_size(rng); k > 0; --k) {
      // Times rise from batch to batch, fall and repeat within one (late events, day-granular
      // data): the catch-up is by time, equal times keeping users ascending.
      const int64_t ts = 1000 + 100 * batch - 10 * (k % 3);
      events.push_back({"u" + std::to_string(user_of(rng)), "i" + std::to_string(item_of(rng)), ts, "click"});
    }
    auto r = store.ApplyBatch(events, {});
    ASSERT_TRUE(r.ok()) << r.status();
    for (const auto& a : r->events) {
      history[a.user].emplace_back(a.item, a.ts_ms);
      if (watermark > 0) touched_after.emplace(a.user, a.item);
    }
    if (batch == 29) {
      watermark = r->batch_seq;
      for (const auto& [u, h] : history) clicks_at_watermark[u] = h.size();
    }
  }

  // Users ascending, each one's clicks in order; then by time, a click's being the latest of its
  // own and its user's clicks before it here (a late click stays behind the one applied before it).
  std::vector<std::pair<int64_t, OnlineEvent>> keyed;
  std::set<std::pair<state::UserId, state::ItemId>> given;
  size_t late = 0;
  for (const auto& [u, h] : history) {
    const size_t from = clicks_at_watermark.count(u) ? clicks_at_watermark[u] : 0;
    const size_t session_start = h.size() > session_length ? h.size() - session_length : 0;
    int64_t order_ms = std::numeric_limits<int64_t>::min();
    for (size_t p = std::max(from, session_start); p < h.size(); ++p) {
      OnlineEvent e{u, h[p].first, h[p].second, {}};
      late += e.ts_ms < order_ms;
      order_ms = std::max(order_ms, e.ts_ms);
      // The live path's prefix (cut where the session the state still holds begins).
      for (size_t j = p > kMaxLen ? p - kMaxLen : 0; j < p; ++j) {
        if (j >= session_start) e.prefix.push_back(h[j].first);
      }
      given.emplace(u, e.item);
      keyed.emplace_back(order_ms, std::move(e));
    }
  }
  ASSERT_GT(late, 5u) << "no late click: the test shows nothing of their order";
  std::stable_sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<OnlineEvent> want;
  for (auto& [order_ms, e] : keyed) want.push_back(std::move(e));
  size_t alone = 0;
  for (const auto& [u, i] : touched_after) {
    if (!given.count({u, i})) {
      want.push_back({u, i, kNow, {}});
      ++alone;
    }
  }
  // The stream makes both kinds where sessions are short, or the test shows little.
  if (session_length < 20) {
    ASSERT_GT(alone, 0u);
  } else {
    ASSERT_EQ(alone, 0u);
  }
  ASSERT_GT(want.size() - alone, 50u);

  auto changes = store.ChangesSince(watermark);
  ASSERT_TRUE(changes.ok()) << changes.status();
  auto got = CatchUpEvents(store, *changes, kMaxLen, kNow);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) {
    EXPECT_TRUE((*got)[k] == want[k]) << k << ": " << Show((*got)[k]) << " vs " << Show(want[k]);
  }

  // A feed that does not know the click counts: every touched edge alone.
  changes->clicks_known = false;
  got = CatchUpEvents(store, *changes, kMaxLen, kNow);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), touched_after.size());
  size_t k = 0;
  for (const auto& [u, i] : touched_after) EXPECT_TRUE((*got)[k++] == (OnlineEvent{u, i, kNow, {}}));
}

TEST(CatchUpTest, WithLongSessionsTheClicksAfterTheWatermarkAreWhatTheLivePathGave) { CheckCatchUp(1000); }

TEST(CatchUpTest, WithShortSessionsPrefixesAreCutAndOlderClicksComeAsGraphPairs) { CheckCatchUp(8); }

// HistoryEvents: a start without a checkpoint hands the learner the whole state in time order
// (its recent window must end with the latest clicks, not with the highest user ids): each click
// still in a session with the items before it in the session as the prefix, each older edge alone
// at its last click's time.
TEST(CatchUpTest, TheStatesHistoryComesInTimeOrderWithSessionPrefixesAndOlderEdgesAlone) {
  gsau::testing::TempDir dir("gsau-history");
  constexpr size_t kMaxLen = 2;
  constexpr uint32_t kSession = 4;
  auto opened = OpenStore(dir, kSession);
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto& store = **opened;

  // Users take turns in batches of 1-6 clicks; a few items, so repeats (one edge, many clicks)
  // are common. Times rise from batch to batch but fall within one, and clicks share times (as
  // day-granular datasets' do): the order is by time, equal times as documented.
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int> user_of(0, 6), item_of(0, 7), batch_size(1, 6);
  std::map<state::UserId, std::vector<std::pair<state::ItemId, int64_t>>> history;
  for (int batch = 0; batch < 40; ++batch) {
    std::vector<ClickEvent> events;
    for (int k = batch_size(rng); k > 0; --k) {
      const int64_t ts = 5000 + 1000 * batch - 300 * (k % 2);
      events.push_back({"u" + std::to_string(user_of(rng)), "i" + std::to_string(item_of(rng)), ts, "click"});
    }
    auto r = store.ApplyBatch(events, {});
    ASSERT_TRUE(r.ok()) << r.status();
    for (const auto& a : r->events) history[a.user].emplace_back(a.item, a.ts_ms);
  }

  // Session clicks (users ascending; each at the latest time of its own and its user's clicks
  // before it in the session), then edges alone (at their own time).
  std::vector<std::pair<int64_t, OnlineEvent>> keyed, lone;
  size_t late = 0;
  for (const auto& [u, h] : history) {
    const size_t session_start = h.size() > kSession ? h.size() - kSession : 0;
    std::set<state::ItemId> in_session;
    int64_t order_ms = std::numeric_limits<int64_t>::min();
    for (size_t p = session_start; p < h.size(); ++p) {
      OnlineEvent e{u, h[p].first, h[p].second, {}};
      late += e.ts_ms < order_ms;
      order_ms = std::max(order_ms, e.ts_ms);
      for (size_t j = std::max(session_start, p > kMaxLen ? p - kMaxLen : 0); j < p; ++j) {
        e.prefix.push_back(h[j].first);
      }
      in_session.insert(e.item);
      keyed.emplace_back(order_ms, std::move(e));
    }
    std::map<state::ItemId, int64_t> last;  // the edges' last click times (the latest, not the last applied)
    for (const auto& [i, t] : h) last[i] = std::max(last.count(i) ? last[i] : t, t);
    for (const auto& [i, t] : last) {
      if (!in_session.count(i)) lone.emplace_back(t, OnlineEvent{u, i, t, {}});
    }
  }
  const size_t alone = lone.size();
  keyed.insert(keyed.end(), lone.begin(), lone.end());
  std::stable_sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<OnlineEvent> want;
  for (auto& [order_ms, e] : keyed) want.push_back(std::move(e));
  ASSERT_GT(alone, 5u);
  ASSERT_GT(late, 3u) << "no late click: the test shows nothing of their order";
  size_t ties = 0;
  for (size_t k = 1; k < want.size(); ++k) ties += want[k].ts_ms == want[k - 1].ts_ms;
  ASSERT_GT(ties, 10u) << "equal times, or the test shows nothing of their order";
  // The users' clicks interleave, or the test would pass in user order too.
  size_t switches = 0;
  for (size_t k = 1; k < want.size(); ++k) switches += want[k].user != want[k - 1].user;
  ASSERT_GT(switches, want.size() / 2);

  auto got = HistoryEvents(store, kMaxLen);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) {
    EXPECT_TRUE((*got)[k] == want[k]) << k << ": " << Show((*got)[k]) << " vs " << Show(want[k]);
  }
}

// The live path's prefixes: the newest max_len items in click order, whatever the history.
TEST(RecentItemsTest, KeepsTheNewestItemsOldestFirst) {
  RecentItems r;
  EXPECT_EQ(r.size(), 0u);
  for (uint32_t i = 1; i <= 3; ++i) r.Push(i, 4);
  EXPECT_EQ(std::vector<uint32_t>(r.begin(), r.end()), (std::vector<uint32_t>{1, 2, 3}));
  for (uint32_t i = 4; i <= 7; ++i) r.Push(i, 4);
  EXPECT_EQ(std::vector<uint32_t>(r.begin(), r.end()), (std::vector<uint32_t>{4, 5, 6, 7}));
  r.Push(8, 2);  // a shorter bound drops all but the newest before the new one
  EXPECT_EQ(std::vector<uint32_t>(r.begin(), r.end()), (std::vector<uint32_t>{7, 8}));
  r.Push(9, 1);
  EXPECT_EQ(std::vector<uint32_t>(r.begin(), r.end()), (std::vector<uint32_t>{9}));
  r.Push(10, 0);
  EXPECT_EQ(std::vector<uint32_t>(r.begin(), r.end()), (std::vector<uint32_t>{9}));
}

}  // namespace
}  // namespace gsau::pipeline
