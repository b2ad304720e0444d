#include "gsau/learner/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "gsau/common/cpu.h"
#include "gsau/common/file.h"
#include "gsau/common/json.h"
#include "gsau/common/log.h"
#include "gsau/common/progress.h"
#include "gsau/learner/loss.h"
#include "gsau/learner/model.h"
#include "gsau/learner/sparse.h"
#include "blas_threads.h"

namespace gsau::learner {
namespace fs = std::filesystem;
namespace F = torch::nn::functional;

const char* ModelKindName(ModelKind kind) {
  switch (kind) {
    case ModelKind::kGsauRec: return "gsau-rec";
    case ModelKind::kGsau: return "gsau";
    case ModelKind::kSasRec: return "sasrec";
    case ModelKind::kLightGcn: return "lightgcn";
  }
  return "?";
}

bool ParseModelKind(const std::string& name, ModelKind* out) {
  for (auto k : {ModelKind::kGsauRec, ModelKind::kGsau, ModelKind::kSasRec, ModelKind::kLightGcn}) {
    if (name == ModelKindName(k)) {
      *out = k;
      return true;
    }
  }
  return false;
}

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

Status TorchError(const c10::Error& e, const std::string& what) {
  return Status::Internal(what + ": torch: " + e.what_without_backtrace());
}

// Through WriteFileAtomically: a crash leaves the old file or the new one, and a full disk is
// an error (LibTorch's own file writer aborts the process then).
Status SaveAtomically(torch::serialize::OutputArchive& archive, const fs::path& path) {
  return WriteFileAtomically(path.string(), [&](const ByteSink& sink) { archive.save_to(sink); });
}

}  // namespace

std::string SettingsDiff(const std::string& saved, const std::string& now, double default_init_std) {
  const auto parse = [](const std::string& text) {
    std::map<std::string, std::string> kv;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      const auto eq = line.find('=');
      if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return kv;
  };
  const auto a = parse(saved), b = parse(now);
  std::string diff;
  for (const auto& [key, value] : b) {
    const auto it = a.find(key);
    if (it == a.end() || it->second == value) continue;
    // Checkpoints written before the settings held the init the model got say -1 for it.
    if (key == "init_std" && std::strtod(it->second.c_str(), nullptr) < 0 &&
        std::strtod(value.c_str(), nullptr) == default_init_std) {
      continue;
    }
    // users and items count the padding row 0: said as the log and report.json count them (the
    // stored values stay, or every checkpoint written before would be refused).
    const auto shown = [&](const std::string& v) {
      if (key != "users" && key != "items") return v;
      const long long n = std::strtoll(v.c_str(), nullptr, 10);
      return n > 0 ? std::to_string(n - 1) : v;
    };
    diff += (diff.empty() ? "" : "; ") + key + " " + shown(it->second) + ", now " + shown(value);
  }
  return diff;
}

namespace {

// FNV-1a over the data a run trains and tests on: the ids' names, every user's sequence and the
// graph pairs. Sizes alone let a resume take another file of the same shape (a reordered one,
// or one with other same-day ties) and go on training with every id meaning another item.
std::string DataFingerprint(const LeaveOneOutData& d) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t k = 0; k < n; ++k) h = (h ^ b[k]) * 1099511628211ULL;
  };
  auto mix_int = [&mix](int64_t v) { mix(&v, sizeof v); };
  for (const auto* names : {&d.user_names, &d.item_names}) {
    mix_int(static_cast<int64_t>(names->size()));
    for (const auto& n : *names) {
      mix_int(static_cast<int64_t>(n.size()));
      mix(n.data(), n.size());
    }
  }
  for (const auto& seq : d.sequences) {
    mix_int(static_cast<int64_t>(seq.size()));
    mix(seq.data(), seq.size() * sizeof(int32_t));
  }
  for (const auto& p : d.train_pairs) {
    mix_int(p.user);
    mix_int(p.item);
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// Key of the k-th best parameter in a checkpoint. (Appended, not "p" + to_string: GCC 12
// warns falsely (-Wrestrict) about that at -O3.)
std::string BestKey(size_t k) {
  std::string key = "p";
  key += std::to_string(k);
  return key;
}

// threads and device last: a resume keeps the rows of a CSV written before they were added,
// padded with two empty fields.
std::string CsvHeader() {
  std::string h = "epoch,steps,samples,train_seconds,eval_seconds,loss,graph_align,graph_unif,seq_align,seq_unif";
  for (const auto& n : RankingMetrics::Names()) h += ",valid_" + n;
  return h + ",threads,device";
}

std::string CsvRow(const EpochStats& s, int threads, const std::string& device) {
  std::ostringstream os;
  os.precision(6);
  os << s.epoch << ',' << s.steps << ',' << s.samples << ',' << s.train_seconds << ',' << s.eval_seconds
     << ',' << s.loss << ',' << s.graph_align << ',' << s.graph_unif << ',' << s.seq_align << ','
     << s.seq_unif;
  for (double v : s.valid.Values()) os << ',' << v;
  os << ',' << threads << ',' << device;
  return os.str();
}

// One entry per run of consecutive epochs with the same threads and device.
void AddEpochSetup(std::vector<EpochSetup>& setups, int epoch, int threads, const std::string& device) {
  if (!setups.empty() && setups.back().threads == threads && setups.back().device == device &&
      setups.back().last_epoch + 1 == epoch) {
    setups.back().last_epoch = epoch;
  } else {
    setups.push_back({epoch, epoch, threads, device});
  }
}

}  // namespace

struct Trainer::Impl {
  const LeaveOneOutData& data;
  TrainOptions opt;
  std::string data_fingerprint;  // DataFingerprint(data), one of the Settings()
  torch::Device device = torch::kCPU;
  int threads = 1;
  bool use_graph = true;
  bool use_seq = true;
  GsauModel model{nullptr};
  std::unique_ptr<torch::optim::Adam> adam;
  CsrMatrix adjacency;       // on `device`: evaluation's full propagation
  CsrMatrix host_adjacency;  // the same on the CPU: the training steps' plans
  std::mt19937_64 rng;
  std::vector<torch::Tensor> best_params;  // clones of the best weights so far

