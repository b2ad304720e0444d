// Producer: an idempotent (acks=all) Kafka producer with delivery accounting.
//
// Produce() enqueues; delivery is confirmed asynchronously and counted. A full local queue
// is handled by serving delivery reports and retrying (no message is dropped for it).
// Flush() waits for every outstanding delivery and reports the first failure, if any.
//
// Thread safety: Produce() may be called from several threads; Flush() and destruction
// from one. The destructor flushes for up to ProducerOptions::close_timeout_ms.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "gsau/common/status.h"
#include "gsau/kafka/options.h"

namespace gsau::kafka {

struct ProducerOptions {
  bool idempotent = true;             // enable.idempotence (implies acks=all)
  int linger_ms = 5;                  // batching delay, ms: throughput vs latency
  int batch_bytes = 1 << 20;          // batch.size, bytes
  std::string compression = "lz4";    // none | gzip | snappy | lz4 | zstd
  int message_timeout_ms = 300000;    // delivery gives up after this, ms
  int close_timeout_ms = 30000;       // how long the destructor waits for deliveries, ms
};

struct DeliveryCounts {
  int64_t produced = 0;   // accepted by Produce()
  int64_t delivered = 0;  // acknowledged by the broker
  int64_t failed = 0;     // delivery failed permanently
  int64_t too_large = 0;  // of those, refused as too large (the topic's max.message.bytes)
};

class Producer {
 public:
  static Result<std::unique_ptr<Producer>> Create(const KafkaOptions& kafka, const ProducerOptions& options);
  virtual ~Producer() = default;

  // Enqueues one record. `timestamp_ms` 0 = now. An empty `value` with `tombstone` set
  // produces a null value (a compaction tombstone).
  virtual Status Produce(std::string_view topic, std::string_view key, std::string_view value,
                         const Headers& headers = {}, int64_t timestamp_ms = 0, bool tombstone = false) = 0;
  // Serves delivery callbacks without blocking (call it now and then in a loop).
  virtual void Poll() = 0;
  // Waits up to `timeout_ms` for all outstanding deliveries. Fails if any delivery failed
  // since the last Flush() or if some are still outstanding at the deadline.
  virtual Status Flush(int timeout_ms) = 0;
  virtual DeliveryCounts counts() const = 0;
  // The largest record Produce() takes (librdkafka's message.max.bytes: key, value, headers and
  // framing), bytes.
  virtual int64_t max_message_bytes() const = 0;
};

}  // namespace gsau::kafka
