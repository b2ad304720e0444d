// bench_online: cost of one continual-training step with incremental graph propagation versus
// a full LightGCN pass per step, on a stream made from a real dataset (Amazon Beauty by default).
//
// The users' sequences are interleaved into one stream (each user's clicks in order, users
// drawn at random). The first `--history` fraction goes in as history (graph + replay), the
// rest arrives in chunks of `--chunk` events, each followed by one Step, for `--steps` steps per
// mode. It also reports how far the incremental propagation lags a full recomputation with the
// current tables at a few points before the first cache refresh (the staleness the refresh
// schedule bounds). Figures from this bench are in learner/include/gsau/learner/online.h; they
// came from `bench_online --threads 1 --steps 40` and `--steps 48 --refresh 1000` (lag to 50).
// Last, clicks observed in batches of 16 with no step between, into a fresh learner.
// Last line: BENCH online step_ms_incremental=<ms> step_ms_full=<ms> graph_ms_incremental=<ms>
// graph_ms_full=<ms> observe_events_per_s=<n> observe_small_batches_events_per_s=<n>.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

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
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct ModeResult {
  double step_ms = 0, graph_ms = 0, graph_bwd_ms = 0, refresh_ms = 0, seq_ms = 0, seq_bwd_ms = 0, optimizer_ms = 0;
  double edges = 0;
};

[[noreturn]] void Usage(const std::string& problem) {
  std::cerr << "bench_online: " << problem << "\n"
            << "usage: bench_online [--data PATH] [--steps N] [--threads N] [--chunk N] [--batch N] "
               "[--refresh N] [--history F]\n"
               "  --steps, --chunk, --batch, --refresh: integers >= 1; --threads: >= 0 (0: the cores it may use);\n"
               "  --history: the fraction of the stream loaded as history, in (0, 1)\n";
  std::exit(2);
}


}  // namespace

