// OnlineLearner: continual GSAU (rec) training on a stream of clicks, with growing tables.
//
// Id spaces. Users and items are the state store's dense 0-based ids (state::UserId/ItemId).
// Model row = id + 1: row 0 of each table is padding, as in the offline model. Tables have a
// capacity >= live rows (ids seen so far + 1) that grows geometrically; rows beyond the live
// count are never read, trained or published. Vectors in and out are float32, row-major
// [n, dim]; sessions are item ids, oldest first, of which the last max_len are used.
//
// Data flow. Observe(events) adds each click to the graph (a new (user, item) edge changes the
// degrees of both ends and so the normalisation of their neighbours' edges) and queues a
// sample: the graph pair (user, item) and, when the prefix is non-empty, the sequence sample
// prefix -> item. Step() trains on up to batch_size samples: fresh ones (queued, oldest first)
// and a replay sample of older ones (recent_fraction of it from a window of the latest samples
// to leave the queue, the rest from a reservoir uniform over everything so far), with the loss
// of GSAU.md: L_GA + gamma L_GU + CE(normalise(s_u) . I^T) + gamma L_SU. A fresh sample goes to
// the window and the reservoir once trained, or when a full queue drops it untrained.
//
// Incremental graph propagation (LightGCN, K = graph_layers <= 2). The full propagation costs
// K sparse products over every edge forward and again backward, every step. Instead, a step
// computes for the batch's distinct users and items B only:
//   g_B = mean(E0_B, (L E0)_B, (L C1)_B),   C1 = L S
// where E0 are the current tables (differentiable), L the CURRENT normalised adjacency, and S
// a snapshot of the tables taken at the last cache refresh (every graph_refresh_steps steps).
// The first two terms are exact and carry gradients to B and its neighbours; the last reads the
// cached first layer C1 of B's neighbours, without gradient (historical embeddings, as in
// GNNAutoScale). C1 is kept exact for the current graph at all times: with
// isd(x) = 1/sqrt(deg(x) + 1e-7), the cache holds T[w] = sum_{x in N(w)} isd(x) S[x] and
// C1[w] = isd(w) T[w]. A new edge (u, i) changes T[u], T[i] and, because deg(u) and deg(i) change,
// T of every old neighbour of u and i by a known multiple of S[u] or S[i]: Observe applies these
// additions (O((deg u + deg i) d) per new edge, one index_add_ per call). A refresh copies the
// tables to S and recomputes T with one sparse product over all edges (no gradient).
// So g_B equals LightGcnPropagate over the current graph exactly (up to float rounding) when
// the tables have not moved since the last refresh; otherwise only the second layer's input lags
// by < graph_refresh_steps steps. CheckPropagation() measures both.
// Cost per step: O(sum of the degrees of B) forward and backward, plus the refresh amortised
// (one forward sparse product per graph_refresh_steps steps), instead of 2K sparse products over
// every edge. graph_propagation = "full" keeps the exact full pass (reference, baseline).
// The batch rows' gradient differs from the full pass's (none back through their neighbours);
// in prequential quality on a Beauty stream the two modes came out equal (Recall@20 0.1090 vs
// 0.1086; bench_online_quality, docs/results/online-quality/).
// Measured with bench/learner/bench_online: Amazon Beauty as one stream (22,363 users, 12,101
// items, 198,502 clicks), 90% loaded as history, then 256 new clicks + one Step; batch 512, d 64,
// 1 thread, on the shared 2-core dev machine under load ~10 (so +-30%):
//   graph part of a step  incremental: fwd 9.2 + bwd 22.5 + refresh 1.7 (37 ms every 20 steps)
//                         = 33 ms;  full: fwd 38.8 + bwd 47.8 + adjacency rebuild 29.3 = 116 ms
//                         (87 ms for the sparse products alone).
//   edge terms per step   56 k (the batch's neighbourhood; popular items make it ~14% of the
//                         edges here) vs 738 k. The incremental cost follows the batch's
//                         neighbourhood, the full pass the whole graph: the gap widens with size.
//   lag (rms of training rows - full recomputation with the current tables, over all rows, / rms
//   row; fresh tables, lr 1e-3): 5.7% after 5 steps, 7.3% after 10, 9.6% after 20, 15% after 50.
//   Exactness for the graph (vs the formula, after ~20 k edge inserts): max error 2e-8.
// The whole step is ~0.5 s there, ~85% of it SASRec, in both modes.
//
// Adam. An Adam of its own (same update as torch::optim::Adam, L2 weight decay) so that rows
// can be added: the user and item tables have per-row step counts (a new row starts at step 0
// and gets its own bias correction), moments are zero for new rows, and old rows keep theirs.
// Dense semantics as offline: every live row with moments moves every step.
//
// Errors: expected failures are returned as Status; torch errors are caught here and turned
// into kInternal with context. Thread safety: every method may be called from any thread;
// calls serialise on one mutex (a Step blocks inference while it runs).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gsau/common/status.h"
#include "gsau/learner/metrics.h"

