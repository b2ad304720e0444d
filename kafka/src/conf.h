// Internal: building librdkafka configurations from KafkaOptions.
#pragma once

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafkacpp.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gsau/common/status.h"
#include "gsau/common/throttle.h"
#include "gsau/kafka/options.h"

namespace gsau::kafka::internal {

using Props = std::vector<std::pair<std::string, std::string>>;

// bootstrap.servers and client.id, then `defaults`, then the user's properties (which win).
Result<std::unique_ptr<RdKafka::Conf>> BuildConf(const KafkaOptions& kafka, const Props& defaults);

// OK when `conf` (built over defaults of enable.idempotence=true and acks=all) still has both
// after the user's properties; else kInvalidArgument naming `who` and the values left.
Status CheckIdempotent(RdKafka::Conf& conf, const std::string& who);

// kInvalidArgument when the partitioner `conf` holds ignores the key (random): an id's
// records would spread over partitions, where compaction keeps a stale one in each, and a
// user's replayed clicks would lose their order.
Status CheckKeyedPartitioner(RdKafka::Conf& conf);

// Same for the C API (admin); the caller owns the result (rd_kafka_conf_destroy). Its clients'
// librdkafka log lines go through LogClientLine as "kafka admin <handle name>".
Result<rd_kafka_conf_t*> BuildCConf(const KafkaOptions& kafka, const Props& defaults);

// The offset of each of `partitions` of `topic` at `which` (RD_KAFKA_OFFSET_BEGINNING: its
// first; RD_KAFKA_OFFSET_END: its next), in their order: one ListOffsets per leader, within
// `timeout_ms`. Not rd_kafka_query_watermark_offsets: in librdkafka 2.0.2 it waits for ever while
// a partition's leader is unreachable (librdkafka #2588, fixed in 2.3.0). kUnavailable naming the
// partition when one has no answer.
Result<std::vector<int64_t>> ListOffsets(rd_kafka_t* rk, const std::string& topic,
                                         const std::vector<int32_t>& partitions, int64_t which, int timeout_ms);

}  // namespace gsau::kafka::internal
