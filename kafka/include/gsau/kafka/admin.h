// Admin helpers: broker reachability and topic creation.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gsau/common/status.h"
#include "gsau/kafka/options.h"

namespace gsau::kafka {

struct TopicSpec {
  std::string name;
  int partitions = 4;
  int replication_factor = 1;  // -1: the broker's default.replication.factor
  // Topic configs, e.g. {"cleanup.policy","compact"}.
  std::vector<std::pair<std::string, std::string>> configs;
};

// Waits until the cluster answers a metadata request, up to `timeout_ms`.
// Unavailable when it does not; when `stop` is given, Aborted at the first request that fails
// after `*stop` turned true (a process told to stop while its brokers are away: within ~1 s).
// Brokers that answer are not given up on for a stop.
Status WaitForCluster(const KafkaOptions& kafka, int timeout_ms, const std::atomic<bool>* stop = nullptr);

// Creates each topic that does not exist yet (asks the cluster which exist first, so nothing
// is sent when all do); existing topics are left as they are. Returns once every partition of
// the topics it created (or found being created) has a leader that answers ListOffsets, so
// producing to them at once works. All of it ends about `timeout_ms` after the call began
// (kUnavailable then), a cluster that never answers included.
Status EnsureTopics(const KafkaOptions& kafka, const std::vector<TopicSpec>& topics, int timeout_ms);

// The number of partitions of `topic`, or NotFound.
Result<int> PartitionCount(const KafkaOptions& kafka, const std::string& topic, int timeout_ms);

// The value of one configuration entry of `topic` (e.g. "cleanup.policy"), as the broker
// reports it. NotFound when the topic or the entry does not exist.
Result<std::string> TopicConfigValue(const KafkaOptions& kafka, const std::string& topic, const std::string& name,
                                     int timeout_ms);

}  // namespace gsau::kafka
