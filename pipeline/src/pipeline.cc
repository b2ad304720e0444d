#include "gsau/pipeline/pipeline.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cstdlib>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "gsau/common/cpu.h"
#include "gsau/common/file.h"
#include "gsau/common/log.h"
#include "gsau/common/throttle.h"
#include "gsau/ingest/applied_queue.h"
#include "gsau/learner/dataset.h"
#include "gsau/learner/metrics.h"
#include "gsau/metrics/metrics.h"
#include "gsau/pipeline/checkpoints.h"
#include "gsau/pipeline/due_users.h"
#include "gsau/state/state_store.h"
#include "pipeline_metrics.h"

namespace gsau::pipeline {
namespace fs = std::filesystem;

namespace {

using SteadyClock = std::chrono::steady_clock;

// `s` with the stage that failed in front, once: the state's own messages already begin with
// "state: " (they read "state: state: cannot create ...").
Status InStage(std::string_view stage, const Status& s) {
  const std::string prefix = std::string(stage) + ": ";
  return s.message().starts_with(prefix) ? s : Status(s.code(), prefix + s.message());
}

double SecondsSince(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

// Users marked due since the user thread last took them.
using UserMarks = std::unordered_map<state::UserId, DueUser>;

// Users whose embedding is due, as marked by ingest (and at start-up), and the newest state
// batch whose users were marked.
class DirtyUsers {
 public:
  // A user of the batches from `first_seq` up to `through_seq`.
  void Mark(state::UserId user, int64_t ts_ms, uint64_t first_seq, uint64_t through_seq) {
    std::lock_guard<std::mutex> lock(mu_);
    MarkLocked(user, {ts_ms, first_seq});
    through_seq_ = std::max(through_seq_, through_seq);
  }
  // All users of one applied batch at once: Take() never sees part of a batch.
  void MarkBatch(const ingest::AppliedBatch& batch) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& e : batch.events) MarkLocked(e.user, {e.ts_ms, batch.batch_seq, /*clicked=*/true, e.ts_ms});
    through_seq_ = std::max(through_seq_, batch.batch_seq);
  }
  // The users marked since the last call; *through_seq: every user of the batches up to it
  // has been handed out by now.
  UserMarks Take(uint64_t* through_seq) {
    std::lock_guard<std::mutex> lock(mu_);
    UserMarks out;
    out.swap(users_);
    *through_seq = through_seq_;
    return out;
  }

 private:
  void MarkLocked(state::UserId user, const DueUser& d) {
    auto [it, inserted] = users_.emplace(user, d);
    if (!inserted) it->second.Merge(d);
  }

  std::mutex mu_;
  UserMarks users_;
  uint64_t through_seq_ = 0;
};

// Ingest's sink: the learner's bounded queue, and the users to publish (marked at once, so a
// user's record does not wait behind the learner). The queue's gauge is set here too: set by
// the learner alone, it read ~0 (just drained) and froze when the learner hung, while the queue
// filled and paused ingest.
class FanoutSink final : public ingest::AppliedSink {
 public:
  FanoutSink(ingest::AppliedQueue* queue, DirtyUsers* dirty, prometheus::Gauge* queued)
      : queue_(queue), dirty_(dirty), queued_(queued) {}
  bool HasRoom(size_t events) const override { return queue_->HasRoom(events); }
  size_t capacity() const override { return queue_->capacity(); }
  void Push(ingest::AppliedBatch batch) override {
    dirty_->MarkBatch(batch);
    queue_->Push(std::move(batch));
    queued_->Set(static_cast<double>(queue_->queued_events()));
  }

 private:
  ingest::AppliedQueue* queue_;
  DirtyUsers* dirty_;
  prometheus::Gauge* queued_;
};

}  // namespace

namespace {

constexpr const char* kUsersPublishedThrough = "users_published_through";
// In a checkpoint written while a cold start's republish of every user was not yet delivered:
// the learner step after which it is due (a restart from it publishes every user again then).
constexpr const char* kUsersRepublishAtStep = "users_republish_at_step";
constexpr std::string_view kTmpSuffix = ".tmp";

}  // namespace

namespace {

// Events for the learner at start-up, put in the order it trains in and fills its window of
// recent samples in: the nearest the state has to the order the clicks were applied in. The state
// keeps that order within a user's session, not across users, so events sort by time, where a
// session click's time is the latest of its own and those of the user's clicks added before it:
// a late click (an earlier time than the click applied before it) stays behind that click, whose
// item its prefix holds (by its own time it went first, and a new item of the prefix, not in the
// model yet, was dropped from it). Equal times keep the order added.
class TrainingOrder {
 public:
  void Add(learner::OnlineEvent e, int64_t order_ms) {
    events_.push_back(std::move(e));
    order_ms_.push_back(order_ms);
  }
  std::vector<learner::OnlineEvent> Take() && {
    std::vector<size_t> idx(events_.size());
    std::iota(idx.begin(), idx.end(), size_t{0});
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return order_ms_[a] < order_ms_[b]; });
    std::vector<learner::OnlineEvent> out;
    out.reserve(idx.size());
    for (size_t k : idx) out.push_back(std::move(events_[k]));
    return out;
  }

 private:
  std::vector<learner::OnlineEvent> events_;
  std::vector<int64_t> order_ms_;
};

uint64_t PairKey(uint32_t user, uint32_t item) { return (static_cast<uint64_t>(user) << 32) | item; }

// Session clicks [from, end) of user `u` as events, each with the items before it in the session
// (at most max_len) as its prefix; their pairs go into `given`.
void AppendSessionClicks(state::UserId u, std::span<const state::SessionEntry> entries, size_t from, size_t max_len,
                         TrainingOrder* out, std::unordered_set<uint64_t>* given) {
  int64_t order_ms = std::numeric_limits<int64_t>::min();
  for (size_t k = from; k < entries.size(); ++k) {
    learner::OnlineEvent ev;
    ev.user = u;
    ev.item = entries[k].item;
    ev.ts_ms = entries[k].ts_ms;
    for (size_t j = k > max_len ? k - max_len : 0; j < k; ++j) ev.prefix.push_back(entries[j].item);
    given->insert(PairKey(u, ev.item));
    order_ms = std::max(order_ms, ev.ts_ms);
    out->Add(std::move(ev), order_ms);
  }
}

}  // namespace

Result<std::vector<learner::OnlineEvent>> CatchUpEvents(const state::StateStore& store,
                                                        const state::ChangeSet& changes, size_t max_len,
                                                        int64_t now_ms) {
  TrainingOrder clicks_in_order;
  std::unordered_set<uint64_t> given;  // pairs of the clicks above
  if (changes.clicks_known) {
    for (const auto& [u, before] : changes.clicks_before) {
      GSAU_ASSIGN_OR_RETURN(auto entries, store.Session(u));
      // The session is the user's newest clicks, consecutive: positions [first, clicks).
      const uint64_t clicks = store.UserStats(u).clicks;
      if (entries.size() > clicks) return Status::Corruption("state: a session longer than its user's clicks");
      const uint64_t first = clicks - entries.size();
      AppendSessionClicks(u, entries, before > first ? before - first : 0, max_len, &clicks_in_order, &given);
    }
  }
  auto out = std::move(clicks_in_order).Take();
  for (const auto& [u, i] : changes.edges) {
    if (!given.count(PairKey(u, i))) out.push_back({u, i, now_ms, {}});
  }
  return out;
}

Result<std::vector<learner::OnlineEvent>> HistoryEvents(
    const state::StateStore& store, size_t max_len,
    const std::function<void(state::UserId, std::span<const state::SessionEntry>)>& each_session) {
  TrainingOrder out;
  std::unordered_set<uint64_t> given;  // pairs of the clicks in sessions
  GSAU_RETURN_IF_ERROR(store.ForEachSession([&](state::UserId u, std::span<const state::SessionEntry> entries) {
                              AppendSessionClicks(u, entries, 0, max_len, &out, &given);
                              if (each_session) each_session(u, entries);
                            }).status());
  GSAU_RETURN_IF_ERROR(store.ForEachEdge([&](const state::Edge& e) {
                              if (!given.count(PairKey(e.user, e.item))) {
                                out.Add({e.user, e.item, e.last_ts_ms, {}}, e.last_ts_ms);
                              }
                            }).status());
  return std::move(out).Take();
}

struct Pipeline::Impl {
  PipelineOptions opt;
  const Clock* clock = nullptr;
  std::unique_ptr<prometheus::Registry> own_registry;
  prometheus::Registry* registry = nullptr;
  std::unique_ptr<internal::Metrics> m;

  std::unique_ptr<state::StateStore> store;
  std::unique_ptr<learner::OnlineLearner> learner;
  std::unique_ptr<publisher::KafkaPublisher> pub;
  std::mutex pub_mu;  // the publisher is used from two threads
  ingest::AppliedQueue queue{100000};
  DirtyUsers dirty;
  // Every user again, asked by the learner thread and done by the user thread's next flush (a
  // scan of every session: not on the learner's thread, which ingest waits on). kRefreshUsers:
  // the model moved under records that went out; kRepublishUsers: records of the untrained
  // model after a cold start (republish_outstanding).
  // kScheduledRefresh: user_refresh_s has passed with steps (as kRefreshUsers). Bits: the
  // reasons asked before the user thread takes them are done by one pass, each one counted.
  enum UsersRequest : int { kNoUsersRequest = 0, kRefreshUsers = 1, kRepublishUsers = 2, kScheduledRefresh = 4 };
  std::atomic<int> users_request{kNoUsersRequest};
  // A cold start's republish of every user is due or not yet delivered: from the cold start
  // (or a restart from a checkpoint written meanwhile, kUsersRepublishAtStep) until the user
  // thread sees every record of it delivered. Checkpoints written meanwhile carry
  // republish_step, so a crash before the delivery does not leave users on the step-0 vectors
  // (users_published_through cannot say so: the step-0 records confirmed it already).
  std::atomic<bool> republish_outstanding{false};
  int64_t republish_step = 0;
  bool checkpointed_republish = false;  // whether the newest checkpoint written carries it
  bool all_users_marked_at_start = false;  // MarkAllUsers(kStartUp) ran (before Run)
  // The learner thread's: the step that completes a cold start's pass over the state's history
  // (0: none due); replay-only steps since the last refresh as the learner went idle; when every
  // user last went out (a refresh of either kind), and when the idle one last did.
  int64_t republish_users_at_step = 0;
  int64_t replay_steps_since_users = 0;
  std::optional<SteadyClock::time_point> users_refreshed_at;
  std::optional<SteadyClock::time_point> idle_refreshed_at;  // the last refresh as the learner went idle
  std::unique_ptr<FanoutSink> sink;
  std::unique_ptr<ingest::Ingestor> ingestor;

  // The learner's own copy of each user's recent items, in apply order: the prefix of the
  // next click. Kept by the learner thread only.
  std::unordered_map<state::UserId, RecentItems> sessions;
  uint64_t watermark = 0;  // state batch seq the learner has seen
  uint64_t checkpointed_batch = 0;  // the watermark of the newest checkpoint (loaded or written)
  bool rollback_checkpoint_needed = false;  // rolled back: the restored pair is checkpointed at start

  std::atomic<int64_t> version{0};  // last model_version handed out
  // Item rows taken from the learner (TakeChangedItems marks them published) whose publication
  // failed: sent again with the next interval's, a newer row replacing an older one. Learner
  // thread only.
  std::map<uint32_t, std::vector<float>> unpublished_items;
  // Publishing failures repeat each interval while the brokers are away (a full queue refuses
  // after a second): a line every 10 s with their count.
  Throttle items_log{std::chrono::seconds(10)}, users_log{std::chrono::seconds(10)},
      redelivery_log{std::chrono::seconds(10)}, step_log{std::chrono::seconds(10)},
      serving_log{std::chrono::seconds(10)};
  fs::path last_checkpoint_dir;  // the newest checkpoint this process wrote
  std::vector<std::string> unreadable_checkpoints;  // passed over at the start, newest first
  int64_t checkpointed_steps = -1;    // the learner's steps in it
  uint64_t checkpointed_through = 0;  // its users_published_through

