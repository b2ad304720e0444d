// KafkaPublisher: the EmbeddingSink that writes to the compacted embedding topics.
//
// Topics (created when missing, cleanup.policy=compact; an existing one without compaction is
// warned about): one for users, one for items; the key is the external id, so compaction keeps
// the latest vector of every id.
// Formats (PublisherOptions::format):
//  - JSON (default): {"id":"u42","kind":"user","model_version":1732600000148,"dim":64,
//    "event_time_ms":...,"produced_at_ms":...,"embedding":[0.1,...]}; floats printed in their
//    shortest form that reads back to the same float32; one header, gsau.format ("json").
//  - binary: the value is the dim float32 values, little-endian, nothing else; the rest rides
//    in headers gsau.id, gsau.kind, gsau.model_version, gsau.dim, gsau.event_time_ms,
//    gsau.produced_at_ms, gsau.format ("f32le").
// A tombstone is a record with a null value and the format's headers.
// A record whose embedding holds a NaN or an infinity is not published (the id's last vector
// stays in the topic), counted in gsau_errors_total{stage="publisher",kind="nonfinite"}.
// The producer is idempotent with acks=all: a downstream reader may see a record twice
// (after a restart, or when a delivery reported as failed had reached the topic), never a
// torn or reordered one per key.
// Failed deliveries: a record whose delivery failed for good (a broker away for longer than
// message.timeout.ms, a refusal) is produced again, as it was, unless a newer record of its id
// was produced since: at the next Publish() (an empty one serves too) after a backoff of
// 100 ms doubling to 30 s while rounds keep failing, and within Flush(). Counted in
// gsau_errors_total{stage="publisher",kind="delivery"} and gsau_publisher_redelivered_total.
// A broker the producer cannot reach shows sooner, in gsau_errors_total{stage="publisher",
// kind="broker"} (librdkafka's client errors, counted whenever the publisher serves reports).
// gsau_publisher_freshness_seconds observes user records with observe_freshness set only
// (from oldest_event_time_ms when set, the oldest click the record is the first to reflect, else
// from event_time_ms, the newest click it reflects, to its produce time); a user record
// published again without a click (a refresh, a start-up) carries its session's newest click,
// possibly old, and is not observed; an item record is made due by training, not by a click, and
// its event_time_ms is when it was taken from the model.
//
// Thread safety: Publish, Flush, WaitSettled, Mark, Check and ResumeAfter from one thread at a
// time (the pipeline holds one mutex around them); failed_fatally() from any thread. The clock
// (and the registry given to Create) must outlive the publisher.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "gsau/common/clock.h"
#include "gsau/common/embedding_sink.h"
#include "gsau/common/throttle.h"
#include "gsau/kafka/options.h"
#include "gsau/kafka/producer.h"

namespace prometheus {
class Registry;
}