  Impl(const LeaveOneOutData& d, const TrainOptions& o) : data(d), opt(o), data_fingerprint(DataFingerprint(d)) {}

  // Right-padded prefixes of samples[order[begin..end)] and their targets.
  std::pair<SequenceBatch, torch::Tensor> MakeSequenceBatch(const std::vector<SequenceSample>& samples,
                                                            const std::vector<int64_t>* order,
                                                            int64_t begin, int64_t end) const {
    const int64_t b = end - begin;
    int32_t len = 1;
    for (int64_t k = begin; k < end; ++k) {
      const auto& s = samples[static_cast<size_t>(order ? (*order)[static_cast<size_t>(k)] : k)];
      len = std::max(len, data.PrefixLength(s));
    }
    std::vector<int64_t> items(static_cast<size_t>(b * len), 0);
    std::vector<int64_t> lengths(static_cast<size_t>(b));
    std::vector<int64_t> targets(static_cast<size_t>(b));
    for (int64_t k = begin; k < end; ++k) {
      const auto& s = samples[static_cast<size_t>(order ? (*order)[static_cast<size_t>(k)] : k)];
      const auto& seq = data.sequences[static_cast<size_t>(s.user)];
      const int32_t l = data.PrefixLength(s);
      const size_t row = static_cast<size_t>(k - begin);
      for (int32_t t = 0; t < l; ++t) items[row * static_cast<size_t>(len) + static_cast<size_t>(t)] = seq[static_cast<size_t>(s.end - l + t)];
      lengths[row] = l;
      targets[row] = s.target;
    }
    SequenceBatch batch{torch::tensor(items, torch::kInt64).view({b, len}).to(device),
                        torch::tensor(lengths, torch::kInt64).to(device)};
    return {batch, torch::tensor(targets, torch::kInt64).to(device)};
  }

