// Reading the newest records of each partition of a topic (what a restarted writer needs to know
// of what it wrote before: the compacted embedding topics' last model_versions).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gsau/common/status.h"
#include "gsau/kafka/options.h"

namespace gsau::kafka {

struct LastRecord {
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::optional<std::string> value;  // nullopt: a tombstone
  Headers headers;
};

// The records in the last `per_partition` (>= 1) offsets of each partition of `topic` (from its
// high watermark - per_partition, or its start, to the high watermark - 1), ascending by
// partition then offset; fewer where compaction or retention removed some, none for an empty
// partition or a topic that does not exist. Reads with a consumer of its own that joins no group
// and commits nothing (whatever kafka.properties say). kUnavailable when the cluster does not
// answer, or some partition's last record has not come within `timeout_ms` of the call;
// kInvalidArgument for a topic name or properties librdkafka refuses, or per_partition < 1.
Result<std::vector<LastRecord>> ReadLastRecords(const KafkaOptions& kafka, const std::string& topic,
                                                int64_t per_partition, int timeout_ms);

}  // namespace gsau::kafka
