// Pipeline: what `gsau run` runs. Ingest (Kafka -> state store), the continual learner and the
// embedding publisher, each on its own thread, joined by bounded hand-offs.
//
//   ingest thread    Ingestor: consume, validate, apply micro-batches to the state with their
//                    offsets; each applied batch goes to the learner's queue (bounded: when full,
//                    ingest pauses its partitions) and marks its users for publishing.
//   learner thread   in rounds: the applied batches queued (up to 20,000 events or 0.5 s of
//                    taking in), each ranked before it is trained on (prequential evaluation: up
//                    to prequential_max_per_batch clicks a round whose session holds a known
//                    item, on the learner's model) and observed; then one Step when there is
//                    something to train on, a serving refresh, item deltas on an interval,
//                    checkpoints on an interval. Fresh samples wait in the learner (at most its
//                    max_pending; past that the oldest go to replay untrained, counted in
//                    gsau_learner_shed_samples_total): a learner slower than the clicks sheds
//                    training, it does not hold ingest back.
//   user publisher   every user_flush_ms: the marked users' sessions (from the state) embedded by
//                    the latest serving snapshot and published, so a click's user record does not
//                    wait for a training step (unless the clicked item is new to the snapshot:
//                    then up to 30 s for the learner to take the click in). A checkpoint
//                    records the state batch up to which every user's record was delivered
//                    (users_published_through); a restart marks the users of the batches after
//                    it again (from the change feed; all users when it does not reach back).
//
// Checkpoints: checkpoint_dir/ckpt-<state batch seq, 12 digits>/ holding model.pt (model, Adam,
// graph, samples, the watermark = the state batch the learner had seen), state/ (a RocksDB
// checkpoint) and users_published_through (a decimal batch seq), built under a .tmp name and renamed (InstallCheckpoint); the newest checkpoint_keep
// are kept. On start the newest checkpoint's model is loaded and the learner catches up with the
// state batches after its watermark from the state's change feed (CatchUpEvents: each click still
// in its user's session with the items before it that the session holds; those that left it as
// graph pairs). Without a checkpoint the learner starts from the state's history (every
// session and edge as replay data). Rollback: Options::rollback_from = a checkpoint dir: the
// current state directory is moved aside (<state>.before-rollback-<time>), the checkpoint's state
// copied in and its model loaded, and every user and item is published again from it; ingest then
// re-reads Kafka from that state's offsets, so nothing is lost (as long as the topic still holds
// those records). The checkpoints of the abandoned line
// go first to <checkpoint_dir>/before-rollback-<time>/: those after the target, or all of them when
// the target lies outside checkpoint_dir (the restored pair is then checkpointed at start-up), so
// that a later restart resumes from the rolled-back line. A rollback refuses while a store is
// open at the state path (kUnavailable), and marks itself in checkpoint_dir/ROLLBACK_IN_PROGRESS
// until its pair is in place: a plain start finding the mark refuses (kInvalidArgument, naming
// the rollback to run again) rather than take a half-done rollback for a cold start.
//
// model_version: a wall-clock ms stamp taken when a batch of records is published (not when the
// snapshot that computed them was taken), made strictly increasing within a run and across
// restarts: a start goes on above the newest of the checkpoint's and of the records at the end
// of the embedding topics' partitions (those published after the checkpoint, before a crash, with
// a wall clock that may have gone back since), the wall clock does the rest.
//
// Thread safety: Create, Run from one thread; status() from any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gsau/common/clock.h"
#include "gsau/common/status.h"
#include "gsau/ingest/ingestor.h"
#include "gsau/learner/online.h"
#include "gsau/publisher/publisher.h"
#include "gsau/state/state_options.h"
#include "gsau/state/state_store.h"

namespace prometheus {
class Registry;
}

