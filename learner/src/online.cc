// OnlineLearner: see online.h for the contract and the design of the incremental propagation.
// The only torch translation unit of the online learner.
#include "gsau/learner/online.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "gsau/common/cpu.h"
#include "gsau/common/file.h"
#include "gsau/learner/loss.h"
#include "gsau/learner/model.h"
#include "gsau/learner/sparse.h"
#include "blas_threads.h"

namespace gsau::learner {
namespace fs = std::filesystem;
namespace F = torch::nn::functional;

void PrequentialStats::Add(int64_t rank) {
  ++count;
  if (rank < 0) return;
  const double gain = 1.0 / std::log2(static_cast<double>(rank) + 2.0);
  if (rank < 10) {
    hits10 += 1;
    ndcg10 += gain;
  }
  if (rank < 20) {
    hits20 += 1;
    ndcg20 += gain;
  }
}

void PrequentialStats::Merge(const PrequentialStats& o) {
  count += o.count;
  hits10 += o.hits10;
  hits20 += o.hits20;
  ndcg10 += o.ndcg10;
  ndcg20 += o.ndcg20;
}

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

constexpr int64_t kFormatVersion = 1;

// A checkpoint's "shape" record: the format, then the options the model's tensors depend on, in
// this order (Load names them with kShapeNames; OpenCheckpoint makes a learner of them).
std::vector<int64_t> ShapeOf(const OnlineOptions& o) {
  return {kFormatVersion, o.dim, o.max_len, o.seq_layers, o.heads, o.ffn_dim, o.graph_layers};
}
void SetShape(const torch::Tensor& shape, OnlineOptions* o) {  // `shape` as ShapeOf wrote it
  o->dim = shape[1].item<int64_t>();
  o->max_len = shape[2].item<int64_t>();
  o->seq_layers = shape[3].item<int64_t>();
  o->heads = shape[4].item<int64_t>();
  o->ffn_dim = shape[5].item<int64_t>();
  o->graph_layers = shape[6].item<int64_t>();
}
// Ids are uint32_t (the state's); a count beyond them is not one a checkpoint can hold.
constexpr int64_t kMaxIds = int64_t{1} << 32;
constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;

Status TorchError(const c10::Error& e, const std::string& what) {
  return Status::Internal(what + ": torch: " + e.what_without_backtrace());
}

// Reads the archive at `path` onto `device`. A file that is not an archive (cut short,
// overwritten: the zip reader's own error) is Corruption, the file's fault; anything else (out of
// memory, which LibTorch 1.13's CPU allocator reports as a plain c10::Error; a file that cannot be
// opened) is thrown on, as a failure of this process that a caller must not take for a bad
// checkpoint.
Status ReadArchive(torch::serialize::InputArchive& ar, const std::string& path, const torch::Device& device) {
  try {
    ar.load_from(path, device);
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    if (what.find("PytorchStreamReader") == std::string::npos) throw;
    return Status::Corruption(path + " cannot be read as a checkpoint: " + what);
  }
  return Status::Ok();
}

struct Sample {
  uint32_t user = 0;
  uint32_t item = 0;
  int64_t ts_ms = 0;
  std::vector<uint32_t> prefix;  // known items only, at most max_len, oldest first
};

// One parameter's Adam state. Tables have a step count per row ([rows] int64); the other
// parameters one count for the whole tensor.
struct AdamSlot {
  std::string name;
  torch::Tensor param;
  torch::Tensor exp_avg, exp_avg_sq;
  torch::Tensor row_step;  // tables only
  int64_t step = 0;        // non-tables only
  bool table = false;
};

// 1 / sqrt(degree + 1e-7), as BuildNormalizedAdjacency.
double InvSqrtDegree(size_t degree) { return 1.0 / std::sqrt(static_cast<double>(degree) + 1e-7); }

torch::Tensor I64(const std::vector<int64_t>& v, const torch::Device& device) {
  return torch::tensor(v, torch::kInt64).to(device);
}

// The last `max_len` items of `session` that are below `num_items` (known to the model).
std::vector<uint32_t> KnownSuffixOf(const std::vector<uint32_t>& session, int64_t num_items, int64_t max_len) {
  std::vector<uint32_t> out;
  for (uint32_t it : session) {
    if (static_cast<int64_t>(it) < num_items) out.push_back(it);
  }
  if (static_cast<int64_t>(out.size()) > max_len) out.erase(out.begin(), out.end() - max_len);
  return out;
}

// Right-padded item rows (id + 1, 0 = padding) and lengths of `prefixes`; targets as rows.
std::pair<SequenceBatch, torch::Tensor> SequenceBatchOf(const std::vector<const std::vector<uint32_t>*>& prefixes,
                                                        const std::vector<uint32_t>& targets,
                                                        const torch::Device& device) {
  const auto b = static_cast<int64_t>(prefixes.size());
  int64_t len = 1;
  for (const auto* p : prefixes) len = std::max(len, static_cast<int64_t>(p->size()));
  std::vector<int64_t> items(static_cast<size_t>(b * len), 0), lengths(static_cast<size_t>(b)), t;
  for (int64_t k = 0; k < b; ++k) {
    const auto& p = *prefixes[static_cast<size_t>(k)];
    for (size_t j = 0; j < p.size(); ++j) items[static_cast<size_t>(k * len) + j] = static_cast<int64_t>(p[j]) + 1;
    lengths[static_cast<size_t>(k)] = static_cast<int64_t>(p.size());
  }
  for (uint32_t x : targets) t.push_back(static_cast<int64_t>(x) + 1);
  return {SequenceBatch{I64(items, device).view({b, len}), I64(lengths, device)}, I64(t, device)};
}

// Archive keys must not contain dots (they name nested archives): "blocks.0.key.weight" ->
// "blocks_0_key_weight".
std::string Key(const std::string& prefix, const std::string& name) {
  std::string k = prefix + "_" + name;
  std::replace(k.begin(), k.end(), '.', '_');
  return k;
}

// Reads the parameter `name` ("blocks.0.key.weight") of an archive written by Module::save,
// which nests one archive per submodule.
bool ReadModuleParameter(torch::serialize::InputArchive& root, const std::string& name, torch::Tensor& out) {
  std::vector<std::string> parts;
  size_t begin = 0;
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', begin)) {
    parts.push_back(name.substr(begin, dot - begin));
    begin = dot + 1;
  }
  parts.push_back(name.substr(begin));
  std::vector<std::unique_ptr<torch::serialize::InputArchive>> chain;
  torch::serialize::InputArchive* cur = &root;
  for (size_t k = 0; k + 1 < parts.size(); ++k) {
    chain.push_back(std::make_unique<torch::serialize::InputArchive>());
    if (!cur->try_read(parts[k], *chain.back())) return false;
    cur = chain.back().get();
  }
  return cur->try_read(parts.back(), out);
}

}  // namespace

struct ServingModel::Impl {
  GsauModel model{nullptr};  // eval mode; a 1-row user table (unused), the live item rows
  torch::Device device = torch::kCPU;
  int64_t num_items = 0, steps = 0, dim = 0, max_len = 0;
  mutable std::mutex mu;  // one forward at a time over the shared module

  torch::Tensor UserVectors(std::span<const std::vector<uint32_t>> sessions) {
    std::vector<std::vector<uint32_t>> known;
    std::vector<const std::vector<uint32_t>*> ptrs;
    known.reserve(sessions.size());
    for (const auto& s : sessions) {
      known.push_back(KnownSuffixOf(s, num_items, max_len));
      if (known.back().empty()) throw std::invalid_argument("a session has no item known to the model");
    }
    for (const auto& k : known) ptrs.push_back(&k);
    auto [seq, unused] = SequenceBatchOf(ptrs, {}, device);
    return model->SequenceForward(seq);
  }

  torch::Tensor Scores(std::span<const std::vector<uint32_t>> sessions) {
    auto scores = torch::matmul(UserVectors(sessions), model->item_table().t());
    scores.select(1, 0).fill_(-std::numeric_limits<float>::infinity());  // padding row
    return scores;
  }
};

ServingModel::ServingModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ServingModel::~ServingModel() = default;
int64_t ServingModel::items() const { return impl_->num_items; }
int64_t ServingModel::steps() const { return impl_->steps; }
int64_t ServingModel::dim() const { return impl_->dim; }

bool CanEmbed(std::span<const uint32_t> session, int64_t items) {
  return std::any_of(session.begin(), session.end(), [&](uint32_t it) { return static_cast<int64_t>(it) < items; });
}

bool ServingModel::CanEmbed(const std::vector<uint32_t>& session) const {
  return learner::CanEmbed(session, impl_->num_items);
}

bool ServingModel::KnowsAll(const std::vector<uint32_t>& session) const {
  return std::all_of(session.begin(), session.end(),
                     [&](uint32_t it) { return static_cast<int64_t>(it) < impl_->num_items; });
}

struct OnlineLearner::Impl {
  OnlineOptions opt;
  torch::Device device = torch::kCPU;
  int threads = 1;
  bool incremental = true;
  mutable std::mutex mu;

  GsauModel model{nullptr};
  std::vector<AdamSlot> adam;
  std::mt19937_64 rng;
  at::Generator growth_gen;  // new rows: a private stream, independent of torch's global one

  // Graph, in state ids: each node's distinct neighbours in insertion order (an item's in
  // ascending user order after a Save, as Load rebuilds them).
  int64_t num_users = 0, num_items = 0;
  std::vector<std::vector<uint32_t>> user_adj, item_adj;
  std::unordered_set<uint64_t> edge_set;

