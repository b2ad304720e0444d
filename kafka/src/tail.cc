#include "gsau/kafka/tail.h"

#include <algorithm>
#include <map>
#include <memory>
#include <numeric>

#include "conf.h"
#include "gsau/common/clock.h"
#include "gsau/kafka/admin.h"

namespace gsau::kafka {
namespace {

int64_t NowMs() { return SystemClock::Get().MonotonicNs() / 1'000'000; }

// Without consumer_close: it joined no group and has nothing to commit, and a close can wait on
// a group coordinator it cannot reach for up to session.timeout.ms, past the caller's timeout.
struct ConsumerDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const { rd_kafka_topic_partition_list_destroy(l); }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};

Headers ReadHeaders(const rd_kafka_message_t* msg) {
  Headers out;
  rd_kafka_headers_t* hdrs = nullptr;
  // The message keeps ownership of its headers.
  if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || hdrs == nullptr) return out;
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
    if (value == nullptr) {
      out.emplace_back(name, std::nullopt);
    } else {
      out.emplace_back(name, std::string(static_cast<const char*>(value), size));
    }
  }
  return out;
}

}  // namespace

Result<std::vector<LastRecord>> ReadLastRecords(const KafkaOptions& kafka, const std::string& topic,
                                                int64_t per_partition, int timeout_ms) {
  if (per_partition < 1) return Status::InvalidArgument("reading the last records: per_partition must be >= 1");
  const int64_t deadline = NowMs() + timeout_ms;
  const auto left_ms = [&] { return static_cast<int>(std::max<int64_t>(deadline - NowMs(), 1)); };
  auto partitions = PartitionCount(kafka, topic, left_ms());
  if (!partitions.ok()) {
    if (partitions.status().code() == StatusCode::kNotFound) return std::vector<LastRecord>{};
    return partitions.status();
  }
  GSAU_ASSIGN_OR_RETURN(rd_kafka_conf_t * conf, internal::BuildCConf(kafka, {}));
  // Set after the user's properties: group.id only because librdkafka's consumer requires one
  // (assign() never sends it), and no commit of these offsets into any group, ingest's included.
  char err[512];
  for (const auto& [k, v] : {std::pair<const char*, const char*>{"group.id", "gsau-last-record-reader"},
                             {"enable.auto.commit", "false"},
                             {"enable.auto.offset.store", "false"},
                             {"enable.partition.eof", "true"},
                             // A start offset that retention passed before the fetch: from the
                             // new start, which still reaches each partition's last record.
                             {"auto.offset.reset", "earliest"}}) {
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Status::InvalidArgument(std::string("reading the last records: ") + k + ": " + err);
    }
  }
  rd_kafka_t* raw = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  if (raw == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::InvalidArgument(std::string("creating a Kafka consumer: ") + err);
  }
  std::unique_ptr<rd_kafka_t, ConsumerDeleter> rk(raw);

  // Each partition's first and next offset (internal::ListOffsets: within the deadline).
  std::vector<int32_t> ids(static_cast<size_t>(*partitions));
  std::iota(ids.begin(), ids.end(), 0);
  GSAU_ASSIGN_OR_RETURN(const auto lows, internal::ListOffsets(rk.get(), topic, ids, RD_KAFKA_OFFSET_BEGINNING,
                                                               left_ms()));
  GSAU_ASSIGN_OR_RETURN(const auto highs, internal::ListOffsets(rk.get(), topic, ids, RD_KAFKA_OFFSET_END, left_ms()));
  // partition -> the offset of its last record (where it is done).
  std::map<int32_t, int64_t> want;
  std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter> list(
      rd_kafka_topic_partition_list_new(*partitions));
  for (int32_t p = 0; p < *partitions; ++p) {
    const int64_t low = lows[static_cast<size_t>(p)], high = highs[static_cast<size_t>(p)];
    if (high <= low) continue;
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = std::max(low, high - per_partition);
    want[p] = high - 1;
  }
  std::vector<LastRecord> out;
  if (want.empty()) return out;
  if (const auto e = rd_kafka_assign(rk.get(), list.get()); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Internal("assigning " + topic + ": " + rd_kafka_err2str(e));
  }
  std::string last_error;
  while (!want.empty() && NowMs() < deadline) {
    std::unique_ptr<rd_kafka_message_t, MessageDeleter> msg(rd_kafka_consumer_poll(rk.get(), std::min(left_ms(), 200)));
    if (!msg) continue;
    const int32_t p = msg->partition;
    auto it = want.find(p);
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      // At the end without the last record (deleted since the watermark was read): no more.
      if (it != want.end()) want.erase(it);
      continue;
    }
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      last_error = rd_kafka_message_errstr(msg.get());
      continue;
    }
    if (it == want.end()) continue;
    LastRecord r;
    r.partition = p;
    r.offset = msg->offset;
    if (msg->key != nullptr) r.key.assign(static_cast<const char*>(msg->key), msg->key_len);
    if (msg->payload != nullptr) r.value = std::string(static_cast<const char*>(msg->payload), msg->len);
    r.headers = ReadHeaders(msg.get());
    out.push_back(std::move(r));
    if (msg->offset >= it->second) want.erase(it);
  }
  if (!want.empty()) {
    return Status::Unavailable("reading the last records of " + std::to_string(want.size()) + " of " +
                               std::to_string(*partitions) + " partitions of " + topic + ": none within " +
                               std::to_string(timeout_ms) + " ms" + (last_error.empty() ? "" : " (" + last_error + ")"));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const LastRecord& a, const LastRecord& b) { return a.partition < b.partition; });
  return out;
}

}  // namespace gsau::kafka
