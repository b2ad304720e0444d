#include "gsau/publisher/publisher.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <charconv>
#include <cstring>
#include <string_view>
#include <thread>

#include "gsau/common/json.h"
#include "gsau/common/log.h"
#include "gsau/kafka/admin.h"
#include "gsau/kafka/tail.h"
#include "gsau/metrics/metrics.h"

namespace gsau::publisher {

static_assert(std::endian::native == std::endian::little, "the binary format is written as native float32");

std::string EncodeJson(const EmbeddingRecord& r, int64_t produced_at_ms) {
  std::string out;
  out.reserve(128 + r.id.size() + r.embedding.size() * 12);
  out += "{\"id\":";
  AppendJsonString(out, r.id);
  out += ",\"kind\":\"";
  out += EntityKindName(r.kind);
  out += "\",\"model_version\":" + std::to_string(r.model_version);
  out += ",\"dim\":" + std::to_string(r.embedding.size());
  out += ",\"event_time_ms\":" + std::to_string(r.event_time_ms);
  out += ",\"produced_at_ms\":" + std::to_string(produced_at_ms);
  out += ",\"embedding\":[";
  char buf[32];
  for (size_t i = 0; i < r.embedding.size(); ++i) {
    if (i > 0) out += ',';
    // Shortest text that parses back to the same float32 (JSON has no NaN: write null).
    const float v = r.embedding[i];
    if (!std::isfinite(v)) {
      out += "null";
      continue;
    }
    const auto res = std::to_chars(buf, buf + sizeof(buf), v);
    out.append(buf, res.ptr);
  }
  out += "]}";
  return out;
}

std::string EncodeBinaryValue(const EmbeddingRecord& r) {
  std::string out(r.embedding.size() * sizeof(float), '\0');
  std::memcpy(out.data(), r.embedding.data(), out.size());
  return out;
}

kafka::Headers BinaryHeaders(const EmbeddingRecord& r, int64_t produced_at_ms) {
  return {{"gsau.id", r.id},
          {"gsau.kind", EntityKindName(r.kind)},
          {"gsau.model_version", std::to_string(r.model_version)},
          {"gsau.dim", std::to_string(r.embedding.size())},
          {"gsau.event_time_ms", std::to_string(r.event_time_ms)},
          {"gsau.produced_at_ms", std::to_string(produced_at_ms)},
          {"gsau.format", "f32le"}};
}

struct KafkaPublisher::Metrics {
  explicit Metrics(prometheus::Registry& r)
      : published(prometheus::BuildCounter()
                      .Name("gsau_publisher_embeddings_published_total")
                      .Help("Embedding records handed to Kafka, by kind (tombstones included)")
                      .Register(r)),
        users(published.Add({{"kind", "user"}})),
        items(published.Add({{"kind", "item"}})),
        delivered(prometheus::BuildCounter()
                      .Name("gsau_publisher_embeddings_delivered_total")
                      .Help("Embedding records the broker acknowledged, by kind")
                      .Register(r)),
        users_delivered(delivered.Add({{"kind", "user"}})),
        items_delivered(delivered.Add({{"kind", "item"}})),
        tombstones(prometheus::BuildCounter()
                       .Name("gsau_publisher_tombstones_total")
                       .Help("Tombstones (removed ids) published")
                       .Register(r)
                       .Add({})),
        version(prometheus::BuildGauge()
                    .Name("gsau_model_version")
                    .Help("model_version of the embeddings last published (the pipeline stamps wall-clock ms)")
                    .Register(r)
                    .Add({})),
        freshness(prometheus::BuildHistogram()
                      .Name("gsau_publisher_freshness_seconds")
                      .Help("Event time of a user's click (of several one record reflects, the oldest), to the time "
                            "the record was produced")
                      .Register(r)
                      .Add({}, std::vector<double>{0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60,
                                                   300, 3600})),
        errors(metrics::ErrorCounter(r, "publisher", "produce")),
        nonfinite(metrics::ErrorCounter(r, "publisher", "nonfinite")),
        delivery_errors(metrics::ErrorCounter(r, "publisher", "delivery")),
        broker_errors(metrics::ErrorCounter(r, "publisher", "broker")),
        redelivered(prometheus::BuildCounter()
                        .Name("gsau_publisher_redelivered_total")
                        .Help("Records produced again after their delivery failed (the newest of each id)")
                        .Register(r)
                        .Add({})),
        last_delivery(prometheus::BuildGauge()
                          .Name("gsau_publisher_last_delivery_timestamp_seconds")
                          .Help("Wall time the publisher last saw a record acknowledged by the broker (0: none yet)")
                          .Register(r)
                          .Add({})) {}

