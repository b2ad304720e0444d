// The change entry codec (white-box: state/src/changelog.h), old entries included.
#include "changelog.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "keys.h"

namespace gsau::state {
namespace {

void ExpectSameEntry(const ChangeEntry& got, const ChangeEntry& want) {
  EXPECT_EQ(got.users_before, want.users_before);
  EXPECT_EQ(got.items_before, want.items_before);
  EXPECT_EQ(got.pairs, want.pairs);
  EXPECT_EQ(got.clicks_before, want.clicks_before);
  EXPECT_EQ(got.has_clicks, want.has_clicks);
}

TEST(ChangeEntryTest, RoundTripsPairsAndClicks) {
  ChangeEntry in{7, 300, {(uint64_t{2} << 32) | 5, (uint64_t{2} << 32) | 9, (uint64_t{40} << 32) | 1}, {}};
  in.clicks_before = {{2, 0}, {40, uint64_t{1} << 40}};
  std::string bytes;
  EncodeChangeEntry(in, &bytes);
  ChangeEntry out;
  ASSERT_TRUE(DecodeChangeEntry(bytes, &out).ok());
  ExpectSameEntry(out, in);
  // A second entry appends to the same output.
  ASSERT_TRUE(DecodeChangeEntry(bytes, &out).ok());
  EXPECT_EQ(out.clicks_before.size(), 4u);
}

// The bytes stores on disk hold, written out by hand (LEB128 varints, pairs and users as deltas):
// a change of the format that encodes and decodes alike would pass the round trip above and
// misread every existing store.
TEST(ChangeEntryTest, TheFormatOnDiskIsFixed) {
  const std::string bytes("\x07"                          // users_before 7
                          "\xAC\x02"                      // items_before 300 = 0x2C | 2 << 7
                          "\x03"                          // three pairs
                          "\x05\x04"                      // (0, 5), then (0, 9): +4
                          "\xF8\xFF\xFF\xFF\x0F"          // (1, 1): +0xFFFFFFF8
                          "\x02"                          // two users' clicks
                          "\x00\x00"                      // user 0: 0 clicks
                          "\x28\x80\x80\x80\x80\x80\x20",  // user 40 (+40): 1 << 40 clicks
                          21);
  ChangeEntry entry{7, 300, {5, 9, (uint64_t{1} << 32) | 1}, {{0, 0}, {40, uint64_t{1} << 40}}};
  std::string encoded;
  EncodeChangeEntry(entry, &encoded);
  EXPECT_EQ(encoded, bytes);
  ChangeEntry decoded;
  ASSERT_TRUE(DecodeChangeEntry(bytes, &decoded).ok());
  ExpectSameEntry(decoded, entry);
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

// Values no encoder writes decode as corrupt, not as other values: an id count past 32 bits
// (ids are u32), and a varint whose tenth byte carries more than bit 63 (cut off, it read as a
// smaller number).
TEST(ChangeEntryTest, OutOfRangeCountsAndOverlongVarintsAreCorrupt) {
  ChangeEntry out;
  std::string bytes;
  keys::PutVarint(&bytes, uint64_t{1} << 32);  // users_before
  keys::PutVarint(&bytes, 1);
  keys::PutVarint(&bytes, 0);
  EXPECT_EQ(DecodeChangeEntry(bytes, &out).code(), StatusCode::kCorruption);

  std::string max;
  keys::PutVarint(&max, UINT64_MAX);  // ten bytes, the last 0x01: the widest valid varint
  ASSERT_EQ(max.size(), 10u);
  const char* p = max.data();
  uint64_t v = 0;
  ASSERT_TRUE(keys::GetVarint(&p, max.data() + max.size(), &v));
  EXPECT_EQ(v, UINT64_MAX);
  std::string overlong = max;
  overlong.back() = 0x03;  // bit 64 set: nothing that fits in 64 bits
  p = overlong.data();
  EXPECT_FALSE(keys::GetVarint(&p, overlong.data() + overlong.size(), &v));
  bytes.clear();
  keys::PutVarint(&bytes, 1);
  keys::PutVarint(&bytes, 1);
  keys::PutVarint(&bytes, 1);
  bytes += overlong;  // the one pair's delta
  EXPECT_EQ(DecodeChangeEntry(bytes, &out).code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace gsau::state