  // Incremental propagation: snapshots S of the tables and, per node w, the partial first layer
  // T[w] = sum_{x in N(w)} isd(x) S[x] (isd = 1 / sqrt(degree + 1e-7)), so that the cached
  // first layer is C1[w] = isd(w) T[w] = (L S)[w]. Row r = model row r. A new edge (u, i) changes
  // T of u, i and of every neighbour of u and i by a known multiple of S[u] or S[i]; Observe
  // records these additions (TUpdates) and applies them with index_add_, in chunks.
  torch::Tensor snap_users, snap_items, t_users, t_items;
  struct TUpdates {
    std::vector<int64_t> rows, src;  // T[rows[k]] += coef[k] * S_other[src[k]]
    std::vector<float> coef;
  };
  TUpdates t_user_updates, t_item_updates;  // updates of T_users (from S_items), of T_items
  bool t_stale = false;  // too many updates queued: recompute T from S instead
  int64_t steps_since_refresh = 0;
  // Full propagation: the adjacency over live rows, rebuilt when the graph or sizes changed.
  CsrMatrix full_adjacency;
  bool full_adjacency_stale = true;

  // Samples.
  std::deque<Sample> pending;
  // The fresh samples the last Step took and put back in front of `pending` when it failed
  // (SkipFailedBatch drops them); 0 after any step that did not fail. `failed_mid_update`: that
  // failure came part-way through the optimiser's update (some weights moved, others not).
  int64_t failed_fresh = 0;
  bool failed_mid_update = false;
  int64_t shed = 0;  // fresh samples a full `pending` gave to replay untrained
  std::vector<Sample> replay;
  int64_t replay_seen = 0;  // samples ever offered to the reservoir
  std::deque<Sample> recent;  // the last recent_capacity samples that went to replay, oldest first

  // Publishing: the item rows as last returned by TakeChangedItems.
  std::vector<float> published;  // [num_items * dim]
  std::vector<uint8_t> has_published;

  int64_t steps = 0, events = 0;

  // The serving snapshot (its own lock: readers never wait for a step).
  mutable std::mutex serving_mu;
  std::shared_ptr<const ServingModel> serving;

  torch::Tensor UserTable() const { return model->user_table(); }
  torch::Tensor ItemTable() const { return model->item_table(); }
  int64_t UserRows() const { return num_users + 1; }
  int64_t ItemRows() const { return num_items + 1; }

  // ---------------------------------------------------------------------------------------
  // Construction and growth

  GsauModelOptions ModelOptions(int64_t user_rows, int64_t item_rows) const {
    return GsauModelOptions(user_rows, item_rows)
        .dim(opt.dim)
        .max_len(opt.max_len)
        .seq_layers(opt.seq_layers)
        .heads(opt.heads)
        .ffn_dim(opt.ffn_dim)
        .hidden_dropout(opt.hidden_dropout)
        .attn_dropout(opt.attn_dropout)
        .graph_layers(opt.graph_layers);
  }

  void BuildModel(int64_t user_rows, int64_t item_rows) {
    model = GsauModel(ModelOptions(user_rows, item_rows));
    model->to(device);
    model->train();
    adam.clear();
    for (const auto& p : model->named_parameters()) {
      AdamSlot s;
      s.name = p.key();
      s.param = p.value();
      s.table = s.name == "user_table.weight" || s.name == "item_table.weight";
      s.exp_avg = torch::zeros_like(s.param);
      s.exp_avg_sq = torch::zeros_like(s.param);
      if (s.table) s.row_step = torch::zeros({s.param.size(0)}, s.param.options().dtype(torch::kInt64));
      adam.push_back(std::move(s));
    }
  }

  AdamSlot& Slot(const std::string& name) {
    for (auto& s : adam) {
      if (s.name == name) return s;
    }
    throw std::logic_error("no parameter " + name);
  }

  // Makes `table` (and its Adam state) have at least `rows` rows, growing geometrically; new
  // rows are Xavier-normal for the new size, their moments and step counts zero.
  void EnsureRows(bool users, int64_t rows) {
    torch::NoGradGuard no_grad;
    AdamSlot& slot = Slot(users ? "user_table.weight" : "item_table.weight");
    const int64_t cap = slot.param.size(0);
    if (rows <= cap) return;
    const int64_t new_cap =
        std::max(rows, static_cast<int64_t>(std::ceil(static_cast<double>(cap) * opt.growth_factor)));
    const int64_t d = opt.dim;
    const double std = std::sqrt(2.0 / static_cast<double>(new_cap + d));
    const auto extra =
        (torch::randn({new_cap - cap, d}, growth_gen, torch::TensorOptions().dtype(slot.param.scalar_type())) * std)
            .to(device);
    // Every grown tensor first, then all of them at once: an allocation failing part-way (a
    // table of millions of rows) left the table grown and its Adam state not, and every later
    // step failed on the mismatch.
    auto param = torch::cat({slot.param.detach(), extra}, 0);
    auto exp_avg = torch::cat({slot.exp_avg, torch::zeros({new_cap - cap, d}, slot.exp_avg.options())}, 0);
    auto exp_avg_sq = torch::cat({slot.exp_avg_sq, torch::zeros({new_cap - cap, d}, slot.exp_avg.options())}, 0);
    auto row_step = torch::cat({slot.row_step, torch::zeros({new_cap - cap}, slot.row_step.options())}, 0);
    // A new row's snapshot is its current value; its cached layer is dirty until computed.
    auto& snap = users ? snap_users : snap_items;
    auto& t = users ? t_users : t_items;
    auto new_snap = torch::cat({snap, extra}, 0);
    auto new_t = torch::cat({t, torch::zeros({new_cap - cap, d}, t.options())}, 0);
    slot.param.set_data(param);
    slot.exp_avg = std::move(exp_avg);
    slot.exp_avg_sq = std::move(exp_avg_sq);
    slot.row_step = std::move(row_step);
    snap = std::move(new_snap);
    t = std::move(new_t);
  }

  void GrowIds(bool users, int64_t ids) {
    int64_t& n = users ? num_users : num_items;
    if (ids <= n) return;
    EnsureRows(users, ids + 1);
    (users ? user_adj : item_adj).resize(static_cast<size_t>(ids));
    if (!users) {
      published.resize(static_cast<size_t>(ids * opt.dim), 0.0f);
      has_published.resize(static_cast<size_t>(ids), 0);
    }
    full_adjacency_stale = true;
    n = ids;  // last: lists longer than the count are harmless, a count past them is not
  }

  void RefreshCache() {
    torch::NoGradGuard no_grad;
    snap_users = UserTable().detach().clone();
    snap_items = ItemTable().detach().clone();
    RecomputeT();
    steps_since_refresh = 0;
  }

  // T from S over every edge: one sparse product (no gradient), O(edges).
  void RecomputeT() {
    torch::NoGradGuard no_grad;
    t_stale = true;  // until both sides are in: a failure part-way recomputes at the next use
    for (const bool users : {true, false}) {
      const auto& adj = users ? user_adj : item_adj;
      const auto& other_adj = users ? item_adj : user_adj;
      std::vector<int64_t> cols, offsets;
      std::vector<float> vals;
      cols.reserve(edge_set.size());
      vals.reserve(edge_set.size());
      for (const auto& nb : adj) {
        offsets.push_back(static_cast<int64_t>(cols.size()));
        for (uint32_t w : nb) {
          cols.push_back(static_cast<int64_t>(w) + 1);
          vals.push_back(static_cast<float>(InvSqrtDegree(other_adj[w].size())));
        }
      }
      auto& t = users ? t_users : t_items;
      t = torch::zeros_like(users ? snap_users : snap_items);
      if (!offsets.empty()) t.slice(0, 1, 1 + static_cast<int64_t>(offsets.size())).copy_(Bag(users ? snap_items : snap_users, cols, vals, offsets));
    }
    t_user_updates = {};
    t_item_updates = {};
    t_stale = false;
  }

  void ApplyTUpdates() {
    if (t_stale) {
      RecomputeT();
      return;
    }
    torch::NoGradGuard no_grad;
    // In chunks: the gathered rows take d floats per queued update, and the queue may hold
    // twice the graph's edges (AddEdge), about 1 KB per edge at d = 64 in one piece.
    constexpr size_t kChunk = size_t{1} << 16;
    for (const bool users : {true, false}) {
      auto& up = users ? t_user_updates : t_item_updates;
      if (up.rows.empty()) continue;
      const auto& source = users ? snap_items : snap_users;
      auto& target = users ? t_users : t_items;
      try {
        for (size_t at = 0; at < up.rows.size(); at += kChunk) {
          const size_t n = std::min(kChunk, up.rows.size() - at);
          const auto rows = torch::from_blob(up.rows.data() + at, {static_cast<int64_t>(n)}, torch::kInt64).to(device);
          const auto src = torch::from_blob(up.src.data() + at, {static_cast<int64_t>(n)}, torch::kInt64).to(device);
          const auto coef =
              torch::from_blob(up.coef.data() + at, {static_cast<int64_t>(n), 1}, torch::kFloat32).to(device);
          target.index_add_(0, rows, source.index_select(0, src) * coef);
        }
      } catch (...) {
        // Some chunks may be in: applying the queue again would count them twice.
        t_user_updates = {};
        t_item_updates = {};
        t_stale = true;
        throw;
      }
      up = {};
    }
  }

  // ---------------------------------------------------------------------------------------
  // Observing

  std::vector<uint32_t> KnownSuffix(const std::vector<uint32_t>& session) const {
    return KnownSuffixOf(session, num_items, opt.max_len);
  }