  prometheus::Family<prometheus::Counter>& published;
  prometheus::Counter& users;
  prometheus::Counter& items;
  prometheus::Family<prometheus::Counter>& delivered;
  prometheus::Counter& users_delivered;
  prometheus::Counter& items_delivered;
  prometheus::Counter& tombstones;
  prometheus::Gauge& version;
  prometheus::Histogram& freshness;
  prometheus::Counter& errors;
  prometheus::Counter& nonfinite;
  prometheus::Counter& delivery_errors;
  prometheus::Counter& broker_errors;
  prometheus::Counter& redelivered;
  // What "since the last publication" is measured from: gsau_model_version moves when records
  // are handed to librdkafka, also while the broker refuses every one of them.
  prometheus::Gauge& last_delivery;
};

Result<std::unique_ptr<KafkaPublisher>> KafkaPublisher::Create(const PublisherOptions& options,
                                                               prometheus::Registry* registry, const Clock& clock,
                                                               const std::atomic<bool>* stop) {
  // No "publisher" context here: the caller names the stage (it read "publisher: publisher: ...").
  GSAU_RETURN_IF_ERROR(kafka::WaitForCluster(options.kafka, options.connect_timeout_ms, stop));
  const std::vector<std::pair<std::string, std::string>> compact = {{"cleanup.policy", "compact"}};
  // Told to stop already (during a catch-up, say): the topics get a few seconds, not 30, so that
  // a partly available cluster does not hold the stop past a grace period.
  const int topics_timeout_ms = stop != nullptr && *stop ? 5000 : 30000;
  GSAU_RETURN_IF_ERROR(kafka::EnsureTopics(options.kafka,
                                           {{options.user_topic, options.partitions, options.replication_factor, compact},
                                            {options.item_topic, options.partitions, options.replication_factor, compact}},
                                           topics_timeout_ms));
  for (const auto& topic : {options.user_topic, options.item_topic}) {
    if (options.policy_check_timeout_ms <= 0) break;
    // An existing topic is used as it is; one that deletes by age drops the record of every id
    // that has not changed within its retention, and readers lose those ids.
    auto policy = kafka::TopicConfigValue(options.kafka, topic, "cleanup.policy", options.policy_check_timeout_ms);
    if (policy.ok() && *policy != "compact") {  // "compact,delete" deletes by age too
      GSAU_LOG_WARN("publisher: topic {} has cleanup.policy={}: records of ids that stop changing are deleted after "
                    "its retention; set cleanup.policy=compact",
                    topic, *policy);
    } else if (!policy.ok()) {  // no right to describe it, say: said, so that no one takes silence for compact
      GSAU_LOG_WARN("publisher: could not check the cleanup.policy of topic {} (it should be compact): {}", topic,
                    policy.status().message());
    }
  }
  kafka::ProducerOptions po = options.producer;
  po.idempotent = true;
  po.keep_failed = true;  // RedeliverFailed()
  // A topic deleted under a running publisher came back at its next record as the broker makes
  // one (cleanup.policy=delete: readers lost the ids that stopped changing after its retention),
  // said only at the next start. Now its deliveries fail and are counted until a restart
  // creates it compacted (EnsureTopics above).
  po.auto_create_topics = false;
  po.name = "publisher";
  // The pipeline publishes under a lock its learner and user threads share: a queue full for
  // minutes (brokers away) held both, and a stop's last checkpoint waited behind them.
  if (po.queue_full_timeout_ms < 0) po.queue_full_timeout_ms = kQueueFullTimeoutMs;
  GSAU_ASSIGN_OR_RETURN(auto producer, kafka::Producer::Create(options.kafka, po));
  return Assemble(options, std::move(producer), registry, clock);
}

std::unique_ptr<KafkaPublisher> KafkaPublisher::CreateForTesting(const PublisherOptions& options,
                                                                 std::unique_ptr<kafka::Producer> producer,
                                                                 prometheus::Registry* registry, const Clock& clock) {
  return Assemble(options, std::move(producer), registry, clock);
}

std::unique_ptr<KafkaPublisher> KafkaPublisher::Assemble(const PublisherOptions& options,
                                                         std::unique_ptr<kafka::Producer> producer,
                                                         prometheus::Registry* registry, const Clock& clock) {
  std::unique_ptr<prometheus::Registry> own;
  if (registry == nullptr) {
    own = std::make_unique<prometheus::Registry>();
    registry = own.get();
  }
  auto m = std::make_unique<Metrics>(*registry);
  return std::unique_ptr<KafkaPublisher>(
      new KafkaPublisher(options, std::move(producer), std::move(m), std::move(own), clock));
}

KafkaPublisher::KafkaPublisher(const PublisherOptions& options, std::unique_ptr<kafka::Producer> producer,
                               std::unique_ptr<Metrics> metrics, std::unique_ptr<prometheus::Registry> own_registry,
                               const Clock& clock)
    : options_(options),
      producer_(std::move(producer)),
      own_registry_(std::move(own_registry)),
      metrics_(std::move(metrics)),
      clock_(clock) {}

KafkaPublisher::~KafkaPublisher() = default;

namespace {

// Deadlines and backoffs wait on librdkafka, which runs on real time: the steady clock, not the
// injected one (a wall clock steps, a manual one stands still).
int64_t SteadyMs() { return SystemClock::Get().MonotonicNs() / 1'000'000; }

}  // namespace

void KafkaPublisher::CountDeliveryReports() {
  const auto c = producer_->counts();
  if (c.failed > failed_seen_) metrics_->delivery_errors.Increment(static_cast<double>(c.failed - failed_seen_));
  failed_seen_ = c.failed;
  const auto count_delivered = [&](const std::string& topic, int64_t& seen, prometheus::Counter& counter) {
    const int64_t n = producer_->delivered_to(topic);
    if (n > seen) counter.Increment(static_cast<double>(n - seen));
    seen = n;
  };
  const int64_t before = users_delivered_seen_ + items_delivered_seen_;
  count_delivered(options_.user_topic, users_delivered_seen_, metrics_->users_delivered);
  count_delivered(options_.item_topic, items_delivered_seen_, metrics_->items_delivered);
  if (users_delivered_seen_ + items_delivered_seen_ > before) {
    metrics_->last_delivery.Set(static_cast<double>(clock_.NowMs()) / 1000.0);
  }
  // A broker away shows at once, not only when records time out minutes later.
  if (c.client_errors > client_errors_seen_) {
    metrics_->broker_errors.Increment(static_cast<double>(c.client_errors - client_errors_seen_));
  }
  client_errors_seen_ = c.client_errors;
}

Status KafkaPublisher::RedeliverFailed(bool now) {
  producer_->Poll();
  CountDeliveryReports();
  // Back to the first backoff once the last round's records have all been reported and none
  // failed since, nothing waiting to go again: a refusal still on its way back must not reset
  // it (a round per round trip otherwise). Records produced after the round need not have
  // settled: under a steady flow some always are in flight, and the backoff stayed at an
  // outage's longest for good.
  const uint64_t reported = producer_->reported_through();  // serves due reports: before the count
  if (producer_->counts().failed == failed_at_last_round_ && reported >= redelivered_through_ && refused_.empty() &&
      producer_->KeptFailedCount() == 0) {
    redelivery_backoff_ms_ = kMinRedeliveryBackoffMs;
    next_redelivery_ms_ = 0;
  }
  const int64_t t = SteadyMs();
  if (!now && t < next_redelivery_ms_) return Status::Ok();
  auto failed = producer_->TakeFailed();
  for (auto& [key, r] : refused_) failed.push_back(std::move(r));
  refused_.clear();
  if (failed.empty()) {
    failed_at_last_round_ = producer_->counts().failed;
    return Status::Ok();
  }
  failed_at_last_round_ = producer_->counts().failed;
  // A broker outage or a refusal that lasts (an ACL, the topic's max.message.bytes) fails
  // every round again: rounds back off so that they neither flood the log nor the broker.
  next_redelivery_ms_ = t + redelivery_backoff_ms_;
  redelivery_backoff_ms_ = std::min(redelivery_backoff_ms_ * 2, kMaxRedeliveryBackoffMs);
  // The error is each record's latest: a refusal of the last round's produce (an unknown topic)
  // rather than the delivery failure before it, which would read as a new failure each round.
  GSAU_LOG_WARN("publisher: {} record(s) not delivered yet (e.g. {} to {}: {}); producing them again",
                failed.size(), failed.front().key, failed.front().topic, failed.front().error);
  Status first_error;
  // Whatever this round produces is numbered up to last_numbered() when it returns.
  const auto note_round = [this] { redelivered_through_ = producer_->last_numbered(); };
  for (size_t k = 0; k < failed.size(); ++k) {
    const auto& r = failed[k];
    Status s = producer_->Produce(r.topic, r.null_key ? std::string_view() : std::string_view(r.key), r.value,
                                  r.headers, 0, r.tombstone);
    if (s.ok()) {
      metrics_->redelivered.Increment();
    } else if (producer_->failed_fatally() || s.code() == StatusCode::kResourceExhausted) {
      metrics_->errors.Increment();
      // Still undelivered, and visibly so (no delivery mark is taken while they wait). A full
      // queue refuses the rest too: trying each would hold the caller (and pub_mu) for
      // queue_full_timeout_ms per record, hours for an outage's thousands.
      for (; k < failed.size(); ++k) refused_.emplace(failed[k].topic + '\0' + failed[k].key, failed[k]);
      note_round();
      return s.WithContext("publisher: producing a failed record again");
    } else {
      // Refused before sending (an unknown partition while a topic is recreated; too large for
      // this producer): kept for the next round, visibly, unless a newer record supersedes it.
      metrics_->errors.Increment();
      if (first_error.ok()) first_error = s.WithContext("publisher: producing a failed record again");
      auto kept = r;
      kept.error = s.message();
      refused_.emplace(r.topic + '\0' + r.key, std::move(kept));
    }
  }
  note_round();
  return first_error;
}

bool KafkaPublisher::WaitSettled(int timeout_ms) {
  producer_->Flush(timeout_ms).IgnoreError();  // serves the delivery reports; the verdict is below
  CountDeliveryReports();
  const auto c = producer_->counts();
  return c.produced == c.delivered + c.failed && producer_->KeptFailedCount() == 0 && refused_.empty();
}

std::optional<KafkaPublisher::DeliveryMark> KafkaPublisher::Mark(EntityKind kind) {
  const std::string& topic = TopicOf(kind);
  // The count first: a failure reported after it breaks the mark, one before it is kept below.
  CountDeliveryReports();
  DeliveryMark mark;
  mark.kind = kind;
  mark.failed = producer_->failed_to(topic);
  const bool refused =
      std::any_of(refused_.begin(), refused_.end(), [&](const auto& r) { return r.second.topic == topic; });
  if (producer_->KeptFailedCountOf(topic) > 0 || refused || producer_->failed_fatally()) return std::nullopt;
  mark.numbered = producer_->last_numbered();
  return mark;
}

KafkaPublisher::MarkState KafkaPublisher::Check(const DeliveryMark& mark) {
  const uint64_t reported = producer_->reported_through_of(TopicOf(mark.kind));
  CountDeliveryReports();
  if (producer_->failed_to(TopicOf(mark.kind)) != mark.failed || producer_->failed_fatally()) {
    return MarkState::kBroken;
  }
  return reported >= mark.numbered ? MarkState::kDelivered : MarkState::kPending;
}

bool KafkaPublisher::Settled(EntityKind kind) {
  const auto mark = Mark(kind);
  return mark && Check(*mark) == MarkState::kDelivered;
}

Status KafkaPublisher::Publish(std::span<const EmbeddingRecord> records) { return Publish(records, nullptr); }

Status KafkaPublisher::Publish(std::span<const EmbeddingRecord> records, size_t* handed_over) {
  if (handed_over != nullptr) *handed_over = 0;
  // Before the new records: a failed record is dropped when a newer one of its id is produced.
  Status redelivery = RedeliverFailed(/*now=*/false);
  if (!redelivery.ok()) {
    if (producer_->failed_fatally()) return redelivery;
    // Each call tries again while the topic is away: a line every 10 s, led by the component as
    // every other line (it read "Unavailable: publisher: ...").
    if (const int64_t n = redelivery_log_.Due()) {
      GSAU_LOG_WARN("publisher: records whose delivery failed not produced again yet ({}x): {}", n,
                    redelivery.message());
    }
  }
  // Also with nothing to send: an owner calling now and then learns of it while idle.
  if (producer_->failed_fatally()) {
    metrics_->errors.Increment();
    return Status::Internal("publisher: the producer failed fatally; nothing more will be delivered");
  }
  // In order within the batch too: [v10, v5] for one id went out as v10, then v5.
  for (int64_t newest = last_version_; const auto& r : records) {
    if (r.model_version < newest) {
      metrics_->errors.Increment();
      return Status::InvalidArgument("model_version " + std::to_string(r.model_version) + " is older than " +
                                     std::to_string(newest) + ", published or earlier in the batch");
    }
    newest = r.model_version;
  }
  for (size_t k = 0; k < records.size(); ++k) {
    const EmbeddingRecord& r = records[k];
    if (handed_over != nullptr) *handed_over = k;
    // The id's last good vector stays in the compacted topic; the record is counted instead.
    if (!Publishable(r)) {
      metrics_->nonfinite.Increment();
      if (const int64_t n = nonfinite_log_.Due()) {
        GSAU_LOG_ERROR("publisher: a non-finite embedding was not published ({}x since the last line), e.g. {} {}",
                       n, EntityKindName(r.kind), r.id);
      }
      continue;
    }
    // Each record's own time: a full queue can hold one Produce for queue_full_timeout_ms, and
    // one time per call stamped the later records (and their freshness) as produced earlier.
    const int64_t now = clock_.NowMs();
    const std::string& topic = TopicOf(r.kind);
    Status s;
    if (options_.format == Format::kJson) {
      // The format in a header too (binary records carry "f32le"): a topic whose
      // publisher.format changed holds both until every id went out again.
      static const kafka::Headers kJsonHeaders = {{"gsau.format", "json"}};
      s = r.tombstone ? producer_->Produce(topic, r.id, "", kJsonHeaders, 0, true)
                      : producer_->Produce(topic, r.id, EncodeJson(r, now), kJsonHeaders);
    } else {
      s = producer_->Produce(topic, r.id, r.tombstone ? std::string() : EncodeBinaryValue(r), BinaryHeaders(r, now), 0,
                             r.tombstone);
    }
    if (!s.ok()) {
      metrics_->errors.Increment();
      return s.WithContext("publisher");
    }
    if (!refused_.empty()) refused_.erase(topic + '\0' + r.id);  // superseded
    (r.kind == EntityKind::kUser ? metrics_->users : metrics_->items).Increment();
    if (r.tombstone) {
      metrics_->tombstones.Increment();
    } else if (r.kind == EntityKind::kUser && r.event_time_ms > 0 && r.observe_freshness) {
      const int64_t since =
          r.oldest_event_time_ms > 0 ? std::min(r.oldest_event_time_ms, r.event_time_ms) : r.event_time_ms;
      metrics_->freshness.Observe(static_cast<double>(std::max<int64_t>(0, now - since)) / 1000.0);
    }
    last_version_ = std::max(last_version_, r.model_version);
    metrics_->version.Set(static_cast<double>(last_version_));  // also when a later record fails
  }
  if (handed_over != nullptr) *handed_over = records.size();
  producer_->Poll();
  return Status::Ok();
}

namespace {

// An integer metadata field of a record either encoder wrote: the binary format's `header`, else
// the number after `json_key` in the JSON value (an id's quotes are escaped, so an id never holds
// the key's text unescaped). nullopt for a tombstone, a record of neither format, or no number.
std::optional<int64_t> RecordInteger(const std::optional<std::string>& value, const kafka::Headers& headers,
                                     std::string_view header, std::string_view json_key) {
  const auto parse = [](std::string_view text) -> std::optional<int64_t> {
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end == text.data()) return std::nullopt;
    return v;
  };
  for (const auto& [name, v] : headers) {
    if (name == header && v) return parse(*v);
  }
  if (!value) return std::nullopt;
  const size_t at = value->find(json_key);
  if (at == std::string::npos) return std::nullopt;
  return parse(std::string_view(*value).substr(at + json_key.size()));
}

}  // namespace