namespace gsau::publisher {

enum class Format { kJson, kBinary };

struct PublisherOptions {
  kafka::KafkaOptions kafka;
  std::string user_topic = "gsau.user-embeddings";
  std::string item_topic = "gsau.item-embeddings";
  Format format = Format::kJson;
  int partitions = 4;            // of topics the publisher creates
  int replication_factor = -1;   // of topics the publisher creates; -1: the broker's default
  int connect_timeout_ms = 30000;  // Create() gives up when the cluster does not answer, ms
  // How long Create() waits for the topics' cleanup.policy (to warn about one that deletes);
  // 0 skips the check (librdkafka's mock cluster never answers it), ms.
  int policy_check_timeout_ms = 5000;
  kafka::ProducerOptions producer;
};

// Encoders, exposed for tests and for readers in other languages to check against.
std::string EncodeJson(const EmbeddingRecord& r, int64_t produced_at_ms);
std::string EncodeBinaryValue(const EmbeddingRecord& r);
kafka::Headers BinaryHeaders(const EmbeddingRecord& r, int64_t produced_at_ms);
// The model_version of a record either encoder wrote (the binary format's gsau.model_version
// header, else the JSON value's field); nullopt for a tombstone or a record of neither format.
std::optional<int64_t> RecordModelVersion(const std::optional<std::string>& value, const kafka::Headers& headers);
// The dim of such a record (gsau.dim, else the JSON field); nullopt as above.
std::optional<int64_t> RecordDim(const std::optional<std::string>& value, const kafka::Headers& headers);

class KafkaPublisher final : public EmbeddingSink {
 public:
  // Connects, creates missing topics and registers gsau_publisher_* metrics (registry may be
  // null). Unavailable when the cluster cannot be reached; Aborted when `*stop` (if given) turns
  // true while it waits for the cluster. `clock` stamps produced_at_ms; waits (Flush's deadline,
  // redelivery backoff) run on the steady clock, as librdkafka does.
  static Result<std::unique_ptr<KafkaPublisher>> Create(const PublisherOptions& options,
                                                        prometheus::Registry* registry,
                                                        const Clock& clock = SystemClock::Get(),
                                                        const std::atomic<bool>* stop = nullptr);
  // The publisher over `producer` (made with keep_failed), without connecting or creating
  // topics: tests of what it does with the deliveries a producer reports. Tests only.
  static std::unique_ptr<KafkaPublisher> CreateForTesting(const PublisherOptions& options,
                                                          std::unique_ptr<kafka::Producer> producer,
                                                          prometheus::Registry* registry,
                                                          const Clock& clock = SystemClock::Get());
  ~KafkaPublisher() override;

  // Also produces again the records whose delivery failed, when their backoff is due. A
  // producer queue that stays full (brokers away or slower than the records come) refuses the
  // rest of `records` after about kQueueFullTimeoutMs (kResourceExhausted), rather than holding the
  // caller (and its lock) until records time out: the caller keeps what is unpublished.
  Status Publish(std::span<const EmbeddingRecord> records) override;
  // The same, and `*handed_over` tells how many of `records`, from the first, are done with
  // (produced, or counted as not publishable) when it fails part-way (a full queue): the caller
  // keeps only the rest, rather than producing those again (twice in the topic, their freshness
  // observed twice). records.size() on success; 0 when nothing was tried.
  Status Publish(std::span<const EmbeddingRecord> records, size_t* handed_over);
  static constexpr int kQueueFullTimeoutMs = 1000;
  // Waits for every delivery, producing failed records again until `timeout_ms` (a record
  // refused before sending, as while its topic is recreated, is tried again too); fails when
  // some record is still undelivered then (kUnavailable; the records are kept: a later Publish
  // or Flush produces them again), or at once when a fatal producer error leaves some
  // undelivered. A fatal error after every record was delivered is Ok here: failed_fatally()
  // says the publisher cannot go on.
  Status Flush(int timeout_ms) override;

  int64_t last_model_version() const { return last_version_; }
  // The newest model_version in the user and item topics: the largest of the records in the
  // last kVersionTailRecords offsets of their partitions (0 when there are none). A checkpoint
  // knows the version only as of its time; records published after it, before a crash, carry
  // later stamps, which a wall clock set back since then would not reach. Versions rise in
  // produce order except for records delivered again after a failure (RedeliverFailed), which
  // land after newer ones: the tail read looks past that many of them (and past tombstones,
  // which carry none). kUnavailable when the topics cannot be read within `timeout_ms` (each).
  // `dims`, when given, receives the dims of those records (a model of another shape wrote them);
  // `user_records` the number of records read from the user topic (0: it holds none).
  Result<int64_t> NewestPublishedVersion(int timeout_ms, std::set<int64_t>* dims = nullptr,
                                         size_t* user_records = nullptr) const;
  static constexpr int64_t kVersionTailRecords = 1000;
  // The model_version a previous run had published up to (from its checkpoint): gsau_model_version
  // shows it until something newer goes out, and older versions are refused as usual.
  void ResumeAfter(int64_t model_version);
  // Waits up to `timeout_ms` for the records in flight; true when every record handed over so
  // far was delivered (none in flight, none kept to go again).
  bool WaitSettled(int timeout_ms);