  void AddToReplay(Sample s) {
    if (opt.recent_fraction > 0) {
      recent.push_back(s);
      if (static_cast<int64_t>(recent.size()) > opt.recent_capacity) recent.pop_front();
    }
    ++replay_seen;
    if (static_cast<int64_t>(replay.size()) < opt.replay_capacity) {
      replay.push_back(std::move(s));
      return;
    }
    const auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(replay_seen));
    if (j < opt.replay_capacity) replay[static_cast<size_t>(j)] = std::move(s);
  }

  void AddEdge(uint32_t u, uint32_t i) {
    const uint64_t key = (static_cast<uint64_t>(u) << 32) | i;
    if (!edge_set.insert(key).second) return;
    auto& au = user_adj[u];
    auto& ai = item_adj[i];
    if (incremental && !t_stale) {
      // T[w] of each old neighbour w of u holds isd(u) S[u]: isd(u) changes with deg(u); the
      // same for i; and u, i gain each other's term.
      const double du_old = InvSqrtDegree(au.size()), du_new = InvSqrtDegree(au.size() + 1);
      const double di_old = InvSqrtDegree(ai.size()), di_new = InvSqrtDegree(ai.size() + 1);
      const int64_t ur = static_cast<int64_t>(u) + 1, ir = static_cast<int64_t>(i) + 1;
      auto add = [](TUpdates& up, int64_t row, int64_t src, double c) {
        up.rows.push_back(row);
        up.src.push_back(src);
        up.coef.push_back(static_cast<float>(c));
      };
      for (uint32_t w : au) add(t_item_updates, static_cast<int64_t>(w) + 1, ur, du_new - du_old);
      for (uint32_t x : ai) add(t_user_updates, static_cast<int64_t>(x) + 1, ir, di_new - di_old);
      add(t_user_updates, ur, ir, di_new);
      add(t_item_updates, ir, ur, du_new);
      // A bulk load (history, checkpoint) would queue O(sum of degree^2) updates: past a
      // bound, recomputing T from S at O(edges) is cheaper.
      const size_t queued = t_user_updates.rows.size() + t_item_updates.rows.size();
      if (queued > std::max<size_t>(size_t{1} << 20, 2 * edge_set.size())) {
        t_user_updates = {};
        t_item_updates = {};
        t_stale = true;
      }
    }
    au.push_back(i);
    ai.push_back(u);
    full_adjacency_stale = true;
  }

  void Observe(std::span<const OnlineEvent> evs, bool fresh) {
    for (const auto& e : evs) {
      GrowIds(true, static_cast<int64_t>(e.user) + 1);
      GrowIds(false, static_cast<int64_t>(e.item) + 1);
      AddEdge(e.user, e.item);
      Sample s{e.user, e.item, e.ts_ms, KnownSuffix(e.prefix)};
      if (!fresh || opt.max_pending == 0) {
        AddToReplay(std::move(s));
      } else {
        // A full queue gives its oldest to replay, not the newest click: under a lasting overload
        // the fresh share of each batch stays the latest clicks (it had trailed by max_pending
        // samples, minutes at the default), and the older ones are still replayed.
        if (static_cast<int64_t>(pending.size()) >= opt.max_pending) {
          AddToReplay(std::move(pending.front()));
          pending.pop_front();
          ++shed;
          if (failed_fresh > 0) --failed_fresh;
        }
        pending.push_back(std::move(s));
      }
      ++events;
    }
    if (incremental) ApplyTUpdates();
  }

  // ---------------------------------------------------------------------------------------
  // Graph propagation

  // sum_k vals[k] * table[cols[k]] per bag; empty bags give zero rows.
  torch::Tensor Bag(const torch::Tensor& table, const std::vector<int64_t>& cols, const std::vector<float>& vals,
                    const std::vector<int64_t>& offsets) const {
    const auto n = static_cast<int64_t>(offsets.size());
    if (cols.empty()) return torch::zeros({n, opt.dim}, table.options().requires_grad(false));
    return std::get<0>(torch::embedding_bag(table, I64(cols, device), I64(offsets, device),
                                            /*scale_grad_by_freq=*/false, /*mode=*/0, /*sparse=*/false,
                                            torch::tensor(vals, torch::kFloat32).to(device)));
  }

  struct Propagated {
    torch::Tensor users, items;  // [ids, d] in the order of the given (distinct) ids
    int64_t edges = 0;
    double rebuild_s = 0;  // full mode: rebuilding the adjacency after graph changes
  };

  // The training propagation for distinct `users` and `items` (see online.h).
  Propagated Propagate(const std::vector<uint32_t>& users, const std::vector<uint32_t>& items) {
    Propagated out;
    if (!incremental) {
      if (full_adjacency_stale) {
        const auto t = Clock::now();
        std::vector<GraphPair> pairs;
        pairs.reserve(edge_set.size());
        for (size_t u = 0; u < user_adj.size(); ++u) {
          for (uint32_t i : user_adj[u]) pairs.push_back({static_cast<int32_t>(u + 1), static_cast<int32_t>(i + 1)});
        }
        full_adjacency = BuildNormalizedAdjacency(UserRows(), ItemRows(), pairs).To(device);
        full_adjacency_stale = false;
        out.rebuild_s = Since(t);
      }
      const auto x = torch::cat({UserTable().slice(0, 0, UserRows()), ItemTable().slice(0, 0, ItemRows())}, 0);
      const auto g = LightGcnPropagate(full_adjacency, x, opt.graph_layers);
      out.users = g.index_select(0, Rows(users, 0));
      out.items = g.index_select(0, Rows(items, UserRows()));
      out.edges = 2 * static_cast<int64_t>(edge_set.size()) * opt.graph_layers;
      return out;
    }
    ApplyTUpdates();  // normally done by Observe; here in case an Observe threw half-way
    auto side = [&](bool is_items, const std::vector<uint32_t>& ids) {
      const auto& adj = is_items ? item_adj : user_adj;
      const auto& other_adj = is_items ? user_adj : item_adj;
      // Layer 1 weights c(b, w) = isd(b) isd(w); layer 2 reads C1[w] = isd(w) T[w].
      std::vector<int64_t> cols, offsets;
      std::vector<float> vals, vals2;
      for (uint32_t id : ids) {
        offsets.push_back(static_cast<int64_t>(cols.size()));
        const double a = InvSqrtDegree(adj[id].size());
        for (uint32_t w : adj[id]) {
          const double b = InvSqrtDegree(other_adj[w].size());
          cols.push_back(static_cast<int64_t>(w) + 1);
          vals.push_back(static_cast<float>(a * b));
          vals2.push_back(static_cast<float>(a * b * b));
        }
      }
      const auto& e0 = is_items ? ItemTable() : UserTable();
      const auto& other = is_items ? UserTable() : ItemTable();
      auto sum = e0.index_select(0, Rows(ids, 0)) + Bag(other, cols, vals, offsets);
      if (opt.graph_layers >= 2) sum = sum + Bag(is_items ? t_users : t_items, cols, vals2, offsets);
      out.edges += static_cast<int64_t>(cols.size()) * opt.graph_layers;
      return sum / static_cast<double>(opt.graph_layers + 1);
    };
    out.users = side(false, users);
    out.items = side(true, items);
    return out;
  }

  torch::Tensor Rows(const std::vector<uint32_t>& ids, int64_t base) const {
    std::vector<int64_t> r(ids.size());
    for (size_t k = 0; k < ids.size(); ++k) r[k] = base + static_cast<int64_t>(ids[k]) + 1;
    return I64(r, device);
  }

  // ---------------------------------------------------------------------------------------
  // Training

  std::pair<SequenceBatch, torch::Tensor> MakeSequenceBatch(const std::vector<const std::vector<uint32_t>*>& prefixes,
                                                            const std::vector<uint32_t>& targets) const {
    return SequenceBatchOf(prefixes, targets, device);
  }

  // n distinct indices below size for which `take` holds, uniformly (all of them when fewer
  // hold). Rejection sampling while n is small against size; should `take` refuse so many that
  // it runs long, or n be large, a partial shuffle of those that hold (exact, and it ends
  // however many are refused).
  std::vector<size_t> DrawDistinct(int64_t n, size_t size, const std::function<bool(size_t)>& take = nullptr) {
    std::vector<size_t> idx;
    if (n <= 0 || size == 0) return idx;
    if (static_cast<size_t>(n) * 4 < size) {
      std::unordered_set<size_t> seen;
      for (int64_t tries = 16 * n + 64; tries > 0 && static_cast<int64_t>(idx.size()) < n; --tries) {
        const size_t j = static_cast<size_t>(rng() % size);
        if (seen.insert(j).second && (!take || take(j))) idx.push_back(j);
      }
      if (static_cast<int64_t>(idx.size()) == n) return idx;
      idx.clear();
    }
    for (size_t j = 0; j < size; ++j) {
      if (!take || take(j)) idx.push_back(j);
    }
    const size_t keep = std::min(idx.size(), static_cast<size_t>(n));
    if (keep < idx.size()) {
      for (size_t k = 0; k < keep; ++k) std::swap(idx[k], idx[k + static_cast<size_t>(rng() % (idx.size() - k))]);
    }
    idx.resize(keep);
    return idx;
  }

  // n replayed samples: round(n * recent_fraction) from the recent window, the rest from the
  // reservoir (either side fills in when the other runs short). The reservoir alone is uniform
  // over everything ever trained, so after a long history the latest clicks (a new season, new
  // items) get a vanishing share of replay; the window keeps a fixed share for them.
  // A sample is in both while the reservoir still holds it: the reservoir's part skips those the
  // window's part drew (one click twice in a batch, doubly weighted), and so may come out short
  // when the reservoir holds little else.
  std::vector<const Sample*> DrawReplay(int64_t n, int64_t* n_recent) {
    const auto window = static_cast<int64_t>(recent.size());
    const auto reservoir = static_cast<int64_t>(replay.size());
    int64_t from_recent = std::min(window, static_cast<int64_t>(std::llround(static_cast<double>(n) * opt.recent_fraction)));
    const int64_t from_reservoir = std::min(reservoir, n - from_recent);
    from_recent = std::min(window, n - from_reservoir);
    std::vector<const Sample*> out;
    out.reserve(static_cast<size_t>(from_recent + from_reservoir));
    using Key = std::tuple<uint32_t, uint32_t, int64_t>;  // a click: the same one in both places
    std::vector<Key> drawn;
    for (size_t j : DrawDistinct(from_recent, recent.size())) {
      out.push_back(&recent[j]);
      drawn.emplace_back(recent[j].user, recent[j].item, recent[j].ts_ms);
    }
    *n_recent = static_cast<int64_t>(out.size());
    std::sort(drawn.begin(), drawn.end());
    const auto fresh_from_window = [&](size_t j) {
      const Sample& s = replay[j];
      return !std::binary_search(drawn.begin(), drawn.end(), Key{s.user, s.item, s.ts_ms});
    };
    for (size_t j : DrawDistinct(from_reservoir, replay.size(), fresh_from_window)) out.push_back(&replay[j]);
    return out;
  }

  void AdamStep() {
    torch::NoGradGuard no_grad;
    const double lr = opt.lr;
    for (auto& s : adam) {
      if (!s.param.grad().defined()) continue;
      const int64_t rows = s.table ? (s.name == "user_table.weight" ? UserRows() : ItemRows()) : 0;
      auto p = s.table ? s.param.slice(0, 0, rows) : s.param;
      auto g = s.table ? s.param.grad().slice(0, 0, rows) : s.param.grad();
      auto m = s.table ? s.exp_avg.slice(0, 0, rows) : s.exp_avg;
      auto v = s.table ? s.exp_avg_sq.slice(0, 0, rows) : s.exp_avg_sq;
      if (opt.weight_decay != 0) g = g + opt.weight_decay * p;
      m.mul_(kBeta1).add_(g, 1 - kBeta1);
      v.mul_(kBeta2).addcmul_(g, g, 1 - kBeta2);
      if (s.table) {
        auto st = s.row_step.slice(0, 0, rows);
        st.add_(1);
        const auto stf = st.to(torch::kFloat64).unsqueeze(1);
        const auto bc1 = (1.0 - torch::pow(kBeta1, stf)).to(p.scalar_type());
        const auto bc2 = (1.0 - torch::pow(kBeta2, stf)).to(p.scalar_type());
        const auto denom = (v.sqrt() / bc2.sqrt()).add_(kEps);
        p.addcdiv_(m, denom * bc1, -lr);
      } else {
        ++s.step;
        const double bc1 = 1.0 - std::pow(kBeta1, static_cast<double>(s.step));
        const double bc2 = 1.0 - std::pow(kBeta2, static_cast<double>(s.step));
        const auto denom = (v.sqrt() / std::sqrt(bc2)).add_(kEps);
        p.addcdiv_(m, denom, -lr / bc1);
      }
    }
    for (auto& s : adam) s.param.mutable_grad() = torch::Tensor();
  }

  OnlineStepResult Step() {
    const auto start = Clock::now();
    OnlineStepResult r;
    failed_fresh = 0;
    failed_mid_update = false;
    const auto pending_n = static_cast<int64_t>(pending.size());
    const auto replay_n = static_cast<int64_t>(std::max(replay.size(), recent.size()));
    int64_t n_fresh = std::min(pending_n, static_cast<int64_t>(std::llround(static_cast<double>(opt.batch_size) * opt.fresh_fraction)));
    const int64_t n_replay = std::min(replay_n, opt.batch_size - n_fresh);
    n_fresh += std::min(pending_n - n_fresh, opt.batch_size - n_fresh - n_replay);
    if (n_fresh + n_replay == 0) return r;
    auto t = Clock::now();
    if (incremental && steps_since_refresh >= opt.graph_refresh_steps) {
      RefreshCache();
      r.refreshed = true;
      r.refresh_s = Since(t);
      t = Clock::now();
    }
    std::vector<Sample> fresh(std::make_move_iterator(pending.begin()), std::make_move_iterator(pending.begin() + n_fresh));
    pending.erase(pending.begin(), pending.begin() + n_fresh);
    // Until the update, any failure (a loss that is not finite; an exception from a forward or
    // backward pass, out of memory say) leaves the samples and the gradients as they were:
    // the fresh samples back in front, no gradient left to add to the next step's (nor of a
    // table's old size once Observe has grown it).
    struct UndoUnlessUpdated {
      Impl* self;
      std::vector<Sample>* fresh;
      bool update_begun = false, updated = false;
      ~UndoUnlessUpdated() {
        if (updated) return;
        self->failed_mid_update = update_begun;
        for (auto& a : self->adam) a.param.mutable_grad() = torch::Tensor();
        try {
          self->pending.insert(self->pending.begin(), std::make_move_iterator(fresh->begin()),
                               std::make_move_iterator(fresh->end()));
          self->failed_fresh = static_cast<int64_t>(fresh->size());
        } catch (...) {
          // Out of memory while unwinding: the samples are lost, the process is not.
        }
      }
    } undo{this, &fresh};
    std::vector<const Sample*> batch;
    for (const auto& s : fresh) batch.push_back(&s);
    for (const Sample* s : DrawReplay(n_replay, &r.replay_recent)) batch.push_back(s);
    r.fresh = n_fresh;
    r.replay = static_cast<int64_t>(batch.size()) - n_fresh;

    // Distinct users and items of the batch and each sample's position among them.
    std::vector<uint32_t> users, items;
    std::vector<int64_t> upos, ipos;
    {
      std::unordered_map<uint32_t, int64_t> um, im;
      for (const auto* s : batch) {
        auto [a, ua] = um.try_emplace(s->user, static_cast<int64_t>(users.size()));
        if (ua) users.push_back(s->user);
        upos.push_back(a->second);
        auto [b, ib] = im.try_emplace(s->item, static_cast<int64_t>(items.size()));
        if (ib) items.push_back(s->item);
        ipos.push_back(b->second);
      }
    }
    std::vector<const std::vector<uint32_t>*> prefixes;
    std::vector<uint32_t> targets;
    for (const auto* s : batch) {
      if (s->prefix.empty()) continue;
      prefixes.push_back(&s->prefix);
      targets.push_back(s->item);
    }
    r.sequence_samples = static_cast<int64_t>(prefixes.size());
    model->train();
    model->set_dropout_seed(opt.seed * 0x100000001B3ULL + static_cast<uint64_t>(steps));
    r.batch_s = Since(t);

    t = Clock::now();
    auto g = Propagate(users, items);
    r.propagated_edges = g.edges;
    r.refresh_s += g.rebuild_s;
    const auto gu = g.users.index_select(0, I64(upos, device));
    const auto gi = g.items.index_select(0, I64(ipos, device));
    const auto ga = Align(gu, gi);
    const auto gunif = Uniformity(gu, opt.temperature) + Uniformity(gi, opt.temperature);
    const auto graph_loss = ga + opt.gamma * gunif;
    r.graph_s = Since(t) - g.rebuild_s;
    // Two backward passes (graph, then sequence) so each branch's cost can be read apart.
    t = Clock::now();
    graph_loss.backward();
    r.graph_backward_s = Since(t);
    r.loss = graph_loss.item<double>();

    torch::Tensor sa, sunif;
    if (!prefixes.empty()) {
      t = Clock::now();
      auto [seq, tgt] = MakeSequenceBatch(prefixes, targets);
      const auto s = model->SequenceForward(seq);
      const auto table = ItemTable().slice(0, 0, ItemRows());
      // Fused (loss.h): one [B, items] buffer, not logits, log-softmax and gradient apiece
      // (~0.2 GB each at 100k items and B 512), the offline trainer's loss.
      sa = FullSoftmaxCrossEntropy(F::normalize(s, F::NormalizeFuncOptions().dim(1)), table, tgt);
      const auto e = ItemTable().index_select(0, tgt);
      sunif = Uniformity(s, opt.temperature) + Uniformity(e, opt.temperature);
      const int64_t b = tgt.size(0);
      if (b >= 2) {
        const auto perm = RandomDerangement(b, rng);
        sunif = sunif + PairUniformity(s, e.index_select(0, torch::tensor(perm, torch::kInt64).to(device)), opt.temperature);
      }
      const auto seq_loss = sa + opt.gamma * sunif;
      r.seq_s = Since(t);
      t = Clock::now();
      seq_loss.backward();
      r.seq_backward_s = Since(t);
      r.loss += seq_loss.item<double>();
    }
    if (!std::isfinite(r.loss)) {
      // Before the update: the weights and the serving copy stay as they were (`undo` puts the
      // samples back).
      throw std::runtime_error("loss is not finite at step " + std::to_string(steps + 1) + ": no update made");
    }
    // Read before the update (a device sync that can fail): nothing after it may fail the step.
    r.graph_align = ga.item<double>();
    r.graph_unif = gunif.item<double>();
    if (sa.defined()) {
      r.seq_align = sa.item<double>();
      r.seq_unif = sunif.item<double>();
    }
    t = Clock::now();
    undo.update_begun = true;
    AdamStep();  // a failure part-way still drops the gradients and puts the samples back
    undo.updated = true;
    r.optimizer_s = Since(t);
    r.trained = true;
    ++steps;
    ++steps_since_refresh;
    for (auto& s : fresh) AddToReplay(std::move(s));
    r.total_s = Since(start);
    return r;
  }

  // A copy of SASRec and the live item rows for serving. Building a GsauModel draws its initial
  // weights from torch's default generator: its state is put back, so snapshots never change
  // the training's random stream.
  void TakeServingSnapshot() {
    torch::NoGradGuard no_grad;
    auto gen = at::detail::getDefaultCPUGenerator();
    c10::intrusive_ptr<c10::TensorImpl> rng_state;
    {
      std::lock_guard<std::mutex> g(gen.mutex());
      rng_state = gen.get_state().getIntrusivePtr();
    }
    auto si = std::make_unique<ServingModel::Impl>();
    // Tables of one row, replaced below by a copy of the live rows: a table of ItemRows() would
    // draw items x d random numbers only to overwrite them, after every step (~1 s at 1M items).
    si->model = GsauModel(ModelOptions(1, 1));
    {
      std::lock_guard<std::mutex> g(gen.mutex());
      gen.set_state(at::Tensor(rng_state));
    }
    si->model->to(device);
    auto dst = si->model->named_parameters();
    for (const auto& p : model->named_parameters()) {
      if (p.key() == "user_table.weight") continue;
      auto* d = dst.find(p.key());
      if (d == nullptr) throw std::logic_error("serving model lacks " + p.key());
      if (p.key() == "item_table.weight") {
        d->set_data(p.value().slice(0, 0, ItemRows()).clone());
      } else {
        d->copy_(p.value());
      }
    }
    si->model->eval();
    si->device = device;
    si->num_items = num_items;
    si->steps = steps;
    si->dim = opt.dim;
    si->max_len = opt.max_len;
    std::shared_ptr<const ServingModel> next(new ServingModel(std::move(si)));
    std::lock_guard<std::mutex> g(serving_mu);
    serving = std::move(next);
  }

  // ---------------------------------------------------------------------------------------
  // Inference

  torch::Tensor UserVectors(std::span<const std::vector<uint32_t>> sessions) {
    std::vector<std::vector<uint32_t>> known;
    std::vector<const std::vector<uint32_t>*> ptrs;
    known.reserve(sessions.size());
    for (const auto& s : sessions) {
      known.push_back(KnownSuffix(s));
      if (known.back().empty()) throw std::invalid_argument("a session has no item known to the model");
    }
    for (const auto& k : known) ptrs.push_back(&k);
    torch::NoGradGuard no_grad;
    model->eval();
    auto [seq, unused] = MakeSequenceBatch(ptrs, {});
    auto out = model->SequenceForward(seq);
    model->train();
    return out;
  }

  static std::vector<float> ToVector(const torch::Tensor& t) {
    const auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }

  int64_t ScoreRank(const std::vector<uint32_t>& session, uint32_t target) {
    torch::NoGradGuard no_grad;
    const auto s = UserVectors(std::span<const std::vector<uint32_t>>(&session, 1));
    if (static_cast<int64_t>(target) >= num_items) return kMissRank;
    auto scores = torch::matmul(s, ItemTable().slice(0, 0, ItemRows()).t()).squeeze(0);
    scores[0].fill_(-std::numeric_limits<float>::infinity());
    const auto target_score = scores[static_cast<int64_t>(target) + 1];
    return TargetRanks(scores, target_score).item<int64_t>();
  }

  ChangedItems TakeChanged() {
    ChangedItems out;
    torch::NoGradGuard no_grad;
    const auto rows = ToVector(ItemTable().slice(0, 1, ItemRows()));
    const auto d = static_cast<size_t>(opt.dim);
    for (size_t i = 0; i < static_cast<size_t>(num_items); ++i) {
      const float* row = rows.data() + i * d;
      float* pub = published.data() + i * d;
      bool moved = !has_published[i];
      if (!moved) {
        double diff = 0, norm = 0;
        for (size_t j = 0; j < d; ++j) {
          diff += (row[j] - pub[j]) * static_cast<double>(row[j] - pub[j]);
          norm += pub[j] * static_cast<double>(pub[j]);
        }
        moved = std::sqrt(diff) > opt.change_threshold * std::max(std::sqrt(norm), 1e-6);
      }
      if (!moved) continue;
      std::copy(row, row + d, pub);
      has_published[i] = 1;
      out.ids.push_back(static_cast<uint32_t>(i));
      out.embeddings.insert(out.embeddings.end(), row, row + d);
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------
  // Checkpoints

  static void WriteSamples(torch::serialize::OutputArchive& ar, const std::string& prefix,
                           const std::vector<const Sample*>& samples) {
    std::vector<int64_t> users, items, ts, lens, flat;
    for (const auto* s : samples) {
      users.push_back(s->user);
      items.push_back(s->item);
      ts.push_back(s->ts_ms);
      lens.push_back(static_cast<int64_t>(s->prefix.size()));
      for (uint32_t x : s->prefix) flat.push_back(x);
    }
    ar.write(Key(prefix, "users"), torch::tensor(users, torch::kInt64));
    ar.write(Key(prefix, "items"), torch::tensor(items, torch::kInt64));
    ar.write(Key(prefix, "ts"), torch::tensor(ts, torch::kInt64));
    ar.write(Key(prefix, "lens"), torch::tensor(lens, torch::kInt64));
    ar.write(Key(prefix, "prefix"), torch::tensor(flat, torch::kInt64));
  }

  // The samples under `prefix`; kCorruption unless every id is below the counts given.
  Result<std::vector<Sample>> ReadSamples(torch::serialize::InputArchive& ar, const std::string& prefix,
                                          int64_t n_users, int64_t n_items) const {
    auto read = [&](const char* what) {
      torch::Tensor t;
      ar.read(Key(prefix, what), t);
      return t.to(torch::kCPU, torch::kInt64).contiguous();
    };
    const auto users = read("users"), items = read("items"), ts = read("ts"), lens = read("lens"), flat = read("prefix");
    const int64_t n = users.numel();
    auto corrupt = [&](int64_t k, const std::string& what) {
      return Status::Corruption("corrupt checkpoint: " + prefix + " sample " + std::to_string(k) + ": " + what +
                                " (" + std::to_string(n_users) + " users, " + std::to_string(n_items) + " items)");
    };
    if (items.numel() != n || ts.numel() != n || lens.numel() != n) return corrupt(n, "columns of unequal length");
    const int64_t *u = users.data_ptr<int64_t>(), *it = items.data_ptr<int64_t>(), *t = ts.data_ptr<int64_t>(),
                  *l = lens.data_ptr<int64_t>(), *f = flat.data_ptr<int64_t>();
    std::vector<Sample> out(static_cast<size_t>(n));
    int64_t pos = 0;
    for (int64_t k = 0; k < n; ++k) {
      if (u[k] < 0 || u[k] >= n_users) return corrupt(k, "user " + std::to_string(u[k]));
      if (it[k] < 0 || it[k] >= n_items) return corrupt(k, "item " + std::to_string(it[k]));
      if (l[k] < 0 || l[k] > opt.max_len || pos + l[k] > flat.numel()) {
        return corrupt(k, "a prefix of " + std::to_string(l[k]) + " items");
      }
      auto& s = out[static_cast<size_t>(k)];
      s.user = static_cast<uint32_t>(u[k]);
      s.item = static_cast<uint32_t>(it[k]);
      s.ts_ms = t[k];
      for (int64_t j = 0; j < l[k]; ++j) {
        if (f[pos + j] < 0 || f[pos + j] >= n_items) return corrupt(k, "prefix item " + std::to_string(f[pos + j]));
        s.prefix.push_back(static_cast<uint32_t>(f[pos + j]));
      }
      pos += l[k];
    }
    return out;
  }

  std::vector<int64_t> ShapeMeta() const { return ShapeOf(opt); }

  Status Save(const std::string& path, const OnlineWatermark& wm) {
    // So that a run resumed from this file repeats this one: both go on from a cache refreshed
    // now (Load refreshes it; the snapshot it had is not saved), and each item's neighbours are
    // put in the order Load rebuilds them in (ascending users), so every sum over them adds in
    // the same order.
    for (auto& nb : item_adj) std::sort(nb.begin(), nb.end());
    RefreshCache();
    torch::serialize::OutputArchive ar;
    for (const auto& s : adam) {
      ar.write(Key("param", s.name), s.param.detach());
      ar.write(Key("exp_avg", s.name), s.exp_avg);
      ar.write(Key("exp_avg_sq", s.name), s.exp_avg_sq);
      ar.write(Key("step", s.name), s.table ? s.row_step : torch::tensor(s.step, torch::kInt64));
    }
    ar.write("shape", torch::tensor(ShapeMeta(), torch::kInt64));
    int64_t seq_bits = 0;
    std::memcpy(&seq_bits, &wm.state_batch_seq, sizeof(seq_bits));
    ar.write("counters", torch::tensor(std::vector<int64_t>{num_users, num_items, steps, events, replay_seen,
                                                            seq_bits, wm.model_version, steps_since_refresh},
                                       torch::kInt64));
    std::vector<int64_t> edges;
    edges.reserve(edge_set.size() * 2);
    for (size_t u = 0; u < user_adj.size(); ++u) {
      for (uint32_t i : user_adj[u]) {
        edges.push_back(static_cast<int64_t>(u));
        edges.push_back(i);
      }
    }
    ar.write("edges", torch::tensor(edges, torch::kInt64));
    // Where new rows' draws stand: a restart from the seed would draw again the rows between the
    // live count and the capacity, and two new items would start as copies of each other.
    ar.write("growth_gen", growth_gen.get_state());
    // The draws of reservoir slots, replay samples and derangements.
    std::ostringstream rng_text;
    rng_text << rng;
    const std::string rs = rng_text.str();
    ar.write("rng", torch::from_blob(const_cast<char*>(rs.data()), {static_cast<int64_t>(rs.size())}, torch::kUInt8)
                        .clone());
    std::vector<const Sample*> p, q, w;
    for (const auto& s : pending) p.push_back(&s);
    for (const auto& s : replay) q.push_back(&s);
    for (const auto& s : recent) w.push_back(&s);
    WriteSamples(ar, "pending", p);
    WriteSamples(ar, "replay", q);
    WriteSamples(ar, "recent", w);

    // Synced before the rename makes it the checkpoint; a full disk is an error, not an abort.
    return WriteFileAtomically(path, [&](const ByteSink& sink) { ar.save_to(sink); });
  }

  Result<OnlineWatermark> Load(const std::string& path) {
    if (!fs::exists(path)) return Status::NotFound("no checkpoint at " + path);
    torch::serialize::InputArchive ar;
    GSAU_RETURN_IF_ERROR(ReadArchive(ar, path, device));
    return LoadFrom(ar, path);
  }

  // Load's reading of an archive loaded onto this learner's device; `path` names it in errors.
  Result<OnlineWatermark> LoadFrom(torch::serialize::InputArchive& ar, const std::string& path) {
    torch::Tensor shape, counters, edges;
    ar.read("shape", shape);
    const auto expect = ShapeMeta();
    const auto sh = shape.cpu();
    if (sh.numel() != static_cast<int64_t>(expect.size())) return Status::InvalidArgument(path + ": unknown checkpoint format");
    static constexpr const char* kShapeNames[] = {"format", "dim", "max_len", "seq_layers",
                                                  "heads",  "ffn_dim", "graph_layers"};
    static_assert(std::size(kShapeNames) == 7);
    for (size_t k = 0; k < expect.size(); ++k) {
      const int64_t saved = sh[static_cast<int64_t>(k)].item<int64_t>();
      if (saved != expect[k]) {
        const std::string name = k < std::size(kShapeNames) ? kShapeNames[k] : "shape " + std::to_string(k);
        return Status::InvalidArgument(path + " was written for another model shape: its " + name + " is " +
                                       std::to_string(saved) + ", this learner's " + std::to_string(expect[k]));
      }
    }
    ar.read("counters", counters);
    const auto c = counters.cpu().to(torch::kInt64);
    // Read everything first and check it against the file's own counts, then commit, so a bad
    // file leaves the learner as it was (an id past the counts would index past the lists).
    auto corrupt = [&](const std::string& what) { return Status::Corruption(path + ": corrupt checkpoint: " + what); };
    if (c.numel() < 7) return corrupt("counters: " + std::to_string(c.numel()) + " values, 7 or more expected");
    const int64_t n_users = c[0].item<int64_t>(), n_items = c[1].item<int64_t>();
    if (n_users < 0 || n_items < 0 || n_users >= kMaxIds || n_items >= kMaxIds) {
      return corrupt("counters: " + std::to_string(n_users) + " users, " + std::to_string(n_items) + " items");
    }
    std::vector<torch::Tensor> params, avg, avg_sq, step;
    for (const auto& s : adam) {
      torch::Tensor p, a, b, st;
      ar.read(Key("param", s.name), p);
      ar.read(Key("exp_avg", s.name), a);
      ar.read(Key("exp_avg_sq", s.name), b);
      ar.read(Key("step", s.name), st);
      if (!s.table && !p.sizes().equals(s.param.sizes())) return Status::InvalidArgument(path + ": shape of " + s.name);
      if (s.table) {
        const int64_t ids = s.name == "user_table.weight" ? n_users : n_items;
        if (p.dim() != 2 || p.size(1) != opt.dim || p.size(0) < ids + 1 || st.numel() != p.size(0)) {
          return corrupt(s.name + ": " + std::to_string(p.dim() == 2 ? p.size(0) : -1) + " rows of " +
                         std::to_string(p.dim() == 2 ? p.size(1) : -1) + " for " + std::to_string(ids) +
                         " ids, row steps " + std::to_string(st.numel()));
        }
      }
      if (!a.sizes().equals(p.sizes()) || !b.sizes().equals(p.sizes())) {
        return corrupt(s.name + ": its Adam moments are not the parameter's shape");
      }
      if (!s.table && st.numel() != 1) {  // read as one count when committing, past the point of no return
        return corrupt(s.name + ": " + std::to_string(st.numel()) + " step counts, 1 expected");
      }
      params.push_back(p.to(device));
      avg.push_back(a.to(device));
      avg_sq.push_back(b.to(device));
      step.push_back(st.to(device));
    }
    ar.read("edges", edges);
    const auto e = edges.cpu().to(torch::kInt64).contiguous();
    if (e.numel() % 2 != 0) return corrupt("edges: an odd count of ids");
    const int64_t* ep = e.data_ptr<int64_t>();
    for (int64_t k = 0; k < e.numel(); k += 2) {
      if (ep[k] < 0 || ep[k] >= n_users || ep[k + 1] < 0 || ep[k + 1] >= n_items) {
        return corrupt("edge " + std::to_string(k / 2) + " joins user " + std::to_string(ep[k]) + " and item " +
                       std::to_string(ep[k + 1]) + ", of " + std::to_string(n_users) + " users and " +
                       std::to_string(n_items) + " items");
      }
    }
    GSAU_ASSIGN_OR_RETURN(auto pend, ReadSamples(ar, "pending", n_users, n_items));
    GSAU_ASSIGN_OR_RETURN(auto rep, ReadSamples(ar, "replay", n_users, n_items));
    // Checkpoints written before the recent window existed have none: it refills as it trains.
    torch::Tensor probe;
    std::vector<Sample> win;
    if (ar.try_read(Key("recent", "users"), probe)) {
      GSAU_ASSIGN_OR_RETURN(win, ReadSamples(ar, "recent", n_users, n_items));
    }
    // Checkpoints written before the growth generator was saved: a stream of its own, away from
    // the seed's (whose first draws are the saved tables' spare rows).
    torch::Tensor growth_state;
    at::Generator next_growth_gen = at::detail::createCPUGenerator(
        opt.seed ^ 0x5851F42D4C957F2DULL ^ static_cast<uint64_t>(c[2].item<int64_t>() + 1) * 0x9E3779B97F4A7C15ULL);
    if (ar.try_read("growth_gen", growth_state)) {
      next_growth_gen.set_state(growth_state.cpu());  // throws on a bad state, before anything changed
    }
    // Checkpoints written before the draws' generator was saved: reseeded from the step count.
    std::mt19937_64 next_rng(opt.seed + static_cast<uint64_t>(c[2].item<int64_t>()));
    if (torch::Tensor rng_state; ar.try_read("rng", rng_state)) {
      const auto t = rng_state.cpu().to(torch::kUInt8).contiguous();
      const auto* q = reinterpret_cast<const char*>(t.data_ptr<uint8_t>());
      std::istringstream text(std::string(q, static_cast<size_t>(t.numel())));
      text >> next_rng;
      if (!text) return Status::Corruption(path + ": corrupt checkpoint: its random generator state does not parse");
    }

    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < adam.size(); ++k) {
      auto& s = adam[k];
      if (s.table) {
        s.param.set_data(params[k]);
        s.row_step = step[k];
      } else {
        s.param.copy_(params[k]);
        s.step = step[k].item<int64_t>();
      }
      s.exp_avg = avg[k];
      s.exp_avg_sq = avg_sq[k];
      s.param.mutable_grad() = torch::Tensor();
    }
    growth_gen = next_growth_gen;
    num_users = num_items = 0;
    user_adj.clear();
    item_adj.clear();
    published.clear();
    has_published.clear();
    edge_set.clear();
    snap_users = UserTable().detach().clone();
    snap_items = ItemTable().detach().clone();
    t_users = torch::zeros_like(snap_users);
    t_items = torch::zeros_like(snap_items);
    t_stale = true;  // AddEdge below queues nothing; RefreshCache recomputes T
    GrowIds(true, n_users);
    GrowIds(false, n_items);
    for (int64_t k = 0; k + 1 < e.numel(); k += 2) {
      AddEdge(static_cast<uint32_t>(ep[k]), static_cast<uint32_t>(ep[k + 1]));
    }
    pending.assign(std::make_move_iterator(pend.begin()), std::make_move_iterator(pend.end()));
    failed_fresh = 0;
    failed_mid_update = false;
    replay = std::move(rep);
    if (static_cast<int64_t>(replay.size()) > opt.replay_capacity) {
      // replay_capacity lowered since the save: a uniform subset of a uniform reservoir is one
      // (slots beyond the capacity would otherwise never be replaced, yet still drawn).
      std::mt19937_64 shuffle_rng(opt.seed ^ static_cast<uint64_t>(replay.size()));
      std::shuffle(replay.begin(), replay.end(), shuffle_rng);
      replay.resize(static_cast<size_t>(opt.replay_capacity));
    }
    recent.assign(std::make_move_iterator(win.begin()), std::make_move_iterator(win.end()));
    while (static_cast<int64_t>(recent.size()) > opt.recent_capacity) recent.pop_front();
    steps = c[2].item<int64_t>();
    events = c[3].item<int64_t>();
    replay_seen = c[4].item<int64_t>();
    RefreshCache();
    full_adjacency_stale = true;
    rng = next_rng;
    // Options lowered since the save: a queue over max_pending gives its oldest to replay, as
    // Observe does (it moved one out per new one, so the queue never came back under the cap);
    // recent_fraction 0 keeps no window (the saved one was drawn from for good).
    if (opt.recent_fraction == 0) recent.clear();
    while (static_cast<int64_t>(pending.size()) > opt.max_pending) {
      AddToReplay(std::move(pending.front()));
      pending.pop_front();
    }
    OnlineWatermark wm;
    const int64_t seq_bits = c[5].item<int64_t>();
    std::memcpy(&wm.state_batch_seq, &seq_bits, sizeof(seq_bits));
    wm.model_version = c[6].item<int64_t>();
    return wm;
  }

  Status InitFromOffline(const std::string& path, const std::vector<int64_t>& user_rows,
                         const std::vector<int64_t>& item_rows) {
    if (!fs::exists(path)) return Status::NotFound("no checkpoint at " + path);
    torch::serialize::InputArchive ar, sub;
    ar.load_from(path, device);
    torch::serialize::InputArchive& m = ar.try_read("model", sub) ? sub : ar;
    std::vector<torch::Tensor> params;
    for (const auto& s : adam) {
      torch::Tensor p;
      if (!ReadModuleParameter(m, s.name, p)) return Status::InvalidArgument(path + " has no " + s.name);
      if (s.table ? p.size(1) != opt.dim : !p.sizes().equals(s.param.sizes())) {
        return Status::InvalidArgument(path + ": shape of " + s.name + " differs from the options");
      }
      params.push_back(p.to(device));
    }
    auto mapped = [](const std::vector<int64_t>& rows, int64_t n_off) -> Result<int64_t> {
      int64_t ids = 0;
      for (size_t k = 0; k < rows.size(); ++k) {
        if (rows[k] < 0) continue;
        if (rows[k] >= n_off) return Status::InvalidArgument("offline row out of range");
        ids = static_cast<int64_t>(k) + 1;
      }
      return ids;
    };
    std::vector<int64_t> ids(adam.size(), 0);
    for (size_t k = 0; k < adam.size(); ++k) {
      if (!adam[k].table) continue;
      GSAU_ASSIGN_OR_RETURN(ids[k], mapped(adam[k].name == "user_table.weight" ? user_rows : item_rows,
                                           params[k].size(0)));
    }
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < adam.size(); ++k) {
      auto& s = adam[k];
      if (!s.table) {
        s.param.copy_(params[k]);
        continue;
      }
      const bool users = s.name == "user_table.weight";
      const auto& map = users ? user_rows : item_rows;
      GrowIds(users, ids[k]);
      std::vector<int64_t> dst{0}, src{0};  // padding row
      for (size_t id = 0; id < map.size(); ++id) {
        if (map[id] < 0) continue;
        dst.push_back(static_cast<int64_t>(id) + 1);
        src.push_back(map[id]);
      }
      s.param.index_copy_(0, I64(dst, device), params[k].index_select(0, I64(src, device)));
    }
    for (auto& s : adam) {
      s.exp_avg.zero_();
      s.exp_avg_sq.zero_();
      if (s.table) s.row_step.zero_();
      s.step = 0;
    }
    std::fill(has_published.begin(), has_published.end(), 0);
    RefreshCache();
    full_adjacency_stale = true;
    return Status::Ok();
  }

  // ---------------------------------------------------------------------------------------
  // Diagnostics

  std::vector<uint32_t> AllIds(int64_t n) const {
    std::vector<uint32_t> ids(static_cast<size_t>(n));
    std::iota(ids.begin(), ids.end(), 0u);
    return ids;
  }

  PropagationCheck Check(std::span<const std::pair<uint32_t, uint32_t>> edges) {
    torch::NoGradGuard no_grad;
    const auto g = Propagate(AllIds(num_users), AllIds(num_items));
    const auto train = torch::cat({g.users, g.items}, 0).to(torch::kFloat64);
    std::vector<GraphPair> pairs;
    for (const auto& [u, i] : edges) {
      TORCH_CHECK(static_cast<int64_t>(u) < num_users && static_cast<int64_t>(i) < num_items, "edge id out of range");
      pairs.push_back({static_cast<int32_t>(u + 1), static_cast<int32_t>(i + 1)});
    }
    const auto l = BuildNormalizedAdjacency(UserRows(), ItemRows(), pairs).To(device);
    const auto x = torch::cat({UserTable().slice(0, 0, UserRows()), ItemTable().slice(0, 0, ItemRows())}, 0);
    const auto current = LightGcnPropagate(l, x, opt.graph_layers);
    torch::Tensor formula = current;
    if (incremental && opt.graph_layers == 2) {
      const auto xs = torch::cat({snap_users.slice(0, 0, UserRows()), snap_items.slice(0, 0, ItemRows())}, 0);
      formula = (x + SymmetricSpmm(l, x) + SymmetricSpmm(l, SymmetricSpmm(l, xs))) / 3.0;
    }
    // Live rows only (padding rows are not propagated in training).
    std::vector<int64_t> live;
    for (int64_t r = 1; r < UserRows(); ++r) live.push_back(r);
    for (int64_t r = 1; r < ItemRows(); ++r) live.push_back(UserRows() + r);
    const auto idx = I64(live, device);
    PropagationCheck out;
    out.rows = static_cast<int64_t>(live.size());
    if (live.empty()) return out;
    out.max_error_vs_formula = (train - formula.index_select(0, idx).to(torch::kFloat64)).abs().max().item<double>();
    out.max_error_vs_current = (train - current.index_select(0, idx).to(torch::kFloat64)).abs().max().item<double>();
    out.max_abs_value = train.abs().max().item<double>();
    const auto cur = current.index_select(0, idx).to(torch::kFloat64);
    out.rms_error_vs_current = (train - cur).pow(2).mean().sqrt().item<double>();
    out.rms_value = cur.pow(2).mean().sqrt().item<double>();
    return out;
  }

  OnlineRowState Inspect(bool users, uint32_t id) {
    const AdamSlot& s = Slot(users ? "user_table.weight" : "item_table.weight");
    const int64_t r = static_cast<int64_t>(id) + 1;
    OnlineRowState out;
    out.row = ToVector(s.param[r]);
    out.exp_avg = ToVector(s.exp_avg[r]);
    out.exp_avg_sq = ToVector(s.exp_avg_sq[r]);
    out.step = s.row_step[r].item<int64_t>();
    return out;
  }
};

