// bench_online_quality: what the online learner's incremental graph propagation costs in
// prequential quality against a full LightGCN pass per step, side by side on one stream.
//
// The incremental mode (the default) gives a step's batch rows another gradient than the full
// propagation: no path back through their neighbours, none to nodes two hops away (online.h).
// Both modes see the same stream (a dataset's users interleaved, interleaved_stream.h; Amazon
// Beauty by default): the first `--history` fraction as history (graph + replay), on which one
// learner takes `--warmup-steps` steps (replay alone, incremental); both modes start from its
// checkpoint, so they differ only in how they train on what follows: chunks of
// `--chunk` clicks, each ranked before the learner sees it (test-then-train, as gsau run's online
// figures: only clicks whose prefix holds a known item), observed, and followed by `--steps-per-chunk` steps. Prints each mode's prequential
// Recall and NDCG at 10 and 20, its steps and seconds; writes `--out` (CSV, one row per mode and
// window of `--window` chunks) for plotting. The same seed and options for both modes.
// Last line: BENCH online_quality clicks=<ranked> recall20_incremental=<r> recall20_full=<r>
// ndcg20_incremental=<n> ndcg20_full=<n> seconds_incremental=<s> seconds_full=<s>. A run that ranks
// no click exits 1 without it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "gsau/learner/dataset.h"
#include "gsau/learner/online.h"
#include "bench_flags.h"
#include "interleaved_stream.h"

namespace {

using gsau::bench::ParseFractionFlag;
using gsau::bench::ParseIntFlag;
using gsau::learner::OnlineEvent;
using gsau::learner::OnlineLearner;
using gsau::learner::OnlineOptions;
using gsau::learner::PrequentialStats;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

[[noreturn]] void Usage(const std::string& problem) {
  std::cerr << "bench_online_quality: " << problem << "\n"
            << "usage: bench_online_quality [--data PATH] [--threads N] [--history F] [--chunk N] "
               "[--steps-per-chunk N] [--warmup-steps N] [--window N] [--limit N] [--out CSV]\n"
               "  --chunk, --steps-per-chunk, --window: integers >= 1; --threads: >= 0 (0: the cores it may use);\n"
               "  --limit: clicks streamed after the history, 0 = all; --history: a fraction in (0, 1)\n";
  std::exit(2);
}


struct ModeResult {
  PrequentialStats total;
  int64_t steps = 0;
  double seconds = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string data_path = "../shared/datasets/amazon-beauty/Beauty_item_org_rank.txt", out_path;
  int threads = 2, chunk = 256, steps_per_chunk = 4, warmup_steps = 3000, window = 40, limit = 0;
  double history = 0.5;
  for (int k = 1; k < argc; ++k) {
    const std::string a = argv[k];
    auto next = [&]() -> std::string {
      if (k + 1 >= argc) Usage(a + " needs a value");
      return argv[++k];
    };
    if (a == "--data") data_path = next();
    else if (a == "--threads") threads = ParseIntFlag(a, next(), 0, Usage);
    else if (a == "--history") history = ParseFractionFlag(a, next(), Usage);
    else if (a == "--chunk") chunk = ParseIntFlag(a, next(), 1, Usage);
    else if (a == "--steps-per-chunk") steps_per_chunk = ParseIntFlag(a, next(), 1, Usage);
    else if (a == "--warmup-steps") warmup_steps = ParseIntFlag(a, next(), 0, Usage);
    else if (a == "--window") window = ParseIntFlag(a, next(), 1, Usage);
    else if (a == "--limit") limit = ParseIntFlag(a, next(), 0, Usage);
    else if (a == "--out") out_path = next();
    else Usage("unknown flag '" + a + "'");
  }
  if (!std::filesystem::exists(data_path) && std::filesystem::path(data_path).is_relative()) {
    data_path = (std::filesystem::path(GSAU_SOURCE_DIR) / data_path).string();
  }
  auto data = gsau::learner::LoadLeaveOneOut(data_path, "");
  if (!data.ok()) {
    std::cerr << "bench_online_quality: " << data.status() << "\n";
    return 1;
  }
  const std::vector<OnlineEvent> events = gsau::bench::InterleavedStream(*data);
  const auto split = static_cast<size_t>(history * static_cast<double>(events.size()));
  const size_t end = limit > 0 ? std::min(events.size(), split + static_cast<size_t>(limit)) : events.size();
  const size_t chunks = (end - split + static_cast<size_t>(chunk) - 1) / static_cast<size_t>(chunk);
  std::printf("data: %zu events; history %zu, then %zu clicks in %zu chunks of %d, %d steps each; %d threads\n",
              events.size(), split, end - split, chunks, chunk, steps_per_chunk, threads);
  std::ofstream csv;
  // Written beside the target and renamed at the end: a run stopped part-way (or one that ranked
  // nothing) leaves the previous file as it was.
  const std::string tmp_path = out_path + ".tmp";
  if (!out_path.empty()) {
    csv.open(tmp_path);
    if (!csv) {
      std::cerr << "bench_online_quality: cannot write " << tmp_path << "\n";
      return 1;
    }
    csv << "mode,clicks,window_count,window_recall10,window_recall20,window_ndcg10,window_ndcg20,total_recall20,"
           "total_ndcg20,steps,seconds\n";
  }

