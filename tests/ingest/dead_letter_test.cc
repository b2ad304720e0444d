#include "gsau/ingest/dead_letter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

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

std::map<std::string, std::string> Errors(const DeadLetterRecord& r) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : r.error) out[k] = v.value_or("(null)");
  return out;
}

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
  EXPECT_EQ(e.count("gsau.error.value_bytes"), 0u) << "the value was not cut";
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
  for (const auto& [k, v] : r.AllHeaders()) payload += k.size() + (v ? v->size() : 0);
  EXPECT_GT(DeadLetterWireBytes(r), payload + 100);
  auto more = r;
  more.value += "x";
  EXPECT_EQ(DeadLetterWireBytes(more), DeadLetterWireBytes(r) + 1);
}

// Whatever has to give way (nothing, the value, the original headers, the key), the dead letter's
// own headers (reason, code, and the source record's topic, partition and offset) stay as they
// were: fitting only adds its notes after them.
TEST(DeadLetterTest, FittingKeepsTheReasonAndTheSourceCoordinates) {
  const kafka::Headers own = {{"gsau.error.reason", "not valid JSON: TAPE_ERROR"},
                              {"gsau.error.code", "not_json"},
                              {"gsau.error.topic", "clicks"},
                              {"gsau.error.partition", "7"},
                              {"gsau.error.offset", "123456789012"},
                              {"gsau.error.timestamp", "1700000000000"}};
  struct Case {
    size_t key, value, header_value, max_bytes;
    bool fitted;
  };
  const std::vector<Case> cases = {
      {10, 5000, 20, 1'000'000, false},    // fits
      {10, 1'040'000, 20, 1'000'000, true},  // the value is cut
      {10, 100, 50'000, 20'000, true},     // the original headers go
      {30'000, 100, 10, 20'000, true},     // the value goes and the key is cut
      {10, 5000, 20, 1000, true},          // librdkafka's smallest limit
  };
  for (const auto& c : cases) {
    SCOPED_TRACE("key " + std::to_string(c.key) + ", value " + std::to_string(c.value) + ", header " +
                 std::to_string(c.header_value) + ", limit " + std::to_string(c.max_bytes));
    auto r = Record(c.key, c.value, c.header_value);
    r.error = own;
    EXPECT_EQ(FitDeadLetter(r, c.max_bytes), c.fitted);
    EXPECT_LE(DeadLetterWireBytes(r), c.max_bytes);
    ASSERT_GE(r.error.size(), own.size());
    EXPECT_EQ(kafka::Headers(r.error.begin(), r.error.begin() + static_cast<std::ptrdiff_t>(own.size())), own);
    for (size_t i = own.size(); i < r.error.size(); ++i) {
      EXPECT_EQ(Errors(r).count(r.error[i].first), 1u) << "a note added once: " << r.error[i].first;
      EXPECT_TRUE(r.error[i].first == "gsau.error.value_bytes" || r.error[i].first == "gsau.error.key_bytes" ||
                  r.error[i].first == "gsau.error.headers_dropped")
          << r.error[i].first;
    }
    // Fitted again, smaller (the topic refused it): still the same.
    FitDeadLetter(r, std::max<size_t>(1000, c.max_bytes / 2));
    EXPECT_EQ(kafka::Headers(r.error.begin(), r.error.begin() + static_cast<std::ptrdiff_t>(own.size())), own);
  }
}

}  // namespace
}  // namespace gsau::ingest