  mutable std::mutex status_mu;
  PipelineStatus st;
  learner::PrequentialStats preq_total, preq_window;
  // The baseline: a most-popular ranking (clicks so far; ties: who reached the count first).
  learner::PrequentialStats pop_total, pop_window;
  learner::PopularityRanking popularity;  // by internal item id, the clicks the learner has seen
  std::mt19937_64 popularity_ties{2020};
  std::ofstream preq_csv;
  // Every user of the state batches up to this one has had a record delivered (written by
  // the user publisher thread, read by Checkpoint()).
  std::atomic<uint64_t> users_confirmed_seq{0};
  // User publisher thread: the newest batch seq of the users handed out so far; whether some
  // were still due when it stopped (read after it joined).
  uint64_t users_taken_seq = 0;
  bool users_left_due = false;
  // User publisher thread: the republish taken (republish_outstanding): its users are handed out
  // while `republish_handing` (those due with clicks up to republish_seq go with them), then
  // `republish_mark` waits for their delivery. republish_taken until delivered.
  bool republish_taken = false;
  bool republish_handing = false;
  uint64_t republish_seq = 0;
  std::optional<publisher::KafkaPublisher::DeliveryMark> republish_mark;
  // Learner thread: the item publisher's fatal failure, which ended LearnerLoop (read after it
  // joined).
  Status item_publish_status;
  // The learner loop's failure was counted where it happened (a failed step): Run does not count
  // it again. Learner thread only.
  bool learner_failure_counted = false;
  // User publisher thread: users waiting for the snapshot to learn an item of their session.
  struct Waiting {
    int64_t since_ns = 0;
    int64_t items_seen = 0;  // the snapshot's item count at the last look
  };
  std::unordered_map<state::UserId, Waiting> waiting_users;
  // User publisher thread: users whose record went out without an item of their session (the
  // wait for it ran out): the highest item id the snapshot did not know then, and the first state
  // batch whose click is not reflected yet; marked due again once a snapshot knows the item. A
  // record that carries a click's time but not its effect was otherwise the user's last until the
  // next click or refresh (an hour by default). Their batches stay unconfirmed until the user's
  // next record (as a due user's), so that a stop or a crash before then leaves them to the
  // restart; the mark itself holds nothing (a click's batch merged into it would otherwise be
  // held by a user who kept clicking new items while the learner stayed behind).
  struct PublishedWithout {
    uint32_t item = 0;
    uint64_t first_seq = kNoClickSeq;
    bool remarked = false;  // due again: the item is known now
  };
  std::unordered_map<state::UserId, PublishedWithout> published_without;
  HeldBatches published_without_held;  // their first_seq
  int64_t published_without_items = -1;  // the snapshot's item count when they were last looked at
  // User publisher thread: the refresh of every user under way.
  struct Refresh {
    RefreshPass pass;
    SteadyClock::time_point started;
    std::string why;
  };
  std::optional<Refresh> refresh;

  Impl(const PipelineOptions& o, const Clock& c) : opt(o), clock(&c), queue(o.queue_capacity) {}

  // Versions go on above the newest the embedding topics hold: the checkpoint's covers what was
  // published up to it, and records published after it (before a crash) carry later stamps,
  // which a wall clock set back since then would not reach (a key's versions then fell).
  // Also: a user topic that holds no record while the state has users (deleted and created
  // again at this start, or emptied by a retention of its own) gets every user again; a user who
  // does not click would otherwise never be there. (Items go out whole after every start.)
  Status ContinueAfterPublishedVersions() {
    std::set<int64_t> dims;
    size_t user_records = 0;
    auto newest = pub->NewestPublishedVersion(10000, &dims, &user_records);
    if (newest.ok() && user_records == 0 && store->Counts().users > 0 && !all_users_marked_at_start) {
      GSAU_RETURN_IF_ERROR(MarkAllUsers("the user topic " + opt.publisher.user_topic + " holds no record"));
    }
    if (!newest.ok()) {
      GSAU_LOG_WARN("pipeline: reading the newest model_version of the embedding topics: {}; versions go on from the "
                    "checkpoint's and the clock",
                    newest.status().ToString());
      return Status::Ok();
    }
    dims.erase(opt.learner.dim);
    if (!dims.empty()) {
      // Another deployment's (or an earlier model's) records: readers of the topics get vectors
      // of two sizes, each id until it is published again, and some never.
      GSAU_LOG_WARN("pipeline: the embedding topics {} and {} hold records of dim {}, this model's is {}: readers get "
                    "both until every id is published again; a model of another shape belongs on topics of its own "
                    "(topics.user_embeddings, topics.item_embeddings)",
                    opt.publisher.user_topic, opt.publisher.item_topic, *dims.begin(), opt.learner.dim);
    }
    if (*newest <= version.load()) return Status::Ok();
    const int64_t ahead_ms = *newest - clock->NowMs();
    if (ahead_ms > 0) {
      GSAU_LOG_WARN("pipeline: the embedding topics hold model_version {}, {:.1f} s ahead of the wall clock (set back "
                    "since they were published?): versions go on from it",
                    *newest, static_cast<double>(ahead_ms) / 1000.0);
    } else {
      GSAU_LOG_INFO("pipeline: the embedding topics' newest model_version is {} (the checkpoint's {})", *newest,
                    version.load());
    }
    version = *newest;
    return Status::Ok();
  }

  int64_t NextVersion() {
    int64_t v = version.load();
    while (true) {
      const int64_t next = std::max(v + 1, clock->NowMs());
      if (version.compare_exchange_weak(v, next)) return next;
    }
  }

  // ------------------------------------------------------------------------------------
  // Start-up

  Status OpenState() {
    if (!opt.rollback_from.empty()) {
      const fs::path ck(opt.rollback_from);
      std::error_code stat_ec;  // a path stat() refuses is not a checkpoint either (it threw)
      if (!fs::exists(ck / "model.pt", stat_ec) || !fs::is_directory(ck / "state", stat_ec)) {
        return Status::InvalidArgument("rollback: " + opt.rollback_from + " is not a checkpoint (model.pt, state/)");
      }
      // A rollback must run alone: beside a running pipeline it would move that one's state
      // and checkpoints from under it. The state's own lock says whether one runs, held until
      // the state is moved aside (a store opened there meanwhile would be moved with it).
      GSAU_ASSIGN_OR_RETURN(auto hold, state::StateStore::HoldExclusive(opt.state.path));
      GSAU_RETURN_IF_ERROR(WriteRollbackMarker(opt.checkpoint_dir, opt.rollback_from));
      GSAU_RETURN_IF_ERROR(RecoverInterruptedCheckpoint());
      const std::string suffix = "before-rollback-" + std::to_string(clock->NowMs());
      // The checkpoints first, then the state: stopped anywhere from here on, the marker keeps a
      // plain start out (deleting it by hand pairs the state there is with the newest checkpoint
      // left, caught up from the change feed).
      GSAU_RETURN_IF_ERROR(MoveAbandonedCheckpoints(ck, (fs::path(opt.checkpoint_dir) / suffix).string()));
      std::error_code ec;
      fs::path state_dir = fs::path(opt.state.path).lexically_normal();
      if (!state_dir.has_filename()) state_dir = state_dir.parent_path();  // "state/": rename "state"
      if (fs::exists(state_dir, ec)) {
        const std::string aside = state_dir.string() + "." + suffix;
        fs::rename(state_dir, aside, ec);
        if (ec) return Status::IoError("rollback: moving the state aside: " + ec.message());
        GSAU_LOG_WARN("pipeline: rollback: the state was moved to {}", aside);
      }
      hold.reset();
      GSAU_ASSIGN_OR_RETURN(store, state::StateStore::OpenFromCheckpoint((ck / "state").string(), opt.state));
      return Status::Ok();
    }
    {
      // Held while the marker is read: a rollback still starting up holds the store, and is
      // told apart from one that stopped half-way.
      GSAU_ASSIGN_OR_RETURN(auto hold, state::StateStore::HoldExclusive(opt.state.path));
      if (const auto target = UnfinishedRollback(opt.checkpoint_dir)) {
        return Status::InvalidArgument("a rollback to " + *target +
                                       " did not finish (the process stopped during it): run it again (--rollback " +
                                       *target + "), or delete " +
                                       RollbackMarkerPath(opt.checkpoint_dir) +
                                       " to start from what is there now (and " +
                                       state::StateStore::RestoringPath(opt.state.path) +
                                       ", if there: the rollback's unfinished copy)");
      }
      // Under the lock (no other process checkpoints here) and before Open's free-space check:
      // a checkpoint a kill left half-built can hold the space that check asks for, and the
      // start refused on a full disk until someone deleted it by hand.
      GSAU_RETURN_IF_ERROR(RecoverInterruptedCheckpoint());
    }
    GSAU_ASSIGN_OR_RETURN(store, state::StateStore::Open(opt.state));
    return Status::Ok();
  }

  // RocksDB makes a checkpoint of hard links to the store's files; across mounts (another
  // filesystem, or a second bind mount of the same one) it copies every file instead, holding
  // the store's shared lock, and ingest's writes wait for the copy.
  void WarnIfCheckpointsCopyTheState() const {
    const auto same = SameMount(opt.state.path, opt.checkpoint_dir);
    if (!same.ok()) {
      GSAU_LOG_WARN("pipeline: could not tell whether checkpoints can link the state's files: {}",
                    same.status().ToString());
    } else if (!*same) {
      GSAU_LOG_WARN("pipeline: learner.checkpoint_dir {} is on another mount than state.path {}: each checkpoint "
                    "copies the whole state instead of linking its files, and ingest waits while it does",
                    opt.checkpoint_dir, opt.state.path);
    }
  }

  // The users of clicks applied after the checkpoint's users_published_through (`from_seq`),
  // due for publishing again: their records may not have been delivered before the process
  // stopped (the due set and the publisher's retries live in memory).
  template <typename Edges>
  Status MarkUsersOf(const Edges& edges, uint64_t from_seq) {
    std::unordered_set<state::UserId> users;
    for (const auto& [u, i] : edges) users.insert(u);
    for (const auto u : users) {
      GSAU_ASSIGN_OR_RETURN(auto entries, store->Session(u));
      if (!entries.empty()) dirty.Mark(u, entries.back().ts_ms, from_seq + 1, store->BatchSeq());
    }
    if (!users.empty()) {
      GSAU_LOG_INFO("pipeline: {} users of the clicks after the checkpoint are published again (those of batches "
                    "{}..{}, not confirmed delivered before the process stopped)",
                    users.size(), from_seq + 1, store->BatchSeq());
    }
    return Status::Ok();
  }

  // On the user thread, at a flush: what the learner asked for (users_request: one pass for
  // every reason asked since the last flush, each one counted). A refresh is marked a part at a
  // time (ContinueRefresh); one asked while another is under way goes on from where that one
  // stands round to it again, so that every user gets the newer model (starting again from the
  // first user, a pass longer than publisher.user_refresh_s never reached the last ones). A
  // republish's failure to read the sessions is counted and logged, and tried again.
  void TakeUsersRequest() {
    const int request = users_request.exchange(kNoUsersRequest);
    if (request == kNoUsersRequest) return;
    const bool republish = (request & kRepublishUsers) != 0;
    const uint64_t seq = store->BatchSeq();
    const std::string why = republish ? "the new model has trained over the state's history"
                            : (request & kRefreshUsers) != 0
                                ? "the learner is idle after training on replay alone"
                                : "publisher.user_refresh_s: " + std::to_string(opt.user_refresh_s) +
                                      " s of training since the last refresh of every user began";
    if (!republish) {
      CountRefreshes(request);
      if (refresh) {
        GSAU_LOG_INFO("pipeline: a refresh asked ({}) while one is under way ({} of its users marked): it goes on "
                      "round every user from user {}",
                      why, refresh->pass.marked(), refresh->pass.next());
        refresh->pass.Extend();
        refresh->why = why;
      } else {
        refresh = Refresh{RefreshPass(), SteadyClock::now(), why};
      }
      return;
    }
    if (Status s = MarkAllUsers(why, MarkAll::kRepublish, request); !s.ok()) {
      m->publish_errors.Increment();
      GSAU_LOG_WARN("pipeline: users not published again: {}", s.ToString());
      // The cold start's republish is owed (checkpoints say so): the next flush tries again
      // (over a refresh asked meanwhile: a republish does what a refresh does).
      users_request.fetch_or(kRepublishUsers);
      return;
    }
    refresh.reset();  // every user is marked: a refresh under way has nothing left to do
    republish_taken = republish_handing = true;
    republish_seq = seq;
    republish_mark.reset();
  }

