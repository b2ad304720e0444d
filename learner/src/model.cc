// Model, sparse propagation and loss terms: the learner's torch kernels, in one TU to keep the
// number of (slow to compile) torch translation units small.
#include "gsau/learner/model.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "gsau/learner/attention.h"
#include "gsau/learner/loss.h"
#include "gsau/learner/metrics.h"
#include "gsau/learner/sparse.h"

namespace gsau::learner {
namespace F = torch::nn::functional;

// ---------------------------------------------------------------------------------------------
// Sparse propagation

CsrMatrix CsrMatrix::To(const torch::Device& device) const {
  return {row_ptr.to(device), col.to(device), val.to(device), rows};
}

torch::Tensor CsrMatrix::ToDense() const {
  auto dense = torch::zeros({rows, rows}, val.options());
  auto rp = row_ptr.cpu();
  const auto counts = rp.slice(0, 1) - rp.slice(0, 0, rows);
  auto row_index = torch::repeat_interleave(torch::arange(rows, rp.options()), counts);
  dense.index_put_({row_index.to(val.device()), col}, val);
  return dense;
}

CsrMatrix BuildNormalizedAdjacency(int64_t num_users, int64_t num_items,
                                   const std::vector<GraphPair>& pairs) {
  const int64_t n = num_users + num_items;
  std::vector<std::vector<int64_t>> adj(static_cast<size_t>(n));
  for (const auto& p : pairs) {
    // Out of range: a write past adj's end, or a user joined to an item's node.
    TORCH_CHECK(p.user >= 0 && p.user < num_users && p.item >= 0 && p.item < num_items,
                "BuildNormalizedAdjacency: pair (", p.user, ", ", p.item, ") outside ", num_users, " users, ",
                num_items, " items");
    adj[static_cast<size_t>(p.user)].push_back(num_users + p.item);
    adj[static_cast<size_t>(num_users + p.item)].push_back(p.user);
  }
  std::vector<double> inv_sqrt_deg(static_cast<size_t>(n));
  for (size_t r = 0; r < adj.size(); ++r) {
    auto& a = adj[r];
    std::sort(a.begin(), a.end());
    a.erase(std::unique(a.begin(), a.end()), a.end());
    inv_sqrt_deg[r] = 1.0 / std::sqrt(static_cast<double>(a.size()) + 1e-7);
  }
  std::vector<int64_t> row_ptr(static_cast<size_t>(n) + 1, 0);
  for (size_t r = 0; r < adj.size(); ++r) row_ptr[r + 1] = row_ptr[r] + static_cast<int64_t>(adj[r].size());
  const int64_t nnz = row_ptr.back();
  auto col = torch::empty({nnz}, torch::kInt64);
  auto val = torch::empty({nnz}, torch::kFloat32);
  auto* c = col.data_ptr<int64_t>();
  auto* v = val.data_ptr<float>();
  for (size_t r = 0; r < adj.size(); ++r) {
    int64_t k = row_ptr[r];
    for (int64_t j : adj[r]) {
      c[k] = j;
      v[k] = static_cast<float>(inv_sqrt_deg[r] * inv_sqrt_deg[static_cast<size_t>(j)]);
      ++k;
    }
  }
  return {torch::tensor(row_ptr, torch::kInt64), col, val, n};
}

namespace {

// y = L x without autograd.
torch::Tensor SpmmNoGrad(const torch::Tensor& row_ptr, const torch::Tensor& col,
                         const torch::Tensor& val, const torch::Tensor& x_in) {
  const int64_t rows = row_ptr.size(0) - 1;
  if (!x_in.is_cpu()) {
    // CUDA: embedding_bag in sum mode with per-sample weights is a CSR product.
    auto offsets = row_ptr.slice(0, 0, rows);
    return std::get<0>(torch::embedding_bag(x_in, col, offsets, /*scale_grad_by_freq=*/false,
                                            /*mode=*/0, /*sparse=*/false, val));
  }
  TORCH_CHECK(x_in.scalar_type() == torch::kFloat32, "SymmetricSpmm: float32 only");
  const auto x = x_in.contiguous();
  const int64_t d = x.size(1);
  auto out = torch::empty({rows, d}, x.options());
  const int64_t* rp = row_ptr.data_ptr<int64_t>();
  const int64_t* c = col.data_ptr<int64_t>();
  const float* v = val.data_ptr<float>();
  const float* xs = x.data_ptr<float>();
  float* ys = out.data_ptr<float>();
  at::parallel_for(0, rows, 512, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* y = ys + r * d;
      std::fill(y, y + d, 0.0f);
      for (int64_t k = rp[r]; k < rp[r + 1]; ++k) {
        const float w = v[k];
        const float* xr = xs + c[k] * d;
        for (int64_t j = 0; j < d; ++j) y[j] += w * xr[j];
      }
    }
  });
  return out;
}

