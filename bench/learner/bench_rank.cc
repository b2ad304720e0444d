// bench_rank: the prequential scoring of one learner round (RankTargets: the rank of each
// clicked item among every item, for up to 512 clicks a round) at a large catalogue, scored a
// group of users at a time (the learner's way) and as one [users, items] matrix (as before
// 2026-12-08, when that matrix was also copied once more), side by side. Each mode runs in a
// process of its own (this binary again, with --mode), so that each one's peak resident memory
// (VmHWM) is its own; the figure reported is the peak above what the tables alone take.
// Usage: bench_rank [--items N] [--users N] [--dim N] [--threads N] [--reps N]
// Last line: BENCH rank items=<n> users=<n> grouped_ms=<ms> grouped_extra_mb=<MB> whole_ms=<ms>
// whole_extra_mb=<MB>.
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "bench_flags.h"
#include "gsau/learner/model.h"

namespace {

using gsau::bench::ParseIntFlag;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Usage(const std::string& problem) {
  std::cerr << "bench_rank: " << problem << "\n"
            << "usage: bench_rank [--items N] [--users N] [--dim N] [--threads N] [--reps N]\n"
               "  all integers >= 1 (--threads >= 0: 0 for every core)\n";
  std::exit(2);
}

// A field of /proc/self/status in kB (VmHWM: peak resident; VmRSS: resident now).
int64_t StatusKb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string key;
  int64_t kb = -1;
  while (in >> key) {
    if (key == field + ":") {
      in >> kb;
      return kb;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return -1;
}

struct Figures {
  double ms = 0;
  double extra_mb = 0;
};

// One mode in this process: tables made, then `reps` rounds of ranking timed.
Figures RunMode(bool grouped, int items, int users, int dim, int reps) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  const auto table = torch::randn({items + 1, dim});
  const auto user_vectors = torch::randn({users, dim});
  std::vector<uint32_t> targets;
  for (int k = 0; k < users; ++k) targets.push_back(static_cast<uint32_t>((int64_t{k} * 7919) % items));
  const int64_t before_kb = StatusKb("VmHWM");
  const int64_t max_scores = grouped ? int64_t{16} << 20 : std::numeric_limits<int64_t>::max();
  int64_t check = 0;
  const auto start = Clock::now();
  for (int r = 0; r < reps; ++r) {
    for (const int64_t rank : gsau::learner::RankTargets(user_vectors, table, targets, items, max_scores)) {
      check += rank;
    }
  }
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count() / reps;
  if (check < 0) std::fprintf(stderr, "bench_rank: a negative rank sum\n");
  return {ms, static_cast<double>(StatusKb("VmHWM") - before_kb) / 1024.0};
}

// This binary again with --mode `mode`: its one line of figures.
Figures RunChild(const char* self, const std::string& mode, const std::string& args) {
  const std::string cmd = std::string("'") + self + "' --mode " + mode + args;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) Usage("cannot start " + cmd);
  Figures f{-1, -1};
  if (std::fscanf(p, "ms=%lf extra_mb=%lf", &f.ms, &f.extra_mb) != 2) f = {-1, -1};
  if (pclose(p) != 0 || f.ms < 0) {
    std::cerr << "bench_rank: the " << mode << " run failed (" << cmd << ")\n";
    std::exit(1);
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  int items = 1'000'000, users = 512, dim = 64, threads = 0, reps = 3;
  std::string mode;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(a + " wants a value");
      return argv[++i];
    };
    if (a == "--items") {
      items = ParseIntFlag(a, value(), 1, Usage);
    } else if (a == "--users") {
      users = ParseIntFlag(a, value(), 1, Usage);
    } else if (a == "--dim") {
      dim = ParseIntFlag(a, value(), 1, Usage);
    } else if (a == "--threads") {
      threads = ParseIntFlag(a, value(), 0, Usage);
    } else if (a == "--reps") {
      reps = ParseIntFlag(a, value(), 1, Usage);
    } else if (a == "--mode") {
      mode = value();
      if (mode != "grouped" && mode != "whole") Usage("--mode is grouped or whole");
    } else {
      Usage("unknown argument " + a);
    }
  }
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!mode.empty()) {
    torch::set_num_threads(threads);
    const Figures f = RunMode(mode == "grouped", items, users, dim, reps);
    std::printf("ms=%.1f extra_mb=%.0f\n", f.ms, f.extra_mb);
    return 0;
  }
  const std::string args = " --items " + std::to_string(items) + " --users " + std::to_string(users) + " --dim " +
                           std::to_string(dim) + " --threads " + std::to_string(threads) + " --reps " +
                           std::to_string(reps);
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::printf("ranking %d clicks among %d items (dim %d, %d threads, mean of %d rounds), each mode in a\n"
              "process of its own\n", users, items, dim, threads, reps);
  std::fflush(stdout);
  const Figures grouped = RunChild(self.c_str(), "grouped", args);
  std::printf("  grouped (at most 16M scores at once): %8.1f ms a round, %6.0f MB above the tables at peak\n",
              grouped.ms, grouped.extra_mb);
  std::fflush(stdout);
  const Figures whole = RunChild(self.c_str(), "whole", args);
  std::printf("  whole [users, items] matrix:         %8.1f ms a round, %6.0f MB above the tables at peak\n",
              whole.ms, whole.extra_mb);
  std::printf("BENCH rank items=%d users=%d grouped_ms=%.1f grouped_extra_mb=%.0f whole_ms=%.1f whole_extra_mb=%.0f\n",
              items, users, grouped.ms, grouped.extra_mb, whole.ms, whole.extra_mb);
  return 0;
}
