#include "pipeline_config.h"

#include <algorithm>
#include <iostream>

#include "gsau/common/cpu.h"

namespace gsau::app {

learner::OnlineOptions ToOnlineOptions(const config::Config& c) {
  learner::OnlineOptions o;
  o.dim = c.learner.embedding_dim;
  o.batch_size = c.learner.batch_size;
  o.lr = c.learner.learning_rate;
  o.gamma = c.learner.gamma;
  o.fresh_fraction = 1.0 - c.learner.replay_ratio;
  o.replay_capacity = c.learner.replay_capacity;
  o.recent_fraction = c.learner.replay_recent_fraction;
  o.recent_capacity = c.learner.replay_recent_capacity;
  o.change_threshold = c.publisher.item_change_threshold;
  o.device = c.learner.device;
  // 0: leave a core to ingest and the publisher. Intra-op threads that share every core with
  // them stall at each parallel barrier (steps several times slower on a 2-core machine).
  o.threads = c.learner.threads > 0 ? c.learner.threads : std::max(1, UsableCores() - 1);
  return o;
}

pipeline::PipelineOptions ToPipelineOptions(const config::Config& c) {
  pipeline::PipelineOptions o;
  o.ingest = config::ToIngestOptions(c);
  o.state = config::ToStateOptions(c);
  o.learner = ToOnlineOptions(c);
  o.publisher = config::ToPublisherOptions(c);
  o.queue_capacity = static_cast<size_t>(c.ingest.queue_capacity);
  o.checkpoint_dir = c.learner.checkpoint_dir;
  o.checkpoint_interval_s = c.learner.checkpoint_interval_s;
  o.checkpoint_keep = c.learner.checkpoint_keep;
  o.idle_train_s = c.learner.idle_train_s;
  o.max_failed_steps = c.learner.max_failed_steps;
  o.user_flush_ms = c.publisher.interval_ms;
  o.item_interval_ms = c.publisher.item_interval_ms;
  o.stop_flush_ms = c.publisher.stop_flush_ms;
  o.user_refresh_s = c.publisher.user_refresh_s;
  o.prequential_csv = c.learner.prequential_csv;
  o.prequential_interval_s = c.learner.prequential_interval_s;
  return o;
}

// Checked with the configuration: the learner refused it only once the metrics port was bound,
// as a failure (exit 1) whose message named no field.
bool LearnerDeviceUsable(const std::string& command, const config::Config& c) {
  if (c.learner.device != "cuda" || learner::CudaAvailable()) return true;
  std::cerr << "gsau " << command
            << ": configuration error: learner.device: cuda, but LibTorch sees no CUDA device on this machine "
               "(auto uses one when there is)\n";
  return false;
}

}  // namespace gsau::app