namespace gsau::pipeline {

struct PipelineOptions {
  ingest::IngestOptions ingest;
  state::StateOptions state;
  learner::OnlineOptions learner;
  publisher::PublisherOptions publisher;
  size_t queue_capacity = 100000;      // applied events queued for the learner
  std::string checkpoint_dir = "gsau-data/checkpoints";
  int checkpoint_interval_s = 300;
  int checkpoint_keep = 3;
  std::string rollback_from;           // a checkpoint directory to roll back to; empty = none
  // Warm start from an offline run (`gsau train`'s best.pt or checkpoint.pt) on a cold start
  // (no pipeline checkpoint yet): its weights, with the rows of the users and items the state
  // holds matched by external id to the ids of init_data (the dataset file it was trained on,
  // read again: the offline ids are assigned deterministically). Empty = none.
  std::string init_offline;
  std::string init_data, init_times;
  int user_flush_ms = 50;              // users who clicked are published together per interval
  int item_interval_ms = 1000;         // item rows that moved are published per interval
  // The stop's wait for the last deliveries (after the last checkpoint); records still undelivered
  // then fail Run (the next start publishes them again), except with 0: no wait asked for. Unit: ms.
  int stop_flush_ms = 20000;
  // Every user is published again after this long with training steps since every user last went
  // out (item records follow the model; a user's record changes only with a click). 0: never
  // (only when the learner goes idle, and after a cold start). Unit: s.
  int user_refresh_s = 3600;
  // A refresh of every user (user_refresh_s, the learner going idle) marks this many users at a
  // time, a part at a flush once fewer than a flush's share of marked users are left due: the due
  // set does not grow with the state. Not in the config file (a tuning of the pipeline's, smaller
  // in tests).
  size_t refresh_part_users = 16384;
  // How long a user's record waits for the serving snapshot to learn a new item of its session
  // (the learner takes the click in behind any backlog of its queue); then it goes out without
  // that item, and again once the snapshot knows it. Not in the config file (smaller in tests).
  // Unit: ms.
  int new_item_wait_ms = 30000;
  // Tests only: a non-OK status fails the publisher's read of that user's session as a damaged
  // entry would (the learner's and the start-up's reads are not affected). Not in the config.
  std::function<Status(state::UserId)> session_read_fault;
  // Tests only: called by the learner thread before each round takes applied events in; it may
  // block, holding the learner back as a backlog would (a stop waits for it). Not in the config.
  std::function<void()> learner_round_hook;
  std::string prequential_csv;         // empty = no CSV
  int prequential_interval_s = 10;     // CSV rows and metric windows
  int prequential_max_per_batch = 512;  // clicks ranked a learner round, at most (the rest skipped)
  int64_t min_step_samples = 1;        // train only when at least this many samples exist
  // Training on replay alone (no fresh sample queued) goes on for at most this long after the
  // last fresh sample, and until it has gone 200 times over the replay pool; then the learner
  // waits for clicks (gsau_learner_idle = 1). 0: never trains on replay alone. Unit: s.
  int idle_train_s = 600;
  // A failed learner step (no update made) has its fresh samples skipped
  // (OnlineLearner::SkipFailedBatch) and the learner goes on; the failure after this many in a
  // row ends Run with it. 0: the first failure ends Run.
  int max_failed_steps = 5;
};

struct PipelineStatus {
  uint64_t consumed = 0, applied = 0, dead_lettered = 0;
  uint64_t skipped = 0;  // good events of a type ingest.accepted_event_types leaves out
  int64_t steps = 0, users = 0, items = 0, edges = 0;
  double last_step_s = 0, last_loss = 0;
  int64_t users_published = 0, items_published = 0;  // records the sink sends (Publishable ones)
  // Publishing's failures so far: deliveries the brokers failed (each goes again), records
  // librdkafka refused, publishing calls that failed (the reads and embeddings they need
  // included: a session that cannot be read), and the producer's client errors (a broker away
  // shows there at once; its records time out only minutes later): gsau_errors_total of stage
  // publisher, kinds delivery, produce, publish and broker. Records published may still grow
  // while they do.
  int64_t publish_failures = 0;
  int64_t model_version = 0;
  int64_t prequential_count = 0;
  double recall20 = 0, ndcg20 = 0;  // cumulative prequential figures
  double popular_recall20 = 0;      // the same clicks ranked by popularity (the baseline)
  double window_recall20 = 0, window_popular_recall20 = 0;  // over the last prequential window
  int64_t checkpoints = 0;
  size_t queued = 0;
};

// A user's newest items, oldest first, at most max_len of them (a max_len of 0 adds nothing): the
// prefix the live path gives the user's next click. The pipeline keeps one per user ever seen,
// so it is a vector rather than a deque: a deque takes ~730 bytes even for one item (its first
// block), this ~140 for a user of 8 clicks (1,000,000 users, glibc malloc); dropping the oldest moves
// at most max_len ids. Not thread-safe.
class RecentItems {
 public:
  void Push(uint32_t item, size_t max_len) {
    if (max_len == 0) return;
    if (items_.size() >= max_len) items_.erase(items_.begin(), items_.end() - static_cast<std::ptrdiff_t>(max_len - 1));
    items_.push_back(item);
  }
  std::vector<uint32_t>::const_iterator begin() const { return items_.begin(); }
  std::vector<uint32_t>::const_iterator end() const { return items_.end(); }
  size_t size() const { return items_.size(); }