  // The next part of the refresh under way, once fewer than a flush's share of users marked
  // without a click are left due (so that it follows a start-up's or a republish's marks, and
  // the due set holds at most a part and a flush's share of it, whatever the number of users).
  // Users are marked by id, without reading anything: PublishUsers reads each one's session as it
  // embeds it (a scan of the sessions copied the whole memtable of their column family per
  // part: seconds each).
  void ContinueRefresh(DueUsers& due) {
    if (!refresh || due.marked() >= kMarkedUsersPerFlush) return;
    bool done = false;
    const auto [first, count] =
        refresh->pass.Next(static_cast<size_t>(store->Counts().users), opt.refresh_part_users, &done);
    for (size_t k = 0; k < count; ++k) {
      due.Merge(static_cast<state::UserId>(first + k), DueUser{0, kNoClickSeq, false});
    }
    if (!done) return;
    GSAU_LOG_INFO("pipeline: every user's record goes out again ({}): the last of {} users marked ({} at a time, "
                  "the last ones go out in the next flushes) after {:.1f} s",
                  refresh->why, refresh->pass.marked(), opt.refresh_part_users, SecondsSince(refresh->started));
    refresh.reset();
  }

  // On the user thread, after a flush's publishing (under pub_mu): once every user of the
  // republish has been handed out, a delivery mark; once that is delivered, the republish is
  // no longer outstanding.
  void FollowRepublish(const DueUsers& due) {
    if (republish_handing && due.MinFirstSeq() > republish_seq) {
      if (auto mark = pub->Mark(EntityKind::kUser)) {  // none while a failed user record waits: next flush
        republish_mark = *mark;
        republish_handing = false;
      }
    }
    if (!republish_mark) return;
    switch (pub->Check(*republish_mark)) {
      case publisher::KafkaPublisher::MarkState::kPending:
        break;
      case publisher::KafkaPublisher::MarkState::kDelivered:
        RepublishDelivered();
        break;
      case publisher::KafkaPublisher::MarkState::kBroken:  // a record goes again: a new mark
        republish_mark.reset();
        republish_handing = true;
        break;
    }
  }

  void RepublishDelivered() {
    republish_taken = republish_handing = false;
    republish_mark.reset();
    if (republish_outstanding.exchange(false)) {
      GSAU_LOG_INFO("pipeline: every user's record from the model trained over the state's history is delivered");
    }
  }

  // How MarkAllUsers marks. kStartUp (before ingest runs): each record stands for the clicks of
  // every batch so far (users_published_through stays below them until they are delivered) and
  // the batches' users count as handed out. kRepublish (while ingest runs): the same hold while
  // they are due, but no batch is claimed as handed out (ingest may not have marked the newest
  // applied batch's users yet); what was confirmed before (the start-up's records) stays
  // confirmed. (A refresh neither holds nor claims anything, kNoClickSeq: ContinueRefresh.)
  enum class MarkAll { kStartUp, kRepublish };

  // Every user of the state, due for publishing (`why` goes to the log).
  // `requests`: the UsersRequest bits this pass does, each counted in
  // gsau_publisher_user_refreshes_total (0: a start's).
  Status MarkAllUsers(const std::string& why, MarkAll how = MarkAll::kStartUp, int requests = kNoUsersRequest) {
    const uint64_t seq = store->BatchSeq();
    if (how == MarkAll::kStartUp) all_users_marked_at_start = true;
    size_t n = 0;
    auto counts = store->ForEachSession([&](state::UserId u, std::span<const state::SessionEntry> entries) {
      if (entries.empty()) return;
      dirty.Mark(u, entries.back().ts_ms, 1, how == MarkAll::kStartUp ? seq : 0);
      ++n;
    });
    if (!counts.ok()) return counts.status();
    GSAU_LOG_INFO("pipeline: all {} users are published again ({})", n, why);
    CountRefreshes(requests);
    return Status::Ok();
  }

  // gsau_publisher_user_refreshes_total, one for each UsersRequest bit (none: a start's).
  void CountRefreshes(int requests) {
    if (requests == kNoUsersRequest) m->refresh_start.Increment();
    if ((requests & kRepublishUsers) != 0) m->refresh_trained.Increment();
    if ((requests & kRefreshUsers) != 0) m->refresh_idle.Increment();
    if ((requests & kScheduledRefresh) != 0) m->refresh_scheduled.Increment();
  }

  // A checkpoint's users_published_through: the state batch up to which every user's record
  // had been delivered when it was written (`otherwise` for a checkpoint without the file).
  static uint64_t UsersPublishedThrough(const fs::path& ckpt, uint64_t otherwise) {
    std::ifstream in(ckpt / kUsersPublishedThrough);
    uint64_t v = 0;
    return (in >> v) ? v : otherwise;
  }

  // A checkpoint written before a cold start's republish was delivered: every user goes out
  // again once the learner has taken its step (at the first flush when it has already).
  void ResumeRepublish(const fs::path& ckpt) {
    std::error_code ec;
    if (!fs::exists(ckpt / kUsersRepublishAtStep, ec)) return;
    std::ifstream in(ckpt / kUsersRepublishAtStep);
    int64_t at = 0;
    if (!(in >> at)) {
      // There but unreadable (cut short): owed all the same, at once.
      GSAU_LOG_WARN("pipeline: {} cannot be read: every user goes out again after a step",
                    (ckpt / kUsersRepublishAtStep).string());
      at = 0;
    }
    republish_step = std::max<int64_t>(at, 1);
    republish_outstanding = true;
    const int64_t steps = learner->Stats().steps;
    if (steps >= republish_step) {
      users_request.fetch_or(kRepublishUsers);
    } else {
      republish_users_at_step = republish_step;
    }
    GSAU_LOG_INFO("pipeline: the cold start's republish of every user was not delivered before the process stopped: "
                  "every user goes out again {}",
                  steps >= republish_step ? std::string("now") : "at learner step " + std::to_string(republish_step));
  }

  Status RecoverInterruptedCheckpoint() {
    GSAU_ASSIGN_OR_RETURN(const int restored, RecoverCheckpoints(opt.checkpoint_dir));
    if (restored > 0) {
      GSAU_LOG_WARN("pipeline: a checkpoint replaced when the process stopped was put back in {}",
                    opt.checkpoint_dir);
    }
    return Status::Ok();
  }

  // The checkpoints a rollback abandons: a restart loads the newest by name (its state batch),
  // and the rolled-back line's batch numbers start again below theirs, so left in place they
  // would undo the rollback at the next restart (a model whose ids need not match the restored
  // state's). Those after `target` go to `aside` (inside checkpoint_dir: the same filesystem,
  // and ListCheckpoints skips it); all of them when `target` lies elsewhere (their line is
  // unknown). The restored pair is then checkpointed at once (StartLearner): in checkpoint_dir
  // when the target lies elsewhere, and in any case with users_published_through 0, since a
  // rollback publishes every user again (a crash before the next checkpoint would otherwise
  // restart from the target's figure and leave the abandoned model's user records in place).
  Status MoveAbandonedCheckpoints(const fs::path& target, const std::string& aside) {
    std::string target_name;  // as listed: `target` may be a link, relative, or end in '/'
    std::vector<std::string> abandoned;
    for (const auto& c : ListCheckpoints(opt.checkpoint_dir)) {
      std::error_code ec;
      if (fs::equivalent(c, target, ec)) {
        target_name = fs::path(c).filename().string();
      } else {
        abandoned.push_back(c);
      }
    }
    rollback_checkpoint_needed = true;
    if (!target_name.empty()) {
      std::erase_if(abandoned, [&](const std::string& c) { return fs::path(c).filename().string() < target_name; });
    }
    if (abandoned.empty()) return Status::Ok();
    std::error_code ec;
    fs::create_directories(aside, ec);
    if (ec) return Status::IoError("rollback: creating " + aside + ": " + ec.message());
    for (const auto& c : abandoned) {
      fs::rename(c, fs::path(aside) / fs::path(c).filename(), ec);
      if (ec) return Status::IoError("rollback: moving the checkpoint " + c + " aside: " + ec.message());
    }
    GSAU_LOG_WARN("pipeline: rollback: {} checkpoint(s) of the abandoned line were moved to {}", abandoned.size(),
                  aside);
    return Status::Ok();
  }

  // Sessions from the state (authoritative), as the learner's prefixes.
  Status LoadSessions() {
    return store->ForEachSession([&](state::UserId u, std::span<const state::SessionEntry> entries) {
                  AddSession(u, entries);
                }).status();
  }

  void AddSession(state::UserId u, std::span<const state::SessionEntry> entries) {
    const auto max_len = static_cast<size_t>(opt.learner.max_len);
    auto& s = sessions[u];
    for (const auto& e : entries) s.Push(e.item, max_len);
  }

