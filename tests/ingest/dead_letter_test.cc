#include "gsau/ingest/dead_letter.h"

#include <gtest/gtest.h>

#include <map>

namespace gsau::ingest {
namespace {

DeadLetterRecord Record(size_t key, size_t value, size_t header_value) {
  DeadLetterRecord r;
  r.key = std::string(key, 'k');
  for (size_t i = 0; i < value; ++i) r.value.push_back(static_cast<char>('a' + i % 26));
  r.headers = {{"trace", std::string(header_value, 't')}, {"gsau.error.code", "an earlier dead letter's"}};
  r.error = {{"gsau.error.code", "too_large"}, {"gsau.error.offset", "17"}};
  return r;
}

std::map<std::string, std::string> Errors(const DeadLetterRecord& r) { return {r.error.begin(), r.error.end()}; }

TEST(DeadLetterTest, ARecordThatFitsIsLeftAlone) {
  auto r = Record(10, 5000, 20);
  const auto before = r.AllHeaders();
  EXPECT_FALSE(FitDeadLetter(r, DeadLetterWireBytes(r)));
  EXPECT_EQ(r.value.size(), 5000u);
  EXPECT_EQ(r.AllHeaders(), before);
  ASSERT_EQ(before.size(), 4u);
  EXPECT_EQ(before[0].first, "trace") << "the original headers first, then the error ones";
  EXPECT_EQ(before[3].first, "gsau.error.offset");
}

TEST(DeadLetterTest, TheValueKeepsItsHeadWhenCuttingItIsEnough) {
  auto r = Record(10, 1'040'000, 20);
  const std::string original = r.value;
  EXPECT_TRUE(FitDeadLetter(r, 1'000'000));
  EXPECT_LE(DeadLetterWireBytes(r), 1'000'000u);
  EXPECT_GT(r.value.size(), 999'000u) << "only what is needed is cut";
  EXPECT_EQ(r.value, original.substr(0, r.value.size()));
  EXPECT_EQ(Errors(r)["gsau.error.value_bytes"], "1040000");
  EXPECT_EQ(r.headers.size(), 2u) << "the original headers stay while the value can give way";
  EXPECT_EQ(Errors(r).count("gsau.error.headers_dropped"), 0u);
  EXPECT_EQ(r.key, std::string(10, 'k'));

  // Fitted again to a smaller limit (the topic refused it): the note keeps the original size.
  EXPECT_TRUE(FitDeadLetter(r, 500'000));
  EXPECT_LE(DeadLetterWireBytes(r), 500'000u);
  EXPECT_EQ(r.value, original.substr(0, r.value.size()));
  EXPECT_EQ(r.error.size(), 3u);
  EXPECT_EQ(Errors(r)["gsau.error.value_bytes"], "1040000");
}

TEST(DeadLetterTest, LargeOriginalHeadersGoBeforeASmallValueThenTheKeyIsCut) {
  auto r = Record(10, 100, 50'000);
  EXPECT_TRUE(FitDeadLetter(r, 20'000));
  EXPECT_LE(DeadLetterWireBytes(r), 20'000u);
  EXPECT_EQ(r.value.size(), 100u) << "dropping the headers was enough";
  EXPECT_TRUE(r.headers.empty()) << "every original header, even one named gsau.error.*";
  auto e = Errors(r);
  EXPECT_EQ(e["gsau.error.headers_dropped"], "2");
  EXPECT_EQ(e["gsau.error.code"], "too_large") << "the dead letter's own reason is kept";
  EXPECT_EQ(e["gsau.error.offset"], "17");
  EXPECT_EQ(r.key, std::string(10, 'k'));

  auto big_key = Record(30'000, 100, 10);
  EXPECT_TRUE(FitDeadLetter(big_key, 20'000));
  EXPECT_LE(DeadLetterWireBytes(big_key), 20'000u);
  EXPECT_TRUE(big_key.value.empty());
  EXPECT_EQ(Errors(big_key)["gsau.error.key_bytes"], "30000");
  EXPECT_EQ(Errors(big_key)["gsau.error.value_bytes"], "100");
  EXPECT_GT(big_key.key.size(), 15'000u);
  EXPECT_EQ(big_key.key, std::string(big_key.key.size(), 'k'));
}

TEST(DeadLetterTest, FitsLibrdkafkasSmallestLimit) {
  auto r = Record(10, 5000, 20);
  EXPECT_TRUE(FitDeadLetter(r, 1000));
  EXPECT_LE(DeadLetterWireBytes(r), 1000u);
  EXPECT_FALSE(r.value.empty());
}

TEST(DeadLetterTest, WireBytesCountEveryPartWithAnAllowance) {
  const auto r = Record(10, 1000, 20);
  size_t payload = r.key.size() + r.value.size();
  for (const auto& [k, v] : r.AllHeaders()) payload += k.size() + v.size();
  EXPECT_GT(DeadLetterWireBytes(r), payload + 100);
  auto more = r;
  more.value += "x";
  EXPECT_EQ(DeadLetterWireBytes(more), DeadLetterWireBytes(r) + 1);
}

}  // namespace
}  // namespace gsau::ingest
