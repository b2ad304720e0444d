// Producer: an idempotent (acks=all) Kafka producer with delivery accounting.
//
// Produce() enqueues; delivery is confirmed asynchronously and counted. A full local queue
// is handled by serving delivery reports and retrying (no message is dropped for it), for at
// most ProducerOptions::queue_full_timeout_ms when that is set; then the record is refused.
// Flush() waits for every outstanding delivery and reports the first failure, if any.
// With ProducerOptions::keep_failed, a record whose delivery failed for good is kept while it
// is the newest of its topic and key, and TakeFailed() hands it back to be produced again
// (for compacted topics, where the newest record of a key is the one that counts).
//
// A keyed record goes to the partition the Java client would choose (murmur2 of the key,
// Kafka's DefaultPartitioner); a record without a key to a random one.
//
// Thread safety: Produce() may be called from several threads; Flush() and destruction
// from one. With keep_failed, the Produce() calls of one topic and key must not overlap (the
// publisher's do not: it produces under its lock): which record of a key is the newest is
// kept for calls in order, and two overlapping refusals could lose the failure of the one
// before them. The destructor flushes for up to ProducerOptions::close_timeout_ms.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gsau/common/status.h"
#include "gsau/kafka/options.h"

namespace gsau::kafka {

struct ProducerOptions {
  bool idempotent = true;             // enable.idempotence (implies acks=all)
  int linger_ms = 5;                  // batching delay, ms: throughput vs latency
  int batch_bytes = 1 << 20;          // batch.size, bytes
  // > 0: batch.size is at most this, whatever kafka.properties say (a topic's max.message.bytes
  // that whole batches must fit), bytes.
  int batch_bytes_cap = 0;
  std::string compression = "lz4";    // none | gzip | snappy | lz4 | zstd
  int message_timeout_ms = 300000;    // delivery gives up after this, ms
  int close_timeout_ms = 30000;       // how long the destructor waits for deliveries, ms
  // How long Produce() waits for room in a full local queue before it refuses the record
  // (kResourceExhausted), ms; -1 = until there is room (while the brokers are away that is when
  // records time out, message_timeout_ms). A caller that holds a lock others need sets it.
  int queue_full_timeout_ms = -1;
  bool keep_failed = false;           // keep failed records for TakeFailed() (see above)
  // allow.auto.create.topics. false for topics that need settings of their own (created by the
  // owner at start-up): one deleted while the producer runs then fails its deliveries ("Unknown
  // topic") instead of being created again by the broker with its defaults.
  bool auto_create_topics = true;
  std::string name = "kafka producer";  // names it in the log (librdkafka's lines and errors)
};

// A record whose delivery failed for good, as it was produced (the timestamp aside).
struct FailedRecord {
  std::string topic;
  std::string key;
  bool null_key = false;  // produced without a key (`key` is empty)
  std::string value;
  bool tombstone = false;  // a null value
  Headers headers;
  std::string error;  // why its delivery failed
};

struct DeliveryCounts {
  int64_t produced = 0;   // accepted by Produce()
  int64_t delivered = 0;  // acknowledged by the broker
  int64_t failed = 0;     // delivery failed permanently
  int64_t too_large = 0;  // of those, refused as too large (the topic's max.message.bytes)
  // Client-level errors librdkafka reported (a broker unreachable or gone, authentication),
  // fatal ones aside; it retries these itself. Counted as delivery reports are served.
  int64_t client_errors = 0;
};

class Producer {
 public:
  static Result<std::unique_ptr<Producer>> Create(const KafkaOptions& kafka, const ProducerOptions& options);
  virtual ~Producer() = default;

  // Enqueues one record. `timestamp_ms` 0 = now. An empty `value` with `tombstone` set
  // produces a null value (a compaction tombstone). Internal once the producer has hit a
  // fatal error (an idempotent producer that can no longer keep its guarantees): no later call
  // succeeds, the owner must stop and a new producer take over.
  virtual Status Produce(std::string_view topic, std::string_view key, std::string_view value,
                         const Headers& headers = {}, int64_t timestamp_ms = 0, bool tombstone = false) = 0;
  // Serves delivery callbacks without blocking (call it now and then in a loop).
  virtual void Poll() = 0;
  // Waits up to `timeout_ms` for all outstanding deliveries. Fails if any delivery failed
  // since the last Flush() or if some are still outstanding at the deadline.
  virtual Status Flush(int timeout_ms) = 0;
  virtual DeliveryCounts counts() const = 0;
  // keep_failed: the records kept since the last call, at most one per topic and key, each
  // newer than any record of its key produced before it; a record produced for the key since
  // its failure drops it (that one is newer). Empty without keep_failed.
  virtual std::vector<FailedRecord> TakeFailed() = 0;
  // keep_failed: how many records TakeFailed() would hand back now, and how many of them are
  // of `topic`.
  virtual size_t KeptFailedCount() const = 0;
  virtual size_t KeptFailedCountOf(std::string_view topic) const = 0;
  // keep_failed: records are numbered 1, 2, ... as Produce() takes them. The number of the last
  // one, and the largest n such that every record numbered up to n has had its delivery report
  // (delivered or failed; serves the reports due first), so that a caller can learn that what
  // it handed over before some point is settled while later records are still in flight.
  // 0 without keep_failed.
  virtual uint64_t last_numbered() const = 0;
  virtual uint64_t reported_through() = 0;
  // The same over the records of `topic` only: every record of it numbered up to the result
  // has had its report (records of other topics still in flight hold nothing back).
  virtual uint64_t reported_through_of(std::string_view topic) = 0;
  // Records of `topic` the broker acknowledged so far (counted as delivery reports are served).
  virtual int64_t delivered_to(std::string_view topic) const = 0;
  // keep_failed: records of `topic` whose delivery failed for good, counted together with the
  // report (a record reported_through_of covers has its failure counted, and a failure counted
  // is kept already unless a newer record of its key superseded it). 0 without keep_failed.
  virtual int64_t failed_to(std::string_view topic) const = 0;
  // True once the producer has hit a fatal error (see Produce).
  virtual bool failed_fatally() const = 0;
  // Raises a fatal error in the client, as the broker could (librdkafka's test hook). Tests only.
  virtual void RaiseFatalErrorForTesting() = 0;
  // The client's effective value of a librdkafka property ("" when unknown): what the producer
  // promises (idempotence, acks) checked as the client holds it. Tests only.
  virtual std::string ConfigValueForTesting(const std::string& key) const = 0;
  // The largest record Produce() takes (librdkafka's message.max.bytes: key, value, headers and
  // framing), bytes.
  virtual int64_t max_message_bytes() const = 0;
};

}  // namespace gsau::kafka