  // Delivery marks: under a steady flow WaitSettled(0) may never find a moment with nothing in
  // flight; a mark tells when every record of one kind (one topic) handed over before it was
  // delivered, whatever came after. Mark(kind): none while a failed record of that kind waits
  // to go again (it would go out numbered after the mark). Check(): kDelivered once every
  // record of the mark's kind before it was delivered; kBroken once a delivery of that kind
  // failed after the mark was taken (its record goes again numbered later): take a new mark.
  // A topic that fails every record (deleted, or an ACL refusing writes), or whose records wait
  // for message.timeout.ms (a partition without a leader), holds no mark of the other back (the
  // user records' marks, which checkpoints follow, once broke or waited on item records).
  struct DeliveryMark {
    EntityKind kind = EntityKind::kUser;
    uint64_t numbered = 0;  // the producer's last record number when the mark was taken
    int64_t failed = 0;     // failed deliveries to the kind's topic counted then
  };
  enum class MarkState { kPending, kDelivered, kBroken };
  std::optional<DeliveryMark> Mark(EntityKind kind);
  MarkState Check(const DeliveryMark& mark);
  // True when every record of `kind` handed over so far was delivered (none in flight, none
  // kept to go again), whatever the other kind's: WaitSettled(0) for one topic, served reports
  // included.
  bool Settled(EntityKind kind);
  // True once the producer hit a fatal error: nothing will be delivered any more, the owner
  // should stop (a restart takes a new producer).
  bool failed_fatally() const { return producer_->failed_fatally(); }
  // Raises a fatal error in the producer, as the broker could. Tests only.
  void RaiseFatalErrorForTesting() { producer_->RaiseFatalErrorForTesting(); }
  // The producer's effective librdkafka property `key`. Tests only.
  std::string ProducerConfigForTesting(const std::string& key) const { return producer_->ConfigValueForTesting(key); }

 private:
  struct Metrics;
  KafkaPublisher(const PublisherOptions& options, std::unique_ptr<kafka::Producer> producer,
                 std::unique_ptr<Metrics> metrics, std::unique_ptr<prometheus::Registry> own_registry,
                 const Clock& clock);
  // Registers the metrics (in a registry of its own when `registry` is null) around `producer`.
  static std::unique_ptr<KafkaPublisher> Assemble(const PublisherOptions& options,
                                                  std::unique_ptr<kafka::Producer> producer,
                                                  prometheus::Registry* registry, const Clock& clock);
  const std::string& TopicOf(EntityKind kind) const {
    return kind == EntityKind::kUser ? options_.user_topic : options_.item_topic;
  }

  PublisherOptions options_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<prometheus::Registry> own_registry_;
  std::unique_ptr<Metrics> metrics_;
  const Clock& clock_;
  // Counts deliveries that succeeded or failed, and client errors, since the last call.
  void CountDeliveryReports();
  // Produces again the records whose delivery failed, if the backoff is due (or `now`).
  Status RedeliverFailed(bool now);

  static constexpr int64_t kMinRedeliveryBackoffMs = 100;
  static constexpr int64_t kMaxRedeliveryBackoffMs = 30000;

  // Failed records refused again before sending, by topic and key: the next round's too.
  std::unordered_map<std::string, kafka::FailedRecord> refused_;
  Throttle nonfinite_log_{std::chrono::seconds(30)};
  Throttle redelivery_log_{std::chrono::seconds(10)};
  int64_t last_version_ = -1;
  int64_t failed_seen_ = 0;
  int64_t client_errors_seen_ = 0;
  int64_t users_delivered_seen_ = 0;
  int64_t items_delivered_seen_ = 0;
  int64_t failed_at_last_round_ = 0;
  uint64_t redelivered_through_ = 0;  // the producer's number of the last round's last record
  int64_t next_redelivery_ms_ = 0;
  int64_t redelivery_backoff_ms_ = kMinRedeliveryBackoffMs;
};

}  // namespace gsau::publisher