class SymmetricSpmmFunction : public torch::autograd::Function<SymmetricSpmmFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& row_ptr, const torch::Tensor& col,
                               const torch::Tensor& val) {
    ctx->save_for_backward({row_ptr, col, val});
    return SpmmNoGrad(row_ptr, col, val, x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    return {SpmmNoGrad(saved[0], saved[1], saved[2], grad[0]), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

// y[b] = sum over k in bag b of val[k] x[col[k]], differentiable in x: embedding_bag's forward
// with a scatter backward (embedding_bag's own backward sorts the indices first, which took
// most of its time here).
class BagSumFunction : public torch::autograd::Function<BagSumFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& offsets, const torch::Tensor& col, const torch::Tensor& val) {
    ctx->save_for_backward({offsets, col, val});
    ctx->saved_data["rows"] = x.size(0);
    torch::NoGradGuard no_grad;
    return std::get<0>(torch::embedding_bag(x, col, offsets, /*scale_grad_by_freq=*/false, /*mode=*/0,
                                            /*sparse=*/false, val));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto gy = grad[0].contiguous();
    const int64_t bags = saved[0].size(0);
    const int64_t nnz = saved[1].size(0);
    const int64_t d = gy.size(1);
    auto gx = torch::zeros({ctx->saved_data["rows"].toInt(), d}, gy.options());
    const int64_t* off = saved[0].data_ptr<int64_t>();
    const int64_t* c = saved[1].data_ptr<int64_t>();
    const float* v = saved[2].data_ptr<float>();
    const float* g = gy.data_ptr<float>();
    float* out = gx.data_ptr<float>();
    // Bags scatter into shared rows, so threads split the columns instead: no two write the
    // same float, and each still reads the index arrays in order.
    at::parallel_for(0, d, 16, [&](int64_t j0, int64_t j1) {
      for (int64_t b = 0; b < bags; ++b) {
        const float* gb = g + b * d;
        const int64_t end = b + 1 < bags ? off[b + 1] : nnz;
        for (int64_t k = off[b]; k < end; ++k) {
          float* o = out + c[k] * d;
          const float w = v[k];
          for (int64_t j = j0; j < j1; ++j) o[j] += w * gb[j];
        }
      }
    });
    return {gx, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor SymmetricSpmm(const CsrMatrix& l, const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.size(0) == l.rows, "SymmetricSpmm: x must be [", l.rows, ", d]");
  return SymmetricSpmmFunction::apply(x, l.row_ptr, l.col, l.val);
}

torch::Tensor LightGcnPropagate(const CsrMatrix& l, const torch::Tensor& x, int64_t layers) {
  auto sum = x;
  auto e = x;
  for (int64_t k = 0; k < layers; ++k) {
    e = SymmetricSpmm(l, e);
    sum = sum + e;
  }
  return sum / static_cast<double>(layers + 1);
}

torch::Tensor LightGcnPropagateRows(const CsrMatrix& l, const torch::Tensor& x, int64_t layers,
                                    const torch::Tensor& rows) {
  TORCH_CHECK(l.row_ptr.is_cpu() && l.col.is_cpu() && l.val.is_cpu() && l.row_ptr.is_contiguous() &&
                  l.col.is_contiguous() && l.val.is_contiguous(),
              "LightGcnPropagateRows: the adjacency must be on the CPU, contiguous");
  TORCH_CHECK(x.dim() == 2 && x.size(0) == l.rows, "LightGcnPropagateRows: x must be [", l.rows, ", d]");
  const auto device = x.device();
  const auto wanted = rows.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t n = wanted.numel();
  const int64_t* w = wanted.data_ptr<int64_t>();
  const int64_t* rp = l.row_ptr.data_ptr<int64_t>();
  const int64_t* col = l.col.data_ptr<int64_t>();
  const float* val = l.val.data_ptr<float>();

  // One ordering of nodes whose prefixes are the sets each layer needs: need(K) = the distinct
  // rows, need(j) = need(j+1) plus its neighbours, so layer j's neighbours always lie within
  // layer j-1's prefix.
  std::vector<int64_t> order;
  std::vector<int32_t> pos(static_cast<size_t>(l.rows), -1);
  std::vector<int64_t> inverse(static_cast<size_t>(n));
  auto add = [&](int64_t node) {
    if (pos[static_cast<size_t>(node)] < 0) {
      pos[static_cast<size_t>(node)] = static_cast<int32_t>(order.size());
      order.push_back(node);
    }
    return pos[static_cast<size_t>(node)];
  };
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(w[i] >= 0 && w[i] < l.rows, "LightGcnPropagateRows: row ", w[i], " out of range");
    inverse[static_cast<size_t>(i)] = add(w[i]);
  }
  const int64_t distinct = static_cast<int64_t>(order.size());
  std::vector<int64_t> prefix(static_cast<size_t>(layers + 1), distinct);  // prefix[j] = |need(j)|
  for (int64_t j = layers - 1, begin = 0; j >= 1; --j) {
    const auto end = static_cast<int64_t>(order.size());
    for (int64_t p = begin; p < end; ++p) {
      for (int64_t k = rp[order[static_cast<size_t>(p)]]; k < rp[order[static_cast<size_t>(p)] + 1]; ++k) add(col[k]);
    }
    begin = end;
    prefix[static_cast<size_t>(j)] = static_cast<int64_t>(order.size());
  }
  const int64_t first = layers >= 1 ? prefix[1] : 0;
  // The CSR rows of need(1) in that order: columns as node ids (layer 1 reads x) and as
  // positions in the ordering (later layers read the previous layer's rows).
  std::vector<int64_t> offsets, cols_node, cols_pos;
  std::vector<float> vals;
  offsets.reserve(static_cast<size_t>(first) + 1);
  for (int64_t p = 0; p < first; ++p) {
    offsets.push_back(static_cast<int64_t>(cols_node.size()));
    const int64_t node = order[static_cast<size_t>(p)];
    for (int64_t k = rp[node]; k < rp[node + 1]; ++k) {
      cols_node.push_back(col[k]);
      cols_pos.push_back(pos[static_cast<size_t>(col[k])]);  // -1 only past need(2)'s rows, never read
      vals.push_back(val[k]);
    }
  }
  offsets.push_back(static_cast<int64_t>(cols_node.size()));
  auto i64 = [&](const std::vector<int64_t>& v, int64_t count) {
    return torch::from_blob(const_cast<int64_t*>(v.data()), {count}, torch::kInt64).to(device, /*non_blocking=*/false, /*copy=*/true);
  };
  const auto all_vals =
      torch::from_blob(vals.data(), {static_cast<int64_t>(vals.size())}, torch::kFloat32).to(device, false, true);
  const auto order_t = i64(order, distinct);
  auto sum = x.index_select(0, order_t);
  torch::Tensor e = x;
  for (int64_t j = 1; j <= layers; ++j) {
    const int64_t bags = prefix[static_cast<size_t>(j)];
    const int64_t nnz = offsets[static_cast<size_t>(bags)];
    const auto idx = i64(j == 1 ? cols_node : cols_pos, nnz);
    if (x.is_cpu()) {
      e = BagSumFunction::apply(e, i64(offsets, bags), idx, all_vals.slice(0, 0, nnz));
    } else {
      e = std::get<0>(torch::embedding_bag(e, idx, i64(offsets, bags), /*scale_grad_by_freq=*/false, /*mode=*/0,
                                           /*sparse=*/false, all_vals.slice(0, 0, nnz)));
    }
    sum = sum + e.slice(0, 0, distinct);
  }
  return (sum / static_cast<double>(layers + 1)).index_select(0, i64(inverse, n));
}

// ---------------------------------------------------------------------------------------------
// Loss terms

namespace {
torch::Tensor Normalize(const torch::Tensor& x) {
  return F::normalize(x, F::NormalizeFuncOptions().p(2).dim(1).eps(1e-12));
}
}  // namespace

torch::Tensor Align(const torch::Tensor& x, const torch::Tensor& y) {
  return (Normalize(x) - Normalize(y)).pow(2).sum(1).mean();
}

torch::Tensor Uniformity(const torch::Tensor& x, double t) {
  const int64_t n = x.size(0);
  if (n < 2) return torch::zeros({}, x.options());
  // ||a - b||^2 = 2 - 2 a.b for unit vectors: one GEMM instead of pdist. The diagonal is set to
  // +inf (its kernel to 0) rather than subtracted from the full sum: there it cancelled the
  // off-diagonal mass in float32 when that was small next to n (two opposite rows at t = 5:
  // log(0)). The mean over j < k is the mean over the off-diagonal, each pair being there twice;
  // logsumexp also keeps a small mean from underflowing.
  const auto xn = Normalize(x);
  const auto diagonal = torch::diag(torch::full({n}, std::numeric_limits<double>::infinity(), x.options()));
  const auto sq = (2.0 - 2.0 * torch::matmul(xn, xn.t())).clamp_min(0.0) + diagonal;
  return torch::logsumexp((-t * sq).flatten(), 0) - std::log(static_cast<double>(n) * static_cast<double>(n - 1));
}

torch::Tensor PairUniformity(const torch::Tensor& x, const torch::Tensor& y, double t) {
  const auto sq = (Normalize(x) - Normalize(y)).pow(2).sum(1);
  return torch::logsumexp(-t * sq, 0) - std::log(static_cast<double>(sq.size(0)));
}

namespace {

class FullSoftmaxCrossEntropyFunction : public torch::autograd::Function<FullSoftmaxCrossEntropyFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q,
                               const torch::Tensor& table, const torch::Tensor& targets) {
    auto buffer = torch::mm(q, table.t());  // logits [B, N]
    const auto target_logits = buffer.gather(1, targets.unsqueeze(1)).squeeze(1);
    const auto row_max = std::get<0>(buffer.max(1, /*keepdim=*/true));
    buffer.sub_(row_max).exp_();
    const auto sums = buffer.sum(1, /*keepdim=*/true);
    buffer.div_(sums);  // softmax
    const auto lse = row_max.squeeze(1) + sums.squeeze(1).log();
    ctx->save_for_backward({q, table, targets, buffer});
    return (lse - target_logits).mean();
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto& q = saved[0];
    const auto& table = saved[1];
    const auto& targets = saved[2];
    auto g = saved[3];  // softmax, turned into d loss / d logits in place
    const int64_t b = g.size(0);
    g.index_put_({torch::arange(b, targets.options()), targets}, torch::full({b}, -1.0, g.options()),
                 /*accumulate=*/true);
    g.mul_(grad[0] / static_cast<double>(b));
    return {torch::mm(g, table), torch::mm(g.t(), q), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor FullSoftmaxCrossEntropy(const torch::Tensor& q, const torch::Tensor& table,
                                      const torch::Tensor& targets) {
  return FullSoftmaxCrossEntropyFunction::apply(q, table, targets);
}

std::vector<int64_t> RandomDerangement(int64_t n, std::mt19937_64& rng) {
  TORCH_CHECK(n >= 2, "RandomDerangement needs n >= 2");
  std::vector<int64_t> p(static_cast<size_t>(n));
  while (true) {
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), rng);
    bool fixed = false;
    for (int64_t i = 0; i < n && !fixed; ++i) fixed = p[static_cast<size_t>(i)] == i;
    if (!fixed) return p;
  }
}

// ---------------------------------------------------------------------------------------------
// Small batched products

namespace {

torch::Tensor SmallBmmNoGrad(const torch::Tensor& a_in, const torch::Tensor& b_in) {
  if (!a_in.is_cpu() || a_in.scalar_type() != torch::kFloat32) return torch::bmm(a_in, b_in);
  const auto a = a_in.contiguous();
  const auto b = b_in.contiguous();
  const int64_t batch = a.size(0), m = a.size(1), k = a.size(2), n = b.size(2);
  TORCH_CHECK(b.size(0) == batch && b.size(1) == k, "SmallBatchedMatmul: shape mismatch");
  auto c = torch::empty({batch, m, n}, a.options());
  const float* ap = a.data_ptr<float>();
  const float* bp = b.data_ptr<float>();
  float* cp = c.data_ptr<float>();
  at::parallel_for(0, batch, 16, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      const float* ae = ap + e * m * k;
      const float* be = bp + e * k * n;
      float* ce = cp + e * m * n;
      for (int64_t i = 0; i < m; ++i) {
        float* row = ce + i * n;
        std::fill(row, row + n, 0.0f);
        for (int64_t p = 0; p < k; ++p) {
          const float w = ae[i * k + p];
          const float* brow = be + p * n;
          for (int64_t j = 0; j < n; ++j) row[j] += w * brow[j];
        }
      }
    }
  });
  return c;
}

class SmallBmmFunction : public torch::autograd::Function<SmallBmmFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a,
                               const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    return SmallBmmNoGrad(a, b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto& g = grad[0];
    return {SmallBmmNoGrad(g, saved[1].transpose(1, 2)), SmallBmmNoGrad(saved[0].transpose(1, 2), g)};
  }
};

}  // namespace