// -------------------------------------------------------------------------------------------
// Public boundary: options, locking, error translation.

OnlineLearner::OnlineLearner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnlineLearner::~OnlineLearner() = default;

namespace {

// Runs `fn` turning torch and invariant errors into a Status with `what` as context.
template <typename Fn>
auto Guarded(const std::string& what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    return TorchError(e, what);
  } catch (const std::invalid_argument& e) {
    return Status::InvalidArgument(what + ": " + e.what());
  } catch (const std::exception& e) {
    return Status::Internal(what + ": " + e.what());
  }
}

Status ValidateOptions(const OnlineOptions& o) {
  if (o.dim < 1 || o.heads < 1 || o.dim % o.heads != 0) return Status::InvalidArgument("dim must be a positive multiple of heads");
  if (o.max_len < 1 || o.seq_layers < 0 || o.ffn_dim < 1) return Status::InvalidArgument("max_len, ffn_dim must be >= 1");
  if (o.graph_layers < 1 || o.graph_layers > 2) return Status::InvalidArgument("graph_layers must be 1 or 2");
  if (o.batch_size < 1) return Status::InvalidArgument("batch_size must be >= 1");
  if (!(o.fresh_fraction >= 0 && o.fresh_fraction <= 1)) return Status::InvalidArgument("fresh_fraction must be in [0, 1]");
  if (o.replay_capacity < 1 || o.max_pending < 0) return Status::InvalidArgument("replay_capacity must be >= 1, max_pending >= 0");
  if (!(o.recent_fraction >= 0 && o.recent_fraction <= 1) || o.recent_capacity < 1) {
    return Status::InvalidArgument("recent_fraction must be in [0, 1] and recent_capacity >= 1");
  }
  if (o.initial_user_rows < 1 || o.initial_item_rows < 1) return Status::InvalidArgument("initial rows must be >= 1");
  if (!(o.growth_factor > 1.0)) return Status::InvalidArgument("growth_factor must be > 1");
  if (o.graph_propagation != "incremental" && o.graph_propagation != "full") {
    return Status::InvalidArgument("graph_propagation must be incremental or full, not " + o.graph_propagation);
  }
  if (o.graph_refresh_steps < 1) return Status::InvalidArgument("graph_refresh_steps must be >= 1");
  if (!(o.change_threshold >= 0)) return Status::InvalidArgument("change_threshold must be >= 0");
  if (!(o.lr > 0) || !std::isfinite(o.lr) || !(o.weight_decay >= 0) || !std::isfinite(o.weight_decay)) {
    return Status::InvalidArgument("lr must be finite and > 0, weight_decay finite and >= 0");
  }
  if (!(o.gamma >= 0) || !std::isfinite(o.gamma) || !(o.temperature > 0) || !std::isfinite(o.temperature)) {
    return Status::InvalidArgument("gamma must be finite and >= 0, temperature finite and > 0");
  }
  if (!(o.hidden_dropout >= 0 && o.hidden_dropout < 1) || !(o.attn_dropout >= 0 && o.attn_dropout < 1)) {
    return Status::InvalidArgument("dropout rates must be in [0, 1)");
  }
  return Status::Ok();
}

}  // namespace

