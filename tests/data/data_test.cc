#include <gtest/gtest.h>

#include "gsau/data/interactions.h"
#include "temp_dir.h"

namespace gsau::data {
namespace {

using gsau::testing::TempDir;
using gsau::testing::WriteFile;

TEST(InteractionsTest, ReadsTsvWithHeaderSecondsAndFractions) {
  TempDir dir;
  WriteFile(dir.File("a.tsv"), "user_id\titem_id\ttimestamp\nu1\ti9\t1396860669.277\nu2\ti3\t1000\n");
  auto r = ReadInteractions(dir.File("a.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].user_id, "u1");
  EXPECT_EQ((*r)[0].item_id, "i9");
  EXPECT_EQ((*r)[0].ts_ms, 1396860669277);
  EXPECT_EQ((*r)[1].ts_ms, 1000000);
  EXPECT_TRUE((*r)[1].has_time);
}

TEST(InteractionsTest, AutoUnitTakesLargeValuesAsMilliseconds) {
  TempDir dir;
  // 1e11 and above are milliseconds (1e11 s would be year 5138); below, seconds.
  WriteFile(dir.File("a.tsv"), "u1\ti1\t1732600000123\nu1\ti2\t100000000000\nu1\ti3\t99999999999\n");
  auto r = ReadInteractions(dir.File("a.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].ts_ms, 1732600000123);
  EXPECT_EQ((*r)[1].ts_ms, 100000000000);
  EXPECT_EQ((*r)[2].ts_ms, 99999999999000);
}

TEST(InteractionsTest, MillisecondUnitIsKeptAsIs) {
  TempDir dir;
  WriteFile(dir.File("a.tsv"), "u\ti\tt\nu1\ti1\t1732600000123\n");
  ReadOptions o;
  o.time_unit = TimeUnit::kMilliseconds;
  auto r = ReadInteractions(dir.File("a.tsv"), o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].ts_ms, 1732600000123);
}

TEST(InteractionsTest, UserLinesWithAlignedTimes) {
  TempDir dir;
  WriteFile(dir.File("items.txt"), "1 10 11 12\n2 11\n");
  WriteFile(dir.File("times.txt"), "1 100 200 300\n2 150\n");
  ReadOptions o;
  o.times_path = dir.File("times.txt");
  auto r = ReadInteractions(dir.File("items.txt"), o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 4u);
  SortByTime(*r);
  std::vector<std::string> items;
  for (const auto& e : *r) items.push_back(e.user_id + ":" + e.item_id);
  EXPECT_EQ(items, (std::vector<std::string>{"1:10", "2:11", "1:11", "1:12"}));
  EXPECT_EQ((*r)[0].ts_ms, 100000);
}

TEST(InteractionsTest, UserLinesWithoutTimesUsePositions) {
  TempDir dir;
  WriteFile(dir.File("items.txt"), "1 5 6 7\n2 8 9\n");
  auto r = ReadInteractions(dir.File("items.txt"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 5u);
  EXPECT_FALSE((*r)[0].has_time);
  SortByTime(*r);
  EXPECT_EQ((*r)[0].item_id, "5");
  EXPECT_EQ((*r)[1].item_id, "8");  // round robin: position 0 of user 1, then of user 2
  EXPECT_EQ((*r)[2].item_id, "6");
}

TEST(InteractionsTest, ErrorsNameTheFileAndLine) {
  TempDir dir;
  WriteFile(dir.File("bad.tsv"), "u\ti\tt\nu1\ti1\t10\nu2\ti2\tnoon\n");
  auto r = ReadInteractions(dir.File("bad.tsv"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bad.tsv:3"), std::string::npos) << r.status();
  EXPECT_EQ(ReadInteractions(dir.File("missing.tsv")).status().code(), StatusCode::kNotFound);

  WriteFile(dir.File("items.txt"), "1 10 11\n");
  WriteFile(dir.File("times.txt"), "1 100\n");
  ReadOptions o;
  o.times_path = dir.File("times.txt");
  auto m = ReadInteractions(dir.File("items.txt"), o);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("not aligned"), std::string::npos) << m.status();
}

TEST(InteractionsTest, ReadsGzipAndHonoursLimit) {
  TempDir dir;
  WriteFile(dir.File("a.tsv"), "u\ti\tt\nu1\ti1\t1\nu1\ti2\t2\nu2\ti1\t3\n");
  ASSERT_EQ(std::system(("gzip -f " + dir.File("a.tsv")).c_str()), 0);
  ReadOptions o;
  o.limit = 2;
  auto r = ReadInteractions(dir.File("a.tsv.gz"), o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[1].item_id, "i2");
}

}  // namespace
}  // namespace gsau::data