  std::vector<int64_t> Shuffled(size_t n) {
    std::vector<int64_t> p(n);
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), rng);
    return p;
  }

  int64_t GraphBatches() const {
    return use_graph ? (static_cast<int64_t>(data.train_pairs.size()) + opt.graph_batch - 1) / opt.graph_batch : 0;
  }
  int64_t SeqBatches() const {
    return use_seq ? (static_cast<int64_t>(data.train_samples.size()) + opt.seq_batch - 1) / opt.seq_batch : 0;
  }
  // Samples one epoch draws: each loader's batches over StepsPerEpoch() steps, a pass's last
  // batch short, the shorter loader starting over.
  int64_t EpochSamples() const {
    const auto drawn = [&](bool used, size_t n, int64_t batch) {
      int64_t total = 0, left = 0;
      for (int64_t step = 0; used && n > 0 && step < StepsPerEpoch(); ++step) {
        if (left == 0) left = static_cast<int64_t>(n);
        const int64_t take = std::min(left, batch);
        total += take;
        left -= take;
      }
      return total;
    };
    return drawn(use_graph, data.train_pairs.size(), opt.graph_batch) +
           drawn(use_seq, data.train_samples.size(), opt.seq_batch);
  }
  // As the authors' GSAUDataLoader: the shorter loader starts over once (at most), and the epoch
  // ends when either loader runs out after that.
  int64_t StepsPerEpoch() const {
    const int64_t graph = GraphBatches(), seq = SeqBatches();
    int64_t steps = graph > 0 && seq > 0 ? std::min(std::max(graph, seq), 2 * std::min(graph, seq))
                                         : std::max(graph, seq);
    if (opt.max_steps_per_epoch > 0) steps = std::min(steps, opt.max_steps_per_epoch);
    return steps;
  }

  bool StopRequested() const { return opt.stop != nullptr && opt.stop->load(std::memory_order_relaxed); }

  Result<EpochStats> TrainEpoch(int epoch, StepTimings* timings) {
    torch::manual_seed(EpochTorchSeed(opt.seed, epoch));
    rng.seed(opt.seed * 1000003ULL + static_cast<uint64_t>(epoch));
    model->set_dropout_seed(opt.seed * 0x100000001B3ULL + static_cast<uint64_t>(epoch));
    model->train();
    const auto start = Clock::now();
    StepTimings local;
    StepTimings& tm = timings ? *timings : local;
    std::vector<int64_t> graph_order, seq_order;
    size_t graph_pos = 0, seq_pos = 0;
    if (use_graph) graph_order = Shuffled(data.train_pairs.size());
    if (use_seq) seq_order = Shuffled(data.train_samples.size());
    const int64_t steps = StepsPerEpoch();
    EpochStats stats;
    stats.epoch = epoch;
    std::unique_ptr<ProgressBar> bar;
    if (opt.progress) {
      ProgressOptions po;
      po.label = "epoch " + std::to_string(epoch);
      po.unit = "samples";
      bar = std::make_unique<ProgressBar>(EpochSamples(), po);
    }
    for (int64_t step = 0; step < steps; ++step) {
      if (StopRequested()) {
        if (bar) bar->Finish("stopped");
        return Status::Aborted("stopped in epoch " + std::to_string(epoch) + " at step " + std::to_string(step) +
                               " of " + std::to_string(steps));
      }
      auto t = Clock::now();
      // Graph batch.
      torch::Tensor users, items;
      if (use_graph) {
        if (graph_pos >= graph_order.size()) {
          graph_order = Shuffled(data.train_pairs.size());
          graph_pos = 0;
        }
        const size_t end = std::min(graph_order.size(), graph_pos + static_cast<size_t>(opt.graph_batch));
        std::vector<int64_t> u, i;
        for (size_t k = graph_pos; k < end; ++k) {
          const auto& p = data.train_pairs[static_cast<size_t>(graph_order[k])];
          u.push_back(p.user);
          i.push_back(p.item);
        }
        graph_pos = end;
        users = torch::tensor(u, torch::kInt64).to(device);
        items = torch::tensor(i, torch::kInt64).to(device);
        stats.samples += static_cast<int64_t>(u.size());
      }
      SequenceBatch seq;
      torch::Tensor targets;
      if (use_seq) {
        if (seq_pos >= seq_order.size()) {
          seq_order = Shuffled(data.train_samples.size());
          seq_pos = 0;
        }
        const size_t end = std::min(seq_order.size(), seq_pos + static_cast<size_t>(opt.seq_batch));
        std::tie(seq, targets) = MakeSequenceBatch(data.train_samples, &seq_order, static_cast<int64_t>(seq_pos),
                                                   static_cast<int64_t>(end));
        seq_pos = end;
        stats.samples += targets.size(0);
      }
      tm.batch += Since(t);

      double loss_value = 0;
      if (use_graph) {
        t = Clock::now();
        // Only the batch's rows: the loss reads nothing else (the same values and gradients
        // as the reference's full propagation, a third of the work on Toys).
        const auto [gu, gi] = model->GraphForwardRows(host_adjacency, users, items);
        tm.graph_fwd += Since(t);
        t = Clock::now();
        const auto ga = Align(gu, gi);
        const auto gunif = Uniformity(gu, opt.temperature) + Uniformity(gi, opt.temperature);
        const auto loss = ga + opt.gamma * gunif;
        tm.graph_loss += Since(t);
        t = Clock::now();
        loss.backward();
        tm.graph_bwd += Since(t);
        stats.graph_align += ga.item<double>();
        stats.graph_unif += gunif.item<double>();
        loss_value += loss.item<double>();
      }
      if (use_seq) {
        t = Clock::now();
        const auto s = model->SequenceForward(seq);
        tm.seq_fwd += Since(t);
        t = Clock::now();
        const auto table = model->item_table();
        torch::Tensor sa, sunif;
        if (opt.model == ModelKind::kGsau) {
          sa = Align(s, table.index_select(0, targets));
        } else {
          const auto query = opt.model == ModelKind::kSasRec ? s : F::normalize(s, F::NormalizeFuncOptions().dim(1));
          sa = FullSoftmaxCrossEntropy(query, table, targets);
        }
        auto loss = sa;
        if (opt.model != ModelKind::kSasRec) {
          const auto e = table.index_select(0, targets);
          sunif = Uniformity(s, opt.temperature) + Uniformity(e, opt.temperature);
          const int64_t b = targets.size(0);
          if (b >= 2) {
            const auto perm = RandomDerangement(b, rng);
            const auto idx = torch::tensor(perm, torch::kInt64).to(device);
            sunif = sunif + PairUniformity(s, e.index_select(0, idx), opt.temperature);
          }
          loss = loss + opt.gamma * sunif;
          stats.seq_unif += sunif.item<double>();
        }
        tm.seq_loss += Since(t);
        t = Clock::now();
        loss.backward();
        tm.seq_bwd += Since(t);
        stats.seq_align += sa.item<double>();
        loss_value += loss.item<double>();
      }
      t = Clock::now();
      adam->step();
      adam->zero_grad();
      tm.optimizer += Since(t);
      ++tm.steps;
      if (!std::isfinite(loss_value)) {
        throw std::runtime_error("loss is not finite at epoch " + std::to_string(epoch) + " step " +
                                 std::to_string(step));
      }
      stats.loss += loss_value;
      ++stats.steps;
      if (bar) {
        char suffix[160];
        std::snprintf(suffix, sizeof(suffix), "loss %.4f (ga %.4f gu %.4f sa %.4f su %.4f)",
                      stats.loss / static_cast<double>(stats.steps),
                      stats.graph_align / static_cast<double>(stats.steps),
                      stats.graph_unif / static_cast<double>(stats.steps),
                      stats.seq_align / static_cast<double>(stats.steps),
                      stats.seq_unif / static_cast<double>(stats.steps));
        bar->Update(stats.samples, suffix);
      }
    }
    if (bar) bar->Finish();
    if (stats.steps > 0) {
      const double n = static_cast<double>(stats.steps);
      stats.loss /= n;
      stats.graph_align /= n;
      stats.graph_unif /= n;
      stats.seq_align /= n;
      stats.seq_unif /= n;
    }
    stats.train_seconds = Since(start);
    return stats;
  }

  Result<RankingMetrics> Evaluate(Split split) {
    torch::NoGradGuard no_grad;
    model->eval();
    const auto& samples = split == Split::kValid ? data.valid_samples : data.test_samples;
    MetricAccumulator acc;
    torch::Tensor graph_users, graph_items;
    if (!use_seq) std::tie(graph_users, graph_items) = model->GraphForward(adjacency);
    const auto table = model->item_table();
    const auto n = static_cast<int64_t>(samples.size());
    for (int64_t begin = 0; begin < n; begin += opt.eval_batch) {
      if (StopRequested()) {
        model->train();
        return Status::Aborted(std::string("stopped while evaluating on the ") +
                               (split == Split::kValid ? "validation" : "test") + " split");
      }
      const int64_t end = std::min(n, begin + opt.eval_batch);
      auto [batch, targets] = MakeSequenceBatch(samples, nullptr, begin, end);
      torch::Tensor scores;
      if (use_seq) {
        scores = torch::matmul(model->SequenceForward(batch), table.t());
      } else {
        std::vector<int64_t> users;
        for (int64_t k = begin; k < end; ++k) users.push_back(samples[static_cast<size_t>(k)].user);
        const auto u = torch::tensor(users, torch::kInt64).to(device);
        scores = torch::matmul(graph_users.index_select(0, u), graph_items.t());
        if (opt.lightgcn_mask_history) MaskClickedItems(scores, samples, begin, end, data.sequences);
      }
      scores.select(1, 0).fill_(-std::numeric_limits<float>::infinity());  // padding item
      const auto target_scores = scores.gather(1, targets.unsqueeze(1));
      const auto ranks = TargetRanks(scores, target_scores).to(torch::kCPU);
      const auto* r = ranks.data_ptr<int64_t>();
      for (int64_t k = 0; k < ranks.size(0); ++k) acc.Add(r[k]);
    }
    model->train();
    return acc.Result();
  }

  void KeepBest() {
    torch::NoGradGuard no_grad;
    best_params.clear();
    for (const auto& p : model->parameters()) best_params.push_back(p.detach().clone());
  }
  void RestoreBest() {
    torch::NoGradGuard no_grad;
    auto params = model->parameters();
    for (size_t k = 0; k < params.size() && k < best_params.size(); ++k) params[k].copy_(best_params[k]);
  }

  Status SaveModel(const fs::path& path) {
    torch::serialize::OutputArchive archive;
    model->save(archive);
    return SaveAtomically(archive, path);
  }

  // The best weights so far to `path`, the model's own left as they are.
  Status SaveBestModel(const fs::path& path) {
    torch::NoGradGuard no_grad;
    auto params = model->parameters();
    std::vector<torch::Tensor> current;
    for (const auto& p : params) current.push_back(p.detach().clone());
    RestoreBest();
    Status s = SaveModel(path);
    for (size_t k = 0; k < params.size(); ++k) params[k].copy_(current[k]);
    return s;
  }

  // What makes a run what it is, as "key=value" lines: every option the model uses but those a
  // resume may change (max_epochs, patience, eval_batch, threads, device, progress), the data's
  // sizes and its fingerprint. Options the model ignores (gamma for SASRec-only, the sequence
  // encoder's dropouts for LightGCN-only, ...) are left out: a resume is not refused over them.
  // (A key a checkpoint lacks, written before it existed or left out, is not compared.)
  std::string Settings() const {
    std::ostringstream os;
    os.precision(17);
    // The shapes first: every model holds both encoders' parameters, used or not.
    os << "model=" << ModelKindName(opt.model) << "\ndim=" << opt.dim << "\nseq_layers=" << opt.seq_layers
       << "\nheads=" << opt.heads << "\nffn_dim=" << opt.ffn_dim << "\ninit_std=" << EffectiveInitStd(opt);
    if (opt.model != ModelKind::kSasRec) os << "\ngamma=" << opt.gamma << "\ntemperature=" << opt.temperature;
    if (use_seq) {
      os << "\nhidden_dropout=" << opt.hidden_dropout << "\nattn_dropout=" << opt.attn_dropout
         << "\nseq_batch=" << opt.seq_batch;
    }
    if (use_graph) os << "\ngraph_layers=" << opt.graph_layers << "\ngraph_batch=" << opt.graph_batch;
    if (opt.model == ModelKind::kLightGcn) os << "\nlightgcn_mask_history=" << opt.lightgcn_mask_history;
    os << "\nlr=" << opt.lr << "\nweight_decay=" << opt.weight_decay << "\nvalid_metric=" << opt.valid_metric
       << "\nvalid_metric_decimals=" << opt.valid_metric_decimals
       << "\nmax_steps_per_epoch=" << opt.max_steps_per_epoch << "\nseed=" << opt.seed
       << "\nusers=" << data.num_users << "\nitems=" << data.num_items << "\nmax_len=" << data.max_len
       << "\ntrain_pairs=" << data.train_pairs.size() << "\ntrain_samples=" << data.train_samples.size()
       << "\nvalid=" << data.valid_samples.size() << "\ntest=" << data.test_samples.size()
       << "\ntrain_fraction=" << data.train_fraction << "\ndata_fingerprint=" << data_fingerprint << "\n";
    return os.str();
  }

  struct TrainState {
    int epoch = 0;
    double best_value = -std::numeric_limits<double>::infinity();
    int best_epoch = 0;
    int bad_epochs = 0;
  };

  Status SaveCheckpoint(const fs::path& path, const TrainState& st) {
    torch::serialize::OutputArchive archive, m, o;
    model->save(m);
    adam->save(o);
    archive.write("model", m);
    archive.write("optimizer", o);
    // The best weights travel in the checkpoint too, so that a crash between writing best.pt
    // and the checkpoint cannot pair them with the wrong best epoch on resume.
    torch::serialize::OutputArchive best;
    for (size_t k = 0; k < best_params.size(); ++k) best.write(BestKey(k), best_params[k]);
    archive.write("best", best);
    archive.write("epoch", torch::tensor(static_cast<int64_t>(st.epoch)));
    archive.write("best_value", torch::tensor(st.best_value, torch::kFloat64));
    archive.write("best_epoch", torch::tensor(static_cast<int64_t>(st.best_epoch)));
    archive.write("bad_epochs", torch::tensor(static_cast<int64_t>(st.bad_epochs)));
    archive.write("model_kind", torch::tensor(static_cast<int64_t>(opt.model)));
    const std::string settings = Settings();
    archive.write("settings", torch::tensor(std::vector<uint8_t>(settings.begin(), settings.end()), torch::kUInt8));
    archive.write("shape", torch::tensor({data.num_users, data.num_items, opt.dim}, torch::kInt64));
    return SaveAtomically(archive, path);
  }

  // The checkpoint alone serves: it carries the best weights, so best.pt is read only for a
  // checkpoint written before it did (an unreadable best.pt blocked a resume, under the
  // checkpoint's name). The settings are compared before the shape, so that another --dim is
  // named as such.
  Result<TrainState> LoadCheckpoint(const fs::path& path, const fs::path& best_path) {
    TrainState st;
    try {
      torch::serialize::InputArchive archive, m, o;
      archive.load_from(path.string(), device);
      torch::Tensor kind, shape, epoch, best_value, best_epoch, bad;
      archive.read("model_kind", kind);
      archive.read("shape", shape);
      if (kind.item<int64_t>() != static_cast<int64_t>(opt.model)) {
        return Status::InvalidArgument(path.string() + " was written for another --model");
      }
      torch::Tensor settings;
      if (archive.try_read("settings", settings)) {
        const auto bytes = settings.to(torch::kCPU).contiguous();
        const std::string saved(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                                static_cast<size_t>(bytes.numel()));
        TrainOptions by_default = opt;
        by_default.init_std = -1;
        if (const std::string diff = SettingsDiff(saved, Settings(), EffectiveInitStd(by_default)); !diff.empty()) {
          return Status::InvalidArgument(path.string() + " was written with other settings (" + diff +
                                         "): resume with the same ones, or --overwrite to start over");
        }
      } else {
        GSAU_LOG_WARN("{} records no settings (written before they were): resuming without checking them",
                      path.string());
      }
      const auto sh = shape.to(torch::kCPU);
      if (sh[0].item<int64_t>() != data.num_users || sh[1].item<int64_t>() != data.num_items ||
          sh[2].item<int64_t>() != opt.dim) {
        return Status::InvalidArgument(path.string() + " was written for another dataset or --dim");
      }
      torch::serialize::InputArchive best;
      if (archive.try_read("best", best)) {
        std::vector<torch::Tensor> params;
        for (size_t k = 0; k < model->parameters().size(); ++k) {
          torch::Tensor t;
          if (!best.try_read(BestKey(k), t)) break;
          params.push_back(t.to(device));
        }
        if (params.size() == model->parameters().size()) best_params = std::move(params);
      }
      if (best_params.empty() && fs::exists(best_path)) {
        try {
          torch::serialize::InputArchive b;
          b.load_from(best_path.string(), device);
          model->load(b);
          KeepBest();
        } catch (const c10::Error& e) {
          return TorchError(e, "loading " + best_path.string() + " (" + path.string() + " holds no best weights)");
        }
      }
      archive.read("model", m);
      model->load(m);
      archive.read("optimizer", o);
      adam->load(o);
      archive.read("epoch", epoch);
      archive.read("best_value", best_value);
      archive.read("best_epoch", best_epoch);
      archive.read("bad_epochs", bad);
      st.epoch = static_cast<int>(epoch.item<int64_t>());
      st.best_value = best_value.item<double>();
      st.best_epoch = static_cast<int>(best_epoch.item<int64_t>());
      st.bad_epochs = static_cast<int>(bad.item<int64_t>());
      if (best_params.empty()) KeepBest();
    } catch (const c10::Error& e) {
      return TorchError(e, "loading " + path.string());
    }
    return st;
  }
};