bool CudaAvailable() { return torch::cuda::is_available(); }

Result<std::unique_ptr<OnlineLearner>> OnlineLearner::Create(const OnlineOptions& options) {
  GSAU_RETURN_IF_ERROR(ValidateOptions(options));
  auto impl = std::make_unique<Impl>();
  impl->opt = options;
  impl->incremental = options.graph_propagation == "incremental";
  const auto& o = options;
  return Guarded("creating the online learner", [&]() -> Result<std::unique_ptr<OnlineLearner>> {
    if (o.device == "cuda" || (o.device == "auto" && torch::cuda::is_available())) {
      if (!torch::cuda::is_available()) return Status::Unavailable("device cuda: CUDA is not available");
      impl->device = torch::Device(torch::kCUDA);
    } else if (o.device != "cpu" && o.device != "auto") {
      return Status::InvalidArgument("device must be auto, cpu or cuda, not " + o.device);
    }
    impl->threads = o.threads > 0 ? o.threads : UsableCores();
    torch::set_num_threads(impl->threads);
    ConfigureBlasThreads();
    torch::manual_seed(o.seed);
    impl->rng.seed(o.seed);
    impl->growth_gen = at::detail::createCPUGenerator(o.seed ^ 0x5851F42D4C957F2DULL);
    impl->BuildModel(o.initial_user_rows, o.initial_item_rows);
    impl->RefreshCache();
    impl->TakeServingSnapshot();
    return std::unique_ptr<OnlineLearner>(new OnlineLearner(std::move(impl)));
  });
}

