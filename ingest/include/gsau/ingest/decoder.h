// Decoder: one Kafka record's value -> a validated ClickEvent, or the reason it is bad.
//
// Rules (SYSTEM.md, "Input"): the value is a JSON object with
//  - "user_id", "item_id": required; non-empty strings of at most kMaxIdBytes bytes of valid
//    UTF-8, or JSON integers (taken as their decimal text);
//  - "ts": optional integer, event time in ms since the Unix epoch, in
//    [DecoderOptions::min_ts_ms, DecoderOptions::max_ts_ms]; when absent the Kafka message
//    timestamp is used (and must itself be in that range);
//  - "event": optional string, default "click".
// Unknown fields are ignored; one of these four given twice is bad. Anything else is a bad
// event with a BadReason and a message.
//
// Thread safety: a Decoder owns a parser and a buffer: use one per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "gsau/common/event.h"

namespace gsau::ingest {

// Why an event is bad. Also the `reason` label of the dead-letter counter (bounded set).
enum class BadReason {
  kEmptyValue,
  kTooLarge,
  kNotJson,         // not parseable JSON, or not UTF-8
  kNotObject,       // JSON, but not an object
  kMissingField,    // user_id or item_id absent
  kWrongType,       // a field of the wrong JSON type (ids: string/integer; ts: a number; event: a non-empty string)
  kBadId,           // empty id, or longer than kMaxIdBytes
  kBadTime,         // negative, absurd or non-integer time (1.5, beyond 64 bits), or no usable time at all
  kDuplicateField,  // user_id, item_id, ts or event given more than once
};
inline constexpr int kBadReasonCount = static_cast<int>(BadReason::kDuplicateField) + 1;  // keep it the last

// "empty_value", "too_large", ... (stable; used as a metric label).
std::string_view BadReasonName(BadReason r);

struct DecoderOptions {
  // Values above this many bytes are bad without being parsed. Unit: bytes.
  size_t max_value_bytes = 64 * 1024;
  // Latest acceptable event time, ms since the epoch (default 2100-01-01). Anything later
  // is taken to be a unit mistake (micro- or nanoseconds).
  int64_t max_ts_ms = 4'102'444'800'000;
  // Earliest acceptable event time, ms since the epoch (default 1973-03-03T09:46:40Z, 1e11).
  // Anything earlier is taken to be a time in seconds: every date after 1973 is above it in
  // ms and every date before the year 5138 below it in seconds. Accepted, such a click would
  // sort before all others (its session, the freshness metrics). 0 accepts any time from the
  // epoch on.
  int64_t min_ts_ms = 100'000'000'000;
  // Latest acceptable event time relative to the clock Decode is given, ms (0: no such limit,
  // max_ts_ms alone). A click stamped days ahead (a producer's clock ahead) would sort after
  // every real one, pin its edge's time and its user's event_time_ms, and hide from the
  // freshness histogram (a negative age).
  int64_t max_ahead_ms = 0;
};

struct DecodeResult {
  bool ok = false;
  ClickEvent event;     // when ok
  BadReason reason{};   // when !ok
  std::string message;  // when !ok: for the gsau.error.reason header, e.g. "missing user_id"
};

class Decoder {
 public:
  explicit Decoder(DecoderOptions options = {});
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // `kafka_ts_ms` is the record's timestamp (negative when it has none: librdkafka's -1; 0 is a
  // time, the epoch, held to the range as a ts is). `now_ms`: the wall clock, for max_ahead_ms
  // (negative: not checked).
  // The result is valid until the next call.
  const DecodeResult& Decode(std::string_view value, int64_t kafka_ts_ms, int64_t now_ms = -1);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gsau::ingest