double EffectiveInitStd(const TrainOptions& o) {
  return o.init_std >= 0 ? o.init_std : (o.model == ModelKind::kSasRec ? 0.02 : 0.0);
}

uint64_t EpochTorchSeed(uint64_t seed, int epoch) {
  // Neighbouring seeds land 2^64 / golden ratio apart, far beyond any epoch count.
  return seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch);
}

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;

Status ValidateTrainOptions(const TrainOptions& o) {
  if (o.graph_batch < 1 || o.seq_batch < 1 || o.eval_batch < 1) return Status::InvalidArgument("batch sizes must be >= 1");
  if (RankingMetrics().Get(o.valid_metric) < 0) {
    std::string names;
    for (const auto& n : RankingMetrics::Names()) names += (names.empty() ? "" : ", ") + n;
    return Status::InvalidArgument("unknown valid metric " + o.valid_metric + " (one of " + names + ")");
  }
  if (o.max_epochs < 0 || o.patience < 0) {
    return Status::InvalidArgument("epochs and patience must be >= 0, got " + std::to_string(o.max_epochs) + " and " +
                                   std::to_string(o.patience));
  }
  // What torch would otherwise refuse deep inside ("from is out of bounds for float") or
  // accept and train nonsense with (a dropout of 1.5; t = 0 zeroes the uniformity terms).
  if (o.dim < 1 || o.heads < 1 || o.dim % o.heads != 0) {
    return Status::InvalidArgument("dim must be a positive multiple of heads (" + std::to_string(o.heads) + "), got " +
                                   std::to_string(o.dim));
  }
  if (o.seq_layers < 1 || o.ffn_dim < 1 || o.graph_layers < 0) {
    return Status::InvalidArgument("seq_layers and ffn_dim must be >= 1 and graph_layers >= 0");
  }
  for (const auto& [name, rate] :
       {std::pair{"hidden_dropout", o.hidden_dropout}, std::pair{"attn_dropout", o.attn_dropout}}) {
    if (!(rate >= 0 && rate < 1)) {
      return Status::InvalidArgument(std::string(name) + " must be in [0, 1), got " + std::to_string(rate));
    }
  }
  if (!(o.temperature > 0) || !std::isfinite(o.temperature) || !(o.gamma >= 0) || !std::isfinite(o.gamma)) {
    return Status::InvalidArgument("temperature must be > 0 and gamma >= 0, finite");
  }
  if (!(o.lr >= 0) || !std::isfinite(o.lr) || !(o.weight_decay >= 0)) {
    return Status::InvalidArgument("lr and weight_decay must be >= 0 (lr 0 trains nothing)");
  }
  // -1 is "the model's default"; NaN used to mean it too, and inf failed only at the first step.
  if (!(o.init_std == -1.0 || (o.init_std >= 0 && std::isfinite(o.init_std)))) {
    return Status::InvalidArgument("init_std must be -1 (the model's default), 0 (Xavier-normal) or a finite std > 0, "
                                   "got " + std::to_string(o.init_std));
  }
  if (o.threads < 0) return Status::InvalidArgument("threads must be >= 0 (0 = every usable core)");
  if (o.device != "cpu" && o.device != "auto" && o.device != "cuda") {
    return Status::InvalidArgument("device must be auto, cpu or cuda, not " + o.device);
  }
  if (o.resume && o.overwrite) {
    return Status::InvalidArgument("resume and overwrite exclude each other: --resume continues the run in the "
                                   "folder, --overwrite replaces it");
  }
  return Status::Ok();
}

