#include "gsau/kafka/producer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>

#include "conf.h"
#include "gsau/common/log.h"

namespace gsau::kafka {
namespace {

// The identity of a record for keep_failed: topic, and key or its absence.
std::string KeyOf(std::string_view topic, const void* key, size_t key_len) {
  std::string k(topic);
  k.push_back('\0');
  k.push_back(key == nullptr ? 'n' : 'k');
  if (key != nullptr) k.append(static_cast<const char*>(key), key_len);
  return k;
}

// The topic of a KeyOf (a topic name holds no NUL).
std::string_view TopicOfKey(std::string_view key) { return key.substr(0, key.find('\0')); }

// A map by topic name looked up by a string_view, without a string made per record.
struct TopicHash {
  using is_transparent = void;
  size_t operator()(std::string_view topic) const { return std::hash<std::string_view>{}(topic); }
};
template <typename T>
using ByTopic = std::unordered_map<std::string, T, TopicHash, std::equal_to<>>;

// keep_failed: which record of each key is the newest in flight (by a sequence number carried
// as the message's opaque), the newest failed one of each key, and which numbers still await
// their delivery report.
class FailedRecords {
 public:
  // Before enqueueing a record of `key`: its sequence number. Then Enqueued or NotEnqueued.
  uint64_t Producing(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t seq = ++next_seq_;
    auto& newest = newest_[key];
    if (newest != 0) replaced_[seq] = newest;
    newest = seq;
    // Now, not at Enqueued: another thread's poll() may report it first.
    const std::string_view topic = TopicOfKey(key);
    auto it = unreported_.find(topic);
    if (it == unreported_.end()) it = unreported_.emplace(std::string(topic), std::set<uint64_t>{}).first;
    it->second.insert(seq);
    return seq;
  }
  void Enqueued(const std::string& key, uint64_t seq) {
    std::lock_guard<std::mutex> lock(mu_);
    replaced_.erase(seq);
    // Superseded by the record just enqueued, if older (another thread's poll() may already
    // have reported this very record as failed).
    if (auto it = failed_.find(key); it != failed_.end() && it->second.first < seq) failed_.erase(it);
  }
  // A refused record supersedes nothing: the one of its key still in flight before it is the
  // newest again (its failure is kept). A full queue makes refusals common (the publisher's).
  void NotEnqueued(const std::string& key, uint64_t seq) {
    std::lock_guard<std::mutex> lock(mu_);
    Reported(key, seq);
    uint64_t before = 0;
    if (auto r = replaced_.find(seq); r != replaced_.end()) {
      before = r->second;
      replaced_.erase(r);
    }
    auto it = newest_.find(key);
    if (it == newest_.end() || it->second != seq) return;
    if (before != 0 && Unreported(key).count(before) > 0) {  // (of the same key: the same topic)
      it->second = before;
    } else {
      newest_.erase(it);
    }
  }
  // `counter` (delivered or failed) goes up under the lock: whoever then reads the unreported,
  // or the kept records, under it sees the count too.
  void Done(const std::string& key, uint64_t seq, RdKafka::Message& m, std::atomic<int64_t>& counter) {
    std::lock_guard<std::mutex> lock(mu_);
    counter.fetch_add(1, std::memory_order_relaxed);
    Reported(key, seq);
    // Under the lock with the report: whoever finds a record reported (ReportedThrough) finds
    // its failure counted, and whoever reads this count and then the kept records finds the
    // failure in one or the other.
    if (m.err() != RdKafka::ERR_NO_ERROR) {
      const std::string_view topic = TopicOfKey(key);
      auto f = failed_by_topic_.find(topic);
      if (f == failed_by_topic_.end()) f = failed_by_topic_.emplace(std::string(topic), 0).first;
      ++f->second;
    }
    auto it = newest_.find(key);
    if (it == newest_.end()) return;
    if (it->second == seq) {
      newest_.erase(it);
    } else {
      // A newer one of the key is in flight, unless it is still being produced (waiting for room
      // in a full queue, say): this failure is kept until that one is enqueued (Enqueued drops
      // it) or refused (it stays).
      const auto r = replaced_.find(it->second);
      if (r == replaced_.end() || r->second != seq) return;
    }
    if (m.err() == RdKafka::ERR_NO_ERROR) return;
    FailedRecord r;
    r.topic = m.topic_name();
    r.null_key = m.key_pointer() == nullptr;
    if (!r.null_key) r.key.assign(static_cast<const char*>(m.key_pointer()), m.key_len());
    r.tombstone = m.payload() == nullptr;
    if (!r.tombstone) r.value.assign(static_cast<const char*>(m.payload()), m.len());
    if (RdKafka::Headers* h = m.headers(); h != nullptr) {
      for (const auto& hd : h->get_all()) {
        r.headers.emplace_back(hd.key(), hd.value() == nullptr ? std::optional<std::string>()
                                                               : std::string(static_cast<const char*>(hd.value()),
                                                                             hd.value_size()));
      }
    }
    r.error = m.errstr();
    failed_[key] = {seq, std::move(r)};
  }
  size_t Count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return failed_.size();
  }
  size_t CountOf(std::string_view topic) const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<size_t>(
        std::count_if(failed_.begin(), failed_.end(), [&](const auto& f) { return f.second.second.topic == topic; }));
  }
  uint64_t LastSeq() const {
    std::lock_guard<std::mutex> lock(mu_);
    return next_seq_;
  }
  uint64_t ReportedThrough() const {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t through = next_seq_;
    for (const auto& [topic, seqs] : unreported_) {
      if (!seqs.empty()) through = std::min(through, *seqs.begin() - 1);
    }
    return through;
  }
  // The same over the records of `topic` only: a record of another topic still in flight (for
  // message.timeout.ms while its partition has no leader) holds nothing back.
  uint64_t ReportedThrough(std::string_view topic) const {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = unreported_.find(topic);
    return it == unreported_.end() || it->second.empty() ? next_seq_ : *it->second.begin() - 1;
  }
  int64_t FailedTo(std::string_view topic) const {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = failed_by_topic_.find(topic);
    return it == failed_by_topic_.end() ? 0 : it->second;
  }
  std::vector<FailedRecord> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<FailedRecord> out;
    out.reserve(failed_.size());
    for (auto& [k, r] : failed_) out.push_back(std::move(r.second));
    failed_.clear();
    return out;
  }

 private:
  // Under mu_: `seq` (of `key`) has had its report, or was refused at once.
  void Reported(const std::string& key, uint64_t seq) {
    if (auto it = unreported_.find(TopicOfKey(key)); it != unreported_.end()) it->second.erase(seq);
  }
  // Under mu_: the unreported numbers of `key`'s topic (an empty set when it has none).
  const std::set<uint64_t>& Unreported(const std::string& key) const {
    static const std::set<uint64_t> kNone;
    const auto it = unreported_.find(TopicOfKey(key));
    return it == unreported_.end() ? kNone : it->second;
  }

  mutable std::mutex mu_;
  uint64_t next_seq_ = 0;
  // Numbered, not refused at once, no delivery report yet, by topic (ReportedThrough takes the
  // least over the topics: a publisher has two).
  ByTopic<std::set<uint64_t>> unreported_;
  ByTopic<int64_t> failed_by_topic_;  // failed delivery reports
  std::unordered_map<std::string, uint64_t> newest_;
  // Numbers between Producing and Enqueued / NotEnqueued: the newest of their key they replaced.
  std::unordered_map<uint64_t, uint64_t> replaced_;
  std::unordered_map<std::string, std::pair<uint64_t, FailedRecord>> failed_;  // by key: seq, record
};

