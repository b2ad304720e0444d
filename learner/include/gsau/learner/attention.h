// SASRec's causal self-attention on packed sequences, as one CPU kernel with its own backward.
//
// The sequences of a batch lie back to back in one [T, .] tensor (no padding): sequence s is the
// token rows [offsets[s], offsets[s + 1]). Query i of a sequence attends to its keys 0..i only,
// which is RecBole's causal + padding mask exactly (its -10000 makes exp() of a masked score 0 in
// float32), without computing the masked half or any padding.
#pragma once

#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>

namespace gsau::learner {

struct PackedAttentionOptions {
  int64_t heads = 1;
  double dropout = 0.0;   // on the attention probabilities, inverted (kept ones scaled 1/(1-p))
  bool training = false;  // dropout only when training
  uint64_t seed = 0;      // the dropout mask is a function of (seed, s, h, i, j): no thread dependence
};

// qkv: [T, 3d] float32 on the CPU, each token's query, key and value side by side, each d wide
// and split into `heads` heads of d / heads columns. offsets: [S + 1] int64 on the CPU,
// ascending, offsets[0] = 0 and offsets[S] = T. Returns the context [T, d] (heads side by side,
// before the output projection): softmax(q k^T / sqrt(d / heads)) v per sequence and head,
// differentiable in qkv. Thread-safe; parallel over sequences x heads (at::parallel_for).
at::Tensor PackedCausalAttention(const at::Tensor& qkv, const at::Tensor& offsets,
                                 const PackedAttentionOptions& options);

// The dropout factor PackedCausalAttention applies to the probability of query i and key j of
// sequence s, head h: 0 (dropped) or 1 / (1 - p). For tests and references.
float PackedAttentionKeep(uint64_t seed, double p, int64_t s, int64_t h, int64_t i, int64_t j);

}  // namespace gsau::learner