Status OnlineLearner::Observe(std::span<const OnlineEvent> events, bool fresh) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("observing events", [&]() -> Status {
    impl_->Observe(events, fresh);
    return Status::Ok();
  });
}

Status OnlineLearner::RefreshServing() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  {
    std::lock_guard<std::mutex> g(impl_->serving_mu);
    // Items new to it, or weights a step moved whose own snapshot failed.
    if (impl_->serving->items() == impl_->num_items && impl_->serving->steps() == impl_->steps) return Status::Ok();
  }
  return Guarded("taking the serving snapshot", [&]() -> Status {
    impl_->TakeServingSnapshot();
    return Status::Ok();
  });
}

Result<OnlineStepResult> OnlineLearner::Step() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto r = Guarded("training step", [&]() -> Result<OnlineStepResult> { return impl_->Step(); });
  if (!r.ok() || !r->trained) return r;
  // The step is made: a copy for serving that fails (out of memory) is not its failure. The
  // previous snapshot serves on until a later step or RefreshServing takes a new one.
  const auto start = Clock::now();
  const Status snapshot = Guarded("taking the serving snapshot", [&]() -> Status {
    impl_->TakeServingSnapshot();
    return Status::Ok();
  });
  r->snapshot_s = Since(start);
  r->total_s += r->snapshot_s;
  if (!snapshot.ok()) r->serving_error = snapshot.ToString();
  return r;
}