  // The newest checkpoint whose model loads into `learner` (the rollback's target when there is
  // one), or an empty path when there is none. One whose model.pt is not a readable checkpoint
  // (Corruption: cut short by a power loss after its rename, bit rot) is passed over for the one
  // before it, logged and counted in the learner's checkpoint errors; the start then catches up
  // from the older one's batch as from any checkpoint. Any other failure is not passed over:
  // another model shape is the configuration's mistake, out of memory this process's, and an
  // older checkpoint would hide either. With none readable, the newest's error. *passed_over:
  // the unreadable ones, newest first (StartLearner renames them aside once the start is sure).
  Result<fs::path> LoadNewestCheckpoint(learner::OnlineWatermark* wm, std::vector<std::string>* passed_over) {
    if (!opt.rollback_from.empty()) {
      GSAU_ASSIGN_OR_RETURN(*wm, learner->Load((fs::path(opt.rollback_from) / "model.pt").string()));
      return fs::path(opt.rollback_from);
    }
    const auto all = ListCheckpoints(opt.checkpoint_dir);
    Status newest_error;
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      auto loaded = learner->Load((fs::path(*it) / "model.pt").string());
      if (loaded.ok()) {
        *wm = *loaded;
        return fs::path(*it);
      }
      if (loaded.status().code() != StatusCode::kCorruption) return loaded.status();
      if (newest_error.ok()) newest_error = loaded.status();
      passed_over->push_back(*it);
      m->checkpoint_errors.Increment();
      GSAU_LOG_ERROR("pipeline: checkpoint {} cannot be read ({}); {}", *it, loaded.status().ToString(),
                     std::next(it) != all.rend() ? "loading the one before it" : "no older one is left");
      // A load that failed part-way may have replaced part of the learner: a fresh one (the old
      // one gone first: two models at once may not fit).
      learner.reset();
      GSAU_ASSIGN_OR_RETURN(learner, learner::OnlineLearner::Create(opt.learner));
    }
    // None readable: refused as it is, on every start, until an operator decides (a cold start
    // would throw the model away).
    if (!newest_error.ok()) return newest_error;
    return fs::path();
  }

  // The unreadable checkpoints a start passed over, renamed <name>.unreadable (kept for a look):
  // no longer counted by pruning, nor shown by inspect or evaluate.
  // Only once Create has succeeded: a start refused after the checkpoint was passed over (the
  // state behind it, the brokers away) must meet it again at the next start, not resume past it.
  // A name taken already (an earlier unreadable checkpoint of the same batch) gets a number.
  void SetAsideUnreadable() {
    for (const auto& c : unreadable_checkpoints) {
      std::error_code ec;
      std::string aside = c + ".unreadable";
      for (int k = 2; fs::exists(aside, ec) && k < 1000; ++k) aside = c + ".unreadable-" + std::to_string(k);
      fs::rename(c, aside, ec);
      if (ec) {
        GSAU_LOG_ERROR("pipeline: renaming the unreadable checkpoint {} aside failed: {}", c, ec.message());
      } else {
        GSAU_LOG_WARN("pipeline: the unreadable checkpoint {} is now {}", c, aside);
      }
    }
    unreadable_checkpoints.clear();
  }

  Status StartLearner() {
    GSAU_ASSIGN_OR_RETURN(learner, learner::OnlineLearner::Create(opt.learner));
    learner::OnlineWatermark wm;
    std::vector<std::string> passed_over;
    GSAU_ASSIGN_OR_RETURN(const fs::path ckpt, LoadNewestCheckpoint(&wm, &passed_over));
    const uint64_t skipped_batch = passed_over.empty() ? 0 : CheckpointBatch(passed_over.front());
    if (store->BatchSeq() < skipped_batch) {
      // The checkpoint passed over had seen more of the state than the state now holds: the
      // state lost batches (the power loss that cut the model short, with state.sync off).
      return Status::Corruption("the state at " + opt.state.path + " is at batch " +
                                std::to_string(store->BatchSeq()) + ", behind the unreadable checkpoint of batch " +
                                std::to_string(skipped_batch) + " passed over: restore a pair with --rollback, or "
                                "start afresh with an empty learner.checkpoint_dir");
    }
    if (!ckpt.empty()) {
      watermark = wm.state_batch_seq;
      checkpointed_batch = watermark;
      version = wm.model_version;
      GSAU_LOG_INFO("pipeline: learner resumed from {} (state batch {}, model_version {})", ckpt.string(), watermark,
                    wm.model_version);
      const uint64_t now_seq = store->BatchSeq();
      if (now_seq < watermark) {
        // The state is older than the model: replaced, lost (a new one was created empty) or
        // left half-restored by a stopped rollback. Ingest would hand out ids again that the
        // model's rows already mean, and its next checkpoint would take this one's name.
        // Not kCorruption: neither is damaged; they are not a pair.
        return Status::FailedPrecondition("the state at " + opt.state.path + " is at batch " +
                                          std::to_string(now_seq) + ", behind the model of " + ckpt.string() +
                                          " (batch " + std::to_string(watermark) + "): restore both with --rollback " +
                                          ckpt.string() + ", or start afresh with an empty learner.checkpoint_dir");
      }
      GSAU_RETURN_IF_ERROR(LoadSessions());
      ResumeRepublish(ckpt);
      const uint64_t users_from = std::min(UsersPublishedThrough(ckpt, watermark), now_seq);
      users_confirmed_seq = opt.rollback_from.empty() ? users_from : 0;
      if (!opt.rollback_from.empty()) {
        // The line rolled back from may have published any user (a restart there marks all of
        // them when its change feed falls short), not only those whose clicks ingest reads again.
        GSAU_RETURN_IF_ERROR(MarkAllUsers("a rollback: every record from the restored model"));
      } else if (now_seq > users_from) {
        if (users_from >= store->OldestChangeSeq()) {
          GSAU_ASSIGN_OR_RETURN(auto changes, store->ChangesSince(users_from));
          GSAU_RETURN_IF_ERROR(MarkUsersOf(changes.edges, users_from));
        } else {
          GSAU_RETURN_IF_ERROR(MarkAllUsers("the change feed no longer reaches back to batch " +
                                            std::to_string(users_from)));
        }
      }
      if (now_seq > watermark) {
        // Batches applied after the checkpoint, from the change feed.
        std::vector<learner::OnlineEvent> catch_up;
        if (watermark >= store->OldestChangeSeq()) {
          GSAU_ASSIGN_OR_RETURN(auto changes, store->ChangesSince(watermark));
          GSAU_ASSIGN_OR_RETURN(catch_up, CatchUpEvents(*store, changes, static_cast<size_t>(opt.learner.max_len),
                                                        clock->NowMs()));
        } else {
          TrainingOrder edges;
          GSAU_RETURN_IF_ERROR(store->ForEachEdge([&](const state::Edge& e) {
                                      edges.Add({e.user, e.item, e.last_ts_ms, {}}, e.last_ts_ms);
                                    }).status());
          catch_up = std::move(edges).Take();
        }
        GSAU_RETURN_IF_ERROR(learner->Observe(catch_up, /*fresh=*/true));
        const auto with_prefix =
            std::count_if(catch_up.begin(), catch_up.end(), [](const auto& e) { return !e.prefix.empty(); });
        GSAU_LOG_INFO("pipeline: learner caught up with state batches {}..{} ({} events, {} with a session prefix); "
                      "it has {} of the state's {} edges",
                      watermark + 1, now_seq, catch_up.size(), with_prefix, learner->Stats().edges,
                      store->Counts().edges);
        watermark = now_seq;
      }
      if (rollback_checkpoint_needed) GSAU_RETURN_IF_ERROR(Checkpoint());
    } else {
      // One scan of the sessions for both the learner's history and the prefixes kept here.
      GSAU_ASSIGN_OR_RETURN(auto history, HistoryEvents(*store, static_cast<size_t>(opt.learner.max_len),
                                                        [&](state::UserId u, std::span<const state::SessionEntry> e) {
                                                          AddSession(u, e);
                                                        }));
      if (!history.empty()) {
        GSAU_RETURN_IF_ERROR(learner->Observe(history, /*fresh=*/false));
        GSAU_LOG_INFO("pipeline: learner starts from the state's history: {} samples", history.size());
      }
      watermark = store->BatchSeq();
      if (watermark > 0) GSAU_RETURN_IF_ERROR(MarkAllUsers("no checkpoint: a new model"));
      if (!opt.init_offline.empty()) {
        GSAU_RETURN_IF_ERROR(WarmStart());
      } else if (!history.empty()) {
        // Those records come from the untrained model; once it has trained over the history (in
        // steps of replay, or of fresh clicks and replay), every user goes out again: a user who
        // does not click again would otherwise keep a vector of the step-0 model beside trained
        // item vectors.
        const auto batch = static_cast<size_t>(std::max<int64_t>(opt.learner.batch_size, 1));
        republish_users_at_step = static_cast<int64_t>((history.size() + batch - 1) / batch);
        republish_step = republish_users_at_step;
        republish_outstanding = true;
      }
    }
    // The catch-up's or history's new items; a failure here is the loop's to retry, as there.
    if (Status s = learner->RefreshServing(); !s.ok()) ServingFailed(s.ToString());
    // The popularity baseline starts from every click the state holds (the learner's view).
    std::vector<int64_t> item_clicks(static_cast<size_t>(store->Counts().items), 0);
    for (size_t i = 0; i < item_clicks.size(); ++i) {
      item_clicks[i] = static_cast<int64_t>(store->ItemStats(static_cast<state::ItemId>(i)).clicks);
    }
    popularity = learner::PopularityRanking(item_clicks);
    unreadable_checkpoints = std::move(passed_over);  // set aside once the start has succeeded
    return Status::Ok();
  }

  // The offline run's weights; state ids matched to the offline dataset's ids by name.
  Status WarmStart() {
    learner::SplitOptions so;
    so.max_len = static_cast<int32_t>(opt.learner.max_len);
    GSAU_ASSIGN_OR_RETURN(auto d, learner::LoadLeaveOneOut(opt.init_data, opt.init_times, so));
    auto rows = [](const std::vector<std::string>& names, uint64_t n,
                   const std::function<Result<std::string>(uint32_t)>& name_of, int64_t* matched) {
      std::unordered_map<std::string_view, int64_t> offline;
      for (size_t k = 1; k < names.size(); ++k) offline.emplace(names[k], static_cast<int64_t>(k));
      std::vector<int64_t> out(n, -1);
      for (uint64_t id = 0; id < n; ++id) {
        auto name = name_of(static_cast<uint32_t>(id));
        if (!name.ok()) continue;
        if (auto it = offline.find(*name); it != offline.end()) {
          out[id] = it->second;
          ++*matched;
        }
      }
      return out;
    };
    const auto counts = store->Counts();
    int64_t users_matched = 0, items_matched = 0;
    const auto user_rows = rows(d.user_names, counts.users, [&](uint32_t u) { return store->UserExternalId(u); },
                                &users_matched);
    const auto item_rows = rows(d.item_names, counts.items, [&](uint32_t i) { return store->ItemExternalId(i); },
                                &items_matched);
    GSAU_RETURN_IF_ERROR(learner->InitFromOffline(opt.init_offline, user_rows, item_rows));
    GSAU_LOG_INFO("pipeline: warm start from {}: {} of {} users and {} of {} items matched by id in {}",
                  opt.init_offline, users_matched, counts.users, items_matched, counts.items, opt.init_data);
    return Status::Ok();
  }

  // ------------------------------------------------------------------------------------
  // Learner thread

  // A serving snapshot that could not be taken (out of memory): not the learner's failure, the
  // previous snapshot serves on until the next step or round takes one. (A round whose step's
  // snapshot failed usually fails its refresh too: two counts.)
  void ServingFailed(const std::string& why) {
    m->serving_errors.Increment();
    if (const int64_t n = serving_log.Due()) {
      GSAU_LOG_WARN("pipeline: {} at learner step {}; the previous snapshot serves on ({} since the last line)", why,
                    learner->Stats().steps, n);
    }
  }

  void Prequential(const std::vector<learner::OnlineEvent>& events, int* budget) {
    if (*budget <= 0) return;
    // Ranked by the learner (below), so a prefix counts when the learner knows one of its items
    // (the serving snapshot may not have the items of the batches observed since the last step).
    const int64_t known = learner->Stats().items;
    std::vector<std::vector<uint32_t>> prefixes;
    std::vector<uint32_t> targets;
    for (const auto& e : events) {
      if (static_cast<int>(prefixes.size()) >= *budget) break;
      if (!learner::CanEmbed(e.prefix, known)) continue;
      prefixes.push_back(e.prefix);
      targets.push_back(e.item);
    }
    if (prefixes.empty()) return;
    *budget -= static_cast<int>(prefixes.size());
    // On the learner itself (this thread holds it anyway), not the serving snapshot, whose lock
    // the user publisher needs: a batch of ranks there delayed user records by up to a second.
    auto ranks = learner->ScoreRanks(prefixes, targets);
    if (!ranks.ok()) {
      m->prequential_errors.Increment();  // the online figures skip these clicks: visibly
      GSAU_LOG_WARN("pipeline: prequential ranking: {}", ranks.status().ToString());
      return;  // the popularity baseline skips them too: both figures over the same clicks
    }
    PopularityRanks(targets, known);
    for (int64_t r : *ranks) {
      preq_total.Add(r);
      preq_window.Add(r);
    }
    m->preq_count.Increment(static_cast<double>(ranks->size()));
  }

  // Ranks of the targets by the clicks before this group of events (the model is evaluated on
  // the same footing: its state before training on them). A target the learner has no row for
  // (`known` items) is a miss for the model (kMissRank) and so for the baseline too: ranked among
  // the unclicked, it was a hit at @20 while fewer than 20 items had clicks (a cold start, the
  // demo's first seconds), and the baseline's figures ran ahead of the model's on clicks
  // neither could rank.
  void PopularityRanks(std::span<const uint32_t> targets, int64_t known) {
    for (const uint32_t t : targets) {
      const int64_t rank = static_cast<int64_t>(t) >= known ? learner::kMissRank : popularity.Rank(t, popularity_ties);
      pop_total.Add(rank);
      pop_window.Add(rank);
    }
  }

  void CountClicks(std::span<const learner::OnlineEvent> events) {
    for (const auto& e : events) popularity.Click(e.item);
  }

  void TakeBatch(const ingest::AppliedBatch& b, std::vector<learner::OnlineEvent>* out) {
    const auto max_len = static_cast<size_t>(opt.learner.max_len);
    for (const auto& e : b.events) {
      auto& s = sessions[e.user];
      learner::OnlineEvent ev;
      ev.user = e.user;
      ev.item = e.item;
      ev.ts_ms = e.ts_ms;
      ev.prefix.assign(s.begin(), s.end());
      out->push_back(std::move(ev));
      s.Push(e.item, max_len);
    }
    watermark = std::max(watermark, b.batch_seq);
  }

  // Counts a publishing failure of the pipeline's own (the learner, the state), kind "publish";
  // the publisher counts its own (kind "produce"): one failure, one count.
  template <typename T>
  T Counted(T result) {
    if (!result.ok()) m->publish_errors.Increment();
    return result;
  }

  Status PublishItems() {
    GSAU_ASSIGN_OR_RETURN(auto changed, Counted(learner->TakeChangedItems()));
    const auto dim = static_cast<size_t>(opt.learner.dim);
    for (size_t k = 0; k < changed.ids.size(); ++k) {
      unpublished_items[changed.ids[k]].assign(changed.embeddings.begin() + static_cast<long>(k * dim),
                                               changed.embeddings.begin() + static_cast<long>((k + 1) * dim));
    }
    if (unpublished_items.empty()) return Status::Ok();
    // In groups, as users are: pub_mu is let go between them (user records go out meanwhile; a
    // restart's whole catalogue held it in one call), and a group produced leaves
    // unpublished_items, so a failure part-way (a full queue) does not produce it all again at
    // the next interval (a large catalogue never got through).
    constexpr size_t kItemsPerPublish = 1024;
    const int64_t now = clock->NowMs();
    std::vector<EmbeddingRecord> recs;
    for (auto it = unpublished_items.begin(); it != unpublished_items.end();) {
      const auto& [item, row] = *it;
      auto id = store->ItemExternalId(item);
      if (!id.ok() && id.status().code() != StatusCode::kNotFound) return Counted(id.status());  // retried
      if (!id.ok()) {
        // Not a passing failure (the id has no name in the state): retrying would block every
        // other item's record at each interval.
        GSAU_LOG_ERROR("pipeline: item {} not published: {}", item, id.status().ToString());
        it = unpublished_items.erase(it);
        continue;
      }
      EmbeddingRecord r;
      r.kind = EntityKind::kItem;
      r.id = std::move(id).value();
      r.event_time_ms = now;
      r.embedding = row;
      recs.push_back(std::move(r));
      ++it;
      if (recs.size() == kItemsPerPublish) GSAU_RETURN_IF_ERROR(PublishItemGroup(recs, it));
    }
    // The last group, also when the last item was dropped above (it once waited an interval).
    return recs.empty() ? Status::Ok() : PublishItemGroup(recs, unpublished_items.end());
  }

  // Publishes `recs`, the rows of unpublished_items before `until` (all that is left there, in
  // order), and drops them. On failure the rows not handed over stay for the next interval: an
  // item that has stopped moving would otherwise never be published with its last row.
  Status PublishItemGroup(std::vector<EmbeddingRecord>& recs, std::map<uint32_t, std::vector<float>>::iterator until) {
    size_t handed_over = 0;
    const Status s = PublishVersioned(recs, &handed_over);
    if (!s.ok()) until = std::next(unpublished_items.begin(), static_cast<std::ptrdiff_t>(handed_over));
    unpublished_items.erase(unpublished_items.begin(), until);
    {
      std::lock_guard<std::mutex> lock(status_mu);
      st.items_published += std::count_if(recs.begin(), recs.begin() + static_cast<std::ptrdiff_t>(handed_over),
                                          Publishable);
    }
    recs.clear();
    return s;
  }

  // Stamps `recs` with the next model_version and publishes them, both under pub_mu: the user
  // and item paths run on different threads, and a version taken outside the lock could reach
  // the publisher after a newer one (it refuses it: records were lost that way). On failure,
  // `*handed_over` of them (from the first) went out all the same (KafkaPublisher::Publish).
  Status PublishVersioned(std::vector<EmbeddingRecord>& recs, size_t* handed_over) {
    std::lock_guard<std::mutex> lock(pub_mu);
    const int64_t v = NextVersion();
    for (auto& r : recs) r.model_version = v;
    const Status s = pub->Publish(recs, handed_over);
    if (*handed_over > 0) {
      std::lock_guard<std::mutex> status_lock(status_mu);
      st.model_version = std::max(st.model_version, v);
    }
    return s;
  }

  // Counted in gsau_errors_total{stage="learner",kind="checkpoint"} on failure, with nothing
  // half-written left behind; the previous checkpoints stay as they were.
  Status Checkpoint() {
    const auto t0 = SteadyClock::now();
    std::error_code ec;
    const fs::path final_dir = CheckpointPath(opt.checkpoint_dir, watermark);
    const fs::path tmp = CheckpointBuildPath(final_dir.string());
    const int64_t steps = learner->Stats().steps;
    const bool republish = republish_outstanding.load();
    uint64_t through = 0;  // as written: the user thread may confirm more while it is
    if (Status s = WriteCheckpoint(tmp, final_dir, republish, &through); !s.ok()) {
      fs::remove_all(tmp, ec);  // a full disk's space back, at least what it took
      m->checkpoint_errors.Increment();
      return s.WithContext("checkpoint " + final_dir.string());
    }
    last_checkpoint_dir = final_dir;
    checkpointed_batch = watermark;
    checkpointed_steps = steps;
    checkpointed_through = through;
    checkpointed_republish = republish;
    PruneCheckpoints(opt.checkpoint_dir, opt.checkpoint_keep);
    m->checkpoints.Increment();
    m->checkpoint_seconds.Observe(SecondsSince(t0));
    {
      std::lock_guard<std::mutex> s(status_mu);
      ++st.checkpoints;
    }
    GSAU_LOG_INFO("pipeline: checkpoint {} ({:.2f} s)", final_dir.string(), SecondsSince(t0));
    return Status::Ok();
  }

  // *through: the users_published_through it wrote.
  Status WriteCheckpoint(const fs::path& tmp, const fs::path& final_dir, bool republish, uint64_t* through) {
    std::error_code ec;
    fs::create_directories(opt.checkpoint_dir, ec);
    if (ec) return Status::IoError("creating " + opt.checkpoint_dir + ": " + ec.message());
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) return Status::IoError("creating " + tmp.string() + ": " + ec.message());
    GSAU_RETURN_IF_ERROR(learner->Save((tmp / "model.pt").string(), {watermark, version.load()}));
    GSAU_RETURN_IF_ERROR(store->CreateCheckpoint((tmp / "state").string()).status());
    GSAU_RETURN_IF_ERROR(WriteUsersPublishedThrough(tmp / kUsersPublishedThrough, through));
    if (republish) {
      {
        std::ofstream at(tmp / kUsersRepublishAtStep);
        at << republish_step << '\n';
        if (!at.flush()) return Status::IoError("writing " + (tmp / kUsersRepublishAtStep).string());
      }
      GSAU_RETURN_IF_ERROR(SyncPath((tmp / kUsersRepublishAtStep).string()));
    }
    // The learner syncs model.pt and RocksDB the state checkpoint; the rest is ours to sync.
    GSAU_RETURN_IF_ERROR(SyncPath(tmp.string()));
    return InstallCheckpoint(tmp.string(), final_dir.string());
  }

  // The state batch up to which every user's record has been delivered, as far as the model goes.
  uint64_t UsersPublishedThroughNow() const { return std::min<uint64_t>(users_confirmed_seq.load(), watermark); }

  // Whether the newest checkpoint this process wrote holds what a new one would: the same
  // model (steps, watermark), users_published_through and republish. An idle pipeline then
  // writes none.
  bool CheckpointCurrent() {
    return !last_checkpoint_dir.empty() && watermark == checkpointed_batch &&
           learner->Stats().steps == checkpointed_steps && UsersPublishedThroughNow() == checkpointed_through &&
           republish_outstanding.load() == checkpointed_republish;
  }

  // Writes users_published_through (never past the checkpoint's own batch) to `file`, synced;
  // *written: the value. (Read before the write and recorded as the checkpoint's, a value the
  // user thread had confirmed meanwhile made the file newer than the record, and the next idle
  // check wrote the same model again.)
  Status WriteUsersPublishedThrough(const fs::path& file, uint64_t* written) {
    *written = UsersPublishedThroughNow();
    {
      std::ofstream through(file);
      through << *written << '\n';
      if (!through.flush()) return Status::IoError("writing " + file.string());
    }
    return SyncPath(file.string());
  }

  // Rewrites the newest checkpoint's users_published_through (the stop's, after the publisher's
  // flush confirmed more): a new file renamed over the old, so a crash leaves one or the other;
  // and drops its republish once that is delivered.
  Status RecordUsersPublishedThrough() {
    const fs::path file = last_checkpoint_dir / kUsersPublishedThrough;
    const fs::path tmp = last_checkpoint_dir / (std::string(kUsersPublishedThrough) + std::string(kTmpSuffix));
    uint64_t through = 0;
    GSAU_RETURN_IF_ERROR(WriteUsersPublishedThrough(tmp, &through));
    std::error_code ec;
    fs::rename(tmp, file, ec);
    if (ec) return Status::IoError("renaming " + tmp.string() + ": " + ec.message());
    checkpointed_through = through;
    if (!republish_outstanding) {
      fs::remove(last_checkpoint_dir / kUsersRepublishAtStep, ec);
      if (ec) return Status::IoError("removing " + (last_checkpoint_dir / kUsersRepublishAtStep).string() + ": " +
                                     ec.message());
    }
    return SyncPath(last_checkpoint_dir.string());
  }

  void FlushPrequential(int64_t events_seen) {
    const auto& w = preq_window;
    // A window without clicks has no figures (its rates read 0): the gauges keep the last ones,
    // else every quiet spell would look like a collapsed model.
    if (w.count > 0) {
      m->recall10.Set(w.HitRate10());
      m->recall20.Set(w.HitRate20());
      m->ndcg10.Set(w.Ndcg10());
      m->ndcg20.Set(w.Ndcg20());
    }
    if (pop_window.count > 0) {
      m->pop_recall10.Set(pop_window.HitRate10());
      m->pop_recall20.Set(pop_window.HitRate20());
      m->pop_ndcg10.Set(pop_window.Ndcg10());
      m->pop_ndcg20.Set(pop_window.Ndcg20());
    }
    {
      std::lock_guard<std::mutex> s(status_mu);
      if (w.count > 0) {
        st.window_recall20 = w.HitRate20();
        st.window_popular_recall20 = pop_window.HitRate20();
      }
    }
    if (preq_csv.is_open() && w.count > 0) {
      preq_csv << clock->NowMs() << ',' << events_seen << ',' << w.count << ',' << w.HitRate10() << ','
               << w.HitRate20() << ',' << w.Ndcg10() << ',' << w.Ndcg20() << ',' << preq_total.count << ','
               << preq_total.HitRate20() << ',' << preq_total.Ndcg20() << ',' << pop_window.HitRate20() << ','
               << pop_window.Ndcg20() << '\n';
      preq_csv.flush();
    }
    preq_window = {};
    pop_window = {};
  }

  // After a failed step (`failures` in a row, this one included), which made no update: its
  // fresh samples are dropped, so that the next step does not take them again, and training
  // goes on after a pause (100 ms, doubling with each failure in a row up to 3.2 s: a passing
  // shortage, of device memory say, gets time to pass). Past max_failed_steps in a row, or when
  // the step failed part-way through its update, the error is returned instead (the pipeline
  // stops, its samples still queued: a restart resumes from the last checkpoint). Stopping at
  // once had turned one bad batch into a stopped pipeline, and a restart replayed the same
  // samples.
  Status SkipFailedStep(const Status& failure, int failures, SteadyClock::time_point* retry_after) {
    m->step_errors.Increment();
    if (failures > opt.max_failed_steps) {
      learner_failure_counted = true;  // as kind="step" just now, not again as "internal"
      return Status(failure.code(), failure.message() + " (" + std::to_string(failures) +
                                        " failed steps in a row; learner.max_failed_steps is " +
                                        std::to_string(opt.max_failed_steps) + ")");
    }
    auto skipped = learner->SkipFailedBatch();
    if (!skipped.ok()) {
      learner_failure_counted = true;
      return Status(skipped.status().code(), failure.message() + "; " + skipped.status().message());
    }
    m->skipped.Increment(static_cast<double>(*skipped));
    const auto pause = std::chrono::milliseconds(100 << std::min(failures - 1, 5));
    *retry_after = SteadyClock::now() + pause;
    if (const int64_t n = step_log.Due()) {
      GSAU_LOG_ERROR("pipeline: {}; its {} fresh samples skipped, training goes on in {} ms ({} in a row; more than "
                     "learner.max_failed_steps={} stop the pipeline; {} failed steps since the last line)",
                     failure.ToString(), *skipped, pause.count(), failures, opt.max_failed_steps, n);
    }
    return Status::Ok();
  }

  // Asks the user thread to publish every user again (with any other reason pending: one pass);
  // the scheduled refresh counts from here, and the idle one from its own (kRefreshUsers: the
  // learner went idle).
  void RefreshUsers(UsersRequest why) {
    users_request.fetch_or(why);
    users_refreshed_at = SteadyClock::now();
    if (why == kRefreshUsers) {
      idle_refreshed_at = users_refreshed_at;
      replay_steps_since_users = 0;
    }
  }

  // Runs until `stop`; returns early on the learner's own failure (an error), or when the
  // publisher cannot go on (Ok, with item_publish_status set).
  Status LearnerLoop(const std::atomic<bool>& stop) {
    const auto loop_start = SteadyClock::now();
    auto last_ckpt = SteadyClock::now();
    auto last_items = SteadyClock::now();
    auto last_preq = SteadyClock::now();
    auto last_slow_log = SteadyClock::now() - std::chrono::minutes(1);
    int64_t events_seen = 0;
    // Without fresh clicks every step is replay alone: it moves item rows (republished) while
    // users' records, refreshed by clicks only, stay as they were, and it keeps a core busy. It
    // goes on for idle_train_s after the last fresh sample (consolidating what came last), then
    // the learner waits for clicks.
    // Or, sooner, once replay alone has gone kIdleReplayPasses times over the samples it draws
    // from: a nearly empty state (a new deployment's first clicks) kept a core busy for
    // idle_train_s on a handful of samples. An offline run converges in fewer epochs (GSAU.md:
    // Toys stops at ~170), so a state of any size trains on as before.
    static constexpr int64_t kIdleReplayPasses = 200;
    auto last_fresh = SteadyClock::now();
    int64_t replayed_alone = 0;  // samples replay-only steps trained on since the last fresh one
    bool idle = false;
    const auto trainable = [&](const learner::OnlineStats& s) {
      if (s.pending > 0) {
        last_fresh = SteadyClock::now();
        replayed_alone = 0;
      }
      // The reservoir and the recent window overlap (trained samples go to both): the larger.
      const int64_t pool = std::max<int64_t>({1, s.replay, s.recent});
      const bool passes_left = replayed_alone < kIdleReplayPasses * pool;
      const bool replay_only_allowed =
          s.pending > 0 || (SecondsSince(last_fresh) < opt.idle_train_s && passes_left);
      if (idle == replay_only_allowed) {
        idle = !replay_only_allowed;
        m->idle.Set(idle ? 1 : 0);
        if (idle && !passes_left) {
          GSAU_LOG_INFO("pipeline: replay alone has gone {} times over its {} samples since the last fresh click; the "
                        "learner waits for clicks",
                        kIdleReplayPasses, pool);
        } else if (idle) {
          GSAU_LOG_INFO("pipeline: no fresh click for {} s; the learner waits for clicks (learner.idle_train_s)",
                        opt.idle_train_s);
        }
        if (idle) {
          // Replay alone moved the model (its item records went out) while users' records,
          // refreshed by clicks, stayed: the model stops here, so every user goes out again.
          // At most once an hour (a click every few minutes would otherwise republish every user
          // after each idle_train_s of replay): its own clock, as the scheduled refresh under
          // steady clicks would otherwise hold it off for good.
          const bool hour = !idle_refreshed_at || SecondsSince(*idle_refreshed_at) >= 3600;
          if (opt.idle_train_s > 0 && replay_steps_since_users > 0 && hour) RefreshUsers(kRefreshUsers);
        } else {
          GSAU_LOG_INFO("pipeline: fresh clicks; the learner trains again");
        }
      }
      return s.pending + s.replay >= opt.min_step_samples && replay_only_allowed;
    };
    bool can_train = trainable(learner->Stats());
    int64_t shed_counted = learner->Stats().shed;  // the learner's count, as far as exported
    int failed_steps = 0;  // in a row
    auto retry_after = SteadyClock::now();  // after a failed step, no step before then
    while (!stop) {
      // Wait for data only when there is nothing to train on. Each applied batch is ranked,
      // then observed, on its own: merged, a burst's clicks were all ranked before any of it
      // was observed, so a cold learner could rank none of them (prefix items unknown).
      int preq_budget = opt.prequential_max_per_batch;  // clicks ranked this round, at most
      size_t taken = 0;
      // A round takes what is queued up to 20,000 events or half a second of taking in, then
      // steps, refreshes serving, publishes and hears a stop: with a slow Observe (a wide model)
      // a round of 20,000 took 11 s, and no user was published meanwhile.
      if (opt.learner_round_hook) opt.learner_round_hook();
      const auto round_start = SteadyClock::now();
      auto b = queue.Pop(can_train ? 0 : 100);
      while (b) {
        std::vector<learner::OnlineEvent> events;
        TakeBatch(*b, &events);
        Prequential(events, &preq_budget);
        CountClicks(events);
        GSAU_RETURN_IF_ERROR(learner->Observe(events));
        events_seen += static_cast<int64_t>(events.size());
        m->events_observed.Increment(static_cast<double>(events.size()));
        taken += events.size();
        if (taken >= 20000 || SecondsSince(round_start) >= 0.5) break;
        b = queue.Pop(0);
      }
      m->queued.Set(static_cast<double>(queue.queued_events()));
      can_train = trainable(learner->Stats()) && SteadyClock::now() >= retry_after;
      Result<learner::OnlineStepResult> stepped = learner::OnlineStepResult{};
      if (can_train) stepped = learner->Step();
      if (!stepped.ok()) {
        GSAU_RETURN_IF_ERROR(SkipFailedStep(stepped.status(), ++failed_steps, &retry_after));
      } else if (const auto& r = *stepped; r.trained) {
        failed_steps = 0;
        if (!r.serving_error.empty()) ServingFailed(r.serving_error);
        if (r.fresh == 0) {
          ++replay_steps_since_users;
          replayed_alone += r.replay;
        }
        // Under steady clicks the learner never goes idle: the users who stop clicking would
        // keep vectors of an ever older model beside item records that follow it.
        if (opt.user_refresh_s > 0 && SecondsSince(users_refreshed_at.value_or(loop_start)) >= opt.user_refresh_s) {
          RefreshUsers(kScheduledRefresh);
        }
        if (republish_users_at_step > 0 && learner->Stats().steps >= republish_users_at_step) {
          republish_users_at_step = 0;
          users_request.fetch_or(kRepublishUsers);
        }
        m->steps.Increment();
        m->fresh.Increment(static_cast<double>(r.fresh));
        m->replay.Increment(static_cast<double>(r.replay));
        m->step_seconds.Observe(r.total_s);
        if (r.total_s >= 1.0 && SecondsSince(last_slow_log) >= 30) {
          GSAU_LOG_WARN(
              "pipeline: slow learner step {:.2f} s: batch {:.2f}, cache refresh {:.2f}, graph {:.2f} + backward "
              "{:.2f}, sequence {:.2f} + backward {:.2f}, optimiser {:.2f}, serving snapshot {:.2f}; {} samples, {} "
              "propagated edges",
              r.total_s, r.batch_s, r.refresh_s, r.graph_s, r.graph_backward_s, r.seq_s, r.seq_backward_s,
              r.optimizer_s, r.snapshot_s, r.fresh + r.replay, r.propagated_edges);
          last_slow_log = SteadyClock::now();
        }
        m->loss.Set(r.loss);
        m->graph_align.Set(r.graph_align);
        m->graph_unif.Set(r.graph_unif);
        // A step without sequence samples has no sequence terms: 0 would read as a perfect loss.
        if (r.sequence_samples > 0) {
          m->seq_align.Set(r.seq_align);
          m->seq_unif.Set(r.seq_unif);
        }
        std::lock_guard<std::mutex> s(status_mu);
        st.last_step_s = r.total_s;
        st.last_loss = r.loss;
      }
      // Without a step (nothing to train, a pause after a failed one) the clicks' new items reach
      // serving here, once per round however many batches came in.
      if (Status s = learner->RefreshServing(); !s.ok()) ServingFailed(s.ToString());
      const auto after = learner->Stats();
      m->user_rows.Set(static_cast<double>(after.users));
      m->item_rows.Set(static_cast<double>(after.items));
      m->pending.Set(static_cast<double>(after.pending));
      if (after.shed > shed_counted) m->shed.Increment(static_cast<double>(after.shed - shed_counted));
      shed_counted = after.shed;
      {
        std::lock_guard<std::mutex> s(status_mu);
        st.steps = after.steps;
        st.users = after.users;
        st.items = after.items;
        st.edges = after.edges;
        st.prequential_count = preq_total.count;
        st.recall20 = preq_total.HitRate20();
        st.ndcg20 = preq_total.Ndcg20();
        st.popular_recall20 = pop_total.HitRate20();
        st.queued = queue.queued_events();
      }
      if (SecondsSince(last_items) * 1000 >= opt.item_interval_ms) {
        if (Status s = PublishItems(); !s.ok()) {
          if (const int64_t n = items_log.Due()) GSAU_LOG_WARN("pipeline: publishing items ({}x): {}", n, s.ToString());
          // The publisher cannot go on (a fatal producer error): stop, so that a restart gets a
          // new producer and publishes every item again. Not the learner's failure: Run still
          // writes the last checkpoint (whichever thread notices first).
          if (pub->failed_fatally()) {
            item_publish_status = InStage("publisher", s);
            return Status::Ok();
          }
        }
        last_items = SteadyClock::now();
      }
      if (SecondsSince(last_preq) >= opt.prequential_interval_s) {
        FlushPrequential(events_seen);
        last_preq = SteadyClock::now();
      }
      // Early when half the state's change feed has gone by since the last checkpoint: a restart
      // catches up through the feed from there (ingest commits small batches: from ~600 clicks/s
      // the default 100,000 went by within the 300 s interval, and a restart then retrained on
      // the whole graph). Not more often than every 10 s, should checkpoints fail.
      const bool feed_half_gone = watermark >= checkpointed_batch + opt.state.changelog_retention_batches / 2 &&
                                  SecondsSince(last_ckpt) >= std::min(opt.checkpoint_interval_s, 10);
      if (SecondsSince(last_ckpt) >= opt.checkpoint_interval_s || feed_half_gone) {
        // Nothing new since the last one (an idle pipeline): no copy of the same model. A failed
        // checkpoint (a full disk) is not the learner's failure: the state holds every applied
        // event and the previous checkpoint stands; the next interval tries again. Stopping
        // instead made a container restart into the same full disk, again and again.
        if (!CheckpointCurrent()) {
          if (Status s = Checkpoint(); !s.ok()) {
            GSAU_LOG_ERROR("pipeline: {}; trying again at the next interval ({} s, or 10 s while the state's "
                           "change feed runs out)",
                           s.ToString(), opt.checkpoint_interval_s);
          }
        }
        last_ckpt = SteadyClock::now();
      }
    }
    // Take in what ingest applied before it stopped, so the last checkpoint's watermark covers it.
    std::vector<learner::OnlineEvent> rest;
    while (auto b = queue.Pop(0)) TakeBatch(*b, &rest);
    if (!rest.empty()) GSAU_RETURN_IF_ERROR(learner->Observe(rest));
    if (Status s = learner->RefreshServing(); !s.ok()) ServingFailed(s.ToString());  // the last users' records
    m->events_observed.Increment(static_cast<double>(rest.size()));
    FlushPrequential(events_seen);
    // The items that moved since the last interval go out in Run, after the last checkpoint.
    return Status::Ok();
  }

  // ------------------------------------------------------------------------------------
  // User publisher thread

  // Users embedded by one forward pass: a restart can make every user of the state due at once,
  // and one pass over all of them would need memory in proportion (tens of GB at a million).
  static constexpr size_t kUsersPerForward = 1024;
  // Users marked without a click embedded a flush: one forward pass, so that a user who clicks
  // while every user goes out again waits for one such group at most (an operator measured click
  // freshness p50 0.70 s, p99 4.8 s during refreshes of 8,192 a flush, 36 ms / 129 ms outside).
  static constexpr size_t kMarkedUsersPerFlush = kUsersPerForward;

  // A new item gets its row when the learner takes the click in, behind any backlog of its queue,
  // and reaches serving at the end of that round, after its step: a user's record waits this
  // long for it (PipelineOptions::new_item_wait_ms).
  int64_t NewItemWaitNs() const { return int64_t{opt.new_item_wait_ms} * 1'000'000; }

  // Marks due again the users whose record went out without an item the snapshot now knows. A
  // scan of those waiting, when the snapshot has new items: as many as clicked a new item while
  // the learner was over new_item_wait_ms behind.
  void RemarkUsersPublishedWithout(DueUsers& due) {
    if (published_without.empty()) return;
    const int64_t items = learner->Serving()->items();
    if (items == published_without_items) return;
    published_without_items = items;
    for (auto& [user, w] : published_without) {
      if (!w.remarked && static_cast<int64_t>(w.item) < items) {
        due.Merge(user, DueUser{0, kNoClickSeq, false});
        w.remarked = true;
      }
    }
  }

  // `user`'s record went out from `session` (first_seq: what it was due for) with or without
  // every item of it.
  void NotePublished(const learner::ServingModel& serving, state::UserId user, const std::vector<uint32_t>& session,
                     uint64_t first_seq) {
    auto it = published_without.find(user);
    if (serving.KnowsAll(session)) {
      if (it != published_without.end()) ForgetPublishedWithout(it);
      return;
    }
    const uint32_t item = *std::max_element(session.begin(), session.end());
    if (it != published_without.end()) {
      // Its older click is still not reflected when its item is still unknown.
      if (static_cast<int64_t>(it->second.item) >= serving.items()) {
        first_seq = std::min(first_seq, it->second.first_seq);
      }
      ForgetPublishedWithout(it);
    }
    published_without.emplace(user, PublishedWithout{item, first_seq});
    published_without_held.Add(first_seq);
  }

  void ForgetPublishedWithout(state::UserId user) {
    if (auto it = published_without.find(user); it != published_without.end()) ForgetPublishedWithout(it);
  }

  std::unordered_map<state::UserId, PublishedWithout>::iterator ForgetPublishedWithout(
      std::unordered_map<state::UserId, PublishedWithout>::iterator it) {
    published_without_held.Remove(it->second.first_seq);
    return published_without.erase(it);
  }

  // Whether `user` is due again for an item its last record left out.
  bool Remarked(state::UserId user) const {
    const auto it = published_without.find(user);
    return it != published_without.end() && it->second.remarked;
  }
  // ... and owes a click's effect (holds its batch), not a refresh's.
  bool RemarkedForAClick(state::UserId user) const {
    const auto it = published_without.find(user);
    return it != published_without.end() && it->second.remarked && it->second.first_seq != kNoClickSeq;
  }

  // A mark without a click that cannot go out (a refresh's with its session unreadable, or no
  // item of it known): dropped, as the next refresh marks the user again, and with it a
  // re-mark's hold (nothing else would release it).
  void DropMark(DueUsers& due, state::UserId user) {
    due.Erase(user);
    if (Remarked(user)) ForgetPublishedWithout(user);
  }

  // The oldest batch of the users due or published without an item (kNoClickSeq: none).
  uint64_t MinUnpublishedSeq(const DueUsers& due) const {
    return std::min(due.MinFirstSeq(), published_without_held.Min());
  }

  // The user publisher's read of a session (the test fault first, when one is set).
  Result<std::vector<state::SessionEntry>> ReadSession(state::UserId u) const {
    if (opt.session_read_fault) GSAU_RETURN_IF_ERROR(opt.session_read_fault(u));
    return store->Session(u);
  }

  // Publishes the due users the serving snapshot can embed, kUsersPerForward at a time, until
  // `stop` (then at most one more group); the others, and on failure those not yet published,
  // stay in `due`.
  Status PublishUsers(DueUsers& due, const std::atomic<bool>& stop) {
    if (due.empty()) return Status::Ok();
    const auto serving = learner->Serving();
    const int64_t now_ns = clock->MonotonicNs();
    std::vector<state::UserId> users;
    std::vector<std::vector<uint32_t>> sessions_now;
    std::vector<DueUser> marks;
    bool stopped = false;
    Status unread;  // the first session that could not be read: returned once the others went out
    // `u` into the next group (*taken) if it can go out now; a full group is published first,
    // and `stopped` set when the stop came meanwhile.
    auto consider = [&](state::UserId u, const DueUser& d, bool* taken) -> Status {
      *taken = false;
      if (users.size() == kUsersPerForward) {
        GSAU_RETURN_IF_ERROR(PublishUserGroup(*serving, users, sessions_now, marks, due));
        users.clear();
        sessions_now.clear();
        marks.clear();
        if (stop) {
          stopped = true;
          return Status::Ok();
        }
      }
      auto waiting = waiting_users.find(u);
      if (waiting != waiting_users.end() && waiting->second.items_seen == serving->items() &&
          now_ns - waiting->second.since_ns < NewItemWaitNs()) {
        return Status::Ok();  // no new item in the snapshot since the last look: no need to read again
      }
      auto read = Counted(ReadSession(u));
      if (!read.ok()) {
        // Not the flush's failure: returned, a session that cannot be read (a damaged entry) held
        // back every user after it, and every flush came round to it again. A refresh's mark
        // alone is dropped (the next refresh tries again); a click's or a start-up's stays due,
        // as does a re-mark for a clicked item its last record left out (owed the click's effect).
        if (unread.ok()) unread = read.status().WithContext("reading the session of user " + std::to_string(u));
        if (!d.clicked && d.first_seq == kNoClickSeq && !RemarkedForAClick(u)) DropMark(due, u);
        return Status::Ok();
      }
      const auto& entries = *read;
      std::vector<uint32_t> s;
      s.reserve(entries.size());
      for (const auto& e : entries) s.push_back(e.item);
      // Embedded without an item of its session, the record would carry the click's time but not
      // its effect, and nothing would publish the user again until the next click. Any item,
      // not only the newest: a new item clicked before an old one, both behind the learner, was
      // left out of a record that went out at once (the newest being known).
      if (!serving->CanEmbed(s)) {
        // A refresh alone (marked by id) owes nothing: kept due, a user no snapshot can embed yet
        // would hold the refresh's next parts back (its click, when it comes, marks it again).
        if (!d.clicked && d.first_seq == kNoClickSeq) DropMark(due, u);
        return Status::Ok();
      }
      if (!serving->KnowsAll(s)) {
        auto& w = waiting_users.try_emplace(u, Waiting{now_ns, 0}).first->second;
        w.items_seen = serving->items();
        if (now_ns - w.since_ns < NewItemWaitNs()) return Status::Ok();
      }
      // The record's event time is the newest click it reflects: of the session, not its last
      // entry (kept in the order applied, which a late click, older in event time, breaks), nor
      // a click's mark alone (the clicks since the last record: a late one took the user's
      // event time back). Marked without a click (a refresh, a start-up), the session's alone.
      DueUser mark = d;
      int64_t newest = entries.front().ts_ms;
      for (const auto& e : entries) newest = std::max(newest, e.ts_ms);
      mark.ts_ms = d.clicked ? std::max(d.ts_ms, newest) : newest;
      users.push_back(u);
      sessions_now.push_back(std::move(s));
      marks.push_back(mark);
      *taken = true;
      return Status::Ok();
    };
    // Those who clicked first (a copy: publishing erases them from `due`).
    std::vector<std::pair<state::UserId, DueUser>> clicked;
    due.ForEachClicked([&](state::UserId u, const DueUser& d) { clicked.emplace_back(u, d); });
    bool taken = false;
    for (const auto& [u, d] : clicked) {
      GSAU_RETURN_IF_ERROR(consider(u, d, &taken));
      if (stopped) return Status::Ok();
    }
    // Then users marked again without a click (start-up, a refresh: up to every user of the
    // state), in turn, at most kMarkedUsersPerFlush a flush, so that a republish of millions
    // does not hold fresh records back (the rest stay due). Counted as taken, not as looked at:
    // users that cannot go out yet (an item not in the model, or waited for) do not use up the
    // flush's share of the others behind them; each is looked at once at most.
    size_t marked = 0;
    for (size_t looked = 0, n = due.marked(); looked < n && marked < kMarkedUsersPerFlush; ++looked) {
      const auto next = due.NextMarked();
      if (!next) break;
      GSAU_RETURN_IF_ERROR(consider(next->first, next->second, &taken));
      if (stopped) return Status::Ok();
      if (taken) ++marked;
    }
    if (!users.empty()) GSAU_RETURN_IF_ERROR(PublishUserGroup(*serving, users, sessions_now, marks, due));
    return unread;
  }

  // Embeds and publishes `users` (their sessions and what made them due alongside); out of
  // `due` only once published: a failure leaves them due at the next flush.
  Status PublishUserGroup(const learner::ServingModel& serving, const std::vector<state::UserId>& users,
                          const std::vector<std::vector<uint32_t>>& sessions_now, const std::vector<DueUser>& marks,
                          DueUsers& due) {
    GSAU_ASSIGN_OR_RETURN(auto rows, Counted(serving.UserEmbeddings(sessions_now)));
    const auto dim = static_cast<size_t>(serving.dim());
    std::vector<EmbeddingRecord> recs;
    std::vector<state::UserId> rec_users;  // whose each of recs is
    std::vector<size_t> rec_groups;        // and its place in `users`
    recs.reserve(users.size());
    for (size_t k = 0; k < users.size(); ++k) {
      auto id = store->UserExternalId(users[k]);
      if (!id.ok() && id.status().code() != StatusCode::kNotFound) return Counted(id.status());  // due again
      if (!id.ok()) {
        // Not a passing failure: kept due, it would block every later confirmation.
        GSAU_LOG_ERROR("pipeline: user {} not published: {}", users[k], id.status().ToString());
        due.Erase(users[k]);
        waiting_users.erase(users[k]);
        ForgetPublishedWithout(users[k]);
        continue;
      }
      EmbeddingRecord r;
      r.kind = EntityKind::kUser;
      r.id = std::move(id).value();
      r.event_time_ms = marks[k].ts_ms;
      r.observe_freshness = marks[k].clicked;
      if (marks[k].clicked && marks[k].oldest_click_ms < marks[k].ts_ms) {
        r.oldest_event_time_ms = marks[k].oldest_click_ms;
      }
      r.embedding.assign(rows.begin() + static_cast<long>(k * dim), rows.begin() + static_cast<long>((k + 1) * dim));
      recs.push_back(std::move(r));
      rec_users.push_back(users[k]);
      rec_groups.push_back(k);
    }
    // Those handed over are no longer due, also when a full queue refused the rest: produced
    // again at the next flush, they went out twice.
    size_t handed_over = 0;
    const Status s = PublishVersioned(recs, &handed_over);
    for (size_t k = 0; k < handed_over; ++k) {
      due.Erase(rec_users[k]);
      waiting_users.erase(rec_users[k]);
      NotePublished(serving, rec_users[k], sessions_now[rec_groups[k]], marks[rec_groups[k]].first_seq);
    }
    std::lock_guard<std::mutex> lock(status_mu);
    st.users_published += std::count_if(recs.begin(), recs.begin() + static_cast<std::ptrdiff_t>(handed_over),
                                        Publishable);
    return s;
  }

  // Runs until `stop`; returns early only when the publisher cannot go on (a fatal producer
  // error). What is still due then is not confirmed, so that the restart publishes it again.
  Status UserLoop(const std::atomic<bool>& stop) {
    DueUsers due;
    // (state batch, delivery mark): every user of the batches up to it had been produced when
    // the mark was taken; once the mark is delivered, checkpoints may say so. Oldest first.
    std::deque<std::pair<uint64_t, publisher::KafkaPublisher::DeliveryMark>> marks;
    constexpr size_t kMaxMarks = 64;  // the newest kept while nothing is delivered (a broker away)
    auto last_confirm = SteadyClock::now();
    auto flush = [&]() -> Status {
      if (SecondsSince(last_confirm) >= 1.0) {  // at most once a second, without waiting
        last_confirm = SteadyClock::now();
        // The last flush produced every user of the batches up to users_taken_seq but those it
        // left due (waiting for a new item, or failed) or published without a new item, whose
        // clicks begin at their first_seq.
        const uint64_t produced_through =
            std::min(users_taken_seq, std::max<uint64_t>(MinUnpublishedSeq(due), 1) - 1);
        std::lock_guard<std::mutex> lock(pub_mu);
        while (!marks.empty()) {
          const auto state = pub->Check(marks.front().second);
          if (state == publisher::KafkaPublisher::MarkState::kPending) break;
          if (state == publisher::KafkaPublisher::MarkState::kDelivered) {
            users_confirmed_seq = std::max(users_confirmed_seq.load(), marks.front().first);
          }
          marks.pop_front();
        }
        if (produced_through > std::max(users_confirmed_seq.load(), marks.empty() ? 0 : marks.back().first)) {
          if (auto mark = pub->Mark(EntityKind::kUser)) marks.emplace_back(produced_through, *mark);
          if (marks.size() > kMaxMarks) marks.pop_front();
        }
      }
      TakeUsersRequest();
      uint64_t through = 0;
      for (auto& [u, d] : dirty.Take(&through)) {
        due.Merge(u, d);
        // A new click: look at the session again (its wait, if any, goes on from where it was).
        if (auto w = waiting_users.find(u); w != waiting_users.end()) w->second.items_seen = -1;
      }
      // The stop's last flush too: the learner has taken in what ingest applied.
      RemarkUsersPublishedWithout(due);
      if (!stop) ContinueRefresh(due);  // the stop's last flush publishes no more than it has
      users_taken_seq = std::max(users_taken_seq, through);
      const Status published = PublishUsers(due, stop);
      const auto users = static_cast<size_t>(store->Counts().users);
      m->users_due.Set(static_cast<double>(due.size() + (refresh ? refresh->pass.Left(users) : 0)));
      if (!published.ok()) {
        if (const int64_t n = users_log.Due()) {
          GSAU_LOG_WARN("pipeline: publishing users ({}x): {}", n, published.ToString());
        }
        if (pub->failed_fatally()) return published;
      }
      // Records whose delivery failed go out again from here too, when nothing else does.
      std::lock_guard<std::mutex> lock(pub_mu);
      if (Status s = pub->Publish({}); !s.ok()) {
        if (const int64_t n = redelivery_log.Due()) GSAU_LOG_WARN("pipeline ({}x): {}", n, s.ToString());
        if (pub->failed_fatally()) return s;
      }
      FollowRepublish(due);
      return Status::Ok();
    };
    while (!stop) {
      // In slices: a stop must not wait out a long publisher.interval_ms (a SIGTERM's grace period
      // may be shorter, and the last flush and checkpoint come after this thread).
      const auto next = SteadyClock::now() + std::chrono::milliseconds(opt.user_flush_ms);
      for (auto now = SteadyClock::now(); !stop && now < next; now = SteadyClock::now()) {
        std::this_thread::sleep_for(std::min<SteadyClock::duration>(next - now, std::chrono::milliseconds(50)));
      }
      if (stop) break;
      GSAU_RETURN_IF_ERROR(flush());
    }
    Status last = flush();
    // Refreshes left due hold nothing back: the stop may confirm every click's user.
    users_left_due = MinUnpublishedSeq(due) != kNoClickSeq;
    return last;
  }
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::~Pipeline() = default;

