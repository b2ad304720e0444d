// Packed causal attention: forward and backward by hand, one task per (sequence, head).
//
// Why not torch ops: a Toys batch has ~500 sequences of mean length ~8 (max 50), so padded
// batched products spend most of their time on padding, masks, copies and per-op overhead; the
// grouped-by-length products this replaced were a quarter of a GSAU (rec) step. Here each task
// reads its rows of qkv in place, computes only the causal half, and owns the gradient rows of
// its sequence's tokens for its head's columns, so tasks never write the same memory.
#include "gsau/learner/attention.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace gsau::learner {
namespace {

inline uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// The dropout mask: a hash of (seed, sequence, head) per task, then of (i, j) per entry.
struct KeepMask {
  bool active = false;
  uint32_t threshold = 0;  // keep when the draw's top 32 bits are >= p * 2^32
  float scale = 1.0f;

  KeepMask(double p, bool training) {
    if (training && p > 0.0) {
      active = true;
      threshold = static_cast<uint32_t>(std::min(p, 1.0) * 4294967295.0);
      scale = p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f;
    }
  }
  // Each part is mixed in on its own: seeds come in steps of the golden-ratio constant (the
  // model's NextDropoutSeed), so adding (s, h) in that step as well aliased one call's
  // (s, h) with another call's; and s * 16 + h aliased heads beyond 16.
  static uint64_t TaskKey(uint64_t seed, int64_t s, int64_t h) {
    return Mix(Mix(Mix(seed) + static_cast<uint64_t>(s)) + static_cast<uint64_t>(h));
  }
  float operator()(uint64_t task_key, int64_t i, int64_t j) const {
    if (!active) return 1.0f;
    const uint64_t entry = static_cast<uint64_t>(i) * 65536 + static_cast<uint64_t>(j) + 1;
    const uint64_t r = Mix(task_key + 0xD1B54A32D192ED03ULL * entry);
    return static_cast<uint32_t>(r >> 32) >= threshold ? scale : 0.0f;
  }
};

// Eight partial sums: the compiler vectorises them (a plain float reduction it may not reorder).
inline float Dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    for (int u = 0; u < 8; ++u) acc[u] += a[k + u] * b[k + u];
  }
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; k < n; ++k) s += a[k] * b[k];
  return s;
}

inline void Axpy(float* y, float w, const float* x, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] += w * x[k];
}

inline int64_t Triangle(int64_t n) { return n * (n + 1) / 2; }

struct Layout {
  int64_t tokens = 0, sequences = 0, d = 0, heads = 0, head_dim = 0;
  float scale = 1.0f;
  const int64_t* offsets = nullptr;
  std::vector<int64_t> prob_base;  // start of sequence s's saved probabilities (all heads)

  Layout(const at::Tensor& qkv, const at::Tensor& offsets_t, int64_t h) {
    tokens = qkv.size(0);
    d = qkv.size(1) / 3;
    heads = h;
    head_dim = d / heads;
    scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
    sequences = offsets_t.numel() - 1;
    offsets = offsets_t.data_ptr<int64_t>();
    prob_base.resize(static_cast<size_t>(sequences) + 1, 0);
    for (int64_t s = 0; s < sequences; ++s) {
      const int64_t len = offsets[s + 1] - offsets[s];
      TORCH_CHECK(len >= 1 && len < 65536, "PackedCausalAttention: sequence ", s, " has length ", len);
      prob_base[static_cast<size_t>(s) + 1] = prob_base[static_cast<size_t>(s)] + heads * Triangle(len);
    }
  }
  int64_t grain() const { return std::max<int64_t>(1, 64 / heads); }
};