torch::Tensor SmallBatchedMatmul(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.dim() == 3 && b.dim() == 3, "SmallBatchedMatmul: 3-D inputs");
  return SmallBmmFunction::apply(a, b);
}

// ---------------------------------------------------------------------------------------------
// Dropout

namespace {
inline uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
}  // namespace

torch::Tensor FastDropout(const torch::Tensor& x, double p, bool training, uint64_t seed) {
  if (!training || p <= 0.0) return x;
  if (!x.is_cpu() || x.scalar_type() != torch::kFloat32) return torch::dropout(x, p, training);
  auto mask = torch::empty(x.sizes(), x.options().requires_grad(false));
  const int64_t n = mask.numel();
  float* m = mask.data_ptr<float>();
  const float keep_value = static_cast<float>(1.0 / (1.0 - p));
  // Keep when the top 32 bits of a draw are >= p * 2^32: two decisions per 64-bit draw.
  const auto threshold = static_cast<uint32_t>(std::min(p, 1.0) * 4294967295.0);
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      uint64_t state = seed ^ (0xD1B54A32D192ED03ULL * static_cast<uint64_t>(c + 1));
      const int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
      for (int64_t i = lo; i < hi; i += 2) {
        const uint64_t r = SplitMix64(state);
        m[i] = static_cast<uint32_t>(r >> 32) >= threshold ? keep_value : 0.0f;
        if (i + 1 < hi) m[i + 1] = static_cast<uint32_t>(r) >= threshold ? keep_value : 0.0f;
      }
    }
  });
  return x * mask;
}

