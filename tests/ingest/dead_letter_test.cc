#include "gsau/ingest/dead_letter.h"

#include <gtest/gtest.h>

#include <map>

namespace gsau::ingest {
namespace {

DeadLetterRecord Record(size_t key, size_t value, size_t header_value) {
  DeadLetterRecord r;
  r.key = std::string(key, 'k');
  for (size_t i = 0; i < value; ++i) r.value.push_back(static_cast<char>('a' + i % 26));
  r.headers = {{"trace", std::string(header_value, 't')}, {"gsau.error.code", "too_large"},
               {"gsau.error.offset", "17"}};
  return r;
}

std::map<std::string, std::string> Headers(const DeadLetterRecord& r) { return {r.headers.begin(), r.headers.end()}; }

TEST(DeadLetterTest, ARecordThatFitsIsLeftAlone) {
  auto r = Record(10, 5000, 20);
  const auto before = r.headers;
  EXPECT_FALSE(FitDeadLetter(r, DeadLetterWireBytes(r)));
  EXPECT_EQ(r.value.size(), 5000u);
  EXPECT_EQ(r.headers, before);
}

TEST(DeadLetterTest, TheValueKeepsItsHeadAndTheOriginalSizeIsNoted) {
  auto r = Record(10, 1'040'000, 20);
  const std::string original = r.value;
  EXPECT_TRUE(FitDeadLetter(r, 1'000'000));
  EXPECT_LE(DeadLetterWireBytes(r), 1'000'000u);
  EXPECT_GT(r.value.size(), 990'000u) << "only what is needed is cut";
  EXPECT_EQ(r.value, original.substr(0, r.value.size()));
  auto h = Headers(r);
  EXPECT_EQ(h["gsau.error.value_bytes"], "1040000");
  EXPECT_EQ(h["trace"], std::string(20, 't')) << "the original headers stay while the value can give way";
  EXPECT_EQ(h.count("gsau.error.headers_dropped"), 0u);
  EXPECT_EQ(r.key, std::string(10, 'k'));
}

TEST(DeadLetterTest, OriginalHeadersGoNextThenTheKey) {
  auto r = Record(10, 100, 50'000);
  EXPECT_TRUE(FitDeadLetter(r, 20'000));
  EXPECT_LE(DeadLetterWireBytes(r), 20'000u);
  EXPECT_TRUE(r.value.empty());
  auto h = Headers(r);
  EXPECT_EQ(h.count("trace"), 0u);
  EXPECT_EQ(h["gsau.error.headers_dropped"], "1");
  EXPECT_EQ(h["gsau.error.value_bytes"], "100");
  EXPECT_EQ(h["gsau.error.code"], "too_large") << "the reason headers are kept";
  EXPECT_EQ(h["gsau.error.offset"], "17");
  EXPECT_EQ(r.key, std::string(10, 'k'));

  auto big_key = Record(30'000, 100, 10);
  EXPECT_TRUE(FitDeadLetter(big_key, 20'000));
  EXPECT_LE(DeadLetterWireBytes(big_key), 20'000u);
  EXPECT_EQ(Headers(big_key)["gsau.error.key_bytes"], "30000");
  EXPECT_GT(big_key.key.size(), 15'000u);
  EXPECT_EQ(big_key.key, std::string(big_key.key.size(), 'k'));
}

TEST(DeadLetterTest, WireBytesCountEveryPartWithAnAllowance) {
  const auto r = Record(10, 1000, 20);
  EXPECT_GT(DeadLetterWireBytes(r), 10u + 1000u + 20u + 5u + 15u + 9u + 17u + 17u + 2u);
  auto more = r;
  more.value += "x";
  EXPECT_EQ(DeadLetterWireBytes(more), DeadLetterWireBytes(r) + 1);
}

}  // namespace
}  // namespace gsau::ingest
