// Internal: building librdkafka configurations from KafkaOptions.
#pragma once

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafkacpp.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gsau/common/status.h"
#include "gsau/kafka/options.h"

namespace gsau::kafka::internal {

using Props = std::vector<std::pair<std::string, std::string>>;

// bootstrap.servers and client.id, then `defaults`, then the user's properties (which win).
Result<std::unique_ptr<RdKafka::Conf>> BuildConf(const KafkaOptions& kafka, const Props& defaults);

// Same for the C API (admin); the caller owns the result (rd_kafka_conf_destroy).
Result<rd_kafka_conf_t*> BuildCConf(const KafkaOptions& kafka, const Props& defaults);

}  // namespace gsau::kafka::internal