namespace {


}  // namespace

Result<std::unique_ptr<Pipeline>> Pipeline::Create(const PipelineOptions& options, prometheus::Registry* registry,
                                                   const Clock& clock, const std::atomic<bool>* stop) {
  if (options.checkpoint_keep < 1) return Status::InvalidArgument("checkpoint_keep must be >= 1");
  if (options.user_flush_ms < 1 || options.item_interval_ms < 1) {
    return Status::InvalidArgument("publish intervals must be >= 1 ms");
  }
  if (options.stop_flush_ms < 0) return Status::InvalidArgument("stop_flush_ms must be >= 0");
  if (options.new_item_wait_ms < 0) return Status::InvalidArgument("new_item_wait_ms must be >= 0");
  // Ingest waits for room for a whole batch: a smaller queue paused it for ever, without a word
  // (config/ checks this for gsau run; a caller of the library had no such check).
  if (options.queue_capacity < static_cast<size_t>(std::max(options.ingest.batch_max_events, 1))) {
    return Status::InvalidArgument("queue_capacity (" + std::to_string(options.queue_capacity) +
                                   ") must be at least ingest.batch_max_events (" +
                                   std::to_string(options.ingest.batch_max_events) + ")");
  }
  auto impl = std::make_unique<Impl>(options, clock);
  if (registry == nullptr) {
    impl->own_registry = std::make_unique<prometheus::Registry>();
    registry = impl->own_registry.get();
  }
  impl->registry = registry;
  impl->m = std::make_unique<internal::Metrics>(*registry);
  if (Status s = impl->OpenState(); !s.ok()) return InStage("state", s);
  impl->WarnIfCheckpointsCopyTheState();
  if (Status s = impl->StartLearner(); !s.ok()) return InStage("learner", s);
  if (!options.rollback_from.empty()) {  // its pair is in place: a plain restart resumes from it
    if (Status s = ClearRollbackMarker(impl->opt.checkpoint_dir); !s.ok()) return InStage("state", s);
  }
  // Run waits up to 30 s for the last deliveries (after the last checkpoint); the producer's
  // close must not wait that long again (a SIGTERM's grace period ran out during it).
  publisher::PublisherOptions publisher_options = options.publisher;
  publisher_options.producer.close_timeout_ms = std::min(publisher_options.producer.close_timeout_ms, 1000);
  auto pub = publisher::KafkaPublisher::Create(publisher_options, registry, clock, stop);
  if (!pub.ok()) return InStage("publisher", pub.status());
  impl->pub = std::move(pub).value();
  if (Status s = impl->ContinueAfterPublishedVersions(); !s.ok()) return InStage("state", s);
  if (impl->version.load() > 0) impl->pub->ResumeAfter(impl->version.load());
  if (!options.prequential_csv.empty()) {
    std::error_code size_ec;
    const bool fresh = !fs::exists(options.prequential_csv) || fs::file_size(options.prequential_csv, size_ec) == 0;
    if (auto parent = fs::path(options.prequential_csv).parent_path(); !parent.empty()) {
      std::error_code ec;
      fs::create_directories(parent, ec);
      if (ec) return Status::IoError("prequential csv: creating " + parent.string() + ": " + ec.message());
    }
    impl->preq_csv.open(options.prequential_csv, std::ios::app);
    if (!impl->preq_csv) {
      return Status::IoError("prequential csv: cannot open " + options.prequential_csv + ": " + std::strerror(errno));
    }
    if (fresh) {
      impl->preq_csv << "time_ms,events,window_count,window_recall@10,window_recall@20,window_ndcg@10,"
                        "window_ndcg@20,total_count,total_recall@20,total_ndcg@20,window_popular_recall@20,"
                        "window_popular_ndcg@20\n";
      impl->preq_csv.flush();
    }
  }
  impl->sink = std::make_unique<FanoutSink>(&impl->queue, &impl->dirty, &impl->m->queued);
  impl->ingestor =
      std::make_unique<ingest::Ingestor>(options.ingest, impl->store.get(), impl->sink.get(), registry);
  impl->SetAsideUnreadable();
  return std::unique_ptr<Pipeline>(new Pipeline(std::move(impl)));
}