class DeliveryTracker : public RdKafka::DeliveryReportCb {
 public:
  explicit DeliveryTracker(bool keep_failed) : keep_failed_(keep_failed) {}

  void dr_cb(RdKafka::Message& message) override {
    const bool ok = message.err() == RdKafka::ERR_NO_ERROR;
    auto& counter = ok ? delivered : failed;
    if (keep_failed_) {
      const auto seq = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(message.msg_opaque()));
      kept.Done(KeyOf(message.topic_name(), message.key_pointer(), message.key_len()), seq, message, counter);
    } else {
      counter.fetch_add(1, std::memory_order_relaxed);
    }
    if (ok) {
      std::lock_guard<std::mutex> lock(mu);
      ++delivered_by_topic[message.topic_name()];
      return;
    }
    if (message.err() == RdKafka::ERR_MSG_SIZE_TOO_LARGE || message.err() == RdKafka::ERR_RECORD_LIST_TOO_LARGE) {
      too_large.fetch_add(1, std::memory_order_relaxed);
    }
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.ok()) {
      first_error = Status::Unavailable("delivery to " + message.topic_name() + " failed: " + message.errstr());
    }
  }

  Status TakeError() {
    std::lock_guard<std::mutex> lock(mu);
    Status s = first_error;
    first_error = Status::Ok();
    return s;
  }

  bool keep_failed() const { return keep_failed_; }

  int64_t DeliveredTo(std::string_view topic) const {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = delivered_by_topic.find(std::string(topic));
    return it == delivered_by_topic.end() ? 0 : it->second;
  }

  std::atomic<int64_t> delivered{0};
  std::atomic<int64_t> failed{0};
  std::atomic<int64_t> too_large{0};
  FailedRecords kept;

 private:
  const bool keep_failed_;
  mutable std::mutex mu;
  Status first_error;
  std::unordered_map<std::string, int64_t> delivered_by_topic;
};

