// Reading the newest record of each partition of a topic (what a restarted writer needs to know
// of what it wrote before: the compacted embedding topics' last model_version).
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

// The record at the end of each partition of `topic` that holds one (the partition's high
// watermark - 1), partitions ascending; none for a partition that is empty, or whose last
// offset is gone by the time it is fetched (retention), and none for a topic that does not
// exist. Reads with a consumer of its own that joins no group and commits nothing (whatever
// kafka.properties say). kUnavailable when the cluster does not answer, or some partition's
// record has not come within `timeout_ms` of the call; kInvalidArgument for a topic name or
// properties librdkafka refuses.
Result<std::vector<LastRecord>> ReadLastRecords(const KafkaOptions& kafka, const std::string& topic, int timeout_ms);

}  // namespace gsau::kafka