namespace gsau::learner {

struct OnlineOptions {
  // Model (GSAU.md). graph_layers must be 1 or 2.
  int64_t dim = 64;
  int64_t max_len = 50;  // longest session prefix used (older items are dropped)
  int64_t seq_layers = 2;
  int64_t heads = 2;
  int64_t ffn_dim = 256;
  double hidden_dropout = 0.5;
  double attn_dropout = 0.5;
  int64_t graph_layers = 2;
  double gamma = 0.1;        // weight of the uniformity terms
  double temperature = 2.0;  // t in the uniformity terms
  // Adam.
  double lr = 1e-3;
  double weight_decay = 0.0;
  // Batches. A step takes up to round(batch_size * fresh_fraction) fresh samples and fills the
  // rest from replay; if either side runs short the other fills in. Every sample gives a graph
  // pair; those with a non-empty prefix also give a sequence sample.
  int64_t batch_size = 512;
  double fresh_fraction = 0.5;
  // Samples kept for replay (~(24 + 4 * prefix) bytes each). May change across a Load: lowered,
  // a uniform subset is kept; raised, the added room fills with the samples that come next (the
  // dropped ones are gone), so the reservoir leans to recent clicks until it is full again.
  int64_t replay_capacity = 200000;
  // Of the replayed part, this share comes from a window of the last recent_capacity samples
  // that went to replay (trained fresh ones, and history loaded at start-up, in order), the
  // rest from the reservoir (uniform over everything). 0 = the reservoir only (no window kept).
  // Measured on Beauty's continual-quality run: see docs/results/continual/.
  double recent_fraction = 0.5;
  int64_t recent_capacity = 50000;
  int64_t max_pending = 100000;      // fresh samples queued at most; beyond it the oldest go to replay
  // Growth: initial table capacity in rows (padding included) and the growth factor (> 1).
  int64_t initial_user_rows = 1024;
  int64_t initial_item_rows = 1024;
  double growth_factor = 2.0;
  // Graph propagation: "incremental" (see above) or "full" (LightGcnPropagate over the whole
  // graph every step, exact: the reference and the benchmark's baseline).
  std::string graph_propagation = "incremental";
  // Steps between cache refreshes (incremental only). A refresh costs about one forward sparse
  // product over all edges; the lag of the second layer grows with the steps since the last one
  // (Beauty, lr 1e-3: see bench_online).
  int64_t graph_refresh_steps = 20;
  // TakeChangedItems: an item counts as changed when ||row - published row|| exceeds
  // change_threshold * max(||published row||, 1e-6) (relative L2 change).
  double change_threshold = 0.01;
  // Execution.
  std::string device = "auto";  // "auto" (CUDA when available), "cpu", "cuda"
  int threads = 0;              // torch intra-op threads; 0 = the cores it may use (UsableCores)
  uint64_t seed = 2020;
};

// One applied click, in the state's ids.
struct OnlineEvent {
  uint32_t user = 0;
  uint32_t item = 0;
  int64_t ts_ms = 0;
  std::vector<uint32_t> prefix;  // the user's session before this click, oldest first
};

// The state a checkpoint corresponds to (given by the caller, returned by Load).
struct OnlineWatermark {
  uint64_t state_batch_seq = 0;  // the state store's batch sequence the model has seen
  int64_t model_version = 0;

