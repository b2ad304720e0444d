// bench_train: how long a GSAU training epoch takes on Amazon Toys, and where the time goes.
//
// By default it times `--steps` steps after at least `--warmup` untimed steps on the same trainer
// and extrapolates to a whole epoch (`--full` times a whole epoch instead), then times one
// validation pass. It also compares three ways of doing the LightGCN sparse product (forward +
// backward of the full propagation), two of the cross-entropy and two of SASRec's attention
// (packed against grouped by length).
// Last line: BENCH train seconds_per_epoch=<s> samples_per_s=<n>.
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "gsau/learner/dataset.h"
#include "gsau/learner/loss.h"
#include "gsau/learner/model.h"
#include "gsau/learner/sparse.h"
#include "gsau/learner/trainer.h"

namespace {

using gsau::learner::CsrMatrix;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// fwd + bwd of a 2-layer LightGCN propagation with `spmm`, mean over `reps` runs, in ms.
template <typename Spmm>
double TimePropagation(const Spmm& spmm, const torch::Tensor& x0, int reps) {
  double total = 0;
  for (int r = 0; r < reps + 1; ++r) {
    auto x = x0.detach().clone().requires_grad_(true);
    const auto t = Clock::now();
    auto e1 = spmm(x);
    auto e2 = spmm(e1);
    auto out = (x + e1 + e2) / 3.0;
    out.sum().backward();
    if (r > 0) total += Since(t);  // the first run warms up
  }
  return 1000.0 * total / reps;
}

void CompareSparseProducts(const gsau::learner::LeaveOneOutData& data) {
  const CsrMatrix l = gsau::learner::BuildNormalizedAdjacency(data.num_users, data.num_items, data.train_pairs);
  const auto x0 = torch::randn({l.rows, 64});
  const int reps = 5;
  const double custom = TimePropagation([&](const torch::Tensor& x) { return gsau::learner::SymmetricSpmm(l, x); }, x0, reps);
  const auto offsets = l.row_ptr.slice(0, 0, l.rows);
  const double bag = TimePropagation(
      [&](const torch::Tensor& x) {
        return std::get<0>(torch::embedding_bag(x, l.col, offsets, false, 0, false, l.val));
      },
      x0, reps);
  const auto counts = l.row_ptr.slice(0, 1) - l.row_ptr.slice(0, 0, l.rows);
  const auto rows = torch::repeat_interleave(torch::arange(l.rows, torch::kInt64), counts);
  const auto coo = torch::sparse_coo_tensor(torch::stack({rows, l.col}), l.val, {l.rows, l.rows}).coalesce();
  const double sparse_mm = TimePropagation([&](const torch::Tensor& x) { return torch::mm(coo, x); }, x0, reps);
  // What a training step computes: the rows of one batch of 512 pairs (users and items) only.
  std::vector<int64_t> batch;
  for (size_t k = 0; k < 512 && k < data.train_pairs.size(); ++k) {
    const auto& p = data.train_pairs[(k * 7919) % data.train_pairs.size()];
    batch.push_back(p.user);
    batch.push_back(data.num_users + p.item);
  }
  const auto batch_rows = torch::tensor(batch);
  double rows_ms = 0;
  for (int r = 0; r < reps + 1; ++r) {
    auto x = x0.detach().clone().requires_grad_(true);
    const auto t = Clock::now();
    gsau::learner::LightGcnPropagateRows(l, x, 2, batch_rows).sum().backward();
    if (r > 0) rows_ms += 1000.0 * Since(t) / reps;
  }
  std::printf("LightGCN K=2 fwd+bwd over %lld nodes, %lld nnz, d=64: csr kernel %.1f ms, embedding_bag %.1f ms, "
              "torch sparse mm %.1f ms; a batch's rows only (training step) %.1f ms\n",
              static_cast<long long>(l.rows), static_cast<long long>(l.col.size(0)), custom, bag, sparse_mm, rows_ms);
}

// Cross-entropy over all items, forward + backward, fused vs torch's, interleaved so that both
// see the same machine load; mean ms over `reps` runs each.
void CompareCrossEntropy(int64_t num_items) {
  const auto q0 = torch::randn({512, 64});
  const auto table0 = torch::randn({num_items, 64}) * 0.1;
  const auto targets = torch::randint(1, num_items, {512}, torch::kInt64);
  const int reps = 10;
  double fused = 0, reference = 0;
  for (int r = 0; r < reps + 1; ++r) {
    auto q = q0.clone().requires_grad_(true), t = table0.clone().requires_grad_(true);
    auto start = Clock::now();
    gsau::learner::FullSoftmaxCrossEntropy(q, t, targets).backward();
    if (r > 0) fused += Since(start);
    auto qr = q0.clone().requires_grad_(true), tr = table0.clone().requires_grad_(true);
    start = Clock::now();
    torch::nn::functional::cross_entropy(torch::matmul(qr, tr.t()), targets).backward();
    if (r > 0) reference += Since(start);
  }
  std::printf("CE over %lld items, batch 512, fwd+bwd: fused %.1f ms, torch mm + cross_entropy %.1f ms\n",
              static_cast<long long>(num_items), 1000.0 * fused / reps, 1000.0 * reference / reps);
}

// SASRec forward + backward (2 blocks, d = 64, dropout 0.5, training mode) on real batches of 512
// training prefixes, attention over the packed tokens against padded length groups, same weights,
// interleaved; mean ms per batch.
void CompareAttention(const gsau::learner::LeaveOneOutData& data) {
  using gsau::learner::GsauModel;
  using gsau::learner::GsauModelOptions;
  torch::manual_seed(1);
  const auto options = GsauModelOptions(data.num_users, data.num_items).max_len(data.max_len);
  GsauModel packed(options);
  GsauModel grouped(GsauModelOptions(options).packed_attention(false));
  {
    torch::NoGradGuard no_grad;
    auto src = packed->parameters();
    auto dst = grouped->parameters();
    for (size_t k = 0; k < src.size(); ++k) dst[k].copy_(src[k]);
  }
  const int reps = 10;
  const size_t b = 512;
  double packed_s = 0, grouped_s = 0;
  int64_t tokens = 0;
  for (int r = 0; r < reps + 1; ++r) {
    std::vector<const gsau::learner::SequenceSample*> picked;
    std::vector<int64_t> lengths;
    int32_t len = 1;
    for (size_t k = 0; k < b; ++k) {
      picked.push_back(&data.train_samples[(static_cast<size_t>(r) * b + k) * 7919 % data.train_samples.size()]);
      lengths.push_back(data.PrefixLength(*picked.back()));
      len = std::max(len, data.PrefixLength(*picked.back()));
    }
    auto items = torch::zeros({static_cast<int64_t>(b), len}, torch::kInt64);
    auto* it = items.data_ptr<int64_t>();
    for (size_t k = 0; k < b; ++k) {
      const auto& seq = data.sequences[static_cast<size_t>(picked[k]->user)];
      for (int64_t t = 0; t < lengths[k]; ++t) {
        it[static_cast<int64_t>(k) * len + t] = seq[static_cast<size_t>(picked[k]->end - lengths[k] + t)];
      }
    }
    const gsau::learner::SequenceBatch batch{items, torch::tensor(lengths, torch::kInt64)};
    for (auto* m : {&packed, &grouped}) {
      const auto start = Clock::now();
      (*m)->SequenceForward(batch).sum().backward();
      if (r > 0) (m == &packed ? packed_s : grouped_s) += Since(start);
    }
    if (r > 0) tokens += std::accumulate(lengths.begin(), lengths.end(), int64_t{0});
  }
  std::printf("SASRec fwd+bwd, batch 512 (%.0f tokens on average): packed attention %.1f ms, "
              "grouped by length %.1f ms\n",
              static_cast<double>(tokens) / reps, 1000.0 * packed_s / reps, 1000.0 * grouped_s / reps);
}

constexpr const char* kUsage =
    "usage: bench_train [--data PATH] [--model gsau-rec|gsau|sasrec|lightgcn] [--threads N] "
    "[--device cpu|cuda] [--steps N] [--warmup N] [--full] [--profile TRACE.json]\n"
    "  --steps N (>= 1, default 30): timed steps, extrapolated to an epoch (--full: the whole epoch)\n"
    "  --warmup N (>= 0, default 3): at least N untimed steps first, on the trainer that is timed, in\n"
    "    whole epochs of it (each as long as the timed one, so --steps or, with --full, a whole epoch)\n"
    "  --threads N (>= 0, default 0: the cores it may use)\n";

[[noreturn]] void Usage(const std::string& problem) {
  std::cerr << "bench_train: " << problem << "\n" << kUsage;
  std::exit(2);
}

// `text` as an integer >= lo, or a usage error naming `flag` (atoll read "x" as 0, which
// meant a whole epoch).
int64_t ParseCount(const std::string& flag, const std::string& text, int64_t lo) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > INT32_MAX) {
    Usage(flag + " wants an integer in [" + std::to_string(lo) + ", " + std::to_string(INT32_MAX) + "], got '" +
          text + "'");
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::string data_path = "../shared/datasets/amazon-toys/Toys_and_Games.txt";
  std::string model = "gsau-rec";
  std::string device = "cpu";
  int threads = 0;
  int64_t steps = 30;
  int64_t warmup = 3;
  bool full = false;
  std::string profile;  // chrome-trace JSON of the timed steps (torch's legacy profiler)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--data") data_path = next();
    else if (a == "--model") model = next();
    else if (a == "--threads") threads = static_cast<int>(ParseCount(a, next(), 0));
    else if (a == "--device") device = next();
    else if (a == "--steps") steps = ParseCount(a, next(), 1);
    else if (a == "--warmup") warmup = ParseCount(a, next(), 0);
    else if (a == "--full") full = true;
    else if (a == "--profile") profile = next();
    else Usage("unknown flag '" + a + "'");
  }
  // A relative default is relative to the repository root, wherever the bench runs from.
  if (!std::filesystem::exists(data_path) && std::filesystem::path(data_path).is_relative()) {
    data_path = (std::filesystem::path(GSAU_SOURCE_DIR) / data_path).string();
  }
  auto data = gsau::learner::LoadLeaveOneOut(data_path, "");
  if (!data.ok()) {
    std::cerr << "bench_train: " << data.status() << "\n";
    return 1;
  }
  gsau::learner::TrainOptions opt;
  if (!gsau::learner::ParseModelKind(model, &opt.model)) {
    std::cerr << "bench_train: unknown model " << model << "\n";
    return 2;
  }
  opt.threads = threads;
  opt.device = device;
  opt.progress = false;
  auto trainer = gsau::learner::Trainer::Create(*data, opt);
  if (!trainer.ok()) {
    std::cerr << "bench_train: " << trainer.status() << "\n";
    return 1;
  }
  auto& t = **trainer;
  const int64_t epoch_steps = t.StepsPerEpoch();
  std::printf("data %s: %lld users, %lld items, %zu graph pairs, %zu training samples; model %s, %d threads, "
              "device %s, %lld steps per epoch\n",
              data_path.c_str(), static_cast<long long>(data->num_users - 1), static_cast<long long>(data->num_items - 1),
              data->train_pairs.size(), data->train_samples.size(), model.c_str(), t.Threads(),
              t.DeviceName().c_str(), static_cast<long long>(epoch_steps));
  CompareSparseProducts(*data);  // on the CPU
  CompareCrossEntropy(data->num_items);
  CompareAttention(*data);

  if (epoch_steps <= 0) {
    std::cerr << "bench_train: the data gives no training step: nothing to time\n";
    return 1;
  }

  // The warm-up runs on the trainer that is timed: a separate one would leave this one's first
  // allocations (Adam state, batch buffers) to its first timed step. A trainer's epochs all have
  // the length it was created with, so the warm-up is whole epochs of it.
  gsau::learner::StepTimings tm;
  gsau::learner::EpochStats stats;
  int64_t warmed = 0;
  int warm_epochs = 0;
  {
    auto o = opt;
    o.max_steps_per_epoch = full ? 0 : steps;
    auto timed = gsau::learner::Trainer::Create(*data, o);
    if (!timed.ok()) {
      std::cerr << "bench_train: " << timed.status() << "\n";
      return 1;
    }
    while (warmed < warmup) {
      auto w = (*timed)->TrainEpoch(++warm_epochs, nullptr);
      if (!w.ok()) {
        std::cerr << "bench_train: warm-up epoch " << warm_epochs << ": " << w.status() << "\n";
        return 1;
      }
      if (w->steps <= 0) {
        std::cerr << "bench_train: warm-up epoch " << warm_epochs << " ran no step\n";
        return 1;
      }
      warmed += w->steps;
    }
    std::unique_ptr<torch::autograd::profiler::RecordProfile> prof;
    if (!profile.empty()) prof = std::make_unique<torch::autograd::profiler::RecordProfile>(profile);
    auto r = (*timed)->TrainEpoch(warm_epochs + 1, &tm);
    prof.reset();
    if (!r.ok()) {
      std::cerr << "bench_train: " << r.status() << "\n";
      return 1;
    }
    stats = *r;
  }
  if (stats.steps <= 0 || stats.train_seconds <= 0) {
    std::cerr << "bench_train: the timed epoch ran " << stats.steps << " steps in " << stats.train_seconds
              << " s: nothing to time\n";
    return 1;
  }
  // --steps at or above the epoch's length times the whole epoch too: say so rather than
  // "extrapolated".
  const bool whole = stats.steps >= epoch_steps;
  const double per_step = stats.train_seconds / static_cast<double>(stats.steps);
  const double seconds_per_epoch = per_step * static_cast<double>(epoch_steps);
  const double samples_per_step = static_cast<double>(stats.samples) / static_cast<double>(stats.steps);
  auto ms = [&](double s) { return 1000.0 * s / static_cast<double>(tm.steps); };
  std::printf("warm-up: %lld untimed steps (%d epoch%s of the timed trainer)\n", static_cast<long long>(warmed),
              warm_epochs, warm_epochs == 1 ? "" : "s");
  std::printf("per step (mean of %lld steps%s): total %.1f ms = batch %.1f + graph fwd %.1f + graph loss %.1f + "
              "graph bwd %.1f + seq fwd %.1f + seq loss %.1f + seq bwd %.1f + optimiser %.1f ms\n",
              static_cast<long long>(tm.steps), whole ? ", whole epoch" : "", 1000.0 * per_step, ms(tm.batch),
              ms(tm.graph_fwd), ms(tm.graph_loss), ms(tm.graph_bwd), ms(tm.seq_fwd), ms(tm.seq_loss), ms(tm.seq_bwd),
              ms(tm.optimizer));
  const auto ev = Clock::now();
  auto valid = t.Evaluate(gsau::learner::Split::kValid);
  if (!valid.ok()) {
    std::cerr << "bench_train: " << valid.status() << "\n";
    return 1;
  }
  std::printf("validation pass (full ranking, %zu users): %.2f s\n", data->valid_samples.size(), Since(ev));
  std::printf("epoch: %lld steps x %.1f ms = %.1f s%s\n", static_cast<long long>(epoch_steps), 1000.0 * per_step,
              seconds_per_epoch, whole ? " (measured)" : " (extrapolated)");
  std::printf("BENCH train seconds_per_epoch=%.2f samples_per_s=%.0f\n", seconds_per_epoch, samples_per_step / per_step);
  return 0;
}