  const char* modes[2] = {"incremental", "full"};
  const auto make = [&](const char* mode) -> std::unique_ptr<OnlineLearner> {
    OnlineOptions o;
    o.device = "cpu";
    o.threads = threads;
    o.graph_propagation = mode;
    auto created = OnlineLearner::Create(o);
    if (!created.ok()) {
      std::cerr << "bench_online_quality: " << created.status() << "\n";
      return nullptr;
    }
    return std::move(created).value();
  };
  // The warm start both modes load (removed on every way out).
  struct RemoveOnExit {
    std::string path;
    ~RemoveOnExit() {
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
  } warm_file{(std::filesystem::temp_directory_path() /
               ("gsau-online-quality-" + std::to_string(::getpid()) + ".pt")).string()};
  const std::string& warm = warm_file.path;
  {
    auto l = make(modes[0]);
    if (!l) return 1;
    const auto t0 = Clock::now();
    if (auto s = l->Observe(std::span<const OnlineEvent>(events.data(), split), /*fresh=*/false); !s.ok()) {
      std::cerr << "bench_online_quality: history: " << s << "\n";
      return 1;
    }
    for (int k = 1; k <= warmup_steps; ++k) {
      if (auto st = l->Step(); !st.ok()) {
        std::cerr << "bench_online_quality: warm-up: " << st.status() << "\n";
        return 1;
      }
      if (k % 100 == 0 || k == warmup_steps) {
        const double secs = Since(t0);
        std::printf("warm-up %5d/%d steps on the history  %.0f s, ETA %.0f s\n", k, warmup_steps, secs,
                    secs / k * (warmup_steps - k));
        std::fflush(stdout);
      }
    }
    if (auto s = l->Save(warm, {}); !s.ok()) {
      std::cerr << "bench_online_quality: " << s << "\n";
      return 1;
    }
  }
  ModeResult results[2];
  for (int mode = 0; mode < 2; ++mode) {
    auto learner = make(modes[mode]);
    if (!learner) return 1;
    auto& l = *learner;
    ModeResult& r = results[mode];
    const auto t0 = Clock::now();
    if (auto loaded = l.Load(warm); !loaded.ok()) {
      std::cerr << "bench_online_quality: " << loaded.status() << "\n";
      return 1;
    }
    PrequentialStats win;
    std::vector<std::vector<uint32_t>> sessions;
    std::vector<uint32_t> targets;
    size_t done = 0;
    for (size_t pos = split; pos < end; pos += static_cast<size_t>(chunk)) {
      const size_t stop = std::min(end, pos + static_cast<size_t>(chunk));
      const std::span<const OnlineEvent> part(events.data() + pos, stop - pos);
      // Ranked before the learner sees them, as gsau run ranks them: clicks whose prefix holds an
      // item the model knows (the same clicks in both modes: they observe the same stream).
      sessions.clear();
      targets.clear();
      const int64_t known = l.Stats().items;
      for (const auto& e : part) {
        if (!gsau::learner::CanEmbed(e.prefix, known)) continue;
        sessions.push_back(e.prefix);
        targets.push_back(e.item);
      }
      if (!sessions.empty()) {
        auto ranks = l.ScoreRanks(sessions, targets);
        if (!ranks.ok()) {
          std::cerr << "bench_online_quality: ranking: " << ranks.status() << "\n";
          return 1;
        }
        for (int64_t rank : *ranks) {
          win.Add(rank);
          r.total.Add(rank);
        }
      }
      if (auto s = l.Observe(part); !s.ok()) {
        std::cerr << "bench_online_quality: observe: " << s << "\n";
        return 1;
      }
      for (int s = 0; s < steps_per_chunk; ++s) {
        auto st = l.Step();
        if (!st.ok()) {
          std::cerr << "bench_online_quality: " << modes[mode] << ": " << st.status() << "\n";
          return 1;
        }
        r.steps += st->trained ? 1 : 0;
      }
      ++done;
      if (done % static_cast<size_t>(window) == 0 || stop == end) {
        const double secs = Since(t0);
        const double eta = secs / static_cast<double>(done) * static_cast<double>(chunks - done);
        std::printf("%-11s %5zu/%zu chunks  window recall@20 %.4f ndcg@20 %.4f  total recall@20 %.4f ndcg@20 "
                    "%.4f  %.0f s, ETA %.0f s\n",
                    modes[mode], done, chunks, win.HitRate20(), win.Ndcg20(), r.total.HitRate20(), r.total.Ndcg20(),
                    secs, eta);
        std::fflush(stdout);
        if (csv.is_open()) {
          csv << modes[mode] << ',' << stop - split << ',' << win.count << ',' << win.HitRate10() << ','
              << win.HitRate20() << ',' << win.Ndcg10() << ',' << win.Ndcg20() << ',' << r.total.HitRate20() << ','
              << r.total.Ndcg20() << ',' << r.steps << ',' << secs << '\n';
          csv.flush();
        }
        win = {};
      }
    }
    r.seconds = Since(t0);
    std::printf("%-11s prequential over %lld clicks: recall@10 %.4f recall@20 %.4f ndcg@10 %.4f ndcg@20 %.4f; "
                "%lld steps, %.0f s\n",
                modes[mode], static_cast<long long>(r.total.count), r.total.HitRate10(), r.total.HitRate20(),
                r.total.Ndcg10(), r.total.Ndcg20(), static_cast<long long>(r.steps), r.seconds);
  }
  for (int mode = 0; mode < 2; ++mode) {
    if (results[mode].total.count == 0) {
      std::cerr << "bench_online_quality: " << modes[mode]
                << ": no click could be ranked (a larger --limit, or a smaller --history?)\n";
      if (csv.is_open()) {
        csv.close();
        std::filesystem::remove(tmp_path);
      }
      return 1;
    }
  }
  if (csv.is_open()) {
    csv.close();
    if (!csv || std::rename(tmp_path.c_str(), out_path.c_str()) != 0) {
      std::cerr << "bench_online_quality: cannot write " << out_path << "\n";
      return 1;
    }
  }
  std::printf("BENCH online_quality clicks=%lld recall20_incremental=%.4f recall20_full=%.4f "
              "ndcg20_incremental=%.4f ndcg20_full=%.4f seconds_incremental=%.0f seconds_full=%.0f\n",
              static_cast<long long>(results[0].total.count), results[0].total.HitRate20(),
              results[1].total.HitRate20(), results[0].total.Ndcg20(), results[1].total.Ndcg20(), results[0].seconds,
              results[1].seconds);
  return 0;
}