 private:
  std::vector<uint32_t> items_;
};

// The clicks of the state batches in `changes` as learner events, as the live path hands them
// over: every click still in its user's session, with the items before it (at most max_len) as
// the prefix, by click time (the nearest the state has to the order the live path applied them
// in, which it keeps within a user's session only: a click counts at the latest time among its
// own and those of its user's clicks before it here (since the watermark), so each user's clicks
// stay in the order applied; equal times keep users ascending); then, alone (no prefix, time now_ms), each touched edge
// none of those clicks gives (its clicks have left the session). Edges alone throughout when the
// feed does not know the users' click counts (batches written before it recorded them). `store`
// must not change meanwhile.
Result<std::vector<learner::OnlineEvent>> CatchUpEvents(const state::StateStore& store,
                                                        const state::ChangeSet& changes, size_t max_len,
                                                        int64_t now_ms);

// The whole state as learner events, for a learner that starts without a checkpoint: every click
// still in its user's session, with the items before it in the session (at most max_len) as the
// prefix, and each edge none of them gives, alone at its last click's time; all by click time (a
// session click's as in CatchUpEvents, each user's in the order applied; equal times: session
// clicks first, users ascending; then the lone edges, users ascending), so that the learner's
// window of recent samples ends with the latest clicks rather than with the highest user ids.
// `each_session`, when given, also sees every session as it is read (one scan for a caller that
// needs both). `store` must not change meanwhile.
Result<std::vector<learner::OnlineEvent>> HistoryEvents(
    const state::StateStore& store, size_t max_len,
    const std::function<void(state::UserId, std::span<const state::SessionEntry>)>& each_session = nullptr);

class Pipeline {
 public:
  // Opens (or rolls back) the state, creates the learner (from the newest checkpoint when there
  // is one), connects the publisher. Errors name the stage. `registry` may be null; it and
  // `clock` must outlive the pipeline. `stop`, when given, ends the wait for brokers that do not
  // answer (kAborted) rather than leaving a SIGTERM to wait out publisher.connect_timeout_ms;
  // with brokers that answer, a stop is Run's to carry out (its last checkpoint included).
  static Result<std::unique_ptr<Pipeline>> Create(const PipelineOptions& options, prometheus::Registry* registry,
                                                  const Clock& clock = SystemClock::Get(),
                                                  const std::atomic<bool>* stop = nullptr);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Runs until `stop`; then stops the threads, writes a last checkpoint, publishes the items
  // that moved since the last interval, flushes the publisher and closes the state. An error of
  // any stage stops the others and is returned.
  Status Run(const std::atomic<bool>& stop);

  PipelineStatus status() const;

 private:
  struct Impl;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gsau::pipeline