Status Pipeline::Run(const std::atomic<bool>& stop) {
  auto& im = *impl_;
  // Stages stop in data-flow order: ingest first, then the learner takes in everything ingest
  // applied (so the last checkpoint's watermark covers it), then the user publisher.
  std::atomic<bool> ingest_stop{false}, learner_stop{false}, users_stop{false}, failed{false};
  Status ingest_status, learner_status, user_status;
  // An exception escaping a stage's thread would end the process (std::terminate) without the
  // last checkpoint: each stage's becomes its Status, and the others stop as for any failure.
  // (The ingest and user statuses are named by their stage on the way out, the learner's here.)
  const auto caught = [](const char* prefix, const auto& run) -> Status {
    try {
      return run();
    } catch (const std::exception& e) {
      return Status::Internal(std::string(prefix) + e.what());
    }
  };
  // Named, so that top -H tells them apart (all read "gsau").
  std::thread ingest_thread([&] {
    NameThisThread("gsau-ingest");
    ingest_status = caught("", [&] { return im.ingestor->Run(ingest_stop); });
    if (!ingest_status.ok()) failed = true;
  });
  std::thread learner_thread([&] {
    NameThisThread("gsau-learner");
    learner_status = caught("learner: ", [&] { return im.LearnerLoop(learner_stop); });
    if (!learner_status.ok()) {
      if (!im.learner_failure_counted) im.m->learner_errors.Increment();
      failed = true;
    }
    if (!im.item_publish_status.ok()) failed = true;
  });
  std::thread user_thread([&] {
    NameThisThread("gsau-users");
    user_status = caught("", [&] { return im.UserLoop(users_stop); });
    if (!user_status.ok()) failed = true;
  });
  while (!failed && !stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ingest_stop = true;
  ingest_thread.join();
  learner_stop = true;
  learner_thread.join();
  users_stop = true;
  user_thread.join();
  // Every user handed out has its record delivered: confirm them all (under pub_mu).
  const auto confirm_all = [&] {
    // The user records alone: item records failing (a topic refusing them) held every user of
    // the last flushes unconfirmed, and a restart published them again.
    if (!user_status.ok() || !im.item_publish_status.ok() || im.pub->failed_fatally() || im.users_left_due ||
        !im.pub->Settled(EntityKind::kUser)) {
      return false;
    }
    im.users_confirmed_seq = std::max(im.users_confirmed_seq.load(), im.users_taken_seq);
    if (im.republish_taken) im.RepublishDelivered();  // handed out (none left due) and delivered
    return true;
  };
  // The last checkpoint before the publisher's flush: a flush can wait 20 s (stop_flush_ms) on a
  // slow broker, and an orchestrator's grace period (Kubernetes' default is 30 s) would SIGKILL
  // the process before a checkpoint written after it. Its users_published_through says how far users'
  // records were delivered by then; a kill during the flush only makes a restart publish more.
  Status last_checkpoint;
  bool confirmed = false;
  if (learner_status.ok()) {
    {
      std::lock_guard<std::mutex> lock(im.pub_mu);
      confirmed = confirm_all();
    }
    last_checkpoint = im.Checkpoint();
    // Then the items that moved since the last interval (the threads are joined: this thread
    // alone publishes now). After a restart every item is due, and producing a whole catalogue
    // before the checkpoint delayed it past a grace period; a restart publishes every item
    // again anyway, so the checkpoint comes first. Not a failure of the run.
    if (im.item_publish_status.ok() && !im.pub->failed_fatally()) {
      if (Status s = im.PublishItems(); !s.ok()) {
        GSAU_LOG_WARN("pipeline: publishing items at the stop: {}", s.ToString());
      }
    }
  }
  Status flush;
  {
    std::lock_guard<std::mutex> lock(im.pub_mu);
    // This process keeps nothing past its stop: what a restart does about them is what to say.
    constexpr std::string_view kUndelivered =
        "records not delivered at the stop (the next start publishes them again: every item, and the users after "
        "the last delivered batch)";
    if (im.opt.stop_flush_ms == 0) {
      // No wait asked for: not a failure of the stop (nor a publisher error).
      if (!im.pub->WaitSettled(0)) GSAU_LOG_WARN("pipeline: {} (publisher.stop_flush_ms 0: no wait)", kUndelivered);
    } else {
      flush = im.pub->Flush(im.opt.stop_flush_ms);
      if (!flush.ok() && !im.pub->failed_fatally()) {
        constexpr std::string_view kPrefix = "publisher: ";
        std::string_view why = flush.message();
        if (why.starts_with(kPrefix)) why.remove_prefix(kPrefix.size());
        flush = Status(flush.code(), "publisher: " + std::string(kUndelivered) + ": " + std::string(why));
      }
    }
    // Not only after a flush that delivered everything: item records failing (a topic refusing
    // them) failed it, and the users of the last flushes, delivered, went out again at the restart.
    if (last_checkpoint.ok() && learner_status.ok() && !confirmed && confirm_all()) {
      last_checkpoint = im.RecordUsersPublishedThrough();
    }
  }
  Status close = im.store->Close();
  // The first failure is returned; the others are logged, not dropped (a failed last checkpoint
  // behind an ingest failure let an operator think one was written).
  const std::pair<std::string_view, const Status*> outcomes[] = {
      {"ingest: ", &ingest_status},  {"", &learner_status},       {"user publisher: ", &user_status},
      {"", &im.item_publish_status}, {"publisher: ", &flush},     {"learner: ", &last_checkpoint},
      {"", &close}};
  Status first;
  for (const auto& [who, s] : outcomes) {
    if (s->ok()) continue;
    // Once: the publisher's own messages begin with "publisher: " already.
    Status named(s->code(), (s->message().starts_with(who) ? "" : std::string(who)) + s->message());
    if (first.ok()) {
      first = std::move(named);
    } else {
      GSAU_LOG_ERROR("pipeline: while stopping, also: {}", named.ToString());
    }
  }
  return first;
}

PipelineStatus Pipeline::status() const {
  PipelineStatus s;
  {
    std::lock_guard<std::mutex> lock(impl_->status_mu);
    s = impl_->st;
  }
  const auto c = impl_->ingestor->counters();
  s.consumed = static_cast<uint64_t>(c.consumed);
  s.applied = static_cast<uint64_t>(c.applied);
  s.dead_lettered = static_cast<uint64_t>(c.dead_lettered);
  s.skipped = static_cast<uint64_t>(c.skipped);
  const auto& m = *impl_->m;
  s.publish_failures =
      static_cast<int64_t>(m.delivery_errors.Value() + m.produce_errors.Value() + m.publish_errors.Value() +
                           m.broker_errors.Value());
  return s;
}

}  // namespace gsau::pipeline