  friend bool operator==(const OnlineWatermark&, const OnlineWatermark&) = default;
};

struct OnlineStepResult {
  bool trained = false;  // false when there was nothing to train on
  int64_t fresh = 0;     // fresh samples in the batch
  int64_t replay = 0;    // replayed samples in the batch
  int64_t replay_recent = 0;  // of which drawn from the recent window
  int64_t sequence_samples = 0;  // samples with a prefix (sequence terms)
  double loss = 0, graph_align = 0, graph_unif = 0, seq_align = 0, seq_unif = 0;
  bool refreshed = false;         // the graph cache was refreshed before this step
  int64_t propagated_edges = 0;  // edge terms (edges x layers) in this step's propagation
  // Wall time in seconds (CPU; on CUDA only `total_s` is synchronised). graph_s and seq_s are
  // forward + loss; refresh_s is the cache refresh (incremental) or the adjacency rebuild after
  // graph changes (full); snapshot_s the serving snapshot taken after the step (a copy of the
  // item table: it grows with the catalogue). total_s includes them all.
  double batch_s = 0, refresh_s = 0, graph_s = 0, graph_backward_s = 0, seq_s = 0, seq_backward_s = 0,
         optimizer_s = 0, snapshot_s = 0, total_s = 0;
  // Not empty when the step was made but the serving snapshot after it could not be taken (the
  // previous one serves on): why.
  std::string serving_error;
};

struct OnlineStats {
  int64_t users = 0, items = 0;           // live ids (0 .. n-1)
  int64_t user_rows = 0, item_rows = 0;   // table capacity, rows
  int64_t edges = 0;                      // distinct (user, item) pairs
  int64_t events = 0;                     // clicks observed
  int64_t pending = 0;                    // fresh samples not trained yet
  // Fresh samples given to replay untrained since the learner was created, because `pending` was
  // at max_pending (training slower than clicks arrive: the newest are kept fresh).
  int64_t shed = 0;
  int64_t replay = 0;                     // samples in the replay reservoir
  int64_t recent = 0;                     // samples in the recent window
  int64_t steps = 0;                      // training steps taken
  std::string device;
  int threads = 0;
};

// A table row and its optimiser state (tests, debugging).
struct OnlineRowState {
  std::vector<float> row, exp_avg, exp_avg_sq;
  int64_t step = 0;
};

enum class OnlineTable { kUsers, kItems };

// Item rows that moved, with their current values ([ids.size(), dim] row-major).
struct ChangedItems {
  std::vector<uint32_t> ids;
  std::vector<float> embeddings;
};

// CheckPropagation's answer: max |difference| over every live user and item row.
struct PropagationCheck {
  // The training propagation vs the same formula computed from scratch (full sparse products
  // over an adjacency built from the given edges, with the snapshot S): ~1e-6 when correct.
  double max_error_vs_formula = 0;
  // The training propagation vs LightGcnPropagate(L, E0) with the current tables: equal to
  // the above right after a refresh or when no step ran since; otherwise the staleness.
  double max_error_vs_current = 0;
  double max_abs_value = 0;  // scale of the propagated rows
  // Root mean square over all entries of (training - current) and of the current rows.
  double rms_error_vs_current = 0, rms_value = 0;
  int64_t rows = 0;
};

// True when `session` holds an item a model of `items` live items knows (id < items): what
// embedding the session needs (unknown items are left out of it).
bool CanEmbed(std::span<const uint32_t> session, int64_t items);

// Prequential hit rate and NDCG at 10 and 20 (one target per prediction; rank is 0-based, the
// number of other items scored at least as high as the target, or kMissRank).
struct PrequentialStats {
  int64_t count = 0;
  double hits10 = 0, hits20 = 0, ndcg10 = 0, ndcg20 = 0;  // sums

  void Add(int64_t rank);
  void Merge(const PrequentialStats& other);
  double HitRate10() const { return count ? hits10 / static_cast<double>(count) : 0.0; }
  double HitRate20() const { return count ? hits20 / static_cast<double>(count) : 0.0; }
  double Ndcg10() const { return count ? ndcg10 / static_cast<double>(count) : 0.0; }
  double Ndcg20() const { return count ? ndcg20 / static_cast<double>(count) : 0.0; }
};

// A frozen copy of what inference needs (SASRec and the item table), taken from the learner at
// one moment. Serving user embeddings from it does not wait for a training step: the learner
// takes a new snapshot after each step and on RefreshServing, and readers swap to it.
// Immutable after creation; every method may be called from any thread (calls serialise on the
// snapshot's own lock, never the learner's).
class ServingModel {
 public:
  ~ServingModel();
  ServingModel(const ServingModel&) = delete;
  ServingModel& operator=(const ServingModel&) = delete;

