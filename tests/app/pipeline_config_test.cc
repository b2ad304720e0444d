// The pipeline's and the online learner's options carry every field configured for them: each
// field is set to a value other than its default, so a dropped or swapped mapping shows.
#include <gtest/gtest.h>

#include <algorithm>

#include "gsau/common/cpu.h"
#include "pipeline_config.h"

namespace gsau::app {
namespace {

config::Config Load(std::vector<std::string> sets) {
  config::LoadInput in;
  in.overrides = std::move(sets);
  auto c = config::Load(in);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : config::Config{};
}

TEST(PipelineConfig, OptionsCarryEveryConfiguredField) {
  const auto c = Load({"learner.device=cpu", "learner.threads=3", "learner.embedding_dim=48", "learner.batch_size=96",
                       "learner.learning_rate=0.0125", "learner.gamma=0.375", "learner.replay_ratio=0.25",
                       "learner.replay_capacity=1234", "learner.replay_recent_fraction=0.125",
                       "learner.replay_recent_capacity=567", "learner.checkpoint_dir=/c/d",
                       "learner.checkpoint_interval_s=17", "learner.checkpoint_keep=5", "learner.idle_train_s=19",
                       "learner.max_failed_steps=37",
                       "learner.prequential_csv=/p.csv", "learner.prequential_interval_s=23",
                       "publisher.interval_ms=29", "publisher.item_interval_ms=31",
                       "publisher.item_change_threshold=0.0625", "ingest.queue_capacity=3700", "topics.clicks=tc",
                       "state.path=/s", "topics.user_embeddings=tu"});
  const auto o = ToPipelineOptions(c);
  const auto& l = o.learner;
  EXPECT_EQ(l.device, "cpu");
  EXPECT_EQ(l.threads, 3);
  EXPECT_EQ(l.dim, 48);
  EXPECT_EQ(l.batch_size, 96);
  EXPECT_DOUBLE_EQ(l.lr, 0.0125);
  EXPECT_DOUBLE_EQ(l.gamma, 0.375);
  EXPECT_DOUBLE_EQ(l.fresh_fraction, 0.75) << "a replay ratio of 0.25 leaves 0.75 of a batch to fresh clicks";
  EXPECT_EQ(l.replay_capacity, 1234);
  EXPECT_DOUBLE_EQ(l.recent_fraction, 0.125);
  EXPECT_EQ(l.recent_capacity, 567);
  EXPECT_DOUBLE_EQ(l.change_threshold, 0.0625);
  EXPECT_EQ(o.checkpoint_dir, "/c/d");
  EXPECT_EQ(o.checkpoint_interval_s, 17);
  EXPECT_EQ(o.checkpoint_keep, 5);
  EXPECT_EQ(o.idle_train_s, 19);
  EXPECT_EQ(o.max_failed_steps, 37);
  EXPECT_EQ(o.prequential_csv, "/p.csv");
  EXPECT_EQ(o.prequential_interval_s, 23);
  EXPECT_EQ(o.user_flush_ms, 29);
  EXPECT_EQ(o.item_interval_ms, 31);
  EXPECT_EQ(o.queue_capacity, 3700u);
  // The stages' own options come from config/ (tested there); here only that they are the ones.
  EXPECT_EQ(o.ingest.topic, "tc");
  EXPECT_EQ(o.state.path, "/s");
  EXPECT_EQ(o.publisher.user_topic, "tu");
}

TEST(PipelineConfig, ThreadsZeroLeavesACoreToTheOtherStages) {
  const auto o = ToOnlineOptions(Load({"learner.threads=0"}));
  EXPECT_EQ(o.threads, std::max(1, UsableCores() - 1));
}

}  // namespace
}  // namespace gsau::app
