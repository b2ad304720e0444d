// The on-disk layout of the state store: column families, keys and values.
//
// Integers in keys are big-endian so that RocksDB's bytewise order is numeric order (a user's
// session and neighbours are then one contiguous range). Integers in values are little-endian
// fixed width, except the change entries (varints: they are the bulk of the feed).
//
//  family      key                                  value
//  ----------  -----------------------------------  ----------------------------------------
//  meta        "format"                             "2" ("1": change entries without clicks)
//              "seq"                                u64 last applied batch sequence
//              "session_length"                     u32 the N sessions were last trimmed to
//              "off" topic 0x00 be32(partition)      i64 next offset to consume
//  user_ids    external user id                     u32 internal id
//  item_ids    external item id                     u32 internal id
//  sessions    be32(user) be64(click position)      u32 item, i64 ts_ms
//  edges       be32(user) be32(item)                u32 count, i64 last_ts_ms
//  changes     be64(batch seq)                      varint users_before, items_before, n,
//                                                   then n ascending (user<<32|item) deltas,
//                                                   then m, then m (user delta, clicks the
//                                                   user had before the batch) (absent from
//                                                   entries written before it was added)
//
// A user's click positions count from 0 and never repeat; the session is the positions
// [clicks - N, clicks), older ones are deleted as new ones arrive.
//
// Not stored: degrees, click counts and the item -> users reverse adjacency. They follow from
// the edges (degree = edges of the node, clicks = sum of their counts, a user's next click
// position = its clicks, an item's users = the edges ending at it), so Open rebuilds them in
// memory with one scan of `edges`, and a batch writes neither a counter per touched node nor
// a reverse entry per new edge. Measured at batch 1,000 on amazon-beauty, the reverse entry
// alone cost more writer CPU (~1.5 us per event) than the edge or the session entry: memtable
// inserts dominate the write path.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace gsau::state::keys {

// Column family order, as opened; index 0 is RocksDB's "default" (unused).
enum Cf : int {
  kDefault = 0,
  kMeta,
  kUserIds,
  kItemIds,
  kSessions,
  kEdges,
  kChanges,
  kNumCfs,
};
inline constexpr const char* kCfNames[kNumCfs] = {"default",  "meta",  "user_ids", "item_ids",
                                                  "sessions", "edges", "changes"};

inline constexpr std::string_view kFormatKey = "format";
// "2" added the clicks to change entries, which a reader of "1" rejects as trailing bytes: a
// writable open of a "1" store stamps it "2", so that an older binary says so instead.
inline constexpr std::string_view kFormatVersion = "2";
inline constexpr std::string_view kFormatVersionNoClicks = "1";
inline constexpr std::string_view kSeqKey = "seq";
inline constexpr std::string_view kSessionLengthKey = "session_length";
inline constexpr std::string_view kOffsetPrefix = "off";
// + topic '\0' partition (as OffsetKey) -> next offset (8) and the fingerprint of the record before
// it (8); valid while the "off" value is that offset. Older versions ignore the key.
inline constexpr std::string_view kOffsetRecordPrefix = "ofr";

inline void PutBE32(std::string* s, uint32_t v) {
  char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
               static_cast<char>(v)};
  s->append(b, 4);
}
inline void PutBE64(std::string* s, uint64_t v) {
  PutBE32(s, static_cast<uint32_t>(v >> 32));
  PutBE32(s, static_cast<uint32_t>(v));
}
inline uint32_t GetBE32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | uint32_t{u[3]};
}
inline uint64_t GetBE64(const char* p) {
  return (uint64_t{GetBE32(p)} << 32) | GetBE32(p + 4);
}

// Little-endian fixed width, written as the host's bytes (memcpy, and raw copies in the store):
// right on every target this project builds for (x86-64, arm64), and a build for a big-endian
// host stops here rather than writing stores other hosts would misread.
static_assert(std::endian::native == std::endian::little, "state: values are stored in host byte order");
template <typename T>
inline void PutFixed(std::string* s, T v) {
  static_assert(std::is_trivially_copyable_v<T>);
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s->append(b, sizeof(T));
}
template <typename T>
inline T GetFixed(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

inline void PutVarint(std::string* s, uint64_t v) {
  while (v >= 0x80) {
    s->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  s->push_back(static_cast<char>(v));
}
// Reads a varint from [*p, end); false when truncated, too long, or past 64 bits (a tenth byte
// holds bit 63 only: more was cut off by the shift, a corrupt value read as another).
inline bool GetVarint(const char** p, const char* end, uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift <= 63 && *p < end; shift += 7) {
    const auto byte = static_cast<unsigned char>(*(*p)++);
    if (shift == 63 && (byte & 0x7e) != 0) return false;
    r |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

// Fixed-size keys built on the stack.
struct Key8 {
  char data[8];
  std::string_view view() const { return {data, 8}; }
};
struct Key12 {
  char data[12];
  std::string_view view() const { return {data, 12}; }
};

inline void EncodeBE32(char* p, uint32_t v) {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}

inline Key8 PairKey(uint32_t a, uint32_t b) {
  Key8 k;
  EncodeBE32(k.data, a);
  EncodeBE32(k.data + 4, b);
  return k;
}
inline Key8 SeqKey(uint64_t seq) {
  Key8 k;
  EncodeBE32(k.data, static_cast<uint32_t>(seq >> 32));
  EncodeBE32(k.data + 4, static_cast<uint32_t>(seq));
  return k;
}
inline Key12 SessionKey(uint32_t user, uint64_t pos) {
  Key12 k;
  EncodeBE32(k.data, user);
  EncodeBE32(k.data + 4, static_cast<uint32_t>(pos >> 32));
  EncodeBE32(k.data + 8, static_cast<uint32_t>(pos));
  return k;
}

inline std::string OffsetKey(std::string_view topic, int32_t partition,
                             std::string_view prefix = kOffsetPrefix) {
  std::string k(prefix);
  k.append(topic);
  k.push_back('\0');
  PutBE32(&k, static_cast<uint32_t>(partition));
  return k;
}

// Values.
struct EdgeValue {
  uint32_t count = 0;
  int64_t last_ts_ms = 0;
};
inline constexpr size_t kEdgeValueSize = 12;
inline void EncodeEdgeValue(char* p, const EdgeValue& v) {
  std::memcpy(p, &v.count, 4);
  std::memcpy(p + 4, &v.last_ts_ms, 8);
}
inline EdgeValue DecodeEdgeValue(const char* p) {
  return {GetFixed<uint32_t>(p), GetFixed<int64_t>(p + 4)};
}

inline constexpr size_t kSessionValueSize = 12;
inline void EncodeSessionValue(char* p, uint32_t item, int64_t ts_ms) {
  std::memcpy(p, &item, 4);
  std::memcpy(p + 4, &ts_ms, 8);
}


}  // namespace gsau::state::keys
