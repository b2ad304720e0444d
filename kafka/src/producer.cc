#include "gsau/kafka/producer.h"

#include <atomic>
#include <mutex>

#include "conf.h"
#include "gsau/common/log.h"

namespace gsau::kafka {
namespace {

class DeliveryTracker : public RdKafka::DeliveryReportCb {
 public:
  void dr_cb(RdKafka::Message& message) override {
    if (message.err() == RdKafka::ERR_NO_ERROR) {
      delivered.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    failed.fetch_add(1, std::memory_order_relaxed);
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

  std::atomic<int64_t> delivered{0};
  std::atomic<int64_t> failed{0};
  std::atomic<int64_t> too_large{0};

 private:
  std::mutex mu;
  Status first_error;
};

class RdProducer final : public Producer {
 public:
  RdProducer(std::unique_ptr<DeliveryTracker> tracker, std::unique_ptr<RdKafka::Producer> producer, int close_ms,
             int64_t max_message_bytes)
      : tracker_(std::move(tracker)),
        producer_(std::move(producer)),
        close_timeout_ms_(close_ms),
        max_message_bytes_(max_message_bytes) {}

  // The producer must go before the tracker it calls back into.
  ~RdProducer() override {
    Status s = Flush(close_timeout_ms_);
    if (!s.ok()) GSAU_LOG_ERROR("kafka producer closing: {}", s.ToString());
    producer_.reset();
  }

  Status Produce(std::string_view topic, std::string_view key, std::string_view value, const Headers& headers,
                 int64_t timestamp_ms, bool tombstone) override {
    RdKafka::Headers* rh = nullptr;
    if (!headers.empty()) {
      rh = RdKafka::Headers::create();
      for (const auto& [k, v] : headers) rh->add(k, v.data(), v.size());
    }
    const std::string topic_name(topic);
    while (true) {
      const auto err = producer_->produce(
          topic_name, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
          tombstone ? nullptr : const_cast<char*>(value.data()), tombstone ? 0 : value.size(), key.data(),
          key.size(), timestamp_ms, rh, nullptr);
      if (err == RdKafka::ERR_NO_ERROR) {
        produced_.fetch_add(1, std::memory_order_relaxed);
        return Status::Ok();  // librdkafka owns the headers now
      }
      if (err == RdKafka::ERR__QUEUE_FULL) {
        producer_->poll(50);  // serve deliveries to make room, then retry
        continue;
      }
      delete rh;
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
    return {produced_.load(), tracker_->delivered.load(), tracker_->failed.load(), tracker_->too_large.load()};
  }

  int64_t max_message_bytes() const override { return max_message_bytes_; }

 private:
  std::unique_ptr<DeliveryTracker> tracker_;
  std::unique_ptr<RdKafka::Producer> producer_;
  int close_timeout_ms_;
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
  if (options.idempotent) {
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
  auto tracker = std::make_unique<DeliveryTracker>();
  std::string err;
  if (conf->set("dr_cb", tracker.get(), err) != RdKafka::Conf::CONF_OK) {
    return Status::Internal("setting the delivery callback: " + err);
  }
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  if (!producer) return Status::InvalidArgument("creating the Kafka producer: " + err);
  return std::unique_ptr<Producer>(
      new RdProducer(std::move(tracker), std::move(producer), options.close_timeout_ms, std::stoll(max_bytes)));
}

}  // namespace gsau::kafka
