#include "gsau/ingest/ingestor.h"
#include "gsau/ingest/offset_guard.h"

#include <librdkafka/rdkafkacpp.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

#include "gsau/common/log.h"
#include "gsau/common/text.h"
#include "gsau/common/throttle.h"
#include "gsau/ingest/dead_letter.h"
#include "gsau/kafka/admin.h"
#include "gsau/kafka/producer.h"
#include "gsau/metrics/metrics.h"

namespace gsau::ingest {

std::string_view ConsumerOwnedProperty(std::string_view name, std::string_view value) {
  if (name == "isolation.level" && value == "read_committed") return {};
  static constexpr std::pair<std::string_view, std::string_view> kOwned[] = {
      {"group.id", "set ingest.group_id"},
      {"group.instance.id", "set ingest.group_instance_id"},
      {"session.timeout.ms", "set ingest.session_timeout_ms"},
      {"enable.auto.commit", "ingest commits offsets itself, once a batch is in the state"},
      {"auto.commit.enable", "ingest commits offsets itself, once a batch is in the state"},
      {"enable.auto.offset.store", "ingest stores offsets itself, once a batch is in the state"},
      {"auto.offset.reset", "ingest starts each partition at the state's offset and checks the log's ends itself"},
      {"enable.partition.eof", "ingest reads partitions without end-of-partition events"},
      {"isolation.level", "ingest reads committed records only (an aborted transaction's would be applied)"},
  };
  for (const auto& [owned, why] : kOwned) {
    if (name == owned) return why;
  }
  return {};
}

namespace {

using Clock = std::chrono::steady_clock;

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Stage metrics, built once; null registry gives a private one nobody scrapes.
struct IngestMetrics {
  explicit IngestMetrics(prometheus::Registry& r)
      : consumed(prometheus::BuildCounter()
                     .Name("gsau_ingest_events_consumed_total")
                     .Help("Records read from the clicks topic")
                     .Register(r)
                     .Add({})),
        applied(prometheus::BuildCounter()
                    .Name("gsau_ingest_events_applied_total")
                    .Help("Click events committed to the state store")
                    .Register(r)
                    .Add({})),
        skipped(prometheus::BuildCounter()
                    .Name("gsau_ingest_events_skipped_total")
                    .Help("Valid events of a type not accepted by ingest.accepted_event_types")
                    .Register(r)
                    .Add({})),
        miskeyed(prometheus::BuildCounter()
                     .Name("gsau_ingest_events_miskeyed_total")
                     .Help("Applied events whose Kafka key is not their user_id (or none): one user's clicks may "
                           "then lie on several partitions and be applied out of order")
                     .Register(r)
                     .Add({})),
        redelivered(prometheus::BuildCounter()
                        .Name("gsau_ingest_records_redelivered_total")
                        .Help("Records the client delivered again below the partition's next offset (already "
                              "taken), skipped")
                        .Register(r)
                        .Add({})),
        lost(prometheus::BuildCounter()
                 .Name("gsau_ingest_records_lost_total")
                 .Help("Records of the clicks topic its retention deleted before this state read them "
                       "(found at an assignment, or while reading when the client's position fell off the log's "
                       "start)")
                 .Register(r)
                 .Add({})),
        dead_letter_family(prometheus::BuildCounter()
                               .Name("gsau_ingest_events_dead_lettered_total")
                               .Help("Bad events written to the dead-letter topic, by reason (the code their "
                                     "gsau.error.code header holds, e.g. not_json)")
                               .Register(r)),
        batches(prometheus::BuildCounter()
                    .Name("gsau_ingest_batches_total")
                    .Help("State batches committed by ingest")
                    .Register(r)
                    .Add({})),
        apply_seconds(prometheus::BuildHistogram()
                          .Name("gsau_ingest_batch_apply_seconds")
                          .Help("Time to commit one micro-batch (dead-letter acks + state write)")
                          .Register(r)
                          .Add({}, metrics::LatencyBucketsSeconds())),
        lag(prometheus::BuildGauge()
                .Name("gsau_ingest_consumer_lag_messages")
                .Help("Records behind the end of the assigned partitions of the clicks topic (and of those "
                      "lost with the group session, until the group assigns again)")
                .Register(r)
                .Add({})),
        assigned(prometheus::BuildGauge()
                     .Name("gsau_ingest_assigned_partitions")
                     .Help("Partitions of the clicks topic assigned to this process")
                     .Register(r)
                     .Add({})),
        paused(prometheus::BuildGauge()
                   .Name("gsau_ingest_paused")
                   .Help("1 while ingest pauses its partitions because the learner's queue is full")
                   .Register(r)
                   .Add({})),
        pauses(prometheus::BuildCounter()
                   .Name("gsau_ingest_pauses_total")
                   .Help("Times ingest paused for backpressure")
                   .Register(r)
                   .Add({})),
        users(prometheus::BuildGauge().Name("gsau_state_users").Help("Users in the state store").Register(r).Add({})),
        items(prometheus::BuildGauge().Name("gsau_state_items").Help("Items in the state store").Register(r).Add({})),
        edges(prometheus::BuildGauge()
                  .Name("gsau_state_edges")
                  .Help("Distinct user-item edges in the state store")
                  .Register(r)
                  .Add({})),
        state_events(prometheus::BuildGauge()
                         .Name("gsau_state_events")
                         .Help("Click events held by the state store (all ever applied)")
                         .Register(r)
                         .Add({})),
        batch_seq(prometheus::BuildGauge()
                      .Name("gsau_state_batch_sequence")
                      .Help("Sequence number of the last batch applied to the state store")
                      .Register(r)
                      .Add({})),
        err_broker(metrics::ErrorCounter(r, "ingest", "broker")),
        err_topic(metrics::ErrorCounter(r, "ingest", "topic_missing")),
        err_consume(metrics::ErrorCounter(r, "ingest", "consume")),
        err_dlq(metrics::ErrorCounter(r, "ingest", "dead_letter")),
        err_apply(metrics::ErrorCounter(r, "ingest", "apply")),
        err_commit(metrics::ErrorCounter(r, "ingest", "commit")) {
    // Every reason's series from the start, at 0: made at the first bad event, they were "no
    // data" until then, and rate() over them and the dead-letter alert saw nothing to compare.
    for (int k = 0; k < kBadReasonCount; ++k) {
      dead_letter[k] = &dead_letter_family.Add({{"reason", std::string(BadReasonName(static_cast<BadReason>(k)))}});
    }
  }

  prometheus::Counter& DeadLettered(BadReason reason) { return *dead_letter[static_cast<int>(reason)]; }

  prometheus::Counter& consumed;
  prometheus::Counter& applied;
  prometheus::Counter& skipped;
  prometheus::Counter& miskeyed;
  prometheus::Counter& redelivered;
  prometheus::Counter& lost;
  prometheus::Family<prometheus::Counter>& dead_letter_family;
  prometheus::Counter* dead_letter[kBadReasonCount] = {};
  prometheus::Counter& batches;
  prometheus::Histogram& apply_seconds;
  prometheus::Gauge& lag;
  prometheus::Gauge& assigned;
  prometheus::Gauge& paused;
  prometheus::Counter& pauses;
  prometheus::Gauge& users;
  prometheus::Gauge& items;
  prometheus::Gauge& edges;
  prometheus::Gauge& state_events;
  prometheus::Gauge& batch_seq;
  prometheus::Counter& err_broker;
  prometheus::Counter& err_topic;
  prometheus::Counter& err_consume;
  prometheus::Counter& err_dlq;
  prometheus::Counter& err_apply;
  prometheus::Counter& err_commit;
};

}  // namespace

class Ingestor::Impl : public RdKafka::RebalanceCb, public RdKafka::EventCb, public RdKafka::OffsetCommitCb {
 public:
  Impl(IngestOptions options, state::StateStore* store, AppliedSink* sink, prometheus::Registry* registry)
      : options_(std::move(options)),
        store_(store),
        sink_(sink),
        own_registry_(registry == nullptr ? std::make_unique<prometheus::Registry>() : nullptr),
        metrics_(registry != nullptr ? *registry : *own_registry_),
        decoder_(options_.decoder),
        accepted_(options_.accepted_event_types.begin(), options_.accepted_event_types.end()) {}

  ~Impl() { consumer_.reset(); }