int main(int argc, char** argv) {
  std::string data_path = "../shared/datasets/amazon-beauty/Beauty_item_org_rank.txt";
  int steps = 30, threads = 2, chunk = 256, batch = 512, refresh = 20;
  double history = 0.9;
  for (int k = 1; k < argc; ++k) {
    const std::string a = argv[k];
    auto next = [&]() -> std::string {
      if (k + 1 >= argc) Usage(a + " needs a value");
      return argv[++k];
    };
    if (a == "--data") data_path = next();
    else if (a == "--steps") steps = ParseIntFlag(a, next(), 1, Usage);
    else if (a == "--threads") threads = ParseIntFlag(a, next(), 0, Usage);
    else if (a == "--chunk") chunk = ParseIntFlag(a, next(), 1, Usage);
    else if (a == "--batch") batch = ParseIntFlag(a, next(), 1, Usage);
    else if (a == "--refresh") refresh = ParseIntFlag(a, next(), 1, Usage);
    else if (a == "--history") history = ParseFractionFlag(a, next(), Usage);
    else Usage("unknown flag '" + a + "'");
  }
  if (!std::filesystem::exists(data_path) && std::filesystem::path(data_path).is_relative()) {
    data_path = (std::filesystem::path(GSAU_SOURCE_DIR) / data_path).string();
  }
  auto data = gsau::learner::LoadLeaveOneOut(data_path, "");
  if (!data.ok()) {
    std::cerr << "bench_online: " << data.status() << "\n";
    return 1;
  }
  const std::vector<OnlineEvent> events = gsau::bench::InterleavedStream(*data);
  std::set<std::pair<uint32_t, uint32_t>> edge_set;
  const auto split = static_cast<size_t>(history * static_cast<double>(events.size()));
  std::printf("data: %zu events, %lld users, %lld items; history %zu events, then chunks of %d\n", events.size(),
              static_cast<long long>(data->num_users - 1), static_cast<long long>(data->num_items - 1), split, chunk);

  ModeResult results[2];
  double observe_rate = 0;
  for (int mode = 0; mode < 2; ++mode) {
    OnlineOptions o;
    o.device = "cpu";
    o.threads = threads;
    o.batch_size = batch;
    o.graph_refresh_steps = refresh;
    o.graph_propagation = mode == 0 ? "incremental" : "full";
    auto created = OnlineLearner::Create(o);
    if (!created.ok()) {
      std::cerr << "bench_online: " << created.status() << "\n";
      return 1;
    }
    auto& l = *created.value();
    const auto t0 = Clock::now();
    const auto history_events = std::span<const OnlineEvent>(events.data(), split);
    if (auto observed = l.Observe(history_events, /*fresh=*/false); !observed.ok()) {
      std::cerr << "bench_online: history: " << observed << "\n";
      return 1;
    }
    if (mode == 0) observe_rate = static_cast<double>(split) / Since(t0);
    for (size_t k = 0; k < split; ++k) edge_set.insert({events[k].user, events[k].item});
    size_t pos = split;
    ModeResult& r = results[mode];
    int measured = 0;
    for (int s = 0; s < steps + 2 && pos < events.size(); ++s) {
      const size_t end = std::min(events.size(), pos + static_cast<size_t>(chunk));
      if (auto observed = l.Observe(std::span<const OnlineEvent>(events.data() + pos, end - pos)); !observed.ok()) {
        std::cerr << "bench_online: observe: " << observed << "\n";
        return 1;
      }
      for (size_t k = pos; k < end; ++k) edge_set.insert({events[k].user, events[k].item});
      pos = end;
      const auto st = l.Step();
      if (!st.ok()) {
        std::cerr << "bench_online: " << st.status() << "\n";
        return 1;
      }
      // The lag of the second layer behind the tables, before the first refresh (warm-up steps
      // included: they are steps since it too).
      const int since = s + 1;
      if (mode == 0 && since <= refresh && (since == 1 || since == 5 || since == 10 || since == 20 || since == 50)) {
        const std::vector<std::pair<uint32_t, uint32_t>> edges(edge_set.begin(), edge_set.end());
        const auto c = l.CheckPropagation(edges);
        if (c.ok()) {
          std::printf("lag after %2d steps since refresh: rms %.2e of rms row %.2e (%.1f%%), max %.2e; vs formula max %.1e\n",
                      since, c->rms_error_vs_current, c->rms_value, 100 * c->rms_error_vs_current / c->rms_value,
                      c->max_error_vs_current, c->max_error_vs_formula);
        }
      }
      if (s < 2) continue;  // warm-up
      ++measured;
      r.step_ms += st->total_s * 1e3;
      r.graph_ms += st->graph_s * 1e3;
      r.graph_bwd_ms += st->graph_backward_s * 1e3;
      r.refresh_ms += st->refresh_s * 1e3;
      r.seq_ms += st->seq_s * 1e3;
      r.seq_bwd_ms += st->seq_backward_s * 1e3;
      r.optimizer_ms += st->optimizer_s * 1e3;
      r.edges += static_cast<double>(st->propagated_edges);
    }
    // The stream may run out before the warm-up is over: no step then to report, and a 0 ms
    // step would read as a measurement.
    if (measured == 0) {
      std::cerr << "bench_online: " << o.graph_propagation << ": the stream ran out after the history before any "
                << "timed step (2 warm-up steps of " << chunk << " events come first): lower --history or --chunk\n";
      return 1;
    }
    if (measured < steps) {
      std::printf("%s: the stream ran out: %d timed steps, not %d\n", o.graph_propagation.c_str(), measured, steps);
    }
    const double n = measured;
    std::printf("%-11s step %.1f ms: graph fwd %.1f + bwd %.1f + %s %.1f | seq fwd %.1f + bwd %.1f | adam %.1f; "
                "edge terms %.0f per step\n",
                o.graph_propagation.c_str(), r.step_ms / n, r.graph_ms / n, r.graph_bwd_ms / n,
                mode == 0 ? "refresh" : "rebuild", r.refresh_ms / n, r.seq_ms / n, r.seq_bwd_ms / n,
                r.optimizer_ms / n, r.edges / n);
    if (mode == 0) {
      const auto t = Clock::now();
      if (gsau::Status s = l.RefreshGraphCache(); !s.ok()) {
        std::fprintf(stderr, "bench_online: %s\n", s.ToString().c_str());
        return 1;
      }
      std::printf("one cache refresh (snapshot + T over all edges): %.1f ms\n", Since(t) * 1e3);
    }
    r.step_ms /= n;
    r.graph_ms = (r.graph_ms + r.graph_bwd_ms + r.refresh_ms) / n;
    edge_set.clear();
  }
  // Clicks taken in as gsau run's learner takes a burst of ingest's micro-batches: many small
  // Observe calls before its next step, here into a fresh learner, then the serving refresh its
  // round ends with. Item ids renumbered in order of first click, as the state store numbers
  // them, so that each new item grows the model's item count (the dataset's ids do not).
  double small_rate = 0;
  {
    const size_t n = std::min(events.size(), size_t{40000});
    std::vector<OnlineEvent> renumbered(events.begin(), events.begin() + static_cast<std::ptrdiff_t>(n));
    std::unordered_map<uint32_t, uint32_t> first_seen;
    auto id = [&](uint32_t item) { return first_seen.try_emplace(item, first_seen.size()).first->second; };
    for (auto& e : renumbered) {
      for (auto& p : e.prefix) p = id(p);
      e.item = id(e.item);
    }
    OnlineOptions o;
    o.device = "cpu";
    o.threads = threads;
    auto created = OnlineLearner::Create(o);
    if (!created.ok()) {
      std::cerr << "bench_online: " << created.status() << "\n";
      return 1;
    }
    auto& l = *created.value();
    constexpr size_t kSmallBatch = 16;
    const auto t0 = Clock::now();
    for (size_t pos = 0; pos < n; pos += kSmallBatch) {
      const auto part = std::span<const OnlineEvent>(renumbered.data() + pos, std::min(kSmallBatch, n - pos));
      if (auto observed = l.Observe(part); !observed.ok()) {
        std::cerr << "bench_online: observe: " << observed << "\n";
        return 1;
      }
    }
    if (auto refreshed = l.RefreshServing(); !refreshed.ok()) {
      std::cerr << "bench_online: serving: " << refreshed << "\n";
      return 1;
    }
    small_rate = static_cast<double>(n) / Since(t0);
    std::printf("observe in batches of %zu clicks, no step between (a fresh learner, %zu clicks, %lld items): "
                "%.0f events/s\n",
                kSmallBatch, n, static_cast<long long>(l.Stats().items), small_rate);
  }
  // graph_ms: forward + backward + refresh (incremental) or adjacency rebuild (full).
  std::printf("BENCH online step_ms_incremental=%.1f step_ms_full=%.1f graph_ms_incremental=%.1f graph_ms_full=%.1f "
              "observe_events_per_s=%.0f observe_small_batches_events_per_s=%.0f\n",
              results[0].step_ms, results[1].step_ms, results[0].graph_ms, results[1].graph_ms, observe_rate,
              small_rate);
  return 0;
}
