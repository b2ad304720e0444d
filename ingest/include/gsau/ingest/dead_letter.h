// A dead-letter record: a bad event's original key, value and headers plus the gsau.error.*
// headers, and the rule that makes it fit the dead-letter topic.
//
// A record the broker accepted on the clicks topic can still be too large to produce again:
// Java clients write up to ~1 MiB by default, librdkafka refuses anything above its
// message.max.bytes (1,000,000 by default) before sending, and the dead-letter topic's
// max.message.bytes may be smaller still. Refused for ever, it would stall ingest (the batch
// holding it commits only once its dead letter is acknowledged). So the record is cut to the
// limit, each step noting what it cut in a header:
//   - the value keeps its head when cutting it alone is enough (gsau.error.value_bytes = the
//     original value's size);
//   - otherwise the original headers go first (gsau.error.headers_dropped = how many), then the
//     value is cut as far as still needed, then the key keeps its head (gsau.error.key_bytes).
// The gsau.error.* headers of this dead letter are never cut. The whole record stays in the
// clicks topic, at gsau.error.topic/partition/offset, for as long as that topic keeps it.
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
  bool null_key = false;    // the original had no key (not an empty one)
  std::string value;
  bool null_value = false;  // the original had a null value (not an empty one)
  kafka::Headers headers;   // the original's
  kafka::Headers error;     // gsau.error.*, written after `headers`
  int64_t timestamp_ms = 0;

  // The headers as produced: the original's, then the error ones.
  kafka::Headers AllHeaders() const;
};

// Upper bound of the bytes the record takes against librdkafka's message.max.bytes (and a
// topic's max.message.bytes): its payload plus an allowance for the framing of the record and
// of each header.
size_t DeadLetterWireBytes(const DeadLetterRecord& r);

// Cuts `r` (as above) until DeadLetterWireBytes(r) <= max_bytes or nothing is left to cut.
// Returns false when nothing was cut.
bool FitDeadLetter(DeadLetterRecord& r, size_t max_bytes);

}  // namespace gsau::ingest