  Status Run(const std::atomic<bool>& stop) {
    stop_ = &stop;
    GSAU_RETURN_IF_ERROR(CreateClients());
    PublishStateGauges();
    // A broker with auto.create.topics.enable=false would refuse dead letters: create the topic
    // up front. Without the right to (ACLs), warn and rely on it existing.
    if (Status s = kafka::EnsureTopics(options_.kafka,
                                       {{options_.dead_letter_topic, options_.dead_letter_partitions,
                                         options_.dead_letter_replication_factor, {}}},
                                       10000);
        !s.ok()) {
      GSAU_LOG_WARN("ingest: could not make sure the dead-letter topic {} exists: {}", options_.dead_letter_topic,
                    s.ToString());
    }
    if (stop.load()) {
      // Not subscribed at all: a group joined and left at once can abort the process (below).
      GSAU_LOG_INFO("ingest: stopped before consuming");
      return Status::Ok();
    }
    if (auto err = consumer_->subscribe({options_.topic}); err != RdKafka::ERR_NO_ERROR) {
      return Status::InvalidArgument("subscribe to " + options_.topic + ": " + RdKafka::err2str(err));
    }
    GSAU_LOG_INFO("ingest: consuming {} as group {} from {}; dead letters to {}", options_.topic, options_.group_id,
                  options_.kafka.bootstrap_servers, options_.dead_letter_topic);
    SeedLagFromState();
    Status result;
    while (!stop.load(std::memory_order_relaxed)) {
      MaybeSeedLag();
      MaybeUpdateLag();
      MaybeCommitToKafka();
      MaybePollDeadLetters();
      const bool running = ApplyBackpressure();
      if (!fatal_.ok()) {  // seen while paused, or in an assignment
        result = WithUncompared(fatal_);
        break;
      }
      if (!running) continue;
      // With a batch open, only take what the client has already fetched: when that runs out,
      // the batch is applied at once rather than at its deadline, so a record waits for its
      // batch only while more records are arriving than one apply takes in (latency stays
      // low at moderate rates; batches grow by themselves under load).
      const int timeout_ms = pending_records_ > 0 ? 0 : 100;
      std::unique_ptr<RdKafka::Message> msg(consumer_->consume(timeout_ms));
      const bool drained = msg->err() == RdKafka::ERR__TIMED_OUT;
      if (Status s = Handle(*msg); !s.ok()) {
        result = s;
        break;
      }
      if (pending_records_ >= options_.batch_max_events || pending_dead_letter_bytes_ >= kMaxPendingDeadLetterBytes ||
          (pending_records_ > 0 && (drained || Clock::now() >= batch_deadline_))) {
        if (Status s = ApplyPending(); !s.ok() && s.code() != StatusCode::kAborted) {
          result = s;
          break;
        }
      }
    }
    if (result.ok()) WaitForFirstAssignment();
    // A graceful stop keeps what was consumed: apply it, then leave the group (close() runs
    // the revoke callback, which finds nothing pending). After an error the batch is dropped
    // first: the callback applied it anyway, retrying without end when the error was the
    // state's or the dead-letter topic's.
    if (result.ok()) {
      ApplyPending().IgnoreError();
    } else {
      DropPending();
    }
    CommitToKafka();
    consumer_->close();
    // Records skipped as read before are said too: the throttled line counts only those up to its
    // last (a burst of them after a reset left "1 record(s) delivered again" as the only trace).
    GSAU_LOG_INFO("ingest: stopped after {} records: {} applied, {} dead-lettered, {} skipped; {} delivered again "
                  "below a partition's next offset (skipped as read before){}",
                  counters_.consumed, counters_.applied, counters_.dead_lettered, counters_.skipped,
                  counters_.redelivered,
                  counters_.lost == 0 ? std::string()
                                      : "; " + std::to_string(counters_.lost) +
                                            " deleted by the topic's retention before they were read");
    return result;
  }

  // librdkafka 2.0's cooperative-sticky assignor aborts the process (an assertion in
  // rd_kafka_destroy) when a consumer that has joined its group is destroyed before its first
  // assignment (librdkafka #4312, fixed in 2.3): seen when a stop came within a moment of the
  // subscription. A stop that early waits for that assignment, 5 s at most (a new group's first
  // one waits out the broker's group.initial.rebalance.delay.ms, 3 s by default), taking no
  // record (one that comes is read again at the next start: its offset is not stored).
  void WaitForFirstAssignment() {
    const auto until = Clock::now() + std::chrono::seconds(5);
    while (!ever_assigned_ && Clock::now() < until) {
      std::unique_ptr<RdKafka::Message> msg(consumer_->consume(100));
    }
  }

  IngestCounters counters() const {
    std::lock_guard<std::mutex> lock(counters_mu_);
    return counters_;
  }

  void RaiseDeadLetterFatalErrorForTesting() {
    std::lock_guard<std::mutex> lock(dlq_mu_);
    if (dlq_) dlq_->RaiseFatalErrorForTesting();
  }

  // Client-level errors (broker down, authentication) and librdkafka's own log lines arrive
  // here, not as messages from consume(). May run on librdkafka's threads.
  void event_cb(RdKafka::Event& event) override {
    switch (event.type()) {
      case RdKafka::Event::EVENT_ERROR:
        if (event.fatal()) {
          GSAU_LOG_ERROR("ingest: fatal Kafka error: {}", event.str());
        }
        CountClientError(event.err(), event.str());
        break;
      case RdKafka::Event::EVENT_LOG:
        // Warnings too: the consumer reports an offset reset ("offset reset (at offset N) to
        // BEGINNING: ... Offset out of range") and a failed commit only as warning lines.
        kafka::LogClientLine("ingest", event.severity(), event.fac(), event.str(), librdkafka_log_);
        break;
      default:
        break;
    }
  }

  // Runs on Run()'s thread, inside consume().
  void rebalance_cb(RdKafka::KafkaConsumer* consumer, RdKafka::ErrorCode err,
                    std::vector<RdKafka::TopicPartition*>& partitions) override {
    const bool cooperative = consumer->rebalance_protocol() == "COOPERATIVE";
    if (err == RdKafka::ERR__ASSIGN_PARTITIONS) {
      ever_assigned_ = true;
      // The group has settled: what is not assigned here is another member's. (librdkafka calls
      // this with an empty list too, in both protocols, so a member given nothing clears it.)
      lost_.clear();
      std::string list;
      std::map<TopicPartition, int64_t> stored_offsets;
      std::vector<RdKafka::TopicPartition*> early;
      for (auto* tp : partitions) {
        const TopicPartition key{tp->topic(), tp->partition()};
        auto next = store_->Offset(key);
        // A batch a revoke could not apply is still held, with this partition's records up to
        // its pending offset: continue after them, or they would be read again behind it and
        // applied twice. (Dropped unapplied, they are read again after a restart: the state's
        // offset is the truth.)
        const auto held = pending_offsets_.find(key);
        const bool after_held = held != pending_offsets_.end() && held->second > next.value_or(-1);
        if (after_held) next = held->second;
        if (next) stored_offsets[key] = *next;
        // The fingerprint of the record before the offset, where known (the held batch's last
        // one, or the state's when stored with this offset).
        uint64_t last_record = 0;
        if (after_held) {
          last_record = pending_last_records_[key];
        } else if (const auto last = next ? store_->LastRecord(key) : std::nullopt;
                   last && last->next_offset == *next) {
          last_record = last->last_record;
        }
        tp->set_offset(next ? *next : RdKafka::Topic::OFFSET_BEGINNING);
        guard_.Assign(key, next ? *next : -1, last_record);
        if (after_held) {  // below the held batch, the state's own last record is compared too
          if (const auto stored = store_->LastRecord(key); stored && stored->next_offset > 0) {
            guard_.Applied(key, stored->next_offset - 1, stored->last_record);
          }
        }
        // One record early where the state knows the record before its offset (below, once the
        // log's start is known): that record, compared with its fingerprint, tells the log this
        // state read from another of the same name that already reaches as far (a topic
        // deleted, created again and refilled while ingest was stopped), whose records below
        // the offset would otherwise be skipped. (Not after a batch held in this process: the
        // partition was read here until its revoke.)
        if (!after_held && last_record != 0) early.push_back(tp);
        if (next) {
          unread_.erase(key);
        } else {
          unread_.insert(key);
        }
        assigned_.insert(key);
        known_high_.erase(key);  // a topic recreated meanwhile starts low
        list += " " + std::to_string(tp->partition()) + "@" + (next ? std::to_string(*next) : "start") +
                (after_held ? " (after a held batch)" : "");
      }
      const auto ends =
          stored_offsets.empty() ? std::map<TopicPartition, std::pair<int64_t, int64_t>>{}
                                 : CheckStoredOffsets(consumer, stored_offsets);
      for (auto* tp : early) {
        const TopicPartition key{tp->topic(), tp->partition()};
        const int64_t before = guard_.Next(key) - 1;
        // Not where retention has deleted that record: the seek would only reset the position
        // (with the client's "offset reset" warning) and find nothing to compare.
        if (const auto it = ends.find(key); it != ends.end() && it->second.first > before) continue;
        if (guard_.CompareFirst(key)) tp->set_offset(before);
      }
      // After an error found here the partitions are not read: the line says so (it read as if
      // ingest went on).
      GSAU_LOG_INFO("ingest: assigned{} ({} partitions, offsets from the state){}", list, assigned_.size(),
                    fatal_.ok() ? "" : "; not read: ingest stops (the error above)");
      // A refused assignment leaves these partitions unread while the lag counts them: counted as
      // an error (the stage's error alert), not only logged.
      if (cooperative) {
        std::unique_ptr<RdKafka::Error> e(consumer->incremental_assign(partitions));
        if (e) {
          metrics_.err_consume.Increment();
          GSAU_LOG_ERROR("ingest: incremental_assign of{}: {}", list, e->str());
        }
      } else if (const auto e = consumer->assign(partitions); e != RdKafka::ERR_NO_ERROR) {
        metrics_.err_consume.Increment();
        GSAU_LOG_ERROR("ingest: assign of{}: {}", list, RdKafka::err2str(e));
      }
      // librdkafka keeps an application's pause through revocation and reassignment
      // (librdkafka #1849): a partition paused here before, taken away and given back after
      // the last resume, would never be fetched again.
      if (paused_) {
        consumer->pause(partitions);
      } else {
        consumer->resume(partitions);
      }
    } else {
      // Revoked or lost: what was consumed from them is applied now, while this process still
      // may (the events are in this process's state either way, so nothing is lost or doubled).
      // A batch that cannot be applied (only after a stop: its retries end then) is kept, not
      // dropped: a cooperative revoke takes some partitions only, and the batch holds records
      // of the kept ones too, which the consumer has passed (dropped, a later batch's offsets
      // skipped them). A reassignment continues after it (see above).
      ApplyPending().IgnoreError();
      // A lost assignment's commits fail (another member may own the partitions already): not
      // tried, so they count no commit error.
      if (consumer->assignment_lost()) {
        for (auto* tp : partitions) {
          to_commit_.erase({tp->topic(), tp->partition()});
          lost_.insert({tp->topic(), tp->partition()});
        }
      }
      CommitToKafka();
      for (auto* tp : partitions) {
        assigned_.erase({tp->topic(), tp->partition()});
        guard_.Revoke({tp->topic(), tp->partition()});
      }
      GSAU_LOG_INFO("ingest: {} {} partitions", consumer->assignment_lost() ? "lost" : "revoked", partitions.size());
      consumer->resume(partitions);  // no pause of ours outlives the assignment (see above)
      if (cooperative) {
        std::unique_ptr<RdKafka::Error> e(consumer->incremental_unassign(partitions));
        if (e) GSAU_LOG_ERROR("ingest: incremental_unassign: {}", e->str());
      } else if (const auto e = consumer->unassign(); e != RdKafka::ERR_NO_ERROR) {
        GSAU_LOG_ERROR("ingest: unassign: {}", RdKafka::err2str(e));
      }
    }
    metrics_.assigned.Set(static_cast<double>(assigned_.size()));
  }

