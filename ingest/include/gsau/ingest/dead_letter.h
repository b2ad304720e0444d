// A dead-letter record: a bad event's original key, value and headers plus the gsau.error.*
// headers, and the rule that makes it fit the dead-letter producer.
//
// A record the broker accepted on the clicks topic can still be too large to produce again:
// Java clients write up to ~1 MiB by default, librdkafka refuses anything above its
// message.max.bytes (1,000,000 by default) before sending. Refused for ever, it would stall
// ingest (the batch holding it can only commit once its dead letter is acknowledged). So the
// record is cut to the limit, in this order, each step saying what it cut:
//   1. the value keeps its head; header gsau.error.value_bytes = the original value's size;
//   2. the original headers are dropped (the gsau.error.* ones kept); gsau.error.headers_dropped
//      = how many;
//   3. the key keeps its head; gsau.error.key_bytes = the original key's size.
// The whole record stays in the clicks topic, at gsau.error.topic/partition/offset, for as long
// as that topic keeps it.
//
// Thread safety: plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "gsau/kafka/producer.h"

namespace gsau::ingest {

struct DeadLetterRecord {
  std::string key;
  std::string value;
  bool null_value = false;  // the original had a null value (not an empty one)
  kafka::Headers headers;   // the original's, then gsau.error.*
  int64_t timestamp_ms = 0;
};

// Upper bound of the bytes the record takes against librdkafka's message.max.bytes (its
// payload plus a generous allowance for the record's framing and each header's).
size_t DeadLetterWireBytes(const DeadLetterRecord& r);

// Cuts `r` (as above) until DeadLetterWireBytes(r) <= max_bytes. Returns false when nothing was
// cut.
bool FitDeadLetter(DeadLetterRecord& r, size_t max_bytes);

}  // namespace gsau::ingest
