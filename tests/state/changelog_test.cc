// The change entry codec (white-box: state/src/changelog.h), old entries included.
#include "changelog.h"

#include <gtest/gtest.h>

namespace gsau::state {
namespace {

TEST(ChangeEntryTest, RoundTripsPairsAndClicks) {
  ChangeEntry in{7, 300, {(uint64_t{2} << 32) | 5, (uint64_t{2} << 32) | 9, (uint64_t{40} << 32) | 1}, {}};
  in.clicks_before = {{2, 0}, {40, uint64_t{1} << 40}};
  std::string bytes;
  EncodeChangeEntry(in, &bytes);
  ChangeEntry out;
  ASSERT_TRUE(DecodeChangeEntry(bytes, &out).ok());
  EXPECT_EQ(out.users_before, 7u);
  EXPECT_EQ(out.items_before, 300u);
  EXPECT_EQ(out.pairs, in.pairs);
  EXPECT_EQ(out.clicks_before, in.clicks_before);
  EXPECT_TRUE(out.has_clicks);
  // A second entry appends to the same output.
  ASSERT_TRUE(DecodeChangeEntry(bytes, &out).ok());
  EXPECT_EQ(out.clicks_before.size(), 4u);
}

TEST(ChangeEntryTest, AnEntryFromBeforeClicksWereRecordedSaysSo) {
  ChangeEntry in{1, 1, {(uint64_t{3} << 32) | 4}, {}};
  std::string bytes;
  EncodeChangeEntry(in, &bytes);
  ASSERT_EQ(bytes.back(), '\0');  // the empty click list: one varint 0
  bytes.pop_back();               // what the first format wrote
  ChangeEntry out;
  ASSERT_TRUE(DecodeChangeEntry(bytes, &out).ok());
  EXPECT_EQ(out.pairs, in.pairs);
  EXPECT_FALSE(out.has_clicks);
  // Later entries with clicks do not make the range whole again.
  in.clicks_before = {{3, 10}};
  EncodeChangeEntry(in, &bytes);
  ASSERT_TRUE(DecodeChangeEntry(bytes, &out).ok());
  EXPECT_FALSE(out.has_clicks);
}

TEST(ChangeEntryTest, TruncatedOrPaddedEntriesAreCorrupt) {
  ChangeEntry in{1, 1, {(uint64_t{3} << 32) | 4}, {{3, 300}}};
  std::string bytes;
  EncodeChangeEntry(in, &bytes);
  ChangeEntry out;
  EXPECT_EQ(DecodeChangeEntry(bytes.substr(0, bytes.size() - 1), &out).code(), StatusCode::kCorruption);
  EXPECT_EQ(DecodeChangeEntry(bytes + "x", &out).code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace gsau::state