// ---------------------------------------------------------------------------------------------
// SASRec

SasRecBlockImpl::SasRecBlockImpl(const GsauModelOptions& o) : options_(o) {
  const int64_t d = o.dim();
  query_ = register_module("query", torch::nn::Linear(d, d));
  key_ = register_module("key", torch::nn::Linear(d, d));
  value_ = register_module("value", torch::nn::Linear(d, d));
  dense_ = register_module("dense", torch::nn::Linear(d, d));
  attn_norm_ = register_module(
      "attn_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(o.layer_norm_eps())));
  ffn_in_ = register_module("ffn_in", torch::nn::Linear(d, o.ffn_dim()));
  ffn_out_ = register_module("ffn_out", torch::nn::Linear(o.ffn_dim(), d));
  ffn_norm_ = register_module(
      "ffn_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(o.layer_norm_eps())));
}

torch::Tensor SasRecBlockImpl::forward(const torch::Tensor& h, const torch::Tensor& offsets,
                                       const std::vector<AttentionGroup>& groups,
                                       const std::function<uint64_t()>& seeds) {
  const int64_t d = options_.dim();
  const int64_t heads = options_.heads();
  const int64_t head_dim = d / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  // One GEMM for Q, K and V (the three Linear modules keep their own Xavier init).
  const auto w = torch::cat({query_->weight, key_->weight, value_->weight}, 0);
  const auto b = torch::cat({query_->bias, key_->bias, value_->bias}, 0);
  const auto qkv = torch::linear(h, w, b);  // [T, 3d]
  if (groups.empty()) {
    PackedAttentionOptions po;
    po.heads = heads;
    po.dropout = options_.attn_dropout();
    po.training = is_training();
    po.seed = seeds();
    return Rest(h, PackedCausalAttention(qkv, offsets, po), seeds);
  }
  // One split, not a slice per group: each slice's backward would allocate a zero [T, 3d]
  // gradient of its own (24 per step, ~8% of a step); the split's backward is one concatenation.
  std::vector<int64_t> sizes;
  sizes.reserve(groups.size());
  for (const auto& g : groups) sizes.push_back(g.token_end - g.token_begin);
  const auto parts = qkv.split_with_sizes(sizes, 0);
  std::vector<torch::Tensor> contexts;
  contexts.reserve(groups.size());
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const auto& g = groups[gi];
    const auto padded = torch::zeros({g.batch * g.len, 3 * d}, qkv.options())
                            .index_copy(0, g.flat_index, parts[gi])
                            .view({g.batch, g.len, 3, heads, head_dim})
                            .permute({2, 0, 3, 1, 4});  // [3, B, H, L, hd]
    const int64_t n = g.batch * heads;
    const auto q = padded[0].reshape({n, g.len, head_dim});
    const auto kt = padded[1].transpose(-1, -2).reshape({n, head_dim, g.len});
    const auto v = padded[2].reshape({n, g.len, head_dim});
    auto scores = SmallBatchedMatmul(q, kt).view({g.batch, heads, g.len, g.len}).mul(scale).add(g.mask);
    auto probs = FastDropout(torch::softmax(scores, -1), options_.attn_dropout(), is_training(), seeds());
    contexts.push_back(SmallBatchedMatmul(probs.reshape({n, g.len, g.len}), v)
                           .view({g.batch, heads, g.len, head_dim})
                           .permute({0, 2, 1, 3})
                           .reshape({g.batch * g.len, d})
                           .index_select(0, g.flat_index));
  }
  return Rest(h, contexts.size() == 1 ? contexts[0] : torch::cat(contexts, 0), seeds);
}

torch::Tensor SasRecBlockImpl::Rest(const torch::Tensor& h, const torch::Tensor& context,
                                    const std::function<uint64_t()>& seeds) {
  auto attn = FastDropout(dense_(context), options_.hidden_dropout(), is_training(), seeds());
  const auto x = attn_norm_(attn + h);
  auto ffn = ffn_out_(torch::gelu(ffn_in_(x)));
  ffn = FastDropout(ffn, options_.hidden_dropout(), is_training(), seeds());
  return ffn_norm_(ffn + x);
}

// ---------------------------------------------------------------------------------------------
// GSAU

GsauModelImpl::GsauModelImpl(const GsauModelOptions& o) : options_(o) {
  TORCH_CHECK(o.dim() % o.heads() == 0, "dim must be a multiple of heads");
  user_table_ = register_module("user_table", torch::nn::Embedding(o.num_users(), o.dim()));
  item_table_ = register_module("item_table", torch::nn::Embedding(o.num_items(), o.dim()));
  positions_ = register_module("positions", torch::nn::Embedding(o.max_len(), o.dim()));
  input_norm_ = register_module(
      "input_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.dim()}).eps(o.layer_norm_eps())));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.seq_layers(); ++i) blocks_->push_back(SasRecBlock(o));
  reset();
}

void GsauModelImpl::reset() {
  torch::NoGradGuard no_grad;
  for (auto& m : modules(/*include_self=*/false)) {
    auto init = [&](torch::Tensor& w) {
      if (options_.init_std() > 0) {
        w.normal_(0.0, options_.init_std());
      } else {
        torch::nn::init::xavier_normal_(w);
      }
    };
    if (auto* e = m->as<torch::nn::EmbeddingImpl>()) {
      init(e->weight);
    } else if (auto* l = m->as<torch::nn::LinearImpl>()) {
      init(l->weight);
      if (l->bias.defined()) l->bias.zero_();
    } else if (auto* n = m->as<torch::nn::LayerNormImpl>()) {
      n->weight.fill_(1.0);
      n->bias.zero_();
    }
  }
}

std::pair<torch::Tensor, torch::Tensor> GsauModelImpl::GraphForward(const CsrMatrix& adjacency) {
  const auto x = torch::cat({user_table_->weight, item_table_->weight}, 0);
  const auto out = LightGcnPropagate(adjacency, x, options_.graph_layers());
  return {out.slice(0, 0, options_.num_users()), out.slice(0, options_.num_users())};
}

std::pair<torch::Tensor, torch::Tensor> GsauModelImpl::GraphForwardRows(const CsrMatrix& host_adjacency,
                                                                        const torch::Tensor& users,
                                                                        const torch::Tensor& items) {
  const auto x = torch::cat({user_table_->weight, item_table_->weight}, 0);
  const auto rows = torch::cat({users.to(torch::kInt64), items.to(torch::kInt64) + options_.num_users()});
  const auto out = LightGcnPropagateRows(host_adjacency, x, options_.graph_layers(), rows);
  return {out.slice(0, 0, users.numel()), out.slice(0, users.numel())};
}

namespace {

// The padded groups of the grouped attention path: consecutive sequences of a length-sorted
// batch (`sorted_lengths`, ascending) cut where a length passes the next cap, each padded to its
// own longest sequence, with RecBole's additive mask (mask_options: its dtype, on the CPU).
std::vector<AttentionGroup> LengthGroups(const std::vector<int64_t>& sorted_lengths, int64_t len,
                                         const torch::TensorOptions& mask_options, const torch::Device& device) {
  // Group caps: attention costs batch * len^2 per group, and each group costs a few ops.
  static constexpr int64_t kCaps[] = {2, 4, 6, 8, 12, 16, 24, 32, 40};
  const auto b = static_cast<int64_t>(sorted_lengths.size());
  std::vector<AttentionGroup> groups;
  const auto causal = torch::ones({len, len}, torch::kBool).tril();
  int64_t r = 0, token = 0;
  while (r < b) {
    const int64_t first_len = sorted_lengths[static_cast<size_t>(r)];
    int64_t cap = len;
    for (int64_t c : kCaps) {
      if (first_len <= c) {
        cap = c;
        break;
      }
    }
    int64_t end = r;
    int64_t group_len = 0;
    std::vector<int64_t> flat;
    std::vector<int64_t> group_lengths;
    while (end < b && sorted_lengths[static_cast<size_t>(end)] <= cap) {
      group_len = std::max(group_len, sorted_lengths[static_cast<size_t>(end)]);
      group_lengths.push_back(sorted_lengths[static_cast<size_t>(end)]);
      ++end;
    }
    AttentionGroup g;
    g.batch = end - r;
    g.len = group_len;
    g.token_begin = token;
    for (int64_t k = 0; k < g.batch; ++k) {
      for (int64_t j = 0; j < group_lengths[static_cast<size_t>(k)]; ++j) flat.push_back(k * group_len + j);
    }
    token += static_cast<int64_t>(flat.size());
    g.token_end = token;
    g.flat_index = torch::tensor(flat, torch::kInt64).to(device);
    // Additive mask as RecBole: 0 where the key is real and not in the future, -10000 elsewhere.
    const auto valid = torch::arange(group_len).unsqueeze(0) <
                       torch::tensor(group_lengths, torch::kInt64).unsqueeze(1);  // [Bg, Lg]
    const auto allowed = causal.slice(0, 0, group_len).slice(1, 0, group_len).unsqueeze(0).unsqueeze(0) &
                         valid.unsqueeze(1).unsqueeze(2);  // [Bg, 1, Lg, Lg]
    g.mask = torch::zeros(allowed.sizes(), mask_options).masked_fill(allowed.logical_not(), -10000.0).to(device);
    groups.push_back(std::move(g));
    r = end;
  }
  return groups;
}

}  // namespace

torch::Tensor GsauModelImpl::SequenceForward(const SequenceBatch& batch) {
  const int64_t b = batch.items.size(0);
  const int64_t len = batch.items.size(1);
  TORCH_CHECK(len <= options_.max_len(), "sequence longer than max_len");
  const auto device = batch.items.device();
  // Plan on the host: sort by length, pack the real tokens; for the grouped attention path, cut
  // them into groups of similar length.
  const auto items_cpu = batch.items.to(torch::kCPU).contiguous();
  const auto lengths_cpu = batch.lengths.to(torch::kCPU).contiguous();
  const int64_t* items = items_cpu.data_ptr<int64_t>();
  const int64_t* lengths = lengths_cpu.data_ptr<int64_t>();
  std::vector<int64_t> order(static_cast<size_t>(b));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return lengths[x] < lengths[y]; });
  std::vector<int64_t> tokens, positions, last, inverse(static_cast<size_t>(b)), offsets{0};
  for (int64_t r = 0; r < b; ++r) {
    const int64_t s = order[static_cast<size_t>(r)];
    TORCH_CHECK(lengths[s] >= 1 && lengths[s] <= len, "sequence length out of range");
    inverse[static_cast<size_t>(s)] = r;
    for (int64_t j = 0; j < lengths[s]; ++j) {
      tokens.push_back(items[s * len + j]);
      positions.push_back(j);
    }
    last.push_back(static_cast<int64_t>(tokens.size()) - 1);
    offsets.push_back(static_cast<int64_t>(tokens.size()));
  }
  std::vector<AttentionGroup> groups;  // empty: attention runs packed
  if (!device.is_cpu() || !options_.packed_attention()) {
    std::vector<int64_t> sorted_lengths;
    sorted_lengths.reserve(static_cast<size_t>(b));
    for (const int64_t s : order) sorted_lengths.push_back(lengths[s]);
    groups = LengthGroups(sorted_lengths, len, item_table_->weight.options().device(torch::kCPU), device);
  }
  const auto token_ids = torch::tensor(tokens, torch::kInt64).to(device);
  const auto position_ids = torch::tensor(positions, torch::kInt64).to(device);
  auto h = item_table_->weight.index_select(0, token_ids) + positions_->weight.index_select(0, position_ids);
  const std::function<uint64_t()> seeds = [this] { return is_training() ? NextDropoutSeed() : 0; };
  h = FastDropout(input_norm_(h), options_.hidden_dropout(), is_training(), seeds());
  const auto offsets_t = torch::tensor(offsets, torch::kInt64);
  for (const auto& block : *blocks_) h = block->as<SasRecBlockImpl>()->forward(h, offsets_t, groups, seeds);
  const auto sorted_out = h.index_select(0, torch::tensor(last, torch::kInt64).to(device));  // [B, d], sorted
  return sorted_out.index_select(0, torch::tensor(inverse, torch::kInt64).to(device));
}

