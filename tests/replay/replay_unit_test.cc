#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <set>

#include "gsau/replay/replay.h"

namespace gsau::replay {
namespace {

TEST(ReplayEncodeTest, JsonHasTheSystemFieldsAndEscapes) {
  ClickEvent e{"u\"42", "sku\\9\n", 1732600000123, "click"};
  const auto j = nlohmann::json::parse(EncodeClickJson(e));
  EXPECT_EQ(j["user_id"], "u\"42");
  EXPECT_EQ(j["item_id"], "sku\\9\n");
  EXPECT_EQ(j["ts"], 1732600000123);
  EXPECT_EQ(j["event"], "click");
  EXPECT_FALSE(nlohmann::json::parse(EncodeClickJson(e, false)).contains("ts"));
  const auto ctl = nlohmann::json::parse(EncodeClickJson({"a\x01", "b", 1, ""}));
  EXPECT_EQ(ctl["user_id"], "a\x01");
  EXPECT_EQ(ctl["event"], "click");
}

// Events are due on a schedule of `rate` a second; after a stall the schedule catches up by at
// most a burst's worth (1 s) at once, not by all the time missed.
TEST(PacerTest, KeepsTheRateAndCatchesUpAtMostOneBurstAfterAStall) {
  using std::chrono::milliseconds;
  const Pacer::Clock::time_point t0{};
  Pacer pacer(100, t0);  // one event per 10 ms
  EXPECT_EQ(pacer.Due(0, t0), t0);
  EXPECT_EQ(pacer.Due(1, t0), t0 + milliseconds(10));
  EXPECT_EQ(pacer.Due(50, t0 + milliseconds(490)), t0 + milliseconds(500)) << "on schedule";
  EXPECT_EQ(pacer.Due(60, t0 + milliseconds(1400)), t0 + milliseconds(600)) << "0.8 s behind: caught up at once";
  // A 60 s stall at event 100 (due at 1 s): events 100..199 (1 s of them) go at once, then the
  // rate again; the 59 s beyond are not made up.
  const auto after = t0 + milliseconds(61000);
  EXPECT_EQ(pacer.Due(100, after), after - milliseconds(1000));
  EXPECT_EQ(pacer.Due(199, after), after - milliseconds(10));
  EXPECT_EQ(pacer.Due(200, after), after);
  EXPECT_EQ(pacer.Due(201, after), after + milliseconds(10));
  EXPECT_EQ(pacer.Due(300, after + milliseconds(1000)), after + milliseconds(1000));
}

TEST(SyntheticStreamTest, SeededOrderedSkewedAndGrowing) {
  SyntheticOptions o;
  o.events = 20000;
  const auto a = SyntheticStream(o);
  const auto b = SyntheticStream(o);
  ASSERT_EQ(a.size(), 20000u);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i].item_id, b[i].item_id);
  std::map<std::string, int> pop;
  std::set<std::string> early_items, late_items;
  for (size_t i = 0; i < a.size(); ++i) {
    if (i > 0) {
      ASSERT_GE(a[i].ts_ms, a[i - 1].ts_ms);
    }
    ++pop[a[i].item_id];
    (i < a.size() / 4 ? early_items : late_items).insert(a[i].item_id);
  }
  // Power law: the top item is far more popular than the median one.
  std::vector<int> counts;
  for (const auto& [_, c] : pop) counts.push_back(c);
  std::sort(counts.rbegin(), counts.rend());
  EXPECT_GT(counts.front(), 20 * counts[counts.size() / 2]);
  // New items appear later in the stream.
  int new_late = 0;
  for (const auto& i : late_items) new_late += early_items.count(i) == 0;
  EXPECT_GT(new_late, 50);
}

}  // namespace
}  // namespace gsau::replay