class PackedCausalAttentionFunction : public torch::autograd::Function<PackedCausalAttentionFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& qkv_in,
                            const at::Tensor& offsets_in, int64_t heads, double p, bool training, int64_t seed) {
    const auto qkv = qkv_in.contiguous();
    const auto offsets = offsets_in.contiguous();
    const Layout lay(qkv, offsets, heads);
    const KeepMask keep(p, training);
    // Softmax before dropout, lower triangles per (sequence, head): what the backward needs.
    auto probs = at::empty({lay.prob_base.back()}, qkv.options());
    auto out = at::empty({lay.tokens, lay.d}, qkv.options());
    const float* x = qkv.data_ptr<float>();
    float* pr = probs.data_ptr<float>();
    float* o = out.data_ptr<float>();
    const int64_t stride = 3 * lay.d, d = lay.d, hd = lay.head_dim;
    at::parallel_for(0, lay.sequences * heads, lay.grain(), [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t s = task / heads, h = task % heads;
        const int64_t t0 = lay.offsets[s], len = lay.offsets[s + 1] - t0;
        const uint64_t key = KeepMask::TaskKey(static_cast<uint64_t>(seed), s, h);
        float* tri = pr + lay.prob_base[static_cast<size_t>(s)] + h * Triangle(len);
        for (int64_t i = 0; i < len; ++i) {
          const float* qi = x + (t0 + i) * stride + h * hd;
          float* row = tri + Triangle(i);
          float top = -std::numeric_limits<float>::infinity();
          for (int64_t j = 0; j <= i; ++j) {
            row[j] = Dot(qi, x + (t0 + j) * stride + d + h * hd, hd) * lay.scale;
            top = std::max(top, row[j]);
          }
          float sum = 0.0f;
          for (int64_t j = 0; j <= i; ++j) {
            row[j] = std::exp(row[j] - top);
            sum += row[j];
          }
          const float inv = 1.0f / sum;
          float* ci = o + (t0 + i) * d + h * hd;
          std::fill(ci, ci + hd, 0.0f);
          for (int64_t j = 0; j <= i; ++j) {
            row[j] *= inv;
            const float w = row[j] * keep(key, i, j);
            if (w != 0.0f) Axpy(ci, w, x + (t0 + j) * stride + 2 * d + h * hd, hd);
          }
        }
      }
    });
    ctx->save_for_backward({qkv, offsets, probs});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["p"] = p;
    ctx->saved_data["training"] = training;
    ctx->saved_data["seed"] = seed;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto& qkv = saved[0];
    const auto& offsets = saved[1];
    const auto& probs = saved[2];
    const int64_t heads = ctx->saved_data["heads"].toInt();
    const uint64_t seed = static_cast<uint64_t>(ctx->saved_data["seed"].toInt());
    const KeepMask keep(ctx->saved_data["p"].toDouble(), ctx->saved_data["training"].toBool());
    const Layout lay(qkv, offsets, heads);
    const auto g = grad[0].contiguous();
    auto dqkv = at::zeros_like(qkv);
    const float* x = qkv.data_ptr<float>();
    const float* pr = probs.data_ptr<float>();
    const float* gc = g.data_ptr<float>();
    float* dx = dqkv.data_ptr<float>();
    const int64_t stride = 3 * lay.d, d = lay.d, hd = lay.head_dim;
    at::parallel_for(0, lay.sequences * heads, lay.grain(), [&](int64_t begin, int64_t end) {
      std::vector<float> dp;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t s = task / heads, h = task % heads;
        const int64_t t0 = lay.offsets[s], len = lay.offsets[s + 1] - t0;
        const uint64_t key = KeepMask::TaskKey(seed, s, h);
        const float* tri = pr + lay.prob_base[static_cast<size_t>(s)] + h * Triangle(len);
        dp.resize(static_cast<size_t>(len));
        for (int64_t i = 0; i < len; ++i) {
          const float* row = tri + Triangle(i);
          const float* gi = gc + (t0 + i) * d + h * hd;
          // context_i = sum_j row[j] keep_ij v_j: gradients of v_j and of the probabilities.
          float weighted = 0.0f;  // sum_j row[j] dp[j]
          for (int64_t j = 0; j <= i; ++j) {
            const float k = keep(key, i, j);
            float dpj = 0.0f;
            if (k != 0.0f) {
              const int64_t vj = (t0 + j) * stride + 2 * d + h * hd;
              dpj = Dot(gi, x + vj, hd) * k;
              Axpy(dx + vj, row[j] * k, gi, hd);
            }
            dp[static_cast<size_t>(j)] = dpj;
            weighted += row[j] * dpj;
          }
          // Softmax, then the scaled scores q_i . k_j.
          const int64_t qi = (t0 + i) * stride + h * hd;
          for (int64_t j = 0; j <= i; ++j) {
            const float ds = row[j] * (dp[static_cast<size_t>(j)] - weighted) * lay.scale;
            if (ds == 0.0f) continue;
            const int64_t kj = (t0 + j) * stride + d + h * hd;
            Axpy(dx + qi, ds, x + kj, hd);
            Axpy(dx + kj, ds, x + qi, hd);
          }
        }
      }
    });
    return {dqkv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor PackedCausalAttention(const at::Tensor& qkv, const at::Tensor& offsets, const PackedAttentionOptions& o) {
  TORCH_CHECK(qkv.is_cpu() && qkv.scalar_type() == at::kFloat && qkv.dim() == 2,
              "PackedCausalAttention: qkv must be a [T, 3d] float32 CPU tensor");
  TORCH_CHECK(offsets.is_cpu() && offsets.scalar_type() == at::kLong && offsets.dim() == 1 && offsets.numel() >= 1,
              "PackedCausalAttention: offsets must be a 1-D int64 CPU tensor");
  TORCH_CHECK(o.heads >= 1 && qkv.size(1) % (3 * o.heads) == 0, "PackedCausalAttention: heads must divide d");
  const auto off = offsets.contiguous();
  TORCH_CHECK(off.data_ptr<int64_t>()[0] == 0 && off.data_ptr<int64_t>()[off.numel() - 1] == qkv.size(0),
              "PackedCausalAttention: offsets must run from 0 to T");
  return PackedCausalAttentionFunction::apply(qkv, off, o.heads, o.dropout, o.training, static_cast<int64_t>(o.seed));
}

float PackedAttentionKeep(uint64_t seed, double p, int64_t s, int64_t h, int64_t i, int64_t j) {
  const KeepMask keep(p, /*training=*/true);
  return keep(KeepMask::TaskKey(seed, s, h), i, j);
}

}  // namespace gsau::learner