  int64_t items() const;  // live items of the snapshot (ids 0 .. items-1)
  int64_t steps() const;  // training steps the learner had taken
  int64_t dim() const;
  // True when the session holds an item the snapshot knows (needed to embed it).
  bool CanEmbed(const std::vector<uint32_t>& session) const;
  // True when the snapshot knows every item of the session: an embedding of it now carries the
  // effect of each click (an unknown item is left out of it).
  bool KnowsAll(const std::vector<uint32_t>& session) const;
  // As OnlineLearner::UserEmbeddings, over the snapshot.
  Result<std::vector<float>> UserEmbeddings(std::span<const std::vector<uint32_t>> sessions) const;
  // Rank (0-based, as TargetRanks) of each target for its session, as OnlineLearner::ScoreRank;
  // a target unknown to the snapshot ranks kMissRank.
  Result<std::vector<int64_t>> ScoreRanks(std::span<const std::vector<uint32_t>> sessions,
                                          std::span<const uint32_t> targets) const;
  // The k best items for each session (ids, best first; excluded: none).
  Result<std::vector<std::vector<uint32_t>>> TopK(std::span<const std::vector<uint32_t>> sessions, int64_t k) const;

 // The learner builds snapshots; Impl is opaque outside the learner.
  struct Impl;
  explicit ServingModel(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

struct LoadedCheckpoint;

// Whether LibTorch sees a CUDA device (device "cuda" needs one; "auto" uses it when there is).
bool CudaAvailable();

class OnlineLearner {
 public:
  // kInvalidArgument for bad options, kUnavailable for device "cuda" without CUDA.
  static Result<std::unique_ptr<OnlineLearner>> Create(const OnlineOptions& options);
  // A learner made from `options` but in the model shape (dim, max_len, seq_layers, heads,
  // ffn_dim, graph_layers) the checkpoint at `path` (a model.pt of Save) was written with, and
  // that checkpoint loaded: a reader (inspect, evaluate) needs no copy of the run's configuration.
  // The file is read once on a CPU learner. NotFound without the file, InvalidArgument for a file
  // of another format.
  static Result<LoadedCheckpoint> OpenCheckpoint(const OnlineOptions& options, const std::string& path);
  ~OnlineLearner();
  OnlineLearner(const OnlineLearner&) = delete;
  OnlineLearner& operator=(const OnlineLearner&) = delete;

  // Adds the clicks to the graph (growing the tables for new ids) and queues their samples
  // as fresh (`fresh` = false: straight into the replay reservoir, e.g. history loaded at
  // start-up). Prefix items not in the model yet are dropped from the prefix. Give clicks in
  // time order: fresh samples train in the order given, and the window of recent replay samples
  // keeps the last ones given. The serving snapshot stays as it is: new items reach it with the
  // next Step or RefreshServing (a snapshot copies the whole item table, so one per Observe of
  // a few clicks cost O(items x dim) each time).
  Status Observe(std::span<const OnlineEvent> events, bool fresh = true);

  // Takes a new serving snapshot when the learner holds items the current one lacks, or has taken
  // steps since it (a step whose own snapshot failed): for a caller that observed clicks and takes
  // no step now, so that serving knows the new items. Nothing to do (cheap) otherwise: Step takes
  // one after each step. On an error (out of memory) the previous snapshot serves on.
  Status RefreshServing();

  // One training step; trained = false (and nothing changes) when no sample exists. A step that
  // fails (a loss that is not finite, an error of torch's such as out of memory) before its
  // update makes none: weights, Adam state and counters stay as they were, and the fresh samples
  // it took go back in front of the queue, so the next Step takes them again. (A failure part-way
  // through the update, out of memory on a device, may leave some weights moved: SkipFailedBatch
  // says so.) A step made whose serving snapshot could not be taken succeeds, with
  // serving_error set.
  Result<OnlineStepResult> Step();
  // After a failed Step: drops the fresh samples it put back (their clicks stay in the graph;
  // they are not trained on, nor replayed), so that the next Step does not fail on them again.
  // Returns how many; 0 when the last Step did not fail. kInternal when that step failed
  // part-way through its update (the model is then neither the old nor the new one: go back to
  // a checkpoint). A queue full at Observe hands its oldest to replay as ever, failed ones
  // included (they are then no longer dropped).
  Result<int64_t> SkipFailedBatch();

  // SASRec in eval mode over each session's last max_len known items: [n, dim] row-major.
  // kInvalidArgument when a session has no item known to the model.
  Result<std::vector<float>> UserEmbeddings(std::span<const std::vector<uint32_t>> sessions);
  Result<std::vector<float>> UserEmbedding(const std::vector<uint32_t>& session);
  // Rows of the item table: [ids.size(), dim]. kInvalidArgument for an unknown id.
  Result<std::vector<float>> ItemEmbeddings(std::span<const uint32_t> items);
  // Rank (0-based) of `target` among all live items scored by UserEmbedding(session) . row,
  // padding excluded: the items scoring at least as high (ties count against the target; see
  // TargetRanks). A target not in the model yet gets kMissRank (metrics.h).
  Result<int64_t> ScoreRank(const std::vector<uint32_t>& session, uint32_t target);
  // ScoreRank over a batch in one forward pass (the prequential evaluation of a stream).
  Result<std::vector<int64_t>> ScoreRanks(std::span<const std::vector<uint32_t>> sessions,
                                          std::span<const uint32_t> targets);

  // The latest serving snapshot (never null after Create). Cheap: a shared pointer copy under
  // a lock of its own, so callers never wait for a step.
  std::shared_ptr<const ServingModel> Serving() const;

  // Items whose rows moved by more than change_threshold since they were last returned (every
  // item never returned counts as moved), with their current rows; marks them as published.
  Result<ChangedItems> TakeChangedItems();

  // Model, Adam state, graph, queued and replay samples, counters, the random generators and
  // `watermark`, written to `path` through `path`.tmp and a rename (Save refreshes the graph
  // cache first, O(edges): so each checkpoint also does what graph_refresh_steps schedules). Load replaces all of it (tables take the checkpoint's sizes) and returns the
  // watermark; the graph cache is refreshed and every item counts as unpublished. On the CPU,
  // a learner loaded from a checkpoint then takes the same steps as the one that saved it.
  // kInvalidArgument when the checkpoint's model shape (dim, layers, ...) differs from the
  // options.
  Status Save(const std::string& path, const OnlineWatermark& watermark);
  Result<OnlineWatermark> Load(const std::string& path);

  // Initialises the model weights from an offline Trainer checkpoint (best.pt, or the
  // "model" of checkpoint.pt). user_rows[u] / item_rows[i] give the offline table row of state
  // id u / i (-1: none, keep the current row); ids beyond the vectors keep their rows. Grows
  // the tables to cover the mapped ids. Resets Adam and refreshes the graph cache.
  Status InitFromOffline(const std::string& path, const std::vector<int64_t>& user_rows,
                         const std::vector<int64_t>& item_rows);

  // Diagnostics. The propagated (LightGCN) rows the training step uses, [ids.size(), dim].
  Result<std::vector<float>> GraphEmbeddings(OnlineTable table, std::span<const uint32_t> ids);
  // Compares GraphEmbeddings over every live row with full recomputations over the graph of
  // `edges` (the caller's own record of the distinct (user, item) pairs). O(edges).
  Result<PropagationCheck> CheckPropagation(std::span<const std::pair<uint32_t, uint32_t>> edges);
  // Refreshes the graph cache now (snapshot of the tables, every cached row dirty). An error of
  // torch's (out of memory) is returned, as from every other call.
  Status RefreshGraphCache();
  Result<OnlineRowState> InspectRow(OnlineTable table, uint32_t id);
  // Tests: the samples a step's replay part of n would draw (as clicks: user, item, time, prefix);
  // it advances the learner's random draws as such a step would.
  std::vector<OnlineEvent> DrawReplayForTesting(int64_t n);

  OnlineStats Stats();

 private:
  struct Impl;
  explicit OnlineLearner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// What OnlineLearner::OpenCheckpoint returns: the learner, the options it was made with (the
// checkpoint's model shape) and the checkpoint's watermark.
struct LoadedCheckpoint {
  std::unique_ptr<OnlineLearner> learner;
  OnlineOptions options;
  OnlineWatermark watermark;
};

}  // namespace gsau::learner