// librdkafka's log lines and client errors (a broker away, authentication) through gsau's log,
// throttled, instead of librdkafka's own lines on stderr. May run on librdkafka's threads.
class ClientEvents : public RdKafka::EventCb {
 public:
  explicit ClientEvents(std::string who) : who_(std::move(who)) {}

  void event_cb(RdKafka::Event& event) override {
    if (event.type() == RdKafka::Event::EVENT_LOG) {
      LogClientLine(who_, event.severity(), event.fac(), event.str(), log_);
    } else if (event.type() == RdKafka::Event::EVENT_ERROR) {
      if (event.fatal()) {
        GSAU_LOG_ERROR("{}: fatal Kafka error: {}", who_, event.str());
        return;
      }
      client_errors.fetch_add(1, std::memory_order_relaxed);
      if (const int64_t n = errors_.Due(RdKafka::err2str(event.err()))) {
        GSAU_LOG_WARN("{}: Kafka error ({}x): {}: {}", who_, n, RdKafka::err2str(event.err()), event.str());
      }
    }
  }

  std::atomic<int64_t> client_errors{0};

 private:
  const std::string who_;
  KeyedThrottle log_{std::chrono::seconds(5)};     // by librdkafka's facility
  KeyedThrottle errors_{std::chrono::seconds(5)};  // by error code
};

class RdProducer final : public Producer {
 public:
  RdProducer(std::unique_ptr<ClientEvents> events, std::unique_ptr<DeliveryTracker> tracker,
             std::unique_ptr<RdKafka::Producer> producer, int close_ms, int queue_full_ms, int64_t max_message_bytes)
      : events_(std::move(events)),
        tracker_(std::move(tracker)),
        producer_(std::move(producer)),
        close_timeout_ms_(close_ms),
        queue_full_timeout_ms_(queue_full_ms),
        max_message_bytes_(max_message_bytes) {}

  // The producer must go before the tracker and the events it calls back into.
  ~RdProducer() override {
    Status s = Flush(close_timeout_ms_);
    if (!s.ok()) GSAU_LOG_ERROR("kafka producer closing: {}", s.ToString());
    // What goes with the producer unreported: still queued (Flush names a delivery error before
    // its timeout), or kept failed for a TakeFailed that never came.
    const int queued = producer_->outq_len();
    const size_t kept = KeptFailedCount();
    if (queued > 0 || kept > 0) {
      GSAU_LOG_ERROR("kafka producer closing: {} record(s) still queued and {} failed one(s) kept are dropped", queued,
                     kept);
    }
    producer_.reset();
  }