std::optional<int64_t> RecordModelVersion(const std::optional<std::string>& value, const kafka::Headers& headers) {
  return RecordInteger(value, headers, "gsau.model_version", "\",\"model_version\":");  // right after "kind"
}

std::optional<int64_t> RecordDim(const std::optional<std::string>& value, const kafka::Headers& headers) {
  return RecordInteger(value, headers, "gsau.dim", ",\"dim\":");  // after model_version
}

Result<int64_t> KafkaPublisher::NewestPublishedVersion(int timeout_ms, std::set<int64_t>* dims,
                                                       size_t* user_records) const {
  int64_t newest = 0;
  for (const auto& topic : {options_.user_topic, options_.item_topic}) {
    GSAU_ASSIGN_OR_RETURN(auto records,
                          kafka::ReadLastRecords(options_.kafka, topic, kVersionTailRecords, timeout_ms));
    if (user_records != nullptr && topic == options_.user_topic) *user_records = records.size();
    for (const auto& r : records) {
      newest = std::max(newest, RecordModelVersion(r.value, r.headers).value_or(0));
      if (dims == nullptr) continue;
      if (const auto dim = RecordDim(r.value, r.headers)) dims->insert(*dim);
    }
  }
  return newest;
}

void KafkaPublisher::ResumeAfter(int64_t model_version) {
  last_version_ = std::max(last_version_, model_version);
  metrics_->version.Set(static_cast<double>(last_version_));
}

