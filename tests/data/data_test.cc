#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <tuple>

#include "gsau/data/interactions.h"
#include "temp_dir.h"

namespace gsau::data {
namespace {

using gsau::testing::TempDir;
using gsau::testing::WriteFile;

// The message of a read of `path` that must fail.
std::string ReadError(const std::string& path, const ReadOptions& options = {}) {
  auto r = ReadInteractions(path, options);
  EXPECT_FALSE(r.ok()) << path << " read " << (r.ok() ? r->size() : 0) << " interactions";
  return r.ok() ? "" : r.status().message();
}

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

// The automatic unit goes by magnitude: each unit's values for the years 1973-5138 fill one
// band of three decades (1e11 s is year 5138; 1e11 ms is 1973). Micro- and nanoseconds read as
// milliseconds were dates after the year 50000, and every event replayed was dead-lettered.
TEST(InteractionsTest, AutoUnitReadsEachUnitByMagnitude) {
  TempDir dir;
  const std::vector<std::pair<std::string, int64_t>> cases = {
      {"1732600000123", 1732600000123},         {"100000000000", 100000000000},
      {"99999999999", 99999999999000},          {"1732600000123456", 1732600000123},
      {"1732600000123456789", 1732600000123},   {"1e14", 100000000000}};  // 1e14 us is 1973, 1e14 ms 5138
  for (const auto& [time, ms] : cases) {
    WriteFile(dir.File("a.tsv"), "u1\ti1\t" + time + "\n");
    auto r = ReadInteractions(dir.File("a.tsv"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)[0].ts_ms, ms) << time;
  }
}

// The unit is the file's, from its largest time: chosen per time, relative microseconds over 28
// hours crossed the seconds/milliseconds edge at 1e11 and the clicks before it were scaled 1000x
// further on (the first two became the last two, the held-out items of leave-one-out).
TEST(InteractionsTest, AutoUnitIsOnePerFileAndKeepsTheOrder) {
  TempDir dir;
  WriteFile(dir.File("us.tsv"),
            "u1\ta\t99000000000\nu1\tb\t99500000000\nu1\tc\t100100000000\nu1\td\t100200000000\n");
  auto r = ReadInteractions(dir.File("us.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<int64_t> ms;
  for (const auto& e : *r) ms.push_back(e.ts_ms);
  EXPECT_EQ(ms, (std::vector<int64_t>{99000000000, 99500000000, 100100000000, 100200000000}));
  SortByTime(*r);
  std::string items;
  for (const auto& e : *r) items += e.item_id;
  EXPECT_EQ(items, "abcd");
  // The same in a times file.
  WriteFile(dir.File("items.txt"), "u1 a b\nu2 c d\n");
  WriteFile(dir.File("times.txt"), "u1 99000000000 99500000000\nu2 100100000000 100200000000\n");
  ReadOptions o;
  o.times_path = dir.File("times.txt");
  r = ReadInteractions(dir.File("items.txt"), o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].ts_ms, 99000000000);
  EXPECT_EQ((*r)[3].ts_ms, 100200000000);
  // Seconds stay seconds beside a small time (an early relative one).
  WriteFile(dir.File("s.tsv"), "u1\ta\t0\nu1\tb\t1396860669\n");
  r = ReadInteractions(dir.File("s.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[1].ts_ms, 1396860669000);
}

// Columns are found by the header's names: MovieLens' ratings file has the rating third and
// the time fourth, and the rating was read as the time.
TEST(InteractionsTest, HeaderNamesPickTheColumns) {
  TempDir dir;
  WriteFile(dir.File("ml.tsv"), "userId\tmovieId\trating\ttimestamp\n196\t242\t3\t881250949\n");
  auto r = ReadInteractions(dir.File("ml.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ(std::tie((*r)[0].user_id, (*r)[0].item_id, (*r)[0].ts_ms),
            std::make_tuple(std::string("196"), std::string("242"), int64_t{881250949000}));

  WriteFile(dir.File("order.tsv"), "ts\titem_id\tuser_id\n1732600000\ti9\tu1\n");
  r = ReadInteractions(dir.File("order.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(std::tie((*r)[0].user_id, (*r)[0].item_id, (*r)[0].ts_ms),
            std::make_tuple(std::string("u1"), std::string("i9"), int64_t{1732600000000}));

  // More than three columns with no header, or with one that names none of them: an error, not a guess.
  const std::vector<std::array<std::string, 3>> refused = {
      {"u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n", "u.data:1: 4 tab-separated fields and no header"},
      {"lines.txt", "1\t10\t11\t12\n2\t11\t13\t15\n", "per-user lines"},  // per-user lines with tabs
      {"anon.tsv", "a\tb\tc\td\nu1\ti1\t5\t1\n", "anon.tsv:1: the header has 4 columns but does not name"},
  };
  for (const auto& [name, text, message] : refused) {
    WriteFile(dir.File(name), text);
    const std::string m = ReadError(dir.File(name));
    EXPECT_NE(m.find(message), std::string::npos) << m;
  }
  // Told it is a TSV, a file of other lines (space-separated per-user lines) is an error, not a
  // read past the end of the first line's fields.
  ReadOptions tsv;
  tsv.format = Format::kTsv;
  for (const std::string text : {"1 10 11 12\n2 11 13\n", "1\t10 11\n"}) {
    WriteFile(dir.File("spaced.txt"), text);
    const std::string m = ReadError(dir.File("spaced.txt"), tsv);
    EXPECT_NE(m.find("spaced.txt:1: expected user<TAB>item<TAB>timestamp, got"), std::string::npos) << m;
  }
}

// Tables separated by commas, semicolons or '|' read as TSVs do (MovieLens' ratings.csv was an
// error: "lines are one field each"), and a field may be quoted as CSV writers quote one that
// holds the separator or a quote, in a TSV too (pandas). Per-user lines whose ids hold commas
// stay per-user lines.
TEST(InteractionsTest, CommaSemicolonAndBarSeparatedTablesWithQuotedFieldsRead) {
  TempDir dir;
  using Row = std::tuple<std::string, std::string, int64_t>;
  auto rows = [](const std::vector<Interaction>& r) {
    std::vector<Row> out;
    for (const auto& e : r) out.emplace_back(e.user_id, e.item_id, e.ts_ms);
    return out;
  };
  const std::vector<std::pair<std::string, std::vector<Row>>> read = {
      {"userId,movieId,rating,timestamp\r\n1,296,5.0,1147880044\r\n2,306,3.5,1147868817\r\n",
       {{"1", "296", 1147880044000}, {"2", "306", 1147868817000}}},
      {"user_id;item_id;timestamp\nu1;i1;100\n", {{"u1", "i1", 100000}}},
      {"u1|i1|100\nu2|i2|200\n", {{"u1", "i1", 100000}, {"u2", "i2", 200000}}},
      {"user_id,item_id,timestamp\n\"u,1\",\"say \"\"hi\"\"\",100\n", {{"u,1", "say \"hi\"", 100000}}},
      {"user_id\titem_id\ttimestamp\n\"u\t1\"\ti1\t7\n", {{"u\t1", "i1", 7000}}},
      {"u1 a,b,c\n", {{"u1", "a,b,c", 0}}},
  };
  for (const auto& [text, expected] : read) {
    WriteFile(dir.File("t.csv"), text);
    auto r = ReadInteractions(dir.File("t.csv"));
    ASSERT_TRUE(r.ok()) << text << ": " << r.status();
    EXPECT_EQ(rows(*r), expected) << text;
  }
  const std::vector<std::array<std::string, 3>> refused = {
      {"open.csv", "user_id,item_id,timestamp\n\"u1,i1,100\n", "open.csv:2: a quoted field is not closed on its line"},
      {"after.csv", "user_id,item_id,timestamp\n\"u1\"x,i1,100\n", "after.csv:2: text after the closing quote"},
      {"short.csv", "user_id,item_id,timestamp\nu1,i1\n", "short.csv:2: expected 3 comma-separated fields"},
      {"empty.csv", "user_id,item_id,timestamp\n\"\",x,5\n", "empty.csv:2: empty user or item id"},
      {"semi.csv", "1;2;3;4\n", "semi.csv:1: 4 semicolon-separated fields and no header line"},
      {"unnamed.csv", "sessionId;itemId;timeframe;price\n1;81766;526309;2\n",
       "unnamed.csv:1: the header has 4 columns but does not name the user, item and time columns"},
      // Spaces after the commas: a table whose ids have spaces around them, not per-user lines
      // whose times read as items.
      {"spaced.csv", "user_id, item_id, timestamp\nu1, i1, 100\n", "spaced.csv:2: spaces around the user or item id"},
      // The largest time, quoted, named as written once its line has gone by.
      {"big.csv", "u,i,t\nu1,i1,\"1e300\"\nu1,i2,5\n", "big.csv:2: timestamp '1e300'"},
  };
  for (const auto& [name, text, message] : refused) {
    WriteFile(dir.File(name), text);
    const std::string m = ReadError(dir.File(name));
    EXPECT_NE(m.find(message), std::string::npos) << name << ": " << m;
  }
}

// Times written as ISO 8601 dates or date-times (YooChoose's clicks, DIGINETICA's eventdate,
// e-commerce event logs) read as UTC milliseconds, a zone or offset applied; the expected
// values are Python's datetime(..., tzinfo=...).timestamp() * 1000. One kind per file.
TEST(InteractionsTest, DateTimesReadAsUtcMilliseconds) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::vector<int64_t>>> read = {
      {"session_id,item_id,time\n1,i1,2014-04-07T10:51:09.277Z\n", {1396867869277}},
      {"user_id\titem_id\tdate\nu1\ti1\t2016-05-09\n", {1462752000000}},
      {"user_id,item_id,event_time\nu1,i1,2019-10-01 00:00:00 UTC\nu1,i2,2019-10-01T02:00:00+02:00\n"
       "u1,i3,2019-10-01T00:00:00-0530\n",
       {1569888000000, 1569888000000, 1569907800000}},
      {"u1\ti1\t2000-02-29T23:59:59\n", {951868799000}},  // no header: the first row is one
      {"u1,i1,1969-12-31T23:00\n", {-3600000}},
      // No header, a space inside the time: still a table, not per-user lines.
      {"u1,i1,2019-10-01 00:00:00\n", {1569888000000}},
      // PostgreSQL's +00, RFC 3339's lower case.
      {"u,i,t\nu1,i1,2019-10-01 00:00:00+00\nu1,i2,2019-10-01t00:00:00z\nu1,i3,2019-10-01 00:00:00 utc\n",
       {1569888000000, 1569888000000, 1569888000000}},
      // A header naming the time twice, a name read before and one added since: the one read before.
      {"user_id,item_id,date,timestamp\nu1,i1,2016-05-09,1462752001\n", {1462752001000}},
      // DIGINETICA's train-item-views.csv: sessions as users, the day as the time (the timeframe
      // orders the day's clicks, below); and its purchases file, whose timeframes run past the
      // day (153 days at most): still the day, not months later.
      {"sessionId;userId;itemId;timeframe;eventdate\n1;NA;81766;526309;2016-05-09\n", {1462752000000}},
      {"sessionId;userId;timeframe;eventdate;ordernumber;itemId\n1;NA;13245633294;2016-06-09;1;69061\n",
       {1465430400000}},
      // With numeric times or a time of day, a timeframe column is one more column ignored; a
      // missing one (empty, NA, or not in the row) adds nothing.
      {"user_id,item_id,timestamp,timeframe\nu1,i1,1462752001,526309\n", {1462752001000}},
      {"user_id,item_id,timestamp,timeframe\nu1,i1,2016-05-09T00:00:01Z,soon\n", {1462752001000}},
      {"user_id,item_id,timestamp,timeframe\nu1,i1,2016-05-09 10:00,soon\n", {1462788000000}},
      {"sessionId;itemId;eventdate;timeframe\n1;81766;2016-05-09;\n1;81767;2016-05-09;NA\n1;81768;2016-05-09\n",
       {1462752000000, 1462752000000, 1462752000000}},
  };
  for (const auto& [text, expected] : read) {
    WriteFile(dir.File("d.csv"), text);
    auto r = ReadInteractions(dir.File("d.csv"));
    ASSERT_TRUE(r.ok()) << text << ": " << r.status();
    std::vector<int64_t> got;
    for (const auto& e : *r) got.push_back(e.ts_ms);
    EXPECT_EQ(got, expected) << text;
  }
  // Below a millisecond, the fraction orders the clicks that share one.
  WriteFile(dir.File("sub.csv"), "u,i,t\nu1,late,2014-04-07T10:51:09.2775Z\nu1,early,2014-04-07T10:51:09.2771Z\n");
  auto r = ReadInteractions(dir.File("sub.csv"));
  ASSERT_TRUE(r.ok()) << r.status();
  SortByTime(*r);
  EXPECT_EQ((*r)[0].item_id, "early");
  // A day's clicks in DIGINETICA's file order are not in their order: the timeframe orders them.
  // A timeframe past the day keeps its click on its day.
  WriteFile(dir.File("day.csv"), "session_id;user_id;item_id;timeframe;eventdate\n1;NA;second;1031018;2016-05-09\n"
                                 "1;NA;next_day;0;2016-05-10\n1;NA;third;90000000;2016-05-09\n"
                                 "1;NA;first;526309;2016-05-09\n");
  auto day = ReadInteractions(dir.File("day.csv"));
  ASSERT_TRUE(day.ok()) << day.status();
  SortByTime(*day);
  std::string order;
  for (const auto& e : *day) order += e.item_id + ",";
  EXPECT_EQ(order, "first,second,third,next_day,");
  const std::vector<std::array<std::string, 3>> refused = {
      {"feb.csv", "u,i,t\nu1,i1,2016-02-30\n", "feb.csv:2: timestamp '2016-02-30' is not a number nor a date-time"},
      {"frame.csv", "session_id;item_id;timeframe;eventdate\n1;i1;526309;2016-05-09\n1;i1;soon;2016-05-09\n",
       "frame.csv:3: timeframe 'soon' is not a number of milliseconds, at least 0 and below 1e12"},
      {"frame2.csv", "session_id;item_id;timeframe;eventdate\n1;i1;-5;2016-05-09\n",
       "frame2.csv:2: timeframe '-5' is not a number of milliseconds"},
      {"frame3.csv", "session_id;item_id;timeframe;eventdate\n1;i1;1e12;2016-05-09\n",
       "frame3.csv:2: timeframe '1e12' is not a number of milliseconds"},
      // A date with a zone has no time of day either: its timeframe is read.
      {"frame4.csv", "session_id;item_id;timeframe;eventdate\n1;i1;soon;2016-05-09Z\n",
       "frame4.csv:2: timeframe 'soon' is not a number of milliseconds"},
      {"hour.csv", "u,i,t\nu1,i1,2016-05-09T24:00\n", "hour.csv:2: timestamp '2016-05-09T24:00' is not a number"},
      {"zone.csv", "u,i,t\nu1,i1,2016-05-09 10:00 PST\n", "zone.csv:2: timestamp '2016-05-09 10:00 PST' is not"},
      {"mixed.csv", "u,i,t\nu1,i1,2016-05-09\nu1,i2,1462752000\n",
       "mixed.csv:3: timestamp '1462752000' is a number but the first row's is a date-time"},
      {"mixed2.csv", "u,i,t\nu1,i1,1462752000\nu1,i2,2016-05-09\n",
       "mixed2.csv:3: timestamp '2016-05-09' is a date-time but the first row's is a number"},
  };
  for (const auto& [name, text, message] : refused) {
    WriteFile(dir.File(name), text);
    const std::string m = ReadError(dir.File(name));
    EXPECT_NE(m.find(message), std::string::npos) << name << ": " << m;
  }
}

// What a TSV's first lines leave ambiguous is an error, not a guess that reads users as items or
// drops a row; a byte-order mark is not part of the first id.
TEST(InteractionsTest, AmbiguousTsvLinesAreErrorsAndAByteOrderMarkIsDropped) {
  TempDir dir;
  const std::vector<std::array<std::string, 3>> refused = {
      // Names two columns out of order but not the third: taken in order, users became items.
      {"swapped.tsv", "item_id\tuser_id\twhen\ni1\tu1\t100\n", "swapped.tsv:1: the header has 3 columns but does not name"},
      // A first row without its time was taken for a header and dropped.
      {"notime.tsv", "u1\ti1\t\nu1\ti2\t200\n", "notime.tsv:1: timestamp '' is not a number"},
      // Extra fields after the first row were ignored.
      {"extra.tsv", "u1\ti1\t100\nu1\ti2\t200\t9\n", "extra.tsv:2: expected 3 tab-separated fields"},
      {"named.tsv", "user_id\titem_id\tts\nu1\ti1\t100\tx\n", "named.tsv:2: expected 3 tab-separated fields"},
      // Per-user lines with tabs whose first user has two items: read as (user, item, time) rows.
      {"tabbed.txt", "1\t2\t3\n2\t5\t6\t7\n", "tabbed.txt:2: expected 3 tab-separated fields"},
  };
  for (const auto& [name, text, message] : refused) {
    WriteFile(dir.File(name), text);
    const std::string m = ReadError(dir.File(name));
    EXPECT_NE(m.find(message), std::string::npos) << name << ": " << m;
  }
  // Empty names in a header (pandas' unnamed index column) and rows ending in a tab still read.
  WriteFile(dir.File("pandas.tsv"), "\tuser_id\titem_id\ttimestamp\n0\tu1\ti1\t100\n1\tu1\ti2\t200\t\n");
  auto pandas = ReadInteractions(dir.File("pandas.tsv"));
  ASSERT_TRUE(pandas.ok()) << pandas.status();
  ASSERT_EQ(pandas->size(), 2u);
  EXPECT_EQ(std::tie((*pandas)[1].user_id, (*pandas)[1].item_id), std::make_tuple(std::string("u1"), std::string("i2")));
  WriteFile(dir.File("trailing.tsv"), "u1\ti1\t100\t\nu1\ti2\t200\t\n");
  auto trailing = ReadInteractions(dir.File("trailing.tsv"));
  ASSERT_TRUE(trailing.ok()) << trailing.status();
  EXPECT_EQ(trailing->size(), 2u);
  for (const std::string& text : {std::string("\xEF\xBB\xBFu1\ti1\t100\nu1\ti2\t200\n"),
                                  std::string("\xEF\xBB\xBFitem_id\tuser_id\ttimestamp\ni1\tu1\t100\ni2\tu1\t200\n"),
                                  std::string("\xEF\xBB\xBFu1 i1 i2\n")}) {
    WriteFile(dir.File("bom.txt"), text);
    auto r = ReadInteractions(dir.File("bom.txt"));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->size(), 2u);
    EXPECT_EQ((*r)[0].user_id, "u1");
    EXPECT_EQ((*r)[1].user_id, "u1");
    EXPECT_EQ((*r)[1].item_id, "i2");
  }
}

// Lines a first-line guess misread without a word: a comment made a user '#' (and a TSV under it
// per-user lines, its times read as items); a header written with spaces over tab-separated
// rows did the same; a first row whose time is NaN or \N was dropped as a header.
TEST(InteractionsTest, CommentsMixedSeparatorsAndAMissingFirstTimeAreErrors) {
  TempDir dir;
  const std::vector<std::array<std::string, 3>> refused = {
      {"comment.tsv", "# clicks export\nu1\ti1\t1700000000\nu2\ti2\t1700000001\n",
       "comment.tsv:1: starts with '#': neither format"},
      {"later.tsv", "u1\ti1\t1700000000\n  # a note\nu2\ti2\t1700000001\n", "later.tsv:2: starts with '#'"},
      {"lines.txt", "u1 i1 i2\n# Beauty, 5-core\nu2 i3\n", "lines.txt:2: starts with '#'"},
      {"spaced-header.tsv", "user_id item_id timestamp\nu1\ti1\t1700000000\n",
       "spaced-header.tsv:2: tab-separated like user<TAB>item<TAB>timestamp rows, but line 1, the first, is not"},
      {"nan.tsv", "u1\tiA\tNaN\nu1\tiB\t1700000000\n", "nan.tsv:1: timestamp 'NaN' is not a number"},
      {"null.tsv", "u1\tiA\t\\N\nu1\tiB\t1700000000\n", "null.tsv:1: timestamp '\\N' is not a number"},
  };
  for (const auto& [name, text, message] : refused) {
    WriteFile(dir.File(name), text);
    const std::string m = ReadError(dir.File(name));
    EXPECT_NE(m.find(message), std::string::npos) << name << ": " << m;
  }
  // A header of other names is still a header; per-user lines with a '#' inside an id are fine.
  WriteFile(dir.File("one-name.tsv"), "uid\tthing\twhen\nu1\ti1\t1700000000\n");
  auto r = ReadInteractions(dir.File("one-name.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->size(), 1u);
  WriteFile(dir.File("hash.txt"), "u#1 i#1 i2\n");
  r = ReadInteractions(dir.File("hash.txt"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].user_id, "u#1");
}

// Times finer than a millisecond order the clicks that share one: a user's two clicks 300 µs
// apart, written latest first, came out in file order (both are at the same ms).
TEST(InteractionsTest, SubMillisecondTimesOrderClicksWithinAMillisecond) {
  TempDir dir;
  WriteFile(dir.File("us.tsv"), "u1\tA\t1700000000000400\nu1\tB\t1700000000000100\nu1\tC\t1700000000000100\n");
  auto r = ReadInteractions(dir.File("us.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  SortByTime(*r);
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].ts_ms, 1700000000000);
  EXPECT_EQ((*r)[2].ts_ms, 1700000000000);
  EXPECT_EQ((*r)[0].item_id + (*r)[1].item_id + (*r)[2].item_id, "BCA") << "equal times keep the file's order";
  WriteFile(dir.File("s.tsv"), "u1\tA\t1700000000.0004\nu1\tB\t1700000000.0001\n");
  r = ReadInteractions(dir.File("s.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  SortByTime(*r);
  EXPECT_EQ((*r)[0].item_id, "B");
  ReadOptions seconds;  // a unit given, not found
  seconds.time_unit = TimeUnit::kSeconds;
  r = ReadInteractions(dir.File("s.tsv"), seconds);
  ASSERT_TRUE(r.ok()) << r.status();
  SortByTime(*r);
  EXPECT_EQ((*r)[0].item_id, "B");
}

// Blank lines (also of spaces, and before the header) and blanks around a time are not data.
TEST(InteractionsTest, BlankLinesAndBlanksAroundTimesAreSkipped) {
  TempDir dir;
  WriteFile(dir.File("a.tsv"), "\nuser_id\titem_id\ttimestamp\nu1\ti1\t100 \n   \nu2\ti2\t 200\r\n  \n");
  auto r = ReadInteractions(dir.File("a.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u) << "the header is not an event";
  EXPECT_EQ((*r)[0].user_id, "u1");
  EXPECT_EQ((*r)[0].ts_ms, 100000);
  EXPECT_EQ((*r)[1].ts_ms, 200000);
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

// Inputs that were read wrongly without a word: a times line beside a blank items line was
// dropped; spaces around a TSV id made another user or item of it; a file with old Mac line
// ends (a CR alone) read as one line, all its users the first one.
TEST(InteractionsTest, StrayTimesIdsWithSpacesAndLoneCarriageReturnsAreErrors) {
  TempDir dir;
  WriteFile(dir.File("items.txt"), "u1 a b\n\nu2 c d\n");
  WriteFile(dir.File("times.txt"), "u1 1 2\nuX 5 6\nu2 3 4\n");
  ReadOptions o;
  o.times_path = dir.File("times.txt");
  std::string m = ReadError(dir.File("items.txt"), o);
  EXPECT_NE(m.find("items.txt:2: blank, but line 2 of " + o.times_path + " is not"), std::string::npos) << m;
  WriteFile(dir.File("times.txt"), "u1 1 2\n\nu2 3 4\n");
  EXPECT_TRUE(ReadInteractions(dir.File("items.txt"), o).ok()) << "blank beside blank";

  for (const std::string row : {"u1 \tb\t1700000000", "u1\t b\t1700000000", " \tb\t1700000000"}) {
    WriteFile(dir.File("sp.tsv"), "u1\ta\t1700000000\n" + row + "\n");
    m = ReadError(dir.File("sp.tsv"));
    EXPECT_NE(m.find("sp.tsv:2: "), std::string::npos) << m;
  }

  WriteFile(dir.File("mac.txt"), "u1 a b\ru2 c d\r");
  m = ReadError(dir.File("mac.txt"));
  EXPECT_NE(m.find("mac.txt:1: a carriage return inside the line"), std::string::npos) << m;
  WriteFile(dir.File("dos.txt"), "u1 a b\r\nu2 c d\r\n");
  auto r = ReadInteractions(dir.File("dos.txt"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->size(), 4u) << "CRLF line ends are fine";
  WriteFile(dir.File("twice.txt"), "u1 a b\r\r\nu2 c d\r\r\n");
  r = ReadInteractions(dir.File("twice.txt"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->size(), 4u) << "so are those of a CRLF file converted twice";
  WriteFile(dir.File("items2.txt"), "u1 a\n");
  WriteFile(dir.File("times2.txt"), "u1 1\rx\n");
  o.times_path = dir.File("times2.txt");
  m = ReadError(dir.File("items2.txt"), o);
  EXPECT_NE(m.find("times2.txt:1: a carriage return inside the line"), std::string::npos) << m;
}

// gsau split's output is written whole or not at all: a failed rename left its .tmp behind.
TEST(InteractionsTest, AFailedWriteLeavesNothingBehind) {
  TempDir dir;
  std::filesystem::create_directory(dir.File("taken"));  // the name is a folder: the rename fails
  const std::vector<Interaction> events = {{"u1", "i1", 5, 0, true}};
  const Status s = WriteInteractionsTsv(dir.File("taken"), events);
  EXPECT_EQ(s.code(), StatusCode::kIoError) << s;
  EXPECT_NE(s.message().find(dir.File("taken")), std::string::npos) << s;
  EXPECT_FALSE(std::filesystem::exists(dir.File("taken.tmp")));
  ASSERT_TRUE(WriteInteractionsTsv(dir.File("ok.tsv"), events).ok());
  auto r = ReadInteractions(dir.File("ok.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].ts_ms, 5);
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

// What reads as no data at all is an error naming the file: a directory (it opened as an empty
// stream), an empty or blank file (a demo ran on nothing, replay waited on Kafka to send none),
// and a times file beside a TSV, which has its own time column (it was silently ignored).
TEST(InteractionsTest, ADirectoryAnEmptyFileAndATimesFileForATsvAreErrors) {
  TempDir dir;
  auto d = ReadInteractions(dir.path().string());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("is a directory"), std::string::npos) << d.status();
  for (const char* text : {"", "\n  \n", "user_id\titem_id\ttimestamp\n"}) {
    WriteFile(dir.File("empty.tsv"), text);
    auto e = ReadInteractions(dir.File("empty.tsv"));
    ASSERT_FALSE(e.ok()) << "'" << text << "'";
    EXPECT_NE(e.status().message().find("empty.tsv holds no interactions"), std::string::npos) << e.status();
  }
  // A comma- or semicolon-separated file of fewer than three columns reads as per-user lines of
  // one field each: said so (it was only "holds no interactions").
  for (const auto& [text, sep] : std::vector<std::pair<std::string, std::string>>{
           {"user_id,item_id\nu1,i1\n", "','"}, {"\nsessionId;itemId\n1;81766\n", "';'"}}) {
    WriteFile(dir.File("d.csv"), text);
    auto c = ReadInteractions(dir.File("d.csv"));
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_NE(c.status().message().find("lines are one field each, separated by " + sep), std::string::npos)
        << c.status();
    EXPECT_NE(c.status().message().find("a table needs a user, an item and a time column"), std::string::npos)
        << c.status();
  }
  WriteFile(dir.File("a.tsv"), "user_id\titem_id\ttimestamp\nu1\ti1\t1700000000\n");
  WriteFile(dir.File("times.txt"), "u1 1700000000\n");
  ReadOptions o;
  o.times_path = dir.File("times.txt");
  auto t = ReadInteractions(dir.File("a.tsv"), o);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("goes with per-user lines only"), std::string::npos) << t.status();
  EXPECT_TRUE(ReadInteractions(dir.File("a.tsv")).ok());
}

TEST(InteractionsTest, UserLinesRejectARepeatedUser) {
  TempDir dir;
  // Two lines of user 1 were interleaved by position with each other.
  WriteFile(dir.File("items.txt"), "1 10 11\n2 12\n1 13\n");
  std::string m = ReadError(dir.File("items.txt"));
  EXPECT_NE(m.find("items.txt:3: user '1'"), std::string::npos) << m;
  EXPECT_NE(m.find("line 1"), std::string::npos) << m;

  // A space-separated table (no tab on the first line) was read as per-user lines, its
  // timestamps as items; with or without a header, its users repeat.
  WriteFile(dir.File("spaces.tsv"), "user_id item_id timestamp\nu1 i1 100\nu2 i2 200\nu1 i3 300\n");
  m = ReadError(dir.File("spaces.tsv"));
  EXPECT_NE(m.find("spaces.tsv:4: user 'u1' already has a line (line 2)"), std::string::npos) << m;
  EXPECT_NE(m.find("tabs"), std::string::npos) << m;
  WriteFile(dir.File("bare.tsv"), "u1 i1 100\nu1 i2 200\n");
  m = ReadError(dir.File("bare.tsv"));
  EXPECT_NE(m.find("bare.tsv:2: user 'u1'"), std::string::npos) << m;
}

TEST(InteractionsTest, TimesOutOfRangeAreErrors) {
  TempDir dir;
  // llround gave INT64_MIN for these, which put the event first.
  ReadOptions ms;
  ms.time_unit = TimeUnit::kMilliseconds;
  for (const std::string t : {"1e30", "-1e30", "9300000000000000000", "1e300"}) {
    WriteFile(dir.File("a.tsv"), "u\ti\tt\nu1\ti1\t10\nu1\ti2\t" + t + "\n");
    const std::string m = ReadError(dir.File("a.tsv"), ms);
    EXPECT_NE(m.find("a.tsv:3: timestamp '" + t + "' is out of range"), std::string::npos) << m;
  }
  for (const std::string t : {"1e30", "-1e30", "1e300"}) {  // nanoseconds to the automatic unit: still too large
    WriteFile(dir.File("a.tsv"), "u\ti\tt\nu1\ti1\t10\nu1\ti2\t" + t + "\n");
    const std::string m = ReadError(dir.File("a.tsv"));
    EXPECT_NE(m.find("a.tsv:3: timestamp '" + t + "' is out of range"), std::string::npos) << m;
  }
  // Seconds that overflow once made milliseconds.
  WriteFile(dir.File("s.tsv"), "u\ti\tt\nu1\ti1\t10\nu1\ti2\t1e17\n");
  ReadOptions seconds;
  seconds.time_unit = TimeUnit::kSeconds;
  std::string m = ReadError(dir.File("s.tsv"), seconds);
  EXPECT_NE(m.find("s.tsv:3: timestamp '1e17' is out of range"), std::string::npos) << m;

  WriteFile(dir.File("items.txt"), "1 10 11\n2 12\n");
  WriteFile(dir.File("times.txt"), "1 100 200\n2 1e30\n");
  ReadOptions o;
  o.times_path = dir.File("times.txt");
  m = ReadError(dir.File("items.txt"), o);
  EXPECT_NE(m.find("times.txt:2: time '1e30' is out of range"), std::string::npos) << m;

  // The largest that fit still read.
  WriteFile(dir.File("ok.tsv"), "u\ti\tt\nu1\ti1\t9000000000000000000\nu1\ti2\t-9000000000000000000\n");
  auto r = ReadInteractions(dir.File("ok.tsv"), ms);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].ts_ms, 9000000000000000000);
  EXPECT_EQ((*r)[1].ts_ms, -9000000000000000000);
}

TEST(InteractionsTest, TimesFileMustHaveTheItemsFileLineCount) {
  TempDir dir;
  WriteFile(dir.File("items.txt"), "1 10 11\n2 12\n");
  ReadOptions o;
  o.times_path = dir.File("times.txt");
  // Longer: the extra line was ignored.
  WriteFile(dir.File("times.txt"), "1 100 200\n2 150\n3 300\n");
  std::string m = ReadError(dir.File("items.txt"), o);
  EXPECT_NE(m.find("items.txt has 2 lines but its times file " + o.times_path + " has 3"), std::string::npos) << m;
  // Shorter: was "not aligned with line 2 (user id or length differs)".
  WriteFile(dir.File("times.txt"), "1 100 200\n");
  m = ReadError(dir.File("items.txt"), o);
  EXPECT_NE(m.find("items.txt has 2 lines but its times file " + o.times_path + " has 1"), std::string::npos) << m;
  // A blank line at the end of either file is no line.
  WriteFile(dir.File("times.txt"), "1 100 200\n2 150\n\n");
  EXPECT_TRUE(ReadInteractions(dir.File("items.txt"), o).ok());
}

TEST(InteractionsTest, MillisecondHeaderReadsSmallTimesAsMilliseconds) {
  TempDir dir;
  // What `gsau split` writes: small (synthetic) times were read as seconds, multiplied by 1000.
  // Ids the reader would take for quoted fields or split at a tab read back as they were.
  const std::vector<Interaction> events = {{"u1", "i1", 5, 0, true},
                                           {"u2", "i2", 1700, 1, true},
                                           {"u1", "i3", 1732600000123, 2, true},
                                           {"\"q\"", "a\"b", 1732600000124, 3, true},
                                           {"t\tab", "\"", 1732600000125, 4, true},
                                           {"#u", "i1", 1732600000126, 5, true}};
  ASSERT_TRUE(WriteInteractionsTsv(dir.File("split.tsv"), events).ok());
  auto r = ReadInteractions(dir.File("split.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), events.size());
  for (size_t k = 0; k < events.size(); ++k) {
    EXPECT_EQ((*r)[k].user_id, events[k].user_id);
    EXPECT_EQ((*r)[k].item_id, events[k].item_id);
    EXPECT_EQ((*r)[k].ts_ms, events[k].ts_ms) << k;
  }
  // The name in any case, as the column is found (Timestamp_MS was the time column, read as seconds).
  WriteFile(dir.File("upper.tsv"), "User_ID\tItem_ID\tTimestamp_MS\nu1\ti1\t5\n");
  r = ReadInteractions(dir.File("upper.tsv"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].ts_ms, 5);
  // `timestamp_s` and `timestamp` keep the automatic unit (the file's, from its largest time);
  // an explicit unit wins over the header.
  for (const std::string column : {"timestamp", "timestamp_s"}) {
    WriteFile(dir.File("a.tsv"), "user_id\titem_id\t" + column + "\nu1\ti1\t5\nu1\ti2\t1732600000\n");
    r = ReadInteractions(dir.File("a.tsv"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)[0].ts_ms, 5000) << column;
    EXPECT_EQ((*r)[1].ts_ms, 1732600000000) << column;
  }
  ReadOptions seconds;
  seconds.time_unit = TimeUnit::kSeconds;
  r = ReadInteractions(dir.File("split.tsv"), seconds);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].ts_ms, 5000);
}

// An event column (RetailRocket's `event`, REES46's `event_type`) gives each row its type, which
// `gsau split` writes back; a file without one has none (replay sends clicks).
TEST(InteractionsTest, AnEventColumnTypesEachRowAndWritesBack) {
  TempDir dir;
  WriteFile(dir.File("retailrocket.csv"), "timestamp,visitorid,event,itemid,transactionid\n"
                                          "1433221332117,257597,view,355908,\n"
                                          "1433224214164,992329,addtocart,248676,\n"
                                          "1433224214165,992329,transaction,248676,4000\n");
  WriteFile(dir.File("rees46.csv"), "event_time,event_type,product_id,category_id,user_id\n"
                                    "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,541312140\n"
                                    "2019-10-01 00:00:01 UTC,purchase,3900821,2053013552326770905,541312140\n");
  const auto types = [&](const std::string& file) {
    auto r = ReadInteractions(file);
    EXPECT_TRUE(r.ok()) << r.status();
    std::string out;
    for (const auto& e : r.ok() ? *r : std::vector<Interaction>{}) out += e.user_id + ":" + e.item_id + ":" + e.event + " ";
    return out;
  };
  EXPECT_EQ(types(dir.File("retailrocket.csv")), "257597:355908:view 992329:248676:addtocart 992329:248676:transaction ");
  EXPECT_EQ(types(dir.File("rees46.csv")), "541312140:44600062:view 541312140:3900821:purchase ");
  WriteFile(dir.File("plain.tsv"), "user_id\titem_id\ttimestamp\nu1\ti1\t100\n");
  EXPECT_EQ(types(dir.File("plain.tsv")), "u1:i1: ");
  // Written back with its types (a row without one among typed rows: a click), read back equal.
  const std::vector<Interaction> events = {{"u1", "i1", 5, 0, true, "view"},
                                           {"u1", "i2", 6, 1, true, "cart\tx"},
                                           {"u2", "i1", 7, 2, true, ""}};
  ASSERT_TRUE(WriteInteractionsTsv(dir.File("typed.tsv"), events).ok());
  EXPECT_EQ(types(dir.File("typed.tsv")), "u1:i1:view u1:i2:cart\tx u2:i1:click ");
  ASSERT_TRUE(WriteInteractionsTsv(dir.File("untyped.tsv"), {{"u1", "i1", 5, 0, true}}).ok());
  auto untyped = ReadFileText(dir.File("untyped.tsv"));
  ASSERT_TRUE(untyped.ok()) << untyped.status();
  EXPECT_EQ(*untyped, "user_id\titem_id\ttimestamp_ms\nu1\ti1\t5\n");
  // No type (empty, a missing value's mark, not in the row) is none: a click, as an event without
  // one; spaces around a type are not part of it; of two type columns, the leftmost.
  WriteFile(dir.File("missing.csv"), "user_id,item_id,timestamp,Event_Type,event\nu1,i1,100, view ,x\n"
                                     "u1,i2,101,,x\nu1,i3,102,NA,x\nu1,i4,103\n");
  EXPECT_EQ(types(dir.File("missing.csv")), "u1:i1:view u1:i2: u1:i3: u1:i4: ");
}

// A gzip stream cut short ends like a whole one unless its error is asked for; read as whole,
// half of a dataset trained and replayed with exit 0, its cut last line at a wrong time.
TEST(InteractionsTest, ATruncatedGzipIsAnError) {
  TempDir dir;
  std::string text = "user_id\titem_id\ttimestamp\n";
  for (int k = 0; k < 20000; ++k) text += "u" + std::to_string(k % 97) + "\ti" + std::to_string(k) + "\t" +
                                          std::to_string(1400000000 + k * 7919 % 100003) + "\n";
  WriteFile(dir.File("a.tsv"), text);
  ASSERT_EQ(std::system(("gzip -f " + dir.File("a.tsv")).c_str()), 0);
  ASSERT_TRUE(ReadInteractions(dir.File("a.tsv.gz")).ok());
  const auto whole = std::filesystem::file_size(dir.File("a.tsv.gz"));
  std::filesystem::resize_file(dir.File("a.tsv.gz"), whole / 2);
  const std::string m = ReadError(dir.File("a.tsv.gz"));
  EXPECT_NE(m.find("a.tsv.gz is truncated or corrupt"), std::string::npos) << m;
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
  // Compressed under another name (a download saved as .csv): told by its first bytes.
  std::filesystem::rename(dir.File("a.tsv.gz"), dir.File("plain.csv"));
  r = ReadInteractions(dir.File("plain.csv"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->size(), 3u);
}

}  // namespace
}  // namespace gsau::data