 private:
  // The first and the next offset of each partition's log, asked of the brokers in one request
  // per broker (ListOffsets, through offsetsForTimes: -2 earliest, -1 latest) within about
  // `timeout_ms` (at most 1.5 times it); partitions that did not answer in time are missing.
  // Not query_watermark_offsets: in this librdkafka (2.0.2) it can block for ever while a
  // partition's leader is unreachable (librdkafka #2588, fixed in 2.3.0).
  static std::map<TopicPartition, std::pair<int64_t, int64_t>> LogEnds(RdKafka::KafkaConsumer* consumer,
                                                                       const std::vector<TopicPartition>& parts,
                                                                       int timeout_ms) {
    std::map<TopicPartition, std::pair<int64_t, int64_t>> out;
    std::map<TopicPartition, int64_t> low;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (const int64_t end : {RdKafka::Topic::OFFSET_BEGINNING, RdKafka::Topic::OFFSET_END}) {
      if (end == RdKafka::Topic::OFFSET_END && low.empty()) break;  // nothing to pair the ends with
      // The second call gets at least half the budget: a slow first answer (cold metadata) must
      // not starve it, or the stored-offset check and the lag would see no partition at all.
      const auto left = std::max<int64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count(), timeout_ms / 2);
      std::vector<RdKafka::TopicPartition*> tps;
      for (const auto& tp : parts) tps.push_back(RdKafka::TopicPartition::create(tp.topic, tp.partition, end));
      const auto err = consumer->offsetsForTimes(tps, static_cast<int>(std::max<int64_t>(left, 1)));
      for (auto* tp : tps) {
        if (err != RdKafka::ERR_NO_ERROR || tp->err() != RdKafka::ERR_NO_ERROR || tp->offset() < 0) continue;
        const TopicPartition key{tp->topic(), tp->partition()};
        if (end == RdKafka::Topic::OFFSET_BEGINNING) {
          low[key] = tp->offset();
        } else if (auto it = low.find(key); it != low.end()) {
          out[key] = {it->second, tp->offset()};
        }
      }
      RdKafka::TopicPartition::destroy(tps);
    }
    return out;
  }

  // The state's offset (or a held batch's, past it) against the partition's log. Past its end:
  // the topic was deleted and created again, or this is another cluster; librdkafka would
  // restart the partition at its beginning and every record below the state's offset would be
  // skipped as one read before, so ingest stops, saying so. Before its start: retention deleted
  // records this state never read (lost to it; consumption goes on from the start). Runs inside
  // the rebalance callback: the brokers get about 2 s (3 at most), and partitions without an
  // answer are not checked.
  // Returns the log ends the brokers gave, (start, end) by partition.
  std::map<TopicPartition, std::pair<int64_t, int64_t>> CheckStoredOffsets(
      RdKafka::KafkaConsumer* consumer, const std::map<TopicPartition, int64_t>& stored_offsets) {
    std::vector<TopicPartition> parts;
    for (const auto& [tp, stored] : stored_offsets) parts.push_back(tp);
    const auto answered = LogEnds(consumer, parts, 2000);
    if (answered.size() < parts.size()) {
      // Not silently: a log cut short is then found while reading (CheckLogStillReaches).
      std::string unchecked;
      for (const auto& tp : parts) {
        if (answered.count(tp) == 0) unchecked += " " + std::to_string(tp.partition);
      }
      GSAU_LOG_WARN("ingest: the brokers gave no log ends in time for partitions{}: their offsets from the state are "
                    "not checked against the log at this assignment",
                    unchecked);
    }
    for (const auto& [tp, ends] : answered) {
      const auto [low, high] = ends;
      const int64_t stored = stored_offsets.at(tp);
      const std::string where = tp.topic + "/" + std::to_string(tp.partition);
      if (stored > high) {
        StopAsCutShort(tp, high, stored, "at its assignment");
      } else if (stored < low) {
        CountLost(low - stored);
        GSAU_LOG_ERROR("ingest: partition {}: records {}..{} were deleted by the topic's retention before this state "
                       "read them; going on from {}",
                       where, stored, low - 1, low);
      }
    }
    return answered;
  }

  // Records deleted by retention before this state read them: gone, said and counted (the
  // stage's error alert too), not an error that stops ingest.
  void CountLost(int64_t n) {
    metrics_.err_consume.Increment();
    metrics_.lost.Increment(static_cast<double>(n));
    Bump(&IngestCounters::lost, n);
  }

  // A record at `offset` came after `expected` on a partition read on from there: a gap in the
  // log (transaction markers, aborted records, compaction) or, when the log now starts between
  // the two, records its retention deleted while ingest was behind (paused for backpressure, or
  // slow): the client found its position gone and went on from the log's start
  // (auto.offset.reset) with nothing but a warning of its own. The start is the one the client's
  // last fetch reported (get_watermark_offsets: cached, no request). A start above the record
  // itself means the record was fetched before retention passed it (the client reads ahead of
  // ingest): its gap is the log's own. (A start that moved past the reset's first record before
  // ingest took it leaves that reset uncounted: counted at least, not exactly.)
  void CheckGap(const TopicPartition& tp, int64_t expected, int64_t offset) {
    int64_t low = -1, high = -1;
    if (consumer_->get_watermark_offsets(tp.topic, tp.partition, &low, &high) != RdKafka::ERR_NO_ERROR ||
        low <= expected || low > offset) {
      return;
    }
    CountLost(low - expected);
    GSAU_LOG_ERROR("ingest: partition {}/{}: records {}..{} were deleted by the topic's retention before this state "
                   "read them (ingest was behind while the log's start moved past it); going on from {}",
                   tp.topic, tp.partition, expected, low - 1, offset);
  }

  // The partition's log ends at `high`, below `consumed` (the offset this state has read it
  // to), found `when` (at its assignment, or while reading it): ingest stops, saying why.
  void StopAsCutShort(const TopicPartition& tp, int64_t high, int64_t consumed, const char* when) {
    StopAsAnotherLog(tp,
                     "ends at offset " + std::to_string(high) + " but the state has consumed it up to " +
                         std::to_string(consumed),
                     when, /*replaced=*/false);
  }

  // The record at `offset`, the last one this state read below its offset, has another
  // fingerprint than the one read there: the same name, another log (ingest stops).
  void StopAsReplaced(const TopicPartition& tp, int64_t offset, const char* when) {
    StopAsAnotherLog(tp,
                     "holds another record at offset " + std::to_string(offset) + " than the one this state read "
                     "there",
                     when, /*replaced=*/true);
  }

  // Every partition found so is named (an assignment checks them all; the first kMaxNamed, then
  // a count), then what happened and what to do, for the worst of them: a log written again
  // cannot be read by rolling back (every checkpoint's offset lies in the log this state read).
  // Another error already set wins.
  void StopAsAnotherLog(const TopicPartition& tp, const std::string& what, const char* when, bool replaced) {
    static constexpr size_t kMaxNamed = 8;
    if (!fatal_.ok() && fatal_.code() != StatusCode::kFailedPrecondition) return;
    if (!another_log_.insert(tp).second) return;
    metrics_.err_consume.Increment();
    const std::string where = "partition " + tp.topic + "/" + std::to_string(tp.partition) + " " + what + " (found " +
                              when + ")";
    if (another_log_named_.size() < kMaxNamed) another_log_named_.push_back(where);
    another_log_replaced_ = another_log_replaced_ || replaced;
    std::string message;
    for (const auto& w : another_log_named_) message += (message.empty() ? "" : "; ") + w;
    if (another_log_.size() > another_log_named_.size()) {
      message += "; and " + std::to_string(another_log_.size() - another_log_named_.size()) + " partition(s) more";
    }
    // The model's checkpoints are as far into the old log as the state: emptying state.path alone
    // leaves a model ahead of the state (refused at start), and a rollback reads on from a
    // checkpoint's offsets, which a log written again or recreated shorter does not hold.
    message += another_log_replaced_
                   ? ": the topic was deleted and created again, its log was cut short (an unclean leader election) "
                     "and written again, or this is another cluster. Point kafka.bootstrap_servers at the cluster "
                     "this state came from; to read this log, start from an empty state.path and "
                     "learner.checkpoint_dir (and new embedding topics: the old ones keep the old model's vectors)"
                   : ": the topic was deleted and created again, its log was cut short (an unclean leader election), "
                     "or this is another cluster. Point kafka.bootstrap_servers at the cluster this state came from; "
                     "to read this log from its start, start from an empty state.path and learner.checkpoint_dir "
                     "and new embedding topics (after an unclean leader election, gsau run --rollback to a "
                     "checkpoint whose offsets the log still reaches keeps what was read up to there)";
    // Not kCorruption: the state is intact; the log under its topic's name is another one.
    fatal_ = Status::FailedPrecondition(std::move(message));
    if (another_log_.size() == 1) {
      GSAU_LOG_ERROR("ingest: {}", fatal_.message());
    } else {
      GSAU_LOG_ERROR("ingest: also {}", where);
    }
  }