  Status Produce(std::string_view topic, std::string_view key, std::string_view value, const Headers& headers,
                 int64_t timestamp_ms, bool tombstone) override {
    RdKafka::Headers* rh = nullptr;
    if (!headers.empty()) {
      rh = RdKafka::Headers::create();
      for (const auto& [k, v] : headers) {
        if (v) {
          rh->add(k, v->data(), v->size());
        } else {
          rh->add(k, nullptr, 0);  // a null value, not an empty one
        }
      }
    }
    const std::string topic_name(topic);
    std::string kept_key;
    uint64_t seq = 0;
    if (tracker_->keep_failed()) {
      kept_key = KeyOf(topic, key.data(), key.size());
      seq = tracker_->kept.Producing(kept_key);
    }
    // A null payload is a tombstone to Kafka: an empty value given as std::string_view{} (a null
    // data()) must not become one.
    static char empty_value[] = "";
    char* payload = tombstone ? nullptr : value.data() != nullptr ? const_cast<char*>(value.data()) : empty_value;
    std::optional<std::chrono::steady_clock::time_point> full_since;
    while (true) {
      const auto err = producer_->produce(
          topic_name, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY, payload,
          tombstone ? 0 : value.size(), key.data(),
          key.size(), timestamp_ms, rh, reinterpret_cast<void*>(static_cast<uintptr_t>(seq)));
      if (err == RdKafka::ERR_NO_ERROR) {
        produced_.fetch_add(1, std::memory_order_relaxed);
        if (seq != 0) tracker_->kept.Enqueued(kept_key, seq);
        return Status::Ok();  // librdkafka owns the headers now
      }
      if (err == RdKafka::ERR__QUEUE_FULL) {
        const auto now = std::chrono::steady_clock::now();
        if (!full_since) full_since = now;
        const auto waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - *full_since).count();
        if (queue_full_timeout_ms_ < 0 || waited_ms < queue_full_timeout_ms_) {
          producer_->poll(queue_full_timeout_ms_ < 0 ? 50 : static_cast<int>(std::min<int64_t>(
                                                                50, queue_full_timeout_ms_ - waited_ms)));
          continue;  // deliveries served to make room: again
        }
      }
      if (seq != 0) tracker_->kept.NotEnqueued(kept_key, seq);
      delete rh;
      if (err == RdKafka::ERR__QUEUE_FULL) {
        return Status::ResourceExhausted(
            "produce to " + topic_name + ": the local queue stayed full for " + std::to_string(queue_full_timeout_ms_) +
            " ms (" + std::to_string(producer_->outq_len()) +
            " records waiting: the brokers take them more slowly than they come, or are away)");
      }
      if (err == RdKafka::ERR__FATAL) {
        std::string reason;
        producer_->fatal_error(reason);
        return Status::Internal("produce to " + topic_name + ": fatal producer error: " + reason);
      }
      return Status::Unavailable("produce to " + topic_name + ": " + RdKafka::err2str(err));
    }
  }

  void Poll() override { producer_->poll(0); }

  Status Flush(int timeout_ms) override {
    const auto err = producer_->flush(timeout_ms);
    GSAU_RETURN_IF_ERROR(tracker_->TakeError());
    if (err != RdKafka::ERR_NO_ERROR) {
      return Status::Unavailable("flush: " + std::to_string(producer_->outq_len()) +
                                 " messages still outstanding after " + std::to_string(timeout_ms) + " ms");
    }
    return Status::Ok();
  }

  DeliveryCounts counts() const override {
    return {produced_.load(), tracker_->delivered.load(), tracker_->failed.load(), tracker_->too_large.load(),
            events_->client_errors.load()};
  }

  int64_t max_message_bytes() const override { return max_message_bytes_; }
  int64_t delivered_to(std::string_view topic) const override { return tracker_->DeliveredTo(topic); }
  int64_t failed_to(std::string_view topic) const override { return tracker_->kept.FailedTo(topic); }

  std::vector<FailedRecord> TakeFailed() override { return tracker_->kept.Take(); }
  uint64_t last_numbered() const override { return tracker_->kept.LastSeq(); }
  uint64_t reported_through() override {
    producer_->poll(0);  // serves the delivery reports due
    return tracker_->kept.ReportedThrough();
  }
  uint64_t reported_through_of(std::string_view topic) override {
    producer_->poll(0);
    return tracker_->kept.ReportedThrough(topic);
  }
  size_t KeptFailedCount() const override { return tracker_->kept.Count(); }
  size_t KeptFailedCountOf(std::string_view topic) const override { return tracker_->kept.CountOf(topic); }

  bool failed_fatally() const override {
    std::string reason;
    return producer_->fatal_error(reason) != RdKafka::ERR_NO_ERROR;
  }

  std::string ConfigValueForTesting(const std::string& key) const override {
    const rd_kafka_conf_t* conf = rd_kafka_conf(producer_->c_ptr());
    char value[512];
    size_t size = sizeof(value);
    if (rd_kafka_conf_get(conf, key.c_str(), value, &size) == RD_KAFKA_CONF_OK) return value;
    // Topic-level properties (acks) live in the default topic configuration.
    const rd_kafka_topic_conf_t* topic = rd_kafka_conf_get_default_topic_conf(const_cast<rd_kafka_conf_t*>(conf));
    size = sizeof(value);
    if (topic != nullptr && rd_kafka_topic_conf_get(topic, key.c_str(), value, &size) == RD_KAFKA_CONF_OK) {
      return value;
    }
    return "";
  }

  void RaiseFatalErrorForTesting() override {
    rd_kafka_test_fatal_error(producer_->c_ptr(), RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "raised by a test");
  }

 private:
  std::unique_ptr<ClientEvents> events_;
  std::unique_ptr<DeliveryTracker> tracker_;
  std::unique_ptr<RdKafka::Producer> producer_;
  int close_timeout_ms_;
  int queue_full_timeout_ms_;
  int64_t max_message_bytes_;
  std::atomic<int64_t> produced_{0};
};

}  // namespace

