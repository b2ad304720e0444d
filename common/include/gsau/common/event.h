// ClickEvent: one validated click, as it flows from ingest (or replay) into the state store.
//
// Ids are the producers' external ids: non-empty UTF-8, at most kMaxIdBytes bytes
// (SYSTEM.md, "Input"). Validation happens at the edge (ingest's decoder); code that takes a
// ClickEvent may rely on these rules holding.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace gsau {

inline constexpr size_t kMaxIdBytes = 256;
// The type of an event that names none (SYSTEM.md: `event` is optional).
inline constexpr std::string_view kDefaultEventType = "click";

struct ClickEvent {
  std::string user_id;
  std::string item_id;
  int64_t ts_ms = 0;       // event time, ms since the Unix epoch
  std::string event_type;  // kDefaultEventType unless the producer said otherwise

  friend bool operator==(const ClickEvent&, const ClickEvent&) = default;
};

// Where an event came from: the Kafka coordinates the state stores as "next offset".
struct TopicPartition {
  std::string topic;
  int32_t partition = 0;

  friend bool operator==(const TopicPartition&, const TopicPartition&) = default;
  friend auto operator<=>(const TopicPartition&, const TopicPartition&) = default;
};

struct PartitionOffset {
  TopicPartition tp;
  int64_t next_offset = 0;  // the offset of the next message to consume
  // A fingerprint of the record at next_offset - 1 as it was consumed (0: none known), so that
  // a log replaced under the same name (a topic deleted and created again) is told from the one
  // this state read: ingest compares it with the record found at that offset.
  uint64_t last_record = 0;

  friend bool operator==(const PartitionOffset&, const PartitionOffset&) = default;
};

}  // namespace gsau
