// gsau evaluate: the offline protocol's test (and validation) metrics of an online model. The
// checkpoint's model ranks every item for each leave-one-out sample of a dataset file, as
// `gsau train` evaluates (full ranking, padding excluded, earlier items not masked); dataset
// ids are matched to the model's by their external names through the checkpoint's state.
// A target the model never saw counts as a miss; a prefix item it never saw is dropped.
// This is how a continually trained model is compared with offline runs on the same split.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "config_flags.h"
#include "gsau/common/file.h"
#include "gsau/common/json.h"
#include "gsau/common/log.h"
#include "gsau/learner/dataset.h"
#include "gsau/learner/metrics.h"
#include "gsau/learner/online.h"
#include "gsau/pipeline/checkpoints.h"
#include "gsau/state/state_store.h"
#include "output_paths.h"
#include "pipeline_config.h"

namespace gsau::app {
namespace {

namespace fs = std::filesystem;

struct EvaluateFlags {
  ConfigFlags config;
  std::string checkpoint;  // a ckpt-* directory, or a checkpoint directory (its newest)
  std::string data;
  std::string times;
  std::string out;         // JSON report; empty = stdout only
  int batch = 256;
};

std::string MetricsJson(const learner::RankingMetrics& m) {
  std::string s = "{\"count\": " + std::to_string(m.count);
  const auto names = learner::RankingMetrics::Names();
  const auto values = m.Values();
  for (size_t i = 0; i < names.size(); ++i) {
    char buf[64];
    std::snprintf(buf, sizeof buf, ", \"%s\": %.6f", names[i].c_str(), values[i]);
    s += buf;
  }
  return s + "}";
}

// Ranks the samples with the model: prefixes and targets mapped to state ids by name.
Result<learner::RankingMetrics> Evaluate(learner::OnlineLearner& model, const state::StateStore& store,
                                         const learner::LeaveOneOutData& d,
                                         const std::vector<learner::SequenceSample>& samples, int batch,
                                         int64_t* unknown_targets) {
  const int64_t live_items = model.Stats().items;
  std::vector<int64_t> to_state(static_cast<size_t>(d.num_items), -1);
  for (int64_t i = 1; i < d.num_items; ++i) {
    const auto id = store.FindItem(d.item_names[static_cast<size_t>(i)]);
    if (id && static_cast<int64_t>(*id) < live_items) to_state[static_cast<size_t>(i)] = *id;
  }
  learner::MetricAccumulator acc;
  std::vector<std::vector<uint32_t>> prefixes;
  std::vector<uint32_t> targets;
  auto flush = [&]() -> Status {
    if (prefixes.empty()) return Status::Ok();
    GSAU_ASSIGN_OR_RETURN(auto ranks, model.ScoreRanks(prefixes, targets));
    for (int64_t r : ranks) acc.Add(r);
    prefixes.clear();
    targets.clear();
    return Status::Ok();
  };
  for (const auto& s : samples) {
    std::vector<uint32_t> prefix;
    // The last max_len items the model knows: the session the state would hold, as an item never
    // streamed is in no session (the file's last max_len, less unknown ones, could be far fewer).
    const auto known = [&](int32_t i) { return to_state[static_cast<size_t>(i)] >= 0; };
    for (int32_t i : d.Prefix(s, known)) prefix.push_back(static_cast<uint32_t>(to_state[static_cast<size_t>(i)]));
    const int64_t target = to_state[static_cast<size_t>(s.target)];
    if (prefix.empty() || target < 0) {
      // Nothing to embed the user with, or an item the model cannot rank: a miss.
      acc.Add(learner::kMissRank);
      if (target < 0) ++*unknown_targets;
      continue;
    }
    prefixes.push_back(std::move(prefix));
    targets.push_back(static_cast<uint32_t>(target));
    if (static_cast<int>(prefixes.size()) >= batch) GSAU_RETURN_IF_ERROR(flush());
  }
  GSAU_RETURN_IF_ERROR(flush());
  return acc.Result();
}

int RunEvaluate(const EvaluateFlags& f) {
  if (MaybePrintConfigHelp(f.config)) return kExitOk;
  // Checked here, not by the parser: --help-config alone needs neither.
  if (f.checkpoint.empty() || f.data.empty()) {
    std::cerr << "gsau evaluate: --checkpoint and --data are required\n";
    return kExitUsage;
  }
  // Before the evaluation: a --out naming the dataset replaced it with the report.
  if (!f.out.empty()) {
    const std::string bad = OutputPathProblem("--out", f.out, {{"--data", f.data}, {"--times", f.times}});
    if (!bad.empty()) {
      std::cerr << "gsau evaluate: " << bad << "\n";
      return kExitUsage;
    }
  }
  auto cfg = LoadConfig("evaluate", f.config);
  if (!cfg.ok() || !LearnerDeviceUsable("evaluate", *cfg)) return kExitUsage;
  fs::path ckpt = f.checkpoint;
  if (!fs::exists(ckpt / "model.pt")) {
    const auto all = pipeline::ListCheckpointsAsRecovered(f.checkpoint);
    if (all.empty()) {
      std::cerr << "gsau evaluate: no checkpoint (model.pt, state/) at " << f.checkpoint << "\n";
      // gsau train's output (or one of its files) looks like a model too, and holds its own test.
      std::error_code ec;
      const fs::path abs = fs::absolute(ckpt, ec);
      const fs::path dir = fs::is_directory(abs, ec) ? abs : abs.parent_path();
      if (fs::exists(dir / "report.json", ec) || fs::exists(dir / "best.pt", ec)) {
        const bool reported = fs::exists(dir / "report.json", ec);
        std::cerr << "gsau evaluate: " << dir.string() << " is gsau train's output, "
                  << (reported ? "whose test metrics are in " + (dir / "report.json").string()
                               : std::string("whose report.json (its test metrics) comes when the training ends"))
                  << "; evaluate reads the checkpoints of gsau run or gsau demo (learner.checkpoint_dir or one "
                  << "ckpt-* in it)\n";
      }
      return kExitFailure;
    }
    ckpt = all.back();
  }
  state::StateOptions so = config::ToStateOptions(*cfg);
  so.path = (ckpt / "state").string();
  so.read_only = true;
  auto store = state::StateStore::Open(so);
  if (!store.ok()) {
    std::cerr << "gsau evaluate: " << store.status().ToString() << "\n";
    return kExitFailure;
  }
  learner::OnlineOptions lo = ToOnlineOptions(*cfg);
  // In the checkpoint's own model shape: the run's configuration is not needed for it.
  auto loaded = learner::OnlineLearner::OpenCheckpoint(lo, (ckpt / "model.pt").string());
  if (!loaded.ok()) {
    std::cerr << "gsau evaluate: " << loaded.status().ToString() << "\n";
    return kExitFailure;
  }
  auto model = std::move(loaded->learner);
  const learner::OnlineWatermark* wm = &loaded->watermark;
  learner::SplitOptions split;
  split.max_len = static_cast<int32_t>(loaded->options.max_len);  // the checkpoint's
  split.need_training_samples = false;  // only validation and test are ranked
  auto data = learner::LoadLeaveOneOut(f.data, f.times, split);
  if (!data.ok()) {
    std::cerr << "gsau evaluate: " << data.status().ToString() << "\n";
    return kExitFailure;
  }
  int64_t unknown_valid = 0, unknown_test = 0;
  auto valid = Evaluate(*model, **store, *data, data->valid_samples, f.batch, &unknown_valid);
  auto test = valid.ok() ? Evaluate(*model, **store, *data, data->test_samples, f.batch, &unknown_test)
                         : Result<learner::RankingMetrics>(valid.status());
  if (!test.ok()) {
    std::cerr << "gsau evaluate: " << test.status().ToString() << "\n";
    return kExitFailure;
  }
  // Unknown targets count as misses, as they should for items the stream never brought; but
  // when no target is known the file is not the one the pipeline streamed (all-zero metrics
  // and exit 0 read like a broken model).
  const size_t n_valid = data->valid_samples.size(), n_test = data->test_samples.size();
  if (n_test > 0 && static_cast<size_t>(unknown_test) == n_test && static_cast<size_t>(unknown_valid) == n_valid) {
    std::cerr << "gsau evaluate: none of the " << n_valid + n_test << " validation and test items of " << f.data
              << " is known to the state of " << ckpt.string()
              << " (ids are matched by name): is it the dataset this pipeline streamed?\n";
    return kExitFailure;
  }
  if (unknown_valid + unknown_test > 0) {
    GSAU_LOG_WARN("evaluate: {} of {} validation and {} of {} test items are unknown to the model; they count as "
                  "misses",
                  unknown_valid, n_valid, unknown_test, n_test);
  }
  const auto st = model->Stats();
  std::string json = "{\n  \"checkpoint\": " + JsonString(ckpt.string()) + ",\n  \"data\": " + JsonString(f.data) +
                     ",\n  \"state_batch\": " + std::to_string(wm->state_batch_seq) +
                     ",\n  \"model_version\": " + std::to_string(wm->model_version) +
                     ",\n  \"steps\": " + std::to_string(st.steps) + ",\n  \"model_users\": " +
                     std::to_string(st.users) + ",\n  \"model_items\": " + std::to_string(st.items) +
                     ",\n  \"unknown_targets\": {\"valid\": " + std::to_string(unknown_valid) +
                     ", \"test\": " + std::to_string(unknown_test) + "},\n  \"valid\": " + MetricsJson(*valid) +
                     ",\n  \"test\": " + MetricsJson(*test) + "\n}\n";
  std::cout << json;
  if (!f.out.empty()) {
    // Whole or not at all: a full disk left a cut JSON that a comparison script read as a result.
    const Status written = WriteTextAtomically(f.out, json);
    if (!written.ok()) {
      std::cerr << "gsau evaluate: " << written.ToString() << "\n";
      return kExitFailure;
    }
  }
  return kExitOk;
}

}  // namespace

void AddEvaluateCommand(CLI::App& root, int* exit_code) {
  auto flags = std::make_shared<EvaluateFlags>();
  auto* cmd = root.add_subcommand(
      "evaluate", "Test and validation metrics of an online checkpoint on a dataset's leave-one-out split");
  cmd->add_option("--checkpoint", flags->checkpoint,
                  "A ckpt-* directory, or a checkpoint directory (its newest). Required");
  cmd->add_option("--data", flags->data, "The dataset file (as for gsau train). Required");
  cmd->add_option("--times", flags->times, "Aligned times file for per-user lines");
  cmd->add_option("--out", flags->out, "Also write the JSON report here");
  cmd->add_option("--batch", flags->batch, "Samples ranked per forward pass")->check(CLI::Range(1, 100000));
  AddConfigFlags(cmd, &flags->config);
  cmd->callback([flags, exit_code] { *exit_code = RunEvaluate(*flags); });
}

}  // namespace gsau::app