torch::Tensor TargetRanks(const torch::Tensor& scores, const torch::Tensor& target_scores) {
  // Every item not strictly below the target, less the target itself.
  const auto ranks = (scores < target_scores).logical_not().sum(-1) - 1;
  return torch::where(target_scores.isnan().squeeze(-1), torch::full_like(ranks, kMissRank), ranks);
}

std::vector<int64_t> RankTargets(const torch::Tensor& users, const torch::Tensor& items,
                                 std::span<const uint32_t> targets, int64_t num_items, int64_t max_scores) {
  TORCH_CHECK(users.size(0) == static_cast<int64_t>(targets.size()), "RankTargets: users and targets differ in number");
  std::vector<int64_t> ranks(targets.size(), kMissRank);
  std::vector<int64_t> rows;  // the users whose target can be ranked
  for (size_t k = 0; k < targets.size(); ++k) {
    if (static_cast<int64_t>(targets[k]) < num_items) rows.push_back(static_cast<int64_t>(k));
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t group =
      std::clamp<int64_t>(max_scores / std::max<int64_t>(items.size(0), 1), 1, std::max<int64_t>(n, 1));
  const auto items_t = items.t();
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  for (int64_t begin = 0; begin < n; begin += group) {
    const int64_t end = std::min(n, begin + group);
    std::vector<int64_t> cols;
    for (int64_t k = begin; k < end; ++k) {
      cols.push_back(static_cast<int64_t>(targets[static_cast<size_t>(rows[k])]) + 1);
    }
    const auto r = torch::from_blob(rows.data() + begin, {end - begin}, i64).to(users.device());
    const auto c = torch::tensor(cols, i64).to(users.device()).unsqueeze(1);
    auto scores = torch::matmul(users.index_select(0, r), items_t);
    scores.select(1, 0).fill_(-std::numeric_limits<float>::infinity());
    const auto higher = TargetRanks(scores, scores.gather(1, c)).to(torch::kCPU).contiguous();
    const auto* h = higher.data_ptr<int64_t>();
    for (int64_t k = begin; k < end; ++k) ranks[static_cast<size_t>(rows[k])] = h[k - begin];
  }
  return ranks;
}

void MaskClickedItems(torch::Tensor& scores, const std::vector<SequenceSample>& samples, int64_t begin, int64_t end,
                      const std::vector<std::vector<int32_t>>& sequences) {
  std::vector<int64_t> rows, cols;
  for (int64_t k = begin; k < end; ++k) {
    const auto& s = samples[static_cast<size_t>(k)];
    const auto& seq = sequences[static_cast<size_t>(s.user)];
    for (int32_t t = 0; t < s.end; ++t) {
      if (seq[static_cast<size_t>(t)] == s.target) continue;
      rows.push_back(k - begin);
      cols.push_back(seq[static_cast<size_t>(t)]);
    }
  }
  if (rows.empty()) return;
  const auto device = scores.device();
  scores.index_put_({torch::tensor(rows, torch::kInt64).to(device), torch::tensor(cols, torch::kInt64).to(device)},
                    -std::numeric_limits<float>::infinity());
}

}  // namespace gsau::learner
