// gsau split: the two streams of the continual-quality experiment (issue 6) as TSV files that
// `gsau replay` plays. `offline` is exactly what `gsau train --train-fraction F` on the same
// file trains on; `online` is every other interaction but each user's test item (the rest of
// the training stream and the validation items), in event-time order. A pipeline started from
// the offline run (`gsau run --init-offline`) on a state holding `offline` then streams
// `online`, and `gsau evaluate` scores it on the same test split as the offline runs.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "cli_checks.h"
#include "commands.h"
#include "gsau/data/interactions.h"
#include "gsau/learner/dataset.h"
#include "output_paths.h"

namespace gsau::app {
namespace {

struct SplitArgs {
  std::string data, times;
  double train_fraction = 0.8;
  std::string offline_out, online_out;
};

// Checked before anything is read or written: one output written over the other, or over an
// input, would lose it (the summary still named both files).
std::string BadOutputs(const SplitArgs& a) {
  const std::vector<std::pair<std::string, std::string>> inputs = {{"--data", a.data}, {"--times", a.times}};
  const std::pair<const char*, std::string> outs[] = {{"--offline-out", a.offline_out},
                                                       {"--online-out", a.online_out}};
  for (const auto& [flag, path] : outs) {
    if (std::string bad = OutputPathProblem(flag, path, inputs); !bad.empty()) return bad;
  }
  if (SameFileKey(a.offline_out) == SameFileKey(a.online_out)) {
    return "--offline-out and --online-out are the same file (" + a.online_out +
           "); the second would replace the first";
  }
  return "";
}

int RunSplit(const SplitArgs& a) {
  if (const std::string bad = BadOutputs(a); !bad.empty()) {
    std::cerr << "gsau split: " << bad << "\n";
    return kExitUsage;
  }
  data::ReadOptions ro;
  ro.times_path = a.times;
  auto events = data::ReadInteractions(a.data, ro);
  if (!events.ok()) {
    std::cerr << "gsau split: " << events.status().ToString() << "\n";
    return kExitFailure;
  }
  for (const auto& e : *events) {
    if (!e.has_time) {
      std::cerr << "gsau split: " << a.data
                << " has no event times (per-user lines need --times): the streams are in event-time order\n";
      return kExitUsage;
    }
  }
  learner::SplitOptions so;
  so.train_fraction = a.train_fraction;
  auto split = learner::SplitStream(*events, so);
  if (!split.ok()) {
    std::cerr << "gsau split: " << split.status().ToString() << "\n";
    return kExitFailure;
  }
  // The two files are one result: when the second cannot be written, the first (this run's)
  // is removed rather than left beside another run's second.
  if (auto s = data::WriteInteractionsTsv(a.offline_out, split->offline); !s.ok()) {
    std::cerr << "gsau split: " << s.ToString() << "\n";
    return kExitFailure;
  }
  if (auto s = data::WriteInteractionsTsv(a.online_out, split->online); !s.ok()) {
    std::error_code ec;
    std::filesystem::remove(a.offline_out, ec);
    std::cerr << "gsau split: " << s.ToString() << " (" << a.offline_out << " removed: the two files go together)\n";
    return kExitFailure;
  }
  std::printf("gsau split: %zu interactions; offline (train fraction %.2f) %zu -> %s; online %zu -> %s; %zu test items held out\n",
              events->size(), a.train_fraction, split->offline.size(), a.offline_out.c_str(), split->online.size(),
              a.online_out.c_str(), events->size() - split->offline.size() - split->online.size());
  return kExitOk;
}

}  // namespace

void AddSplitCommand(CLI::App& root, int* exit_code) {
  auto args = std::make_shared<SplitArgs>();
  auto* cmd = root.add_subcommand(
      "split", "Write a dataset's offline part (what `gsau train --train-fraction F` trains on) and the rest but the "
               "test items as TSV streams for `gsau replay` (the continual-quality experiment)");
  cmd->add_option("--data", args->data, "interactions: per-user lines (uid i1 i2 ...) or a table user,item,time (TSV, CSV)")
      ->required();
  cmd->add_option("--times", args->times, "aligned times file for per-user lines");
  cmd->add_option("--train-fraction", args->train_fraction, "the offline part: this first fraction of the training stream")
      ->check(Share(false, true))
      ->capture_default_str();
  cmd->add_option("--offline-out", args->offline_out, "TSV of the offline part (user_id, item_id, timestamp in ms)")
      ->required();
  cmd->add_option("--online-out", args->online_out, "TSV of the rest, test items excluded")->required();
  cmd->callback([args, exit_code] { *exit_code = RunSplit(*args); });
}

}  // namespace gsau::app