  // Another log found (StopAsAnotherLog's error): the partitions of the assignment whose
  // record below the state's offset had not come yet are said too (they may be another log).
  Status WithUncompared(const Status& s) const {
    if (s.code() != StatusCode::kFailedPrecondition) return s;
    const auto n = std::count_if(assigned_.begin(), assigned_.end(), [this](const TopicPartition& tp) {
      return guard_.Comparing(tp) && another_log_.count(tp) == 0;
    });
    if (n == 0) return s;
    return Status(s.code(), s.message() + " (" + std::to_string(n) +
                                " other partition(s) of the assignment were not compared before ingest stopped)");
  }

  // A record below a partition's next offset came, or the client's cached end of its log lies
  // below it: a fetch restarted from a stale position (librdkafka #4686: harmless, skipped), or
  // the client reset its position to the log's start because the log no longer reaches that far
  // (the topic created again, its log cut short while this process read it: auto.offset.reset
  // does that without an error, and the new log's records would all be skipped as read before).
  // The brokers' answer for the log's end tells which (`known`: answers already had, not asked
  // again). Each partition is asked at most every kRecheckAfter, every kRetryAfter while the
  // brokers give none (metadata is stale just after a topic is created again); all in one
  // ListOffsets of up to 1.5 s on Run()'s thread. (A new log that has already grown past the
  // state's offset when asked cannot be told from the old one: its records below it are skipped
  // as read before.)
  void CheckLogStillReaches(const std::vector<TopicPartition>& suspects,
                            const std::map<TopicPartition, std::pair<int64_t, int64_t>>& known = {}) {
    static constexpr auto kRecheckAfter = std::chrono::seconds(10);
    static constexpr auto kRetryAfter = std::chrono::seconds(1);
    if (!fatal_.ok() || (stop_ != nullptr && stop_->load(std::memory_order_relaxed))) return;
    const auto now = Clock::now();
    std::vector<TopicPartition> ask;
    for (const auto& tp : suspects) {
      auto [due, first_time] = log_recheck_due_.try_emplace(tp, now);
      if ((first_time || now >= due->second) && known.count(tp) == 0) ask.push_back(tp);
      if (first_time || now >= due->second) due->second = now + kRetryAfter;  // until an answer says more
    }
    auto ends = ask.empty() ? std::map<TopicPartition, std::pair<int64_t, int64_t>>{}
                            : LogEnds(consumer_.get(), ask, 1000);
    ends.insert(known.begin(), known.end());
    for (const auto& tp : suspects) {
      const auto it = ends.find(tp);
      if (it == ends.end()) continue;
      log_recheck_due_[tp] = Clock::now() + kRecheckAfter;
      const int64_t next = guard_.Next(tp);
      if (it->second.second < next) StopAsCutShort(tp, it->second.second, next, "while reading it");
    }
  }

