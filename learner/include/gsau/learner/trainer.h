// Offline training and evaluation of GSAU and its baselines on a leave-one-out split.
//
// One step draws a batch of graph pairs and a batch of sequence samples (each loader shuffled
// every epoch); an epoch lasts until the longer loader is exhausted, the shorter one restarting.
// After each epoch the model is validated (full ranking) and, with an output directory, the
// epoch's row is appended to metrics.csv and a checkpoint is written atomically (temp + rename):
// checkpoint.pt (model, Adam state, early-stopping state) and best.pt (best weights so far).
// Training stops after `patience` + 1 epochs without a validation gain (as RecBole: a value >= the
// best counts as a gain), the best weights are restored, and valid and test are reported.
//
// This header has no torch types, so callers (the CLI, the bench) compile fast.
// Thread safety: a Trainer is used from one thread; torch's intra-op pool uses `threads` cores.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gsau/common/status.h"
#include "gsau/learner/dataset.h"
#include "gsau/learner/metrics.h"

namespace gsau::learner {

enum class ModelKind {
  kGsauRec,   // GSAU with cross-entropy over all items as the sequential alignment term
  kGsau,      // GSAU with align(s_u, e_i) as the sequential alignment term
  kSasRec,    // SASRec alone, cross-entropy (RecBole's SASRec)
  kLightGcn,  // LightGCN alone with the alignment + uniformity loss (graph terms only)
};
const char* ModelKindName(ModelKind kind);  // "gsau-rec", "gsau", "sasrec", "lightgcn"
bool ParseModelKind(const std::string& name, ModelKind* out);

struct TrainOptions {
  ModelKind model = ModelKind::kGsauRec;
  double gamma = 0.1;        // weight of the uniformity terms
  double temperature = 2.0;  // t in the uniformity terms
  // Model size (GSAU.md): d, SASRec blocks/heads/FFN/dropouts, LightGCN layers.
  int64_t dim = 64;
  int64_t seq_layers = 2;
  int64_t heads = 2;
  int64_t ffn_dim = 256;
  double hidden_dropout = 0.5;
  double attn_dropout = 0.5;
  int64_t graph_layers = 2;
  // Weight init: < 0 picks by model (RecBole's N(0, 0.02) for sasrec, as the authors' SASRec
  // baseline; Xavier-normal for the GSAU models); 0 = Xavier-normal; > 0 = N(0, init_std).
  double init_std = -1.0;
  // Batches.
  int64_t graph_batch = 512;
  int64_t seq_batch = 512;
  int64_t eval_batch = 2048;  // users per evaluation chunk (memory: eval_batch x num_items floats)
  // Adam.
  double lr = 1e-3;
  double weight_decay = 0.0;
  // Schedule.
  int max_epochs = 300;
  int patience = 10;                   // epochs without gain tolerated (stop at patience + 1)
  std::string valid_metric = "ndcg@20";
  // RecBole rounds metrics to 4 decimals (metric_decimal_place) before early stopping compares
  // them, so ties at that precision count as gains; < 0 compares unrounded values.
  int valid_metric_decimals = 4;
  int64_t max_steps_per_epoch = 0;     // 0 = whole epochs; > 0 truncates (bench, smoke tests)
  uint64_t seed = 2020;
  // Execution.
  int threads = 0;              // torch intra-op threads; 0 = the cores it may use (UsableCores)
  std::string device = "auto";  // "auto" (CUDA when available), "cpu", "cuda"
  // LightGCN-only is a general recommender: mask the user's earlier items when ranking (the
  // sequential models rank over all items, as RecBole does for sequential data).
  bool lightgcn_mask_history = true;
  // Output.
  std::string out_dir;  // empty: no files (tests)
  // Continue from out_dir/checkpoint.pt when it exists; refused when the checkpoint was written
  // with other settings (any option but max_epochs, patience, eval_batch, threads, device,
  // progress) or another dataset, or when metrics.csv lacks the epochs it covers.
  bool resume = false;
  // Without resume, a directory holding an earlier run (checkpoint.pt, best.pt or report.json)
  // is refused (a forgotten --resume would throw a long run away) unless overwrite is set. A new
  // run removes an earlier run's checkpoint.pt, best.pt and report.json before its first epoch.
  bool overwrite = false;
  bool progress = true; // a progress bar per epoch on stderr
  // Polled between training steps and evaluation chunks (not owned; may be null). Once set, Run
  // and TrainEpoch end with Aborted, leaving the files as the last finished epoch left them:
  // --resume continues from there. Set from any thread (a signal handler's flag).
  const std::atomic<bool>* stop = nullptr;
};

// Wall time of each part of the steps, summed over the steps of an epoch (CPU timings; on CUDA
// the parts are not synchronised and only the total is meaningful).
struct StepTimings {
  int64_t steps = 0;
  double batch = 0;       // building the batch tensors
  double graph_fwd = 0;   // LightGCN propagation and the batch's rows
  double graph_loss = 0;  // graph alignment + uniformity
  double graph_bwd = 0;
  double seq_fwd = 0;     // SASRec
  double seq_loss = 0;    // sequential terms (CE over all items for rec/sasrec)
  double seq_bwd = 0;
  double optimizer = 0;   // zero_grad + Adam
};

struct EpochStats {
  int epoch = 0;                 // 1-based
  int64_t steps = 0;
  int64_t samples = 0;           // graph pairs + sequence samples consumed
  double loss = 0, graph_align = 0, graph_unif = 0, seq_align = 0, seq_unif = 0;  // step means
  double train_seconds = 0;
  double eval_seconds = 0;
  RankingMetrics valid;
};

// Epochs first_epoch..last_epoch of a run were trained on `device` with `threads` torch threads
// (a resumed run may have changed them). threads 0, device "": epochs of a metrics.csv written
// before it had these columns.
struct EpochSetup {
  int first_epoch = 0;
  int last_epoch = 0;
  int threads = 0;
  std::string device;
};

struct TrainReport {
  std::string model;
  std::string device;  // this process's
  int threads = 0;     // this process's
  std::vector<EpochSetup> setups;  // every epoch of the run, resumed ones included, in order
  int epochs_run = 0;
  int best_epoch = 0;
  bool stopped_early = false;
  double seconds_per_epoch = 0;  // mean training time per epoch (without validation)
  double eval_seconds = 0;       // mean validation time per epoch
  RankingMetrics best_valid;
  RankingMetrics test;
  std::vector<EpochStats> history;  // epochs run in this process (resumed ones are in the CSV)
};

enum class Split { kValid, kTest };

class Trainer {
 public:
  // `data` must outlive the trainer.
  static Result<std::unique_ptr<Trainer>> Create(const LeaveOneOutData& data, const TrainOptions& options);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains with early stopping, restores the best weights, evaluates valid and test; writes
  // metrics.csv, checkpoints and report.json under out_dir when it is set.
  Result<TrainReport> Run();
  // One training epoch (no validation). `timings` may be null.
  Result<EpochStats> TrainEpoch(int epoch, StepTimings* timings);
  Result<RankingMetrics> Evaluate(Split split);