Result<std::unique_ptr<Producer>> Producer::Create(const KafkaOptions& kafka, const ProducerOptions& options) {
  internal::Props defaults = {
      {"enable.idempotence", options.idempotent ? "true" : "false"},
      {"linger.ms", std::to_string(options.linger_ms)},
      {"batch.size", std::to_string(options.batch_bytes)},
      {"compression.type", options.compression},
      {"message.timeout.ms", std::to_string(options.message_timeout_ms)},
      {"queue.buffering.max.messages", "1000000"},
      // A key goes to the partition Java clients (and Kafka Streams) would pick: murmur2 of the
      // key. librdkafka's own default hashes with CRC32, so a consumer joining our topics with
      // another topic of the same keys would find them on different partitions.
      {"partitioner", "murmur2_random"},
      {"allow.auto.create.topics", options.auto_create_topics ? "true" : "false"},
  };
  if (options.idempotent) {
    defaults.emplace_back("acks", "all");
    // One request in flight per broker. With more, librdkafka (2.0.2 and later) reports a
    // request refused as "not persisted" (NOT_LEADER: a partition created a moment ago, a
    // leader moving) as delivered once a later request of the partition succeeds ("implicit
    // ack"), and a partition with no state yet for this producer id (any new producer, e.g. a
    // restarted process) accepts that later request's sequence: acknowledged records are never
    // written (seen against Kafka 4.1.1; kafka_test's NotLeaderOnTheFirstRequestLosesNothing).
    // On a local broker throughput did not change; over a slow link every partition's batch of
    // a broker waits for the previous request's round trip. A user property can still raise it.
    defaults.emplace_back("max.in.flight.requests.per.connection", "1");
  }
  GSAU_ASSIGN_OR_RETURN(auto conf, internal::BuildConf(kafka, defaults));
  GSAU_RETURN_IF_ERROR(internal::CheckKeyedPartitioner(*conf));
  if (options.idempotent) {
    GSAU_RETURN_IF_ERROR(internal::CheckIdempotent(*conf, options.name));
    // Read back rather than scanning `properties`: librdkafka has aliases for this key.
    std::string in_flight;
    if (conf->get("max.in.flight.requests.per.connection", in_flight) == RdKafka::Conf::CONF_OK &&
        in_flight != "1") {
      GSAU_LOG_WARN(
          "kafka producer: max.in.flight.requests.per.connection = {} (kafka.properties): with more than one "
          "request in flight librdkafka can report records as delivered that a just-created or moving "
          "partition refused, so acknowledged records may be missing from the topic; 1 (the default) avoids it",
          in_flight);
    }
  }
  std::string max_bytes = "1000000";  // librdkafka's default, should the read fail
  conf->get("message.max.bytes", max_bytes);
  auto tracker = std::make_unique<DeliveryTracker>(options.keep_failed);
  std::string err;
  // After the user's properties: a batch.size set there for throughput must not undo the cap.
  if (std::string batch; options.batch_bytes_cap > 0 && conf->get("batch.size", batch) == RdKafka::Conf::CONF_OK &&
                         std::stoll(batch) > options.batch_bytes_cap) {
    if (conf->set("batch.size", std::to_string(options.batch_bytes_cap), err) != RdKafka::Conf::CONF_OK) {
      return Status::Internal("capping batch.size: " + err);
    }
  }
  if (conf->set("dr_cb", tracker.get(), err) != RdKafka::Conf::CONF_OK) {
    return Status::Internal("setting the delivery callback: " + err);
  }
  auto events = std::make_unique<ClientEvents>(options.name);
  if (conf->set("event_cb", static_cast<RdKafka::EventCb*>(events.get()), err) != RdKafka::Conf::CONF_OK) {
    return Status::Internal("setting the event callback: " + err);
  }
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  if (!producer) return Status::InvalidArgument("creating the Kafka producer: " + err);
  return std::unique_ptr<Producer>(new RdProducer(std::move(events), std::move(tracker), std::move(producer),
                                                  options.close_timeout_ms, options.queue_full_timeout_ms,
                                                  std::stoll(max_bytes)));
}

}  // namespace gsau::kafka