  Status CreateClients() {
    std::string err;
    std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
    const std::vector<std::pair<std::string, std::string>> settings = {
        {"bootstrap.servers", options_.kafka.bootstrap_servers},
        {"client.id", options_.kafka.client_id},
        {"group.id", options_.group_id},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"session.timeout.ms", std::to_string(options_.session_timeout_ms)},
        {"heartbeat.interval.ms", std::to_string(std::max(100, options_.session_timeout_ms / 5))},
        {"enable.partition.eof", "false"},
        {"reconnect.backoff.ms", "100"},
        {"reconnect.backoff.max.ms", std::to_string(options_.retry_backoff_max_ms)},
        {"topic.metadata.refresh.interval.ms", "5000"},
    };
    for (const auto& [k, v] : settings) {
      if (conf->set(k, v, err) != RdKafka::Conf::CONF_OK) return Status::InvalidArgument(k + ": " + err);
    }
    if (!options_.group_instance_id.empty() &&
        conf->set("group.instance.id", options_.group_instance_id, err) != RdKafka::Conf::CONF_OK) {
      return Status::InvalidArgument("group.instance.id: " + err);
    }
    for (const auto& [k, v] : options_.kafka.properties) {
      if (const auto why = ConsumerOwnedProperty(k, v); !why.empty()) {
        return Status::InvalidArgument("kafka property " + k + " is set by gsau's consumer: " + std::string(why));
      }
      if (conf->set(k, v, err) != RdKafka::Conf::CONF_OK) {
        return Status::InvalidArgument("kafka property " + k + ": " + err);
      }
    }
    if (conf->set("rebalance_cb", static_cast<RdKafka::RebalanceCb*>(this), err) != RdKafka::Conf::CONF_OK ||
        conf->set("event_cb", static_cast<RdKafka::EventCb*>(this), err) != RdKafka::Conf::CONF_OK ||
        conf->set("offset_commit_cb", static_cast<RdKafka::OffsetCommitCb*>(this), err) != RdKafka::Conf::CONF_OK) {
      return Status::Internal(err);
    }
    consumer_.reset(RdKafka::KafkaConsumer::create(conf.get(), err));
    if (!consumer_) return Status::InvalidArgument("creating the consumer: " + err);
    GSAU_ASSIGN_OR_RETURN(dlq_, CreateDeadLetterProducer());
    dlq_fit_bytes_ = static_cast<size_t>(dlq_->max_message_bytes());
    return Status::Ok();
  }

  Result<std::unique_ptr<kafka::Producer>> CreateDeadLetterProducer() {
    kafka::ProducerOptions po;
    po.linger_ms = 1;
    // The broker holds a whole batch of records to the topic's max.message.bytes, and librdkafka
    // does not split a batch it refused: batches no larger than one dead letter may be.
    // A cap, not batch_bytes: a batch.size in kafka.properties (shared with the publisher, set for
    // throughput) came after batch_bytes and undid the shrinking, and ingest stalled on them.
    if (dlq_fit_bytes_ > 0) po.batch_bytes_cap = static_cast<int>(std::min<size_t>(dlq_fit_bytes_, INT32_MAX));
    // A producer is closed only at the end or after a fatal error; what it still holds then
    // is produced again by its successor or after a restart. So a short wait: a stop's is
    // bounded (FlushDeadLetters).
    po.close_timeout_ms = 1000;
    po.name = "dead-letter producer";
    // A full queue comes back to ProduceDeadLetter's loop, which backs off, keeps the lag
    // current and hears a stop; waiting inside Produce did none of these.
    po.queue_full_timeout_ms = 1000;
    return kafka::Producer::Create(options_.kafka, po);
  }

  // After a fatal error the dead-letter producer takes nothing more (producer.h), and after a
  // refusal as too large its batches must shrink: a new one takes over, and the batch's dead
  // letters handed to the old one are produced again (whether they arrived is unknown; the topic
  // is at-least-once). False while no new one could be made.
  bool RenewDeadLetterProducer(const char* why) {
    auto fresh = CreateDeadLetterProducer();
    if (!fresh.ok()) {
      GSAU_LOG_ERROR("ingest: replacing the failed dead-letter producer: {}", fresh.status().ToString());
      return false;
    }
    GSAU_LOG_WARN("ingest: {}: a new dead-letter producer produces the batch's {} dead letters again", why,
                  pending_dead_letters_.size());
    {
      std::lock_guard<std::mutex> lock(dlq_mu_);
      std::swap(dlq_, *fresh);
    }
    fresh->reset();  // the failed one: it fails what it held at once
    dlq_failed_seen_ = dlq_too_large_seen_ = 0;
    // The letters handed to the old one; those of the batch produced after this go to the new one.
    resend_dead_letters_ = std::max(resend_dead_letters_, pending_dead_letters_.size());
    return true;
  }

  // Pauses or resumes for backpressure. Returns false on the step into a pause, after one poll
  // that serves the group; while paused it returns true, and the caller's consume() fetches
  // nothing from the paused partitions but still serves the group.
  bool ApplyBackpressure() {
    if (sink_ == nullptr) return true;
    // Paused, it waits for the queue to drain to half: resumed at the first room, it paused and
    // resumed once a learner round (two log lines and a refetch each) while the learner was the
    // slower, for as long as a backlog lasted.
    const auto batch = static_cast<size_t>(options_.batch_max_events);
    const size_t capacity = sink_->capacity();
    const bool room = sink_->HasRoom(paused_ ? std::max(batch, capacity - capacity / 2) : batch);
    if (room == !paused_) return true;
    std::vector<RdKafka::TopicPartition*> parts;
    consumer_->assignment(parts);
    // pause() and resume() return no error of their own (librdkafka reports per partition, only
    // for partitions not assigned, and these are the assignment).
    if (!room) {
      // Apply what is held first, so the learner gets it and nothing waits on a paused batch.
      ApplyPending().IgnoreError();
      consumer_->pause(parts);
      paused_ = true;
      metrics_.pauses.Increment();
      metrics_.paused.Set(1);
      Bump(&IngestCounters::paused, 1);
      if (const int64_t n = pause_log_.Due()) {
        GSAU_LOG_INFO("ingest: learner queue full, pausing {} partitions until it drains to half{}", parts.size(),
                      n > 1 ? " (" + std::to_string(n) + " pauses since the last line)" : std::string());
      }
    } else {
      consumer_->resume(parts);
      paused_ = false;
      metrics_.paused.Set(0);
      if (const int64_t n = resume_log_.Due()) {
        GSAU_LOG_INFO("ingest: learner queue drained to half, resuming{}",
                      n > 1 ? " (" + std::to_string(n) + " resumes since the last line)" : std::string());
      }
    }
    RdKafka::TopicPartition::destroy(parts);
    if (paused_) {
      // Keep serving the group (heartbeats are background, rebalances come through here).
      std::unique_ptr<RdKafka::Message> msg(consumer_->consume(50));
      if (Status s = Handle(*msg); !s.ok() && fatal_.ok()) fatal_ = s;
      return false;
    }
    return true;
  }

  Status Handle(RdKafka::Message& msg) {
    switch (msg.err()) {
      case RdKafka::ERR_NO_ERROR:
        Accept(msg);
        return Status::Ok();
      case RdKafka::ERR__TIMED_OUT:
      case RdKafka::ERR__PARTITION_EOF:
        return Status::Ok();
      default:
        if (msg.err() == RdKafka::ERR__FATAL) {
          metrics_.err_consume.Increment();
          std::string reason;
          consumer_->fatal_error(reason);
          return Status::Internal("fatal consumer error: " + reason);
        }
        CountClientError(msg.err(), msg.errstr());
        return Status::Ok();
    }
  }

  // Counts and (throttled) logs a non-fatal client error: librdkafka retries by itself.
  void CountClientError(RdKafka::ErrorCode err, const std::string& text) {
    switch (err) {
      case RdKafka::ERR_UNKNOWN_TOPIC_OR_PART:
      case RdKafka::ERR__UNKNOWN_TOPIC:
      case RdKafka::ERR__UNKNOWN_PARTITION:
        metrics_.err_topic.Increment();
        if (int64_t n = topic_log_.Due()) {
          GSAU_LOG_WARN("ingest: topic {} is not available ({}x): {}; retrying", options_.topic, n, text);
        }
        break;
      case RdKafka::ERR__TRANSPORT:
      case RdKafka::ERR__ALL_BROKERS_DOWN:
      case RdKafka::ERR__RESOLVE:
        metrics_.err_broker.Increment();
        if (int64_t n = broker_log_.Due()) GSAU_LOG_WARN("ingest: broker unavailable ({}x): {}; reconnecting", n, text);
        break;
      default:
        metrics_.err_consume.Increment();
        if (int64_t n = consume_log_.Due()) GSAU_LOG_WARN("ingest: consumer error ({}x): {}", n, text);
        break;
    }
  }

  void Accept(RdKafka::Message& msg) {
    TopicPartition tp{msg.topic_name(), msg.partition()};
    const std::string_view value(static_cast<const char*>(msg.payload()), msg.payload() ? msg.len() : 0);
    const auto ts = msg.timestamp();
    const int64_t ts_ms = ts.type == RdKafka::MessageTimestamp::MSG_TIMESTAMP_NOT_AVAILABLE ? -1 : ts.timestamp;
    const std::string_view key(static_cast<const char*>(msg.key_pointer()), msg.key_pointer() ? msg.key_len() : 0);
    const uint64_t fingerprint = RecordFingerprint(key, value, ts_ms);
    const int64_t expected = guard_.Next(tp);
    const bool comparing = guard_.Comparing(tp);
    const bool read_on = guard_.Checked(tp);  // read on from `expected` (not a start to check)
    auto verdict = guard_.Take(tp, msg.offset(), fingerprint);
    if (verdict == OffsetGuard::Verdict::kCompareAgain) {
      std::unique_ptr<RdKafka::TopicPartition> at(
          RdKafka::TopicPartition::create(tp.topic, tp.partition, expected - 1));
      if (consumer_->seek(*at, 5000) == RdKafka::ERR_NO_ERROR) {
        guard_.SoughtToCompare(tp);
        return;  // the record to compare comes again
      }
      guard_.CompareFailed(tp);
      verdict = guard_.Take(tp, msg.offset(), fingerprint);
    }
    if (verdict == OffsetGuard::Verdict::kAhead) {
      if (SeekBack(tp, msg.offset())) return;  // the records from the state's offset come next
      verdict = guard_.Take(tp, msg.offset(), fingerprint);
    }
    switch (verdict) {
      case OffsetGuard::Verdict::kCompared:
        return;  // read already
      case OffsetGuard::Verdict::kReplaced:
        // Another log under the same name (the position reset to its start while read: a topic
        // created again) stops ingest however far that log reaches.
        StopAsReplaced(tp, msg.offset(), comparing ? "at its assignment" : "while reading it");
        return;
      case OffsetGuard::Verdict::kGap:
        metrics_.err_consume.Increment();
        GSAU_LOG_ERROR("ingest: partition {}/{} still starts at offset {} after {} seeks back to the state's {}: "
                       "records {}..{} are skipped (not in this state)",
                       tp.topic, tp.partition, msg.offset(), OffsetGuard::kMaxSeeks, expected, expected,
                       msg.offset() - 1);
        break;
      case OffsetGuard::Verdict::kSeen:
        metrics_.redelivered.Increment();
        Bump(&IngestCounters::redelivered, 1);
        if (int64_t n = redelivered_log_.Due()) {
          GSAU_LOG_WARN("ingest: {} record(s) delivered again below the next offset (last {}/{} @{}); skipped", n,
                        tp.topic, tp.partition, msg.offset());
        }
        CheckLogStillReaches({tp});
        return;
      case OffsetGuard::Verdict::kNew:
        if (read_on && msg.offset() > expected) CheckGap(tp, expected, msg.offset());
        break;
      default:
        break;
    }
    if (pending_records_ == 0) {
      batch_deadline_ = Clock::now() + std::chrono::milliseconds(options_.batch_max_wait_ms);
    }
    ++pending_records_;
    ++batch_consumed_;
    pending_last_records_[tp] = fingerprint;
    pending_offsets_[std::move(tp)] = msg.offset() + 1;
    const DecodeResult& r = decoder_.Decode(value, ts_ms, WallMs());
    if (!r.ok) {
      DeadLetter(msg, r);
      return;
    }
    if (!accepted_.empty() && accepted_.count(r.event.event_type) == 0) {
      ++batch_skipped_;
      return;
    }
    if (key != r.event.user_id) NoteMiskeyed(msg, key, r.event.user_id);  // (no key: empty; an id is not)
    pending_events_.push_back(r.event);
  }

  // The first record since `tp` was assigned lies above the state's offset: the log may have a
  // gap there, or the client may have lost the assigned offset (offset_guard.h) and the records
  // between would be skipped. Seeks back to the state's offset; true when the seek was made
  // (this record is dropped: it comes again after those before it, or first where the log has
  // a gap). False when it failed: the record is taken as it is.
  bool SeekBack(const TopicPartition& tp, int64_t offset) {
    const int64_t next = guard_.Next(tp);
    std::unique_ptr<RdKafka::TopicPartition> at(RdKafka::TopicPartition::create(tp.topic, tp.partition, next));
    const auto err = consumer_->seek(*at, 5000);
    if (err != RdKafka::ERR_NO_ERROR) {
      guard_.SeekFailed(tp);
      metrics_.err_consume.Increment();
      GSAU_LOG_ERROR("ingest: partition {}/{} started at offset {}, above the state's {}; seeking back failed: {}",
                     tp.topic, tp.partition, offset, next, RdKafka::err2str(err));
      return false;
    }
    guard_.Sought(tp, offset);
    GSAU_LOG_INFO("ingest: partition {}/{} started at offset {}, above the state's {}{}: sought back to it (a gap "
                  "in the log is then taken as one)",
                  tp.topic, tp.partition, offset, next,
                  unread_.count(tp) != 0 ? " (the state has not read this partition: from its start)" : "");
    return true;
  }

  // SYSTEM.md keys a click by its user so that a user's clicks stay in one partition, in order.
  // Applied all the same (the state is keyed by user_id); said once, counted always.
  void NoteMiskeyed(const RdKafka::Message& msg, std::string_view key, const std::string& user) {
    ++batch_miskeyed_;
    if (warned_miskeyed_) return;
    warned_miskeyed_ = true;
    GSAU_LOG_WARN("ingest: {}/{}@{} is keyed {} but its user_id is '{}': producers should key a click by its user, "
                  "or one user's clicks can land on several partitions and be applied out of order (counted in "
                  "gsau_ingest_events_miskeyed_total; said once)",
                  msg.topic_name(), msg.partition(), msg.offset(),
                  msg.key_pointer() == nullptr ? std::string("with no key") : "'" + DisplayText(key) + "'",
                  DisplayText(user));
  }

  void DeadLetter(RdKafka::Message& msg, const DecodeResult& r) {
    DeadLetterRecord d;
    if (RdKafka::Headers* h = msg.headers(); h != nullptr) {
      for (const auto& hd : h->get_all()) {
        // A null value stays null (it went out as an empty one): the dead letter is the record.
        d.headers.emplace_back(hd.key(), hd.value() == nullptr ? std::optional<std::string>()
                                                               : std::string(static_cast<const char*>(hd.value()),
                                                                             hd.value_size()));
      }
    }
    d.error = {{"gsau.error.reason", r.message},
               {"gsau.error.code", std::string(BadReasonName(r.reason))},
               {"gsau.error.topic", msg.topic_name()},
               {"gsau.error.partition", std::to_string(msg.partition())},
               {"gsau.error.offset", std::to_string(msg.offset())}};
    if (msg.key_pointer() != nullptr) d.key.assign(static_cast<const char*>(msg.key_pointer()), msg.key_len());
    d.null_key = msg.key_pointer() == nullptr;
    if (msg.payload() != nullptr) d.value.assign(static_cast<const char*>(msg.payload()), msg.len());
    d.null_value = msg.payload() == nullptr;
    // Timestamped when dead-lettered (as Kafka Connect does): with the original's time, a record
    // of an old backfill would fall to the topic's time-based retention at once.
    d.timestamp_ms = 0;
    if (msg.timestamp().type != RdKafka::MessageTimestamp::MSG_TIMESTAMP_NOT_AVAILABLE) {
      d.error.emplace_back("gsau.error.timestamp", std::to_string(msg.timestamp().timestamp));
    }
    const size_t original = DeadLetterWireBytes(d);
    if (FitDeadLetter(d, dlq_fit_bytes_)) {
      GSAU_LOG_WARN("ingest: the dead letter of {}/{}@{} ({} bytes) is cut to {} bytes", msg.topic_name(),
                    msg.partition(), msg.offset(), original, dlq_fit_bytes_);
    }
    if (!ProduceDeadLetter(d)) dead_letters_unsent_ = true;
    pending_dead_letter_bytes_ += DeadLetterWireBytes(d);
    pending_dead_letters_.push_back(std::move(d));
    batch_bad_[static_cast<int>(r.reason)]++;
    ++batch_dead_lettered_;
  }

  // Every failure is retried here until it goes through, because dropping it would lose the bad
  // event. A full queue (Produce waited queue_full_timeout_ms for room) is back-pressure, not an
  // error: tried again at once, neither counted nor logged. False: Run() was asked to stop first.
  bool ProduceDeadLetter(const DeadLetterRecord& d) {
    int backoff_ms = 50;
    while (true) {
      Status s = dlq_->Produce(options_.dead_letter_topic, d.null_key ? std::string_view() : std::string_view(d.key),
                               d.value, d.AllHeaders(), d.timestamp_ms, d.null_value);
      if (s.ok()) return true;
      if (stop_->load()) return false;
      if (s.code() == StatusCode::kResourceExhausted) {
        MaybeUpdateLag(/*blocked=*/true);
        continue;
      }
      metrics_.err_dlq.Increment();
      if (dlq_->failed_fatally() && RenewDeadLetterProducer("the dead-letter producer hit a fatal error")) {
        continue;  // the new one at once (renewal is rare; Create does not loop)
      }
      GSAU_LOG_WARN("ingest: dead-letter produce failed: {}; retrying", s.ToString());
      MaybeUpdateLag(/*blocked=*/true);
      SleepUnlessStopped(backoff_ms);
      backoff_ms = std::min(backoff_ms * 2, options_.retry_backoff_max_ms);
    }
  }

  // Waits until every dead letter of the batch is acknowledged. A delivery that failed for good
  // (e.g. message.timeout.ms ran out during an outage) is gone from the producer, so all of the
  // batch's dead letters are produced again (the dead-letter topic is at-least-once): committing
  // the batch after a later clean flush would lose them. A refusal as too large (the topic's
  // max.message.bytes below the client's message.max.bytes) halves the size dead letters are cut
  // to, down to kMinDeadLetterBytes. Other refusals (authorisation, a missing topic) are retried
  // until an operator mends them: visible in the log and in gsau_errors_total{stage="ingest"}.
  Status AcknowledgeDeadLetters() {
    int backoff_ms = 100;
    while (true) {
      // Again from the first should one more producer take over meanwhile (the letters handed
      // to the one it replaced are in doubt).
      while (resend_dead_letters_ > 0 && !dead_letters_unsent_) {
        const size_t n = std::min(resend_dead_letters_, pending_dead_letters_.size());
        resend_dead_letters_ = 0;
        for (size_t k = 0; k < n; ++k) {
          if (!ProduceDeadLetter(pending_dead_letters_[k])) {
            dead_letters_unsent_ = true;
            break;
          }
        }
      }
      if (dead_letters_unsent_) return Status::Aborted("stopped before every dead letter was produced");
      Status s = FlushDeadLetters();
      if (!s.ok() && stop_->load()) return Status::Aborted("stopped before dead letters were acknowledged");
      if (!s.ok() && dlq_->failed_fatally()) {
        metrics_.err_dlq.Increment();
        if (stop_->load()) return Status::Aborted("stopped before dead letters were acknowledged");
        if (RenewDeadLetterProducer("the dead-letter producer hit a fatal error")) {
          // Backing off: should every new producer fail too (the cause is the cluster's), this
          // loop would otherwise make one producer after another.
          SleepUnlessStopped(backoff_ms);
          if (stop_->load()) return Status::Aborted("stopped before dead letters were acknowledged");
          backoff_ms = std::min(backoff_ms * 2, options_.retry_backoff_max_ms);
          continue;
        }
      }
      const kafka::DeliveryCounts counts = dlq_->counts();
      if (s.ok() && counts.failed == dlq_failed_seen_) return Status::Ok();
      metrics_.err_dlq.Increment();
      GSAU_LOG_WARN("ingest: waiting for dead-letter acknowledgements: {}; retrying in {} ms",
                    s.ok() ? "a delivery failed" : s.ToString(), backoff_ms);
      if (stop_->load()) return Status::Aborted("stopped before dead letters were acknowledged");
      MaybeUpdateLag(/*blocked=*/true);
      SleepUnlessStopped(backoff_ms);
      // Not the batch's letters again for a batch the stop leaves unapplied (read again later).
      if (stop_->load()) return Status::Aborted("stopped before dead letters were acknowledged");
      backoff_ms = std::min(backoff_ms * 2, options_.retry_backoff_max_ms);
      if (counts.failed == dlq_failed_seen_) continue;  // still outstanding: wait again
      dlq_failed_seen_ = counts.failed;
      if (counts.too_large != dlq_too_large_seen_ && dlq_fit_bytes_ > kMinDeadLetterBytes) {
        dlq_too_large_seen_ = counts.too_large;
        dlq_fit_bytes_ = std::max(kMinDeadLetterBytes, dlq_fit_bytes_ / 2);
        GSAU_LOG_WARN("ingest: {} refused a dead letter as too large; dead letters are cut to {} bytes from now on",
                      options_.dead_letter_topic, dlq_fit_bytes_);
        for (auto& d : pending_dead_letters_) FitDeadLetter(d, dlq_fit_bytes_);
        if (RenewDeadLetterProducer("batches of dead letters must shrink too")) continue;
      } else if (counts.too_large != dlq_too_large_seen_) {
        dlq_too_large_seen_ = counts.too_large;
        if (const int64_t n = dlq_floor_log_.Due()) {
          GSAU_LOG_ERROR("ingest: {} refuses dead letters of {} bytes, the least they are cut to (their gsau.error.* "
                         "headers), {}x since the last line: raise the topic's max.message.bytes; retrying",
                         options_.dead_letter_topic, kMinDeadLetterBytes, n);
        }
      }
      for (const auto& d : pending_dead_letters_) {
        if (ProduceDeadLetter(d)) continue;
        // Stopped: the batch stays unapplied, so the rest need not go (each could wait out a
        // full queue for a second, past the stop's budget).
        dead_letters_unsent_ = true;
        break;
      }
    }
  }

  // One wait for the dead-letter acknowledgements, up to dlq_flush_timeout_ms, in slices that
  // hear a stop: from the stop on, all such waits together last at most kStopAckWaitMs. Three
  // whole waits (the loop's, the last apply's, the revoke's at close) made a stop last 30 s and
  // more while the topic did not answer, past a container's grace period (then the pipeline's
  // last checkpoint was lost to the SIGKILL). Waits for every delivery to settle, as one Flush
  // did (a failure part-way would otherwise have the caller produce the letters still in flight
  // again), and returns the first failure a slice reported; ends early on a fatal error.
  Status FlushDeadLetters() {
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::milliseconds(options_.dlq_flush_timeout_ms);
    Status failure;
    while (true) {
      auto until = deadline;
      if (stop_->load()) {
        if (!stop_ack_deadline_) stop_ack_deadline_ = Clock::now() + std::chrono::milliseconds(kStopAckWaitMs);
        until = std::min(until, *stop_ack_deadline_);
      }
      const int64_t left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      Status s = dlq_->Flush(static_cast<int>(std::clamp<int64_t>(left, 0, 200)));
      const auto c = dlq_->counts();
      if (!s.ok() && failure.ok() && c.failed != dlq_failed_seen_) failure = s;  // reported once: kept
      if (dlq_->failed_fatally()) return failure.ok() ? s : failure;
      if (c.produced == c.delivered + c.failed) return failure;  // all settled: Ok, or the first failure
      if (Clock::now() >= until) {
        if (!failure.ok()) return failure;
        const auto waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
        return Status::Unavailable(std::to_string(c.produced - c.delivered - c.failed) +
                                   " dead letter(s) unacknowledged after " + std::to_string(waited_ms) + " ms");
      }
    }
  }

  // A retry's backoff, cut short by a stop (the backoff reaches retry_backoff_max_ms, 5 s).
  void SleepUnlessStopped(int ms) {
    const auto until = Clock::now() + std::chrono::milliseconds(ms);
    while (!stop_->load() && Clock::now() < until) {
      std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(50)));
    }
  }

  // Commits what is pending: dead letters acknowledged, then one state batch. Retries with
  // backoff until it succeeds or Run() is asked to stop (kAborted: nothing was committed, so
  // the records are consumed again after a restart).
  Status ApplyPending() {
    if (pending_records_ == 0) return Status::Ok();
    const auto start = Clock::now();
    if (batch_dead_lettered_ > 0) GSAU_RETURN_IF_ERROR(AcknowledgeDeadLetters());
    std::vector<PartitionOffset> offsets;
    offsets.reserve(pending_offsets_.size());
    for (const auto& [tp, next] : pending_offsets_) offsets.push_back({tp, next, pending_last_records_[tp]});
    Result<state::BatchResult> applied = Status::Internal("not applied");
    int backoff_ms = 100;
    while (true) {
      applied = store_->ApplyBatch(pending_events_, offsets);
      if (applied.ok()) break;
      metrics_.err_apply.Increment();
      GSAU_LOG_ERROR("ingest: applying a batch of {} events failed: {}; holding the batch, retrying in {} ms",
                     pending_events_.size(), applied.status().ToString(), backoff_ms);
      if (applied.status().code() == StatusCode::kInvalidArgument) return applied.status();  // a bug, not weather
      if (stop_->load()) return Status::Aborted("stopped before the batch could be applied");
      MaybeUpdateLag(/*blocked=*/true);
      SleepUnlessStopped(backoff_ms);
      backoff_ms = std::min(backoff_ms * 2, options_.retry_backoff_max_ms);
    }
    metrics_.apply_seconds.Observe(std::chrono::duration<double>(Clock::now() - start).count());
    const int64_t n_applied = static_cast<int64_t>(pending_events_.size());
    // A batch of skipped records only (offsets alone) goes too: the learner's watermark follows
    // the state, so a checkpoint's catch-up stays inside the state's change feed (a long run of
    // such batches once left the watermark behind it, and a restart retrained on everything).
    if (sink_ != nullptr) {
      AppliedBatch b;
      b.batch_seq = applied->batch_seq;
      b.events = std::move(applied->events);
      b.applied_at_ms = WallMs();
      sink_->Push(std::move(b));
    }
    // Committed by the caller's next MaybeCommitToKafka (Run's loop) or CommitToKafka (stop,
    // revoke), not here: inside a lost assignment's revoke this commit came before the lost
    // partitions were taken out of to_commit_, and failed.
    for (const auto& o : offsets) {
      to_commit_[o.tp] = o.next_offset;
      guard_.Applied(o.tp, o.next_offset - 1, o.last_record);
    }

    metrics_.consumed.Increment(static_cast<double>(batch_consumed_));
    metrics_.applied.Increment(static_cast<double>(n_applied));
    metrics_.skipped.Increment(static_cast<double>(batch_skipped_));
    metrics_.miskeyed.Increment(static_cast<double>(batch_miskeyed_));
    for (int i = 0; i < kBadReasonCount; ++i) {
      if (batch_bad_[i] > 0) metrics_.DeadLettered(static_cast<BadReason>(i)).Increment(batch_bad_[i]);
    }
    metrics_.batches.Increment();
    {
      std::lock_guard<std::mutex> lock(counters_mu_);
      counters_.consumed += batch_consumed_;
      counters_.applied += n_applied;
      counters_.dead_lettered += batch_dead_lettered_;
      counters_.skipped += batch_skipped_;
      counters_.miskeyed += batch_miskeyed_;
      counters_.batches += 1;
    }
    PublishStateGauges();
    UpdateLag();

    DropPending();
    return Status::Ok();
  }

  // Forgets the batch being built (applied, or never to be: its records are consumed again by
  // whoever holds their partitions next, and its dead letters, at least once, produced again).
  void DropPending() {
    pending_events_.clear();
    pending_offsets_.clear();
    pending_last_records_.clear();
    pending_dead_letters_.clear();
    pending_dead_letter_bytes_ = 0;
    dead_letters_unsent_ = false;
    pending_records_ = 0;
    resend_dead_letters_ = 0;
    batch_consumed_ = batch_dead_lettered_ = batch_skipped_ = batch_miskeyed_ = 0;
    std::fill(std::begin(batch_bad_), std::end(batch_bad_), 0);
  }

  void PublishStateGauges() {
    const auto c = store_->Counts();
    metrics_.users.Set(static_cast<double>(c.users));
    metrics_.items.Set(static_cast<double>(c.items));
    metrics_.edges.Set(static_cast<double>(c.edges));
    metrics_.state_events.Set(static_cast<double>(c.events));
    metrics_.batch_seq.Set(static_cast<double>(c.batch_seq));
  }

  // Kafka's committed offsets serve lag tools only (the state's are the truth), so they go out
  // at most every commit_interval_ms: one commit per micro-batch flooded the group coordinator
  // when batches are small (hundreds a second), until its requests timed out.
  // Also from Run's loop: a burst's last batches, applied within commit_interval_ms of a commit,
  // went out only with the next batch, never on an idle topic (lag tools showed a lag for good).
  void MaybeCommitToKafka() {
    if (!to_commit_.empty() && Clock::now() - last_commit_ >= std::chrono::milliseconds(options_.commit_interval_ms)) {
      CommitToKafka();
    }
  }

  void CommitToKafka() {
    last_commit_ = Clock::now();
    if (to_commit_.empty()) return;
    std::vector<RdKafka::TopicPartition*> tps;
    for (const auto& [tp, next] : to_commit_) tps.push_back(RdKafka::TopicPartition::create(tp.topic, tp.partition, next));
    if (consumer_->commitAsync(tps) != RdKafka::ERR_NO_ERROR) metrics_.err_commit.Increment();
    RdKafka::TopicPartition::destroy(tps);
    to_commit_.clear();
  }

  // The lag: records of the assigned partitions the state has not reached. The client's cached
  // watermarks come with fetches, and a paused partition is not fetched: then the brokers are
  // asked (`query`, LogEnds: about 1 s, 1.5 at most, while they do not answer).
  void UpdateLag(bool query = false) {
    last_lag_ = Clock::now();
    if (query) last_lag_query_ = last_lag_;
    std::map<TopicPartition, std::pair<int64_t, int64_t>> asked;
    if (query) asked = LogEnds(consumer_.get(), {assigned_.begin(), assigned_.end()}, 1000);
    // A partition's end is the newest one had of it: brokers that do not answer (an outage) left
    // their partitions out, and the lag read 0 just as it mattered; a paused partition's cached
    // end stops moving (librdkafka #4996), and the lag fell back between the brokers' answers.
    int64_t lag = 0;
    // Lost partitions (an outage: the session timed out) count until the group assigns again,
    // at their last known end: the lag read 0 through the outage, as nothing was consumed.
    std::vector<TopicPartition> counted(assigned_.begin(), assigned_.end());
    counted.insert(counted.end(), lost_.begin(), lost_.end());
    std::vector<TopicPartition> cut_short;  // an end below what was read: the log cut short or created again
    for (const auto& tp : counted) {
      int64_t low = 0, high = -1;
      if (query) {
        if (const auto it = asked.find(tp); it != asked.end()) std::tie(low, high) = it->second;
      } else if (consumer_->get_watermark_offsets(tp.topic, tp.partition, &low, &high) != RdKafka::ERR_NO_ERROR) {
        high = -1;
      }
      if (high >= 0 && assigned_.count(tp) != 0 && high < guard_.Next(tp)) cut_short.push_back(tp);
      const auto known = known_high_.find(tp);
      if (known != known_high_.end()) high = std::max(high, known->second);
      if (high < 0) continue;
      known_high_[tp] = high;
      const auto next = store_->Offset(tp);
      // No start known (a lost partition is not asked; a failed call may leave -1001): from 0.
      lag += std::max<int64_t>(0, high - (next ? *next : std::max<int64_t>(low, 0)));
    }
    metrics_.lag.Set(static_cast<double>(lag));
    if (!cut_short.empty()) CheckLogStillReaches(cut_short, asked);
  }

  // Until the group's first assignment (after a kill -9, the dead member's session timeout: the
  // gauge read 0 for those seconds, as the backlog it is there to show grew), the partitions
  // this state has read count as lost ones: at their log's end, asked once here, against the
  // state's offsets. The first assignment replaces them with what the group gives this process.
  // (In a group of several processes each state has read only its own partitions, but one that
  // moved here from another member earlier counts too until then: a high reading for at most
  // the session timeout beats a 0 while a backlog grows.)
  // Partitions the brokers did not answer for (a process just started, a slow broker) are
  // asked again until the first assignment (MaybeSeedLag, after 1, 2, 4, then every 8 s): asked
  // once, a missed answer left the gauge at 0 for the whole session timeout.
  void SeedLagFromState() {
    for (const auto& p : store_->Offsets()) {
      if (p.tp.topic == options_.topic) seed_pending_.insert(p.tp);
    }
    MaybeSeedLag();
  }

  void MaybeSeedLag() {
    if (seed_pending_.empty()) return;
    if (ever_assigned_) {
      seed_pending_.clear();  // the group's assignment says what is this process's now
      return;
    }
    if (Clock::now() < next_seed_) return;
    const auto answered =
        LogEnds(consumer_.get(), std::vector<TopicPartition>(seed_pending_.begin(), seed_pending_.end()), 1000);
    // From the end of the ask, 1 s doubling to 8: an ask the brokers do not answer blocks this
    // loop for its 1 s, which must not become most of its time.
    next_seed_ = Clock::now() + seed_backoff_;
    seed_backoff_ = std::min<Clock::duration>(2 * seed_backoff_, std::chrono::seconds(8));
    for (const auto& [tp, ends] : answered) {
      known_high_[tp] = ends.second;
      lost_.insert(tp);
      seed_pending_.erase(tp);
    }
    if (!answered.empty()) UpdateLag();
    if (!seed_pending_.empty() && !seed_missed_) {
      seed_missed_ = true;
      GSAU_LOG_INFO("ingest: no log end yet for {} partition(s) this state has read; the consumer lag counts them "
                    "once the brokers answer (asked again until the first assignment)",
                    seed_pending_.size());
    }
  }

  // The dead-letter producer's own reports (all brokers down, back) are served by a poll only:
  // with no dead letter to send, an outage's lines came out at the stop, after the broker had
  // come back. Once a second; the producer's threads do the work.
  void MaybePollDeadLetters() {
    const auto now = Clock::now();
    if (now - last_dlq_poll_ < std::chrono::seconds(1)) return;
    last_dlq_poll_ = now;
    if (dlq_) dlq_->Poll();
  }

  // Batches update the lag as they commit; this keeps it current when none do (paused for
  // backpressure, an idle topic, after a revoke, retrying): every second, asking the brokers
  // every 5 s while paused and each time while retrying.
  // `blocked`: called from a retry loop (a state write or dead letters that keep failing),
  // where nothing is consumed and the lag must still grow as records arrive (it froze, and the
  // lag alert stayed silent through the stall). The brokers are asked each time: the client's
  // cached ends stop moving once its fetch queue is full, and the retries wait anyway.
  void MaybeUpdateLag(bool blocked = false) {
    const auto now = Clock::now();
    if (now - last_lag_ < std::chrono::seconds(1)) return;
    UpdateLag(blocked || (paused_ && now - last_lag_query_ >= std::chrono::seconds(5)));
  }

  // Commits are asynchronous: their failures (a lost generation, no right to the group) only
  // show here, on Run()'s thread inside consume(). Lag tools then read stale offsets; the state
  // keeps the true ones.
  void offset_commit_cb(RdKafka::ErrorCode err, std::vector<RdKafka::TopicPartition*>& offsets) override {
    if (err == RdKafka::ERR_NO_ERROR || err == RdKafka::ERR__NO_OFFSET) {
      for (const auto* tp : offsets) {
        if (tp->err() != RdKafka::ERR_NO_ERROR) err = tp->err();
      }
      if (err == RdKafka::ERR_NO_ERROR || err == RdKafka::ERR__NO_OFFSET) return;
    }
    metrics_.err_commit.Increment();
    if (int64_t n = commit_log_.Due()) {
      GSAU_LOG_WARN("ingest: committing offsets to Kafka failed ({}x): {} (lag tools see old offsets; the state keeps "
                    "the true ones)",
                    n, RdKafka::err2str(err));
    }
  }

  void Bump(int64_t IngestCounters::*field, int64_t n) {
    std::lock_guard<std::mutex> lock(counters_mu_);
    counters_.*field += n;
  }

  const IngestOptions options_;
  state::StateStore* const store_;
  AppliedSink* const sink_;
  std::unique_ptr<prometheus::Registry> own_registry_;
  IngestMetrics metrics_;
  Decoder decoder_;
  const std::set<std::string> accepted_;
  const std::atomic<bool>* stop_ = nullptr;

  // Destruction order: the consumer (which may call back into this object, event_cb on
  // librdkafka's threads) goes first, in ~Impl, before any member it touches; then the dead-letter
  // producer (declared first, destroyed last), which flushes what it holds.
  std::unique_ptr<kafka::Producer> dlq_;
  std::mutex dlq_mu_;  // dlq_'s replacement against RaiseDeadLetterFatalErrorForTesting
  std::unique_ptr<RdKafka::KafkaConsumer> consumer_;

  std::set<TopicPartition> assigned_;
  std::set<TopicPartition> unread_;  // assigned without an offset in the state (checked from 0)
  std::set<TopicPartition> lost_;  // lost with the session, until the next assignment (UpdateLag)
  std::map<TopicPartition, Clock::time_point> log_recheck_due_;  // CheckLogStillReaches' next query
  std::map<TopicPartition, int64_t> known_high_;  // the newest end UpdateLag had of each partition
  bool paused_ = false;
  bool ever_assigned_ = false;  // the group has given this consumer an assignment (maybe empty)
  std::set<TopicPartition> seed_pending_;  // read by the state, no log end yet (SeedLagFromState)
  Clock::time_point next_seed_{};
  Clock::duration seed_backoff_ = std::chrono::seconds(1);
  bool seed_missed_ = false;  // said once

  // The micro-batch being filled.
  std::vector<ClickEvent> pending_events_;
  std::map<TopicPartition, int64_t> pending_offsets_;
  std::map<TopicPartition, uint64_t> pending_last_records_;  // the fingerprint of each one's last record
  // The batch's dead letters, kept until it commits (to produce them again should a delivery
  // fail); a batch is applied early once they hold kMaxPendingDeadLetterBytes.
  static constexpr size_t kMaxPendingDeadLetterBytes = 64 << 20;
  std::vector<DeadLetterRecord> pending_dead_letters_;
  size_t pending_dead_letter_bytes_ = 0;
  bool dead_letters_unsent_ = false;                    // one was never handed to the producer
  size_t resend_dead_letters_ = 0;  // a new producer took over: produce the first this many again
  int64_t dlq_failed_seen_ = 0;     // the producer's failed deliveries, handled
  int64_t dlq_too_large_seen_ = 0;  // of those, refused as too large
  // Dead letters are cut to this (the producer's message.max.bytes, halved after each refusal
  // as too large, down to kMinDeadLetterBytes: room for the gsau.error.* headers and a record's
  // framing, at librdkafka's least message.max.bytes; 4 KiB left a topic of a smaller
  // max.message.bytes refusing every letter, and ingest stalled on them).
  static constexpr size_t kMinDeadLetterBytes = 1024;
  size_t dlq_fit_bytes_ = 0;
  OffsetGuard guard_;
  std::map<TopicPartition, int64_t> to_commit_;  // applied, not yet committed to Kafka
  Clock::time_point last_commit_{};
  int64_t pending_records_ = 0;
  int64_t batch_consumed_ = 0, batch_dead_lettered_ = 0, batch_skipped_ = 0, batch_miskeyed_ = 0;
  bool warned_miskeyed_ = false;
  int64_t batch_bad_[kBadReasonCount] = {};
  Clock::time_point batch_deadline_{};

  Status fatal_;  // a fatal error seen outside Run()'s own calls (while paused, in an assignment)
  // The partitions StopAsAnotherLog found (fatal_ names the first of them), and whether a log was
  // written again (not only cut short) among them.
  std::set<TopicPartition> another_log_;
  std::vector<std::string> another_log_named_;
  bool another_log_replaced_ = false;
  static constexpr int kStopAckWaitMs = 2000;
  std::optional<Clock::time_point> stop_ack_deadline_;  // set when a wait first sees the stop
  Clock::time_point last_lag_{};             // the lag gauge's last update
  Clock::time_point last_lag_query_{};       // its last broker query (paused partitions)
  Clock::time_point last_dlq_poll_{};        // the dead-letter producer's last poll
  Throttle commit_log_{std::chrono::seconds(10)};
  Throttle topic_log_{std::chrono::seconds(10)};
  Throttle broker_log_{std::chrono::seconds(5)};
  Throttle consume_log_{std::chrono::seconds(5)};
  Throttle redelivered_log_{std::chrono::seconds(5)};
  Throttle dlq_floor_log_{std::chrono::seconds(30)};
  Throttle pause_log_{std::chrono::seconds(30)};  // a backlog pauses ingest every few learner rounds
  Throttle resume_log_{std::chrono::seconds(30)};
  KeyedThrottle librdkafka_log_{std::chrono::seconds(5)};  // per facility

  mutable std::mutex counters_mu_;
  IngestCounters counters_;
};

Ingestor::Ingestor(IngestOptions options, state::StateStore* store, AppliedSink* sink, prometheus::Registry* registry)
    : impl_(std::make_unique<Impl>(std::move(options), store, sink, registry)) {}

Ingestor::~Ingestor() = default;

Status Ingestor::Run(const std::atomic<bool>& stop) { return impl_->Run(stop); }

IngestCounters Ingestor::counters() const { return impl_->counters(); }

void Ingestor::RaiseDeadLetterFatalErrorForTesting() { impl_->RaiseDeadLetterFatalErrorForTesting(); }

}  // namespace gsau::ingest