  std::string DeviceName() const;
  int Threads() const;
  int64_t StepsPerEpoch() const;
  int64_t NumParameters() const;

 private:
  struct Impl;
  explicit Trainer(std::unique_ptr<Impl> impl);
  Result<TrainReport> RunUnguarded();
  std::unique_ptr<Impl> impl_;
};

// The checks of Trainer::Create that need no data: callers run it before a long data load, so
// that a mistyped option fails at once. InvalidArgument naming the option.
Status ValidateTrainOptions(const TrainOptions& options);

// The settings of a checkpoint (`saved`, "key=value" lines) that a resume (`now`) has otherwise,
// as "lr 0.001, now 0.1; ...", empty when none. A key only one side has is no difference
// (settings added to a later binary must not refuse runs begun before), and a saved init_std
// below 0 (written before settings held the init the model got) stands for `default_init_std`.
// users and items are said without the padding row their stored values count.
std::string SettingsDiff(const std::string& saved, const std::string& now, double default_init_std);

// The init the model gets: options.init_std, or for -1 the model's default (0.02 for sasrec,
// 0 = Xavier-normal otherwise). What report.json records (it wrote -1).
double EffectiveInitStd(const TrainOptions& options);

// The seed of torch's generator for one epoch of a run seeded `seed` (torch draws the dropout
// masks on CUDA). Distinct for every (seed, epoch) a run meets: seed + epoch gave seed 2021's
// epoch 1 the masks of seed 2020's epoch 2.
uint64_t EpochTorchSeed(uint64_t seed, int epoch);

// Writes `report` (plus `options` and data counts) as JSON.
std::string ReportJson(const TrainReport& report, const TrainOptions& options, const LeaveOneOutData& data);

}  // namespace gsau::learner