Result<int64_t> OnlineLearner::SkipFailedBatch() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto& im = *impl_;
  if (im.failed_mid_update) {
    return Status::Internal("the failed step had begun its update: some weights may have moved, others not");
  }
  const int64_t n = std::min(im.failed_fresh, static_cast<int64_t>(im.pending.size()));
  im.pending.erase(im.pending.begin(), im.pending.begin() + n);
  im.failed_fresh = 0;
  return n;
}

Result<std::vector<float>> OnlineLearner::UserEmbeddings(std::span<const std::vector<uint32_t>> sessions) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("user embeddings", [&]() -> Result<std::vector<float>> {
    if (sessions.empty()) return std::vector<float>{};
    return Impl::ToVector(impl_->UserVectors(sessions));
  });
}

Result<std::vector<float>> OnlineLearner::UserEmbedding(const std::vector<uint32_t>& session) {
  return UserEmbeddings(std::span<const std::vector<uint32_t>>(&session, 1));
}

Result<std::vector<float>> OnlineLearner::ItemEmbeddings(std::span<const uint32_t> items) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("item embeddings", [&]() -> Result<std::vector<float>> {
    for (uint32_t i : items) {
      if (static_cast<int64_t>(i) >= impl_->num_items) return Status::InvalidArgument("unknown item " + std::to_string(i));
    }
    torch::NoGradGuard no_grad;
    return Impl::ToVector(impl_->ItemTable().index_select(
        0, impl_->Rows(std::vector<uint32_t>(items.begin(), items.end()), 0)));
  });
}