Status KafkaPublisher::Flush(int timeout_ms) {
  const int64_t deadline = SteadyMs() + timeout_ms;
  int64_t backoff_ms = 0;
  Status refusal;  // the latest redelivery refused before sending, for the verdict
  while (true) {
    // The producer's own verdict is not enough: a failure whose record was produced again
    // since (or superseded) is not a loss, and one whose record waits here is.
    if (WaitSettled(static_cast<int>(std::max<int64_t>(0, deadline - SteadyMs())))) return Status::Ok();
    if (SteadyMs() >= deadline) {
      const auto c = producer_->counts();
      const int64_t outstanding = c.produced - c.delivered - c.failed;
      const size_t failed = producer_->KeptFailedCount() + refused_.size();
      metrics_->errors.Increment();
      return Status::Unavailable("publisher: after " + std::to_string(timeout_ms) + " ms, " +
                                 std::to_string(outstanding) + " record(s) still in flight and " +
                                 std::to_string(failed) + " failed delivery" +
                                 (refusal.ok() ? "" : "; last refused: " + refusal.message()));
    }
    if (backoff_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(backoff_ms, deadline - SteadyMs())));
    }
    Status s = RedeliverFailed(/*now=*/true);
    if (!s.ok()) {
      if (producer_->failed_fatally()) return s;
      // Refused before sending (a topic being recreated): the record waits in refused_, and
      // the next round may get it out before the deadline.
      refusal = std::move(s);
    }
    backoff_ms = std::clamp<int64_t>(backoff_ms * 2, kMinRedeliveryBackoffMs, kMaxRedeliveryBackoffMs);
  }
}

}  // namespace gsau::publisher
