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

// Same for the C API (admin); the caller owns the result (rd_kafka_conf_destroy). Its clients'
// librdkafka log lines go through LogLine as "kafka admin <handle name>".
Result<rd_kafka_conf_t*> BuildCConf(const KafkaOptions& kafka, const Props& defaults);

// One of librdkafka's log lines (`level` a syslog level) through gsau's log, naming `who`:
// warnings and errors as warnings, at most one per `throttle` interval and kind (`who` and
// `fac`) with the count of the ones held back (a broker away repeats them every second); debug
// lines (only there when kafka.properties.debug asks for them) as info; the rest at debug level.
void LogLine(std::string_view who, int level, std::string_view fac, std::string_view text, KeyedThrottle& throttle);

}  // namespace gsau::kafka::internal