Result<int64_t> OnlineLearner::ScoreRank(const std::vector<uint32_t>& session, uint32_t target) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("scoring", [&]() -> Result<int64_t> { return impl_->ScoreRank(session, target); });
}

Result<ChangedItems> OnlineLearner::TakeChangedItems() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("changed items", [&]() -> Result<ChangedItems> { return impl_->TakeChanged(); });
}

Status OnlineLearner::Save(const std::string& path, const OnlineWatermark& watermark) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("saving " + path, [&]() -> Status { return impl_->Save(path, watermark); });
}

Result<OnlineWatermark> OnlineLearner::Load(const std::string& path) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("loading " + path, [&]() -> Result<OnlineWatermark> {
    auto w = impl_->Load(path);
    if (w.ok()) impl_->TakeServingSnapshot();
    return w;
  });
}

Status OnlineLearner::InitFromOffline(const std::string& path, const std::vector<int64_t>& user_rows,
                                      const std::vector<int64_t>& item_rows) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("initialising from " + path,
                 [&]() -> Status {
                   GSAU_RETURN_IF_ERROR(impl_->InitFromOffline(path, user_rows, item_rows));
                   impl_->TakeServingSnapshot();
                   return Status::Ok();
                 });
}

Result<std::vector<float>> OnlineLearner::GraphEmbeddings(OnlineTable table, std::span<const uint32_t> ids) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("graph embeddings", [&]() -> Result<std::vector<float>> {
    const bool users = table == OnlineTable::kUsers;
    const int64_t n = users ? impl_->num_users : impl_->num_items;
    std::vector<uint32_t> v(ids.begin(), ids.end());
    for (uint32_t id : v) {
      if (static_cast<int64_t>(id) >= n) return Status::InvalidArgument("unknown id " + std::to_string(id));
    }
    torch::NoGradGuard no_grad;
    const auto g = users ? impl_->Propagate(v, {}) : impl_->Propagate({}, v);
    return Impl::ToVector(users ? g.users : g.items);
  });
}

Result<PropagationCheck> OnlineLearner::CheckPropagation(std::span<const std::pair<uint32_t, uint32_t>> edges) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("checking the propagation", [&]() -> Result<PropagationCheck> { return impl_->Check(edges); });
}

Status OnlineLearner::RefreshGraphCache() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("refreshing the graph cache", [&]() -> Status {
    impl_->RefreshCache();
    return Status::Ok();
  });
}

std::vector<OnlineEvent> OnlineLearner::DrawReplayForTesting(int64_t n) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  int64_t from_recent = 0;
  std::vector<OnlineEvent> out;
  for (const auto* s : impl_->DrawReplay(n, &from_recent)) out.push_back({s->user, s->item, s->ts_ms, s->prefix});
  return out;
}

Result<OnlineRowState> OnlineLearner::InspectRow(OnlineTable table, uint32_t id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const bool users = table == OnlineTable::kUsers;
  if (static_cast<int64_t>(id) >= (users ? impl_->num_users : impl_->num_items)) {
    return Status::InvalidArgument("unknown id " + std::to_string(id));
  }
  return Guarded("inspecting a row", [&]() -> Result<OnlineRowState> { return impl_->Inspect(users, id); });
}

Result<std::vector<int64_t>> OnlineLearner::ScoreRanks(std::span<const std::vector<uint32_t>> sessions,
                                                       std::span<const uint32_t> targets) {
  if (sessions.size() != targets.size()) return Status::InvalidArgument("sessions and targets differ in number");
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("scoring", [&]() -> Result<std::vector<int64_t>> {
    if (sessions.empty()) return std::vector<int64_t>{};
    torch::NoGradGuard no_grad;
    return RankTargets(impl_->UserVectors(sessions), impl_->ItemTable().slice(0, 0, impl_->ItemRows()), targets,
                       impl_->num_items);
  });
}

std::shared_ptr<const ServingModel> OnlineLearner::Serving() const {
  std::lock_guard<std::mutex> lock(impl_->serving_mu);
  return impl_->serving;
}

Result<std::vector<float>> ServingModel::UserEmbeddings(std::span<const std::vector<uint32_t>> sessions) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("serving user embeddings", [&]() -> Result<std::vector<float>> {
    if (sessions.empty()) return std::vector<float>{};
    torch::NoGradGuard no_grad;
    const auto c = impl_->UserVectors(sessions).to(torch::kCPU, torch::kFloat32).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  });
}

Result<std::vector<int64_t>> ServingModel::ScoreRanks(std::span<const std::vector<uint32_t>> sessions,
                                                      std::span<const uint32_t> targets) const {
  if (sessions.size() != targets.size()) return Status::InvalidArgument("sessions and targets differ in number");
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("scoring", [&]() -> Result<std::vector<int64_t>> {
    if (sessions.empty()) return std::vector<int64_t>{};
    torch::NoGradGuard no_grad;
    return RankTargets(impl_->UserVectors(sessions), impl_->model->item_table(), targets, impl_->num_items);
  });
}

Result<std::vector<std::vector<uint32_t>>> ServingModel::TopK(std::span<const std::vector<uint32_t>> sessions,
                                                              int64_t k) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Guarded("top-k", [&]() -> Result<std::vector<std::vector<uint32_t>>> {
    std::vector<std::vector<uint32_t>> out(sessions.size());
    if (sessions.empty() || k <= 0 || impl_->num_items == 0) return out;
    torch::NoGradGuard no_grad;
    const auto top = std::get<1>(impl_->Scores(sessions).topk(std::min(k, impl_->num_items), 1))
                         .to(torch::kCPU)
                         .contiguous();
    const auto* p = top.data_ptr<int64_t>();
    for (size_t b = 0; b < sessions.size(); ++b) {
      for (int64_t j = 0; j < top.size(1); ++j) out[b].push_back(static_cast<uint32_t>(p[b * top.size(1) + j] - 1));
    }
    return out;
  });
}

OnlineStats OnlineLearner::Stats() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const auto& im = *impl_;
  OnlineStats s;
  s.users = im.num_users;
  s.items = im.num_items;
  s.user_rows = im.UserTable().size(0);
  s.item_rows = im.ItemTable().size(0);
  s.edges = static_cast<int64_t>(im.edge_set.size());
  s.events = im.events;
  s.pending = static_cast<int64_t>(im.pending.size());
  s.shed = im.shed;
  s.replay = static_cast<int64_t>(im.replay.size());
  s.recent = static_cast<int64_t>(im.recent.size());
  s.steps = im.steps;
  s.device = im.device.is_cuda() ? "cuda" : "cpu";
  s.threads = im.threads;
  return s;
}

Result<LoadedCheckpoint> OnlineLearner::OpenCheckpoint(const OnlineOptions& options, const std::string& path) {
  if (!fs::exists(path)) return Status::NotFound("no checkpoint at " + path);
  return Guarded("loading " + path, [&]() -> Result<LoadedCheckpoint> {
    torch::serialize::InputArchive ar;
    GSAU_RETURN_IF_ERROR(ReadArchive(ar, path, torch::kCPU));
    torch::Tensor shape;
    ar.read("shape", shape);
    const auto sh = shape.to(torch::kInt64);
    if (sh.dim() != 1 || sh.numel() != static_cast<int64_t>(ShapeOf(options).size()) ||
        sh[0].item<int64_t>() != kFormatVersion) {
      return Status::InvalidArgument(path + ": unknown checkpoint format");
    }
    OnlineOptions shaped = options;
    SetShape(sh, &shaped);
    GSAU_ASSIGN_OR_RETURN(auto learner, Create(shaped));
    Impl& im = *learner->impl_;
    std::lock_guard<std::mutex> lock(im.mu);
    // The archive read above holds CPU tensors: a learner elsewhere reads the file onto its device.
    auto wm = im.device.is_cpu() ? im.LoadFrom(ar, path) : im.Load(path);
    if (!wm.ok()) return wm.status();
    im.TakeServingSnapshot();
    return LoadedCheckpoint{std::move(learner), shaped, *wm};
  });
}

}  // namespace gsau::learner
