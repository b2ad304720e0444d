// gsau train: offline training and evaluation of GSAU and its baselines (learner issue 5).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli_checks.h"
#include "commands.h"
#include "gsau/common/log.h"
#include "gsau/common/stop_signal.h"
#include "gsau/learner/dataset.h"
#include "gsau/learner/trainer.h"

namespace gsau::app {
namespace {

namespace fs = std::filesystem;

// scripts/plot_training.py, looked up next to the executable's checkout (build/../scripts) and in
// the working directory.
std::string FindPlotScript() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  std::vector<fs::path> candidates = {fs::path("scripts/plot_training.py")};
  if (!ec) {
    for (fs::path dir = exe.parent_path(); !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
      candidates.push_back(dir / "scripts/plot_training.py");
    }
  }
  for (const auto& c : candidates) {
    if (fs::exists(c, ec)) return c.string();
  }
  return "";
}

// Runs `argv` (argv[0] looked up in PATH) and waits for it; empty when it exited 0, otherwise
// what went wrong.
std::string RunProgram(const std::vector<std::string>& argv) {
  std::vector<char*> c_argv;
  for (const auto& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  pid_t pid = 0;
  if (const int err = posix_spawnp(&pid, c_argv[0], nullptr, nullptr, c_argv.data(), environ); err != 0) {
    return std::string("cannot run ") + argv[0] + ": " + std::strerror(err);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return std::string("waiting for ") + argv[0] + ": " + std::strerror(errno);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  std::string line;
  for (const auto& a : argv) line += (line.empty() ? "" : " ") + a;
  return line + (WIFEXITED(status) ? " exited " + std::to_string(WEXITSTATUS(status)) : std::string(" was killed"));
}

struct TrainArgs {
  std::string data;
  std::string times;
  std::string model = "gsau-rec";
  int max_len = 50;
  double train_fraction = 1.0;
  bool plot = false;
  learner::TrainOptions options;
};

int RunTrain(const TrainArgs& args) {
  learner::TrainOptions options = args.options;
  if (!learner::ParseModelKind(args.model, &options.model)) {
    std::cerr << "gsau train: --model must be gsau-rec, gsau, sasrec or lightgcn, not " << args.model << "\n";
    return kExitUsage;
  }
  // Before the data load: Ctrl-C or SIGTERM stops at the next step (or evaluation chunk), with the
  // files of the last finished epoch, instead of killing the process; a second one kills it.
  options.stop = &InstallStopSignals();
  // Before the data load, which takes a while on a real dataset.
  if (const Status valid = learner::ValidateTrainOptions(options); !valid.ok()) {
    std::cerr << "gsau train: " << valid << "\n";
    return kExitUsage;
  }
  // Found before training, not after hours of it.
  const std::string plot_script = args.plot ? FindPlotScript() : std::string();
  if (args.plot && plot_script.empty()) {
    std::cerr << "gsau train: --plot: scripts/plot_training.py not found (looked in the working directory and "
                 "above the gsau executable); run without --plot, then python3 scripts/plot_training.py "
                 "OUT/metrics.csv OUT/curves.png\n";
    return kExitUsage;
  }
  learner::SplitOptions split;
  split.max_len = args.max_len;
  split.train_fraction = args.train_fraction;
  auto data = learner::LoadLeaveOneOut(args.data, args.times, split);
  if (!data.ok()) {
    std::cerr << "gsau train: " << data.status() << "\n";
    return kExitFailure;
  }
  GSAU_LOG_INFO("{}: {} users, {} items, {} interactions; {} graph pairs, {} training samples, {} valid, {} test",
                args.data, data->num_users - 1, data->num_items - 1, data->num_interactions(),
                data->train_pairs.size(), data->train_samples.size(), data->valid_samples.size(),
                data->test_samples.size());
  auto trainer = learner::Trainer::Create(*data, options);
  if (!trainer.ok()) {
    std::cerr << "gsau train: " << trainer.status() << "\n";
    return trainer.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  GSAU_LOG_INFO("model {} on {} with {} threads: {} parameters, {} steps per epoch, output {}", args.model,
                (*trainer)->DeviceName(), (*trainer)->Threads(), (*trainer)->NumParameters(),
                (*trainer)->StepsPerEpoch(), options.out_dir);
  auto report = (*trainer)->Run();
  if (!report.ok() && report.status().code() == StatusCode::kAborted && *options.stop) {
    std::cout << "gsau train: stopped: " << report.status().message() << std::endl;
    // Its files are as they should be; the exit still says "interrupted" (130 for Ctrl-C), as the
    // signal's own action would, so that a script running several trainings stops too.
    EndByStopSignal();
    return kExitOk;
  }
  if (!report.ok()) {
    std::cerr << "gsau train: " << report.status() << "\n";
    // Refused before training (--out holds another run, a resume with other settings): a usage
    // error, as the flags' own checks are.
    return report.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  std::cout << learner::ReportJson(*report, options, *data);
  if (args.plot) {
    const fs::path out = options.out_dir;
    // Its arguments as they are, without a shell: a quote in OUT broke the command line (and
    // could have run another).
    const std::vector<std::string> argv = {"python3", plot_script, (out / "metrics.csv").string(),
                                           (out / "curves.png").string()};
    if (const std::string failed = RunProgram(argv); !failed.empty()) {
      std::cerr << "gsau train: the run's files are complete; --plot failed: " << failed << "\n";
      return kExitFailure;
    }
  }
  return kExitOk;
}

}  // namespace

void AddTrainCommand(CLI::App& root, int* exit_code) {
  auto args = std::make_shared<TrainArgs>();
  auto& o = args->options;
  auto* cmd = root.add_subcommand("train", "Train GSAU (or a baseline) offline on a dataset and evaluate it");
  cmd->add_option("--data", args->data, "interactions: per-user lines (uid i1 i2 ...) or a table user,item,time (TSV, CSV)")
      ->required();
  cmd->add_option("--times", args->times, "aligned times file for per-user lines");
  cmd->add_option("--model", args->model, "gsau-rec | gsau | sasrec | lightgcn")->capture_default_str();
  cmd->add_option("--out", o.out_dir, "output directory: metrics.csv, checkpoint.pt, best.pt, report.json")
      ->required()
      ->check(NonEmpty());
  cmd->add_flag("--resume", o.resume,
                "continue from OUT/checkpoint.pt when it exists (refused if it was written with other settings)");
  cmd->add_flag("--overwrite", o.overwrite, "start a new run in an OUT that holds an earlier run's checkpoint");
  cmd->add_flag("--plot", args->plot, "write OUT/curves.png from metrics.csv at the end (python3 + matplotlib)");
  cmd->add_option("--gamma", o.gamma, "weight of the uniformity terms")->check(NonNegative())->capture_default_str();
  cmd->add_option("--temperature", o.temperature, "t of the uniformity terms")
      ->check(Positive())
      ->capture_default_str();
  cmd->add_option("--epochs", o.max_epochs, "most epochs")->check(NonNegative())->capture_default_str();
  cmd->add_option("--patience", o.patience,
                  "stop after more than this many epochs without a validation gain (RecBole's stopping_step: "
                  "--patience 10 stops at the 11th)")
      ->check(NonNegative())
      ->capture_default_str();
  cmd->add_option("--valid-metric", o.valid_metric, "early-stopping metric")->capture_default_str();
  cmd->add_option("--lr", o.lr, "Adam learning rate")->check(NonNegative())->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay, "Adam weight decay")->check(NonNegative())->capture_default_str();
  cmd->add_option("--dim", o.dim, "embedding size")->check(Within(1, 4096))->capture_default_str();
  cmd->add_option("--max-len", args->max_len, "longest prefix kept (positions of SASRec)")
      ->check(Within(1, 10000))
      ->capture_default_str();
  cmd->add_option("--train-fraction", args->train_fraction,
                  "train on the first fraction of the training stream (global time order: the data needs times); "
                  "validation and test unchanged")
      ->check(Share(false, true))
      ->capture_default_str();
  cmd->add_option("--graph-layers", o.graph_layers, "LightGCN layers")->check(NonNegative())->capture_default_str();
  cmd->add_option("--seq-layers", o.seq_layers, "SASRec blocks")->check(Positive())->capture_default_str();
  cmd->add_option("--dropout", o.hidden_dropout, "SASRec hidden dropout")
      ->check(Share(true, false))
      ->capture_default_str();
  cmd->add_option("--attn-dropout", o.attn_dropout, "SASRec attention dropout")
      ->check(Share(true, false))
      ->capture_default_str();
  cmd->add_option("--init-std", o.init_std,
                  "weight init: -1 = by model (sasrec N(0,0.02) as RecBole, else Xavier-normal), 0 = Xavier, "
                  ">0 = N(0, std)")
      ->capture_default_str();
  cmd->add_option("--graph-batch", o.graph_batch, "graph pairs per step")->check(Positive())->capture_default_str();
  cmd->add_option("--seq-batch", o.seq_batch, "sequence samples per step")->check(Positive())->capture_default_str();
  cmd->add_option("--eval-batch", o.eval_batch, "users per evaluation chunk")->check(Positive())->capture_default_str();
  cmd->add_option("--max-steps-per-epoch", o.max_steps_per_epoch, "truncate epochs (smoke runs); 0 = whole")
      ->check(NonNegative())->capture_default_str();
  cmd->add_option("--seed", o.seed, "random seed")->check(Uint64())->capture_default_str();
  cmd->add_option("--threads", o.threads,
                  "CPU threads for torch; 0 = every core this process may use (affinity, cgroup CPU quota)")
      ->check(NonNegative())
      ->capture_default_str();
  cmd->add_option("--device", o.device, "auto | cpu | cuda")->capture_default_str();
  cmd->add_flag("!--no-mask-history", o.lightgcn_mask_history,
                "lightgcn: rank over all items instead of masking the user's earlier items");
  cmd->add_flag("!--no-progress", o.progress, "no progress bar");
  cmd->callback([args, exit_code] { *exit_code = RunTrain(*args); });
}

}  // namespace gsau::app