Result<std::unique_ptr<Trainer>> Trainer::Create(const LeaveOneOutData& data, const TrainOptions& options) {
  auto impl = std::make_unique<Impl>(data, options);
  const auto& o = options;
  GSAU_RETURN_IF_ERROR(ValidateTrainOptions(o));
  if (o.threads > UsableCores()) {
    GSAU_LOG_WARN("{} threads on {} usable cores: the threads will wait for each other (0 = one per core)",
                  o.threads, UsableCores());
  }
  try {
    if (o.device == "cuda" || (o.device == "auto" && torch::cuda::is_available())) {
      if (!torch::cuda::is_available()) return Status::Unavailable("--device cuda: CUDA is not available");
      impl->device = torch::Device(torch::kCUDA);
    }
    impl->threads = o.threads > 0 ? o.threads : UsableCores();
    torch::set_num_threads(impl->threads);
    ConfigureBlasThreads();
    torch::manual_seed(o.seed);
    impl->rng.seed(o.seed);
    impl->use_graph = o.model != ModelKind::kSasRec;
    impl->use_seq = o.model != ModelKind::kLightGcn;
    impl->model = GsauModel(GsauModelOptions(data.num_users, data.num_items)
                                .dim(o.dim)
                                .max_len(data.max_len)
                                .seq_layers(o.seq_layers)
                                .heads(o.heads)
                                .ffn_dim(o.ffn_dim)
                                .hidden_dropout(o.hidden_dropout)
                                .attn_dropout(o.attn_dropout)
                                .graph_layers(o.graph_layers)
                                .init_std(EffectiveInitStd(o)));
    impl->model->to(impl->device);
    impl->adam = std::make_unique<torch::optim::Adam>(
        impl->model->parameters(), torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
    if (impl->use_graph) {
      impl->host_adjacency = BuildNormalizedAdjacency(data.num_users, data.num_items, data.train_pairs);
      impl->adjacency = impl->host_adjacency.To(impl->device);
    }
  } catch (const c10::Error& e) {
    return TorchError(e, "creating the model");
  }
  if (impl->use_graph && impl->use_seq) {
    const int64_t graph = impl->GraphBatches(), seq = impl->SeqBatches();
    if (std::max(graph, seq) > 2 * std::min(graph, seq)) {
      GSAU_LOG_WARN("{} graph batches and {} sequence batches per pass: an epoch ends when the shorter loader runs "
                    "out a second time ({} steps, as the authors' loader), so part of the longer one is not drawn "
                    "each epoch; batch sizes closer to the two sets' sizes avoid it",
                    graph, seq, 2 * std::min(graph, seq));
    }
  }
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
}

std::string Trainer::DeviceName() const { return impl_->device.is_cuda() ? "cuda" : "cpu"; }
int Trainer::Threads() const { return impl_->threads; }
int64_t Trainer::StepsPerEpoch() const { return impl_->StepsPerEpoch(); }
int64_t Trainer::NumParameters() const {
  int64_t n = 0;
  for (const auto& p : impl_->model->parameters()) n += p.numel();
  return n;
}

Result<EpochStats> Trainer::TrainEpoch(int epoch, StepTimings* timings) {
  try {
    return impl_->TrainEpoch(epoch, timings);
  } catch (const c10::Error& e) {
    return TorchError(e, "training epoch " + std::to_string(epoch));
  } catch (const std::runtime_error& e) {
    return Status::Internal(e.what());
  }
}

Result<RankingMetrics> Trainer::Evaluate(Split split) {
  try {
    return impl_->Evaluate(split);
  } catch (const c10::Error& e) {
    return TorchError(e, "evaluating");
  }
}

// The epochs and evaluations guard themselves; this catches what runs between them (keeping,
// restoring and saving the best weights, checkpoints: a CUDA allocation can fail there too).
Result<TrainReport> Trainer::Run() {
  try {
    return RunUnguarded();
  } catch (const c10::Error& e) {
    return TorchError(e, "gsau train");
  }
}

Result<TrainReport> Trainer::RunUnguarded() {
  auto& im = *impl_;
  const auto& o = im.opt;
  TrainReport report;
  report.model = ModelKindName(o.model);
  report.device = DeviceName();
  report.threads = im.threads;
  fs::path out = o.out_dir;
  fs::path csv, checkpoint, best;
  if (!o.out_dir.empty()) {
    std::error_code ec;
    fs::create_directories(out, ec);
    if (ec) return Status::IoError("creating " + out.string() + ": " + ec.message());
    csv = out / "metrics.csv";
    checkpoint = out / "checkpoint.pt";
    best = out / "best.pt";
  }
  Impl::TrainState st;
  std::vector<double> train_secs, eval_secs;
  std::optional<FileLock> lock;
  if (!o.out_dir.empty()) {
    // Two runs in one directory would append to one CSV and overwrite each other's checkpoints.
    GSAU_ASSIGN_OR_RETURN(lock, FileLock::Take((out / ".lock").string(), "another gsau train runs in " +
                                                                                 out.string()));
    std::vector<std::string> kept;
    const bool earlier_run = fs::exists(checkpoint);
    if (!o.resume && !o.overwrite &&
        (earlier_run || fs::exists(best) || fs::exists(out / "report.json"))) {
      return Status::InvalidArgument(out.string() + " holds an earlier run (checkpoint.pt, best.pt or report.json): "
                                     "--resume continues it, --overwrite starts a new run in its place");
    }
    // --resume where the checkpoint is gone but the run it belonged to is not: starting over
    // would replace a finished run (report.json) or epochs of CSV rows without a word. A crash
    // before the first checkpoint leaves at most best.pt and one row, and is resumed as new.
    if (o.resume && !o.overwrite && !earlier_run) {
      int64_t rows = 0;
      std::ifstream in(csv);
      for (std::string line; std::getline(in, line);) rows += !line.empty() && line.rfind("epoch", 0) != 0;
      const bool finished = fs::exists(out / "report.json");
      if (finished || rows > 1) {
        const std::string what = finished ? "report.json" : std::to_string(rows) + " epochs in metrics.csv";
        return Status::InvalidArgument(out.string() + " holds a run (" + what +
                                       ") but no checkpoint.pt to resume it from: --overwrite starts a new run in "
                                       "its place");
      }
      GSAU_LOG_INFO("no checkpoint in {}: --resume starts a new run", out.string());
    }
    // A stop during the data load: before anything here is removed or rewritten (an --overwrite
    // in the wrong folder, stopped at once, took the earlier run with it).
    if (im.StopRequested()) return Status::Aborted("stopped before training: nothing in " + out.string() + " changed");
    if (const bool resuming = o.resume && earlier_run; !resuming) {
      // A new run: nothing of an earlier one may pass for its own (a resume after a crash
      // before this run's first checkpoint took the earlier run's and lost the CSV's rows).
      std::error_code ec;
      for (const auto& f : {checkpoint, best, out / "report.json"}) {
        fs::remove(f, ec);
        if (ec) return Status::IoError("removing " + f.string() + ": " + ec.message());
      }
    } else {
      GSAU_ASSIGN_OR_RETURN(st, im.LoadCheckpoint(checkpoint, best));
      GSAU_LOG_INFO("resumed from {} after epoch {} (best {} {:.4f} at epoch {})", checkpoint.string(), st.epoch,
                    o.valid_metric, st.best_value, st.best_epoch);
      // Keep the CSV rows of the epochs the checkpoint covers; later rows are redone.
      std::ifstream in(csv);
      std::string line;
      const std::string header = CsvHeader();
      const auto columns = std::count(header.begin(), header.end(), ',') + 1;
      while (std::getline(in, line)) {
        if (line.empty() || line.rfind("epoch", 0) == 0) continue;
        std::vector<std::string> fields;
        std::istringstream row(line);
        for (std::string f; std::getline(row, f, ',');) fields.push_back(f);
        if (line.back() == ',') fields.emplace_back();  // getline drops an empty last field
        if (fields.size() < 5) break;
        const int epoch = std::atoi(fields[0].c_str());
        if (epoch > st.epoch) continue;
        if (epoch != static_cast<int>(kept.size()) + 1) break;
        if (static_cast<long>(fields.size()) == columns - 2) {
          line += ",,";  // written before the threads and device columns
          fields.resize(fields.size() + 2);
        }
        kept.push_back(line);
        train_secs.push_back(std::atof(fields[3].c_str()));
        eval_secs.push_back(std::atof(fields[4].c_str()));
        AddEpochSetup(report.setups, epoch, std::atoi(fields[fields.size() - 2].c_str()), fields.back());
      }
      if (static_cast<int>(kept.size()) != st.epoch) {
        return Status::InvalidArgument(csv.string() + " holds epochs 1-" + std::to_string(kept.size()) + " in order, " +
                                       checkpoint.string() + " covers 1-" + std::to_string(st.epoch) +
                                       ": not the same run; --overwrite starts a new one");
      }
      // best.pt is written before the checkpoint: a kill between them left the next epoch's
      // weights there, which this run may not reach again (fewer --epochs, other threads).
      if (st.best_epoch > 0 && !im.best_params.empty()) GSAU_RETURN_IF_ERROR(im.SaveBestModel(best));
      // The report of a finish this run goes past (more --epochs, a larger --patience): left
      // beside a later checkpoint by a kill, it passed for the run's result (plot_results.py,
      // compare_seeds.py take it as "finished"). This run writes its own at its end. A resume
      // with nothing left to train (train_reproduce.sh resumes finished runs) keeps it.
      if (st.epoch > o.max_epochs && st.bad_epochs <= o.patience) {
        GSAU_LOG_WARN("{} is at epoch {}, past --epochs {}: nothing is trained, the best weights are tested",
                      checkpoint.string(), st.epoch, o.max_epochs);
      }
      if (st.epoch < o.max_epochs && st.bad_epochs <= o.patience) {
        if (std::error_code ec; fs::remove(out / "report.json", ec), ec) {
          return Status::IoError("removing " + (out / "report.json").string() + ": " + ec.message());
        }
      }
    }
    std::string text = CsvHeader() + "\n";
    for (const auto& l : kept) text += l + "\n";
    GSAU_RETURN_IF_ERROR(WriteTextAtomically(csv.string(), text));
  }

  // A stop leaves the files of the last finished epoch: the message says what --resume takes up.
  auto stopped = [&](const Status& s) {
    if (s.code() != StatusCode::kAborted || o.out_dir.empty()) return s;
    return Status::Aborted(s.message() + "; " +
                           (st.epoch > 0 ? checkpoint.string() + " holds epochs 1-" + std::to_string(st.epoch) +
                                               ": --resume continues from there"
                                         : std::string("no epoch finished: nothing to resume")));
  };
  const bool finished = st.bad_epochs > o.patience;
  for (int epoch = st.epoch + 1; epoch <= o.max_epochs && !finished; ++epoch) {
    auto trained = TrainEpoch(epoch, nullptr);
    if (!trained.ok()) return stopped(trained.status());
    EpochStats stats = std::move(*trained);
    const auto t = Clock::now();
    auto valid = Evaluate(Split::kValid);
    if (!valid.ok()) return stopped(valid.status());
    stats.valid = *valid;
    stats.eval_seconds = Since(t);
    auto rounded = [&](double v) {
      if (o.valid_metric_decimals < 0 || !std::isfinite(v)) return v;
      const double scale = std::pow(10.0, o.valid_metric_decimals);
      return std::round(v * scale) / scale;
    };
    const double value = rounded(stats.valid.Get(o.valid_metric));
    st.epoch = epoch;
    if (value >= rounded(st.best_value)) {
      st.best_value = value;
      st.best_epoch = epoch;
      st.bad_epochs = 0;
      im.KeepBest();
      if (!o.out_dir.empty()) GSAU_RETURN_IF_ERROR(im.SaveModel(best));
    } else {
      ++st.bad_epochs;
    }
    GSAU_LOG_INFO("epoch {}: loss {:.4f} valid recall@20 {:.4f} ndcg@20 {:.4f} ({:.1f} s train, {:.1f} s valid; best epoch {})",
                  epoch, stats.loss, stats.valid.Get("recall@20"), stats.valid.Get("ndcg@20"),
                  stats.train_seconds, stats.eval_seconds, st.best_epoch);
    train_secs.push_back(stats.train_seconds);
    eval_secs.push_back(stats.eval_seconds);
    report.history.push_back(stats);
    AddEpochSetup(report.setups, epoch, im.threads, report.device);
    if (!o.out_dir.empty()) {
      std::ofstream f(csv, std::ios::app);
      f << CsvRow(stats, im.threads, report.device) << "\n";
      f.flush();
      if (!f) return Status::IoError("appending to " + csv.string());
      f.close();
      // On disk before the checkpoint that covers it: a resume refuses a CSV missing its rows.
      GSAU_RETURN_IF_ERROR(SyncPath(csv.string()));
      GSAU_RETURN_IF_ERROR(im.SaveCheckpoint(checkpoint, st));
    }
    if (st.bad_epochs > o.patience) {
      GSAU_LOG_INFO("early stop: no gain in {} for {} epochs", o.valid_metric, st.bad_epochs);
      break;
    }
  }
  report.stopped_early = st.bad_epochs > o.patience;
  report.epochs_run = st.epoch;
  report.best_epoch = st.best_epoch;
  auto mean = [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  };
  report.seconds_per_epoch = mean(train_secs);
  report.eval_seconds = mean(eval_secs);
  if (!im.best_params.empty()) im.RestoreBest();
  for (auto [split, metrics] : {std::pair{Split::kValid, &report.best_valid}, std::pair{Split::kTest, &report.test}}) {
    auto r = Evaluate(split);
    if (!r.ok()) return stopped(r.status());
    *metrics = *r;
  }
  GSAU_LOG_INFO("test (best epoch {}): recall@10 {:.4f} ndcg@10 {:.4f} recall@20 {:.4f} ndcg@20 {:.4f}",
                report.best_epoch, report.test.Get("recall@10"), report.test.Get("ndcg@10"),
                report.test.Get("recall@20"), report.test.Get("ndcg@20"));
  if (!o.out_dir.empty()) {
    GSAU_RETURN_IF_ERROR(WriteTextAtomically((out / "report.json").string(), ReportJson(report, o, im.data)));
  }
  return report;
}

namespace {
std::string JsonSetups(const std::vector<EpochSetup>& setups) {
  std::ostringstream os;
  os << "[";
  for (size_t k = 0; k < setups.size(); ++k) {
    const auto& e = setups[k];
    os << (k ? ", " : "") << "{\"first_epoch\": " << e.first_epoch << ", \"last_epoch\": " << e.last_epoch
       << ", \"threads\": " << e.threads << ", \"device\": " << JsonString(e.device) << "}";
  }
  os << "]";
  return os.str();
}

std::string JsonMetrics(const RankingMetrics& m) {
  std::ostringstream os;
  os.precision(6);
  os << "{";
  const auto names = RankingMetrics::Names();
  const auto values = m.Values();
  for (size_t i = 0; i < names.size(); ++i) os << (i ? ", " : "") << JsonString(names[i]) << ": " << values[i];
  os << "}";
  return os.str();
}
}  // namespace

std::string ReportJson(const TrainReport& r, const TrainOptions& o, const LeaveOneOutData& d) {
  std::ostringstream os;
  os.precision(6);
  os << "{\n"
     << "  \"model\": " << JsonString(r.model) << ",\n"
     << "  \"config\": {\"gamma\": " << o.gamma << ", \"temperature\": " << o.temperature << ", \"dim\": " << o.dim
     << ", \"seq_layers\": " << o.seq_layers << ", \"heads\": " << o.heads << ", \"ffn_dim\": " << o.ffn_dim
     << ", \"hidden_dropout\": " << o.hidden_dropout << ", \"attn_dropout\": " << o.attn_dropout
     << ", \"graph_layers\": " << o.graph_layers << ", \"init_std\": " << EffectiveInitStd(o)
     << ", \"max_len\": " << d.max_len
     << ", \"graph_batch\": " << o.graph_batch << ", \"seq_batch\": " << o.seq_batch << ", \"lr\": " << o.lr
     << ", \"weight_decay\": " << o.weight_decay << ", \"max_epochs\": " << o.max_epochs
     << ", \"patience\": " << o.patience << ", \"valid_metric\": " << JsonString(o.valid_metric)
     << ", \"valid_metric_decimals\": " << o.valid_metric_decimals
     << ", \"max_steps_per_epoch\": " << o.max_steps_per_epoch << ", \"seed\": " << o.seed
     << ", \"lightgcn_mask_history\": " << (o.lightgcn_mask_history ? "true" : "false") << "},\n"
     << "  \"data\": {\"users\": " << d.num_users - 1 << ", \"items\": " << d.num_items - 1
     << ", \"interactions\": " << d.num_interactions() << ", \"train_pairs\": " << d.train_pairs.size()
     << ", \"train_samples\": " << d.train_samples.size() << ", \"valid\": " << d.valid_samples.size()
     << ", \"test\": " << d.test_samples.size() << ", \"train_fraction\": " << d.train_fraction << "},\n"
     << "  \"device\": " << JsonString(r.device) << ",\n"
     << "  \"threads\": " << r.threads << ",\n"
     << "  \"epochs_by_setup\": " << JsonSetups(r.setups) << ",\n"
     << "  \"epochs_run\": " << r.epochs_run << ",\n"
     << "  \"best_epoch\": " << r.best_epoch << ",\n"
     << "  \"stopped_early\": " << (r.stopped_early ? "true" : "false") << ",\n"
     << "  \"seconds_per_epoch\": " << r.seconds_per_epoch << ",\n"
     << "  \"eval_seconds_per_epoch\": " << r.eval_seconds << ",\n"
     << "  \"valid\": " << JsonMetrics(r.best_valid) << ",\n"
     << "  \"test\": " << JsonMetrics(r.test) << "\n"
     << "}\n";
  return os.str();
}

}  // namespace gsau::learner
