// Ingestor: Kafka click events -> the state store, each event applied exactly once.
//
// Protocol, per micro-batch (what the client has fetched when the batch is applied: it closes
// as soon as no fetched record is left, or at batch_max_events, or batch_max_wait_ms after it
// opened, whichever comes first):
//  1. consume records; decode each; bad ones go to the dead-letter topic (original key,
//     value and headers plus gsau.error.{reason,code,topic,partition,offset}); event types
//     not accepted are skipped; a good event keyed otherwise than by its user_id is applied and
//     counted (IngestCounters::miskeyed);
//  2. wait until every dead-letter record of the batch is acknowledged (so a bad event is
//     never lost), then apply the good events and the partitions' next offsets as ONE state
//     batch;
//  3. hand the applied batch to the sink (the learner), then commit the offsets to Kafka
//     too (at most every commit_interval_ms, and on revoke and stop), for lag tools only:
//     the offsets in the state are the source of truth, and on every assignment the
//     consumer seeks to them (to the beginning where the state has none; past a batch this
//     process still holds for the partition, one a revoke during a stop could not apply).
// A crash anywhere loses nothing and applies nothing twice in the state; a dead-letter record
// may be written twice: after a crash between 2's two steps, and when a letter's delivery
// fails (an outage), since the batch's letters are then produced again, the acknowledged ones
// too (readers tell copies apart by gsau.error.topic/partition/offset). A record the client delivers again below
// a partition's next offset is skipped and counted (OffsetGuard, gsau_ingest_records_redelivered_total).
//
// Partitions that move between processes of one group: every process keeps its own state, so
// the new owner continues a partition from the offset in ITS state (the beginning if it never
// had it) and each state holds every event of the partitions it consumed exactly once.
//
// Backpressure: when the sink has no room for another batch, every assigned partition is
// paused; consumption resumes when it has drained to half its capacity (AppliedSink).
// Dead letters are timestamped when produced; the original record's timestamp, when it had one,
// is in gsau.error.timestamp (ms). A fatal error of the dead-letter producer, or a refusal as too
// large (whose batches must then shrink), replaces it with a new one, which produces again the
// batch's dead letters the old one had been handed.
// Failures: an unreachable broker or a missing topic is retried (librdkafka reconnects; our
// own dead-letter and apply steps back off exponentially), logged at most every few seconds
// and counted in gsau_errors_total{stage="ingest"}; none of them ends Run(). Our retries do not
// poll the consumer: one that outlasts max.poll.interval.ms (300 s unless kafka.properties say
// otherwise) leaves the group, whose other members then take the partitions (each from its own
// state), and this process joins again when the retry ends (each state still holds each event of
// the partitions it consumed once; the batch the retry applied may be in the new owner's too).
//
// Thread safety: Run() on one thread; counters() from any. The store, the sink and the registry
// are borrowed: they must outlive the Ingestor, and the store sees no other writer meanwhile.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gsau/common/status.h"
#include "gsau/ingest/applied_queue.h"
#include "gsau/ingest/decoder.h"
#include "gsau/kafka/options.h"
#include "gsau/state/state_store.h"

namespace prometheus {
class Registry;
}

namespace gsau::ingest {

// Why librdkafka property `name` may not be set to `value` through kafka.properties (the consumer
// sets it itself: exactly once rests on it, or an IngestOptions field sets it); empty when it
// may (isolation.level=read_committed, the consumer's own value, may be said again). Applied
// after the consumer's own settings, such a property changed the consumer without a word
// (auto.offset.reset=latest skipped records wherever a position reset).
std::string_view ConsumerOwnedProperty(std::string_view name, std::string_view value);

struct IngestOptions {
  kafka::KafkaOptions kafka;
  std::string topic = "clicks";
  std::string dead_letter_topic = "clicks.dlq";
  std::string group_id = "gsau-ingest";
  int batch_max_events = 1000;    // records per micro-batch (good, bad and skipped alike)
  int batch_max_wait_ms = 100;    // longest a batch stays open while records keep arriving, ms
  std::vector<std::string> accepted_event_types;  // empty = all
  DecoderOptions decoder;
  int session_timeout_ms = 10000;  // consumer group session timeout, ms: failover speed vs flapping
  std::string group_instance_id;   // static membership (group.instance.id); empty = dynamic
  int dead_letter_partitions = 4;  // partitions of the dead-letter topic when ingest creates it
  int dead_letter_replication_factor = -1;  // its replicas then; -1: the brokers' default
  int commit_interval_ms = 1000;   // Kafka's committed offsets (for lag tools) at most this often, ms
  int retry_backoff_max_ms = 5000; // cap of the exponential backoff of our own retries, ms
  int dlq_flush_timeout_ms = 10000;  // one wait for dead-letter acknowledgements, ms
};

struct IngestCounters {
  int64_t consumed = 0;       // records read from the topic
  int64_t applied = 0;        // good events committed to the state
  int64_t dead_lettered = 0;  // bad events acknowledged by the dead-letter topic
  int64_t skipped = 0;        // good events of a type not accepted
  int64_t miskeyed = 0;       // applied events whose record key is not their user_id (or none)
  int64_t batches = 0;        // state batches committed
  int64_t paused = 0;         // times the partitions were paused for backpressure
  int64_t redelivered = 0;    // records below a partition's next offset, skipped as read before
  int64_t lost = 0;           // records the topic's retention deleted before they were read
};

class Ingestor {
 public:
  // `sink` and `registry` may be null (no learner; no metrics).
  Ingestor(IngestOptions options, state::StateStore* store, AppliedSink* sink, prometheus::Registry* registry);
  ~Ingestor();
  Ingestor(const Ingestor&) = delete;
  Ingestor& operator=(const Ingestor&) = delete;

  // Consumes until `stop` is set, then applies what it holds, leaves the group and returns.
  // After the stop, waits for dead-letter acknowledgements last about 2 s in all and retry
  // backoffs end: a batch whose letters are not acknowledged by then is not applied (consumed
  // again after a restart).
  // Errors: kInvalidArgument for options librdkafka rejects; a fatal consumer error;
  // kFailedPrecondition for partitions whose log is not the one the state read (cut short below
  // its offset, or another record just below it), each one found named.
  Status Run(const std::atomic<bool>& stop);

  IngestCounters counters() const;

  // Tests only: raises a fatal error in the dead-letter producer (librdkafka's test hook), as a
  // broker could; a new producer takes over at the next dead letter. Any thread, while Run()
  // runs, once it has consumed a record (the producer exists).
  void RaiseDeadLetterFatalErrorForTesting();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gsau::ingest
