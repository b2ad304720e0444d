// The alignment and uniformity terms of GSAU (DirectAU's, with alpha = 2).
//
// Every input is [n, d]; rows are L2-normalised inside (x^ = x / max(||x||, 1e-12)).
//  Align(x, y)          = mean_k ||x^_k - y^_k||^2
//  Uniformity(x)        = log mean_{j<k} exp(-t ||x^_j - x^_k||^2)       (0 when n < 2)
//  PairUniformity(x, y) = log mean_k exp(-t ||x^_k - y^_k||^2)
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <random>
#include <vector>

namespace gsau::learner {

torch::Tensor Align(const torch::Tensor& x, const torch::Tensor& y);
torch::Tensor Uniformity(const torch::Tensor& x, double t = 2.0);
torch::Tensor PairUniformity(const torch::Tensor& x, const torch::Tensor& y, double t = 2.0);

// mean_b CE(softmax(q_b . table^T), targets_b): cross-entropy over all rows of `table` (the
// padding row included, as RecBole). q [B, d], table [N, d] float, targets [B] int64.
// Same value and gradients as F::cross_entropy(q.matmul(table.t()), targets), fused: the [B, N]
// logits buffer becomes the softmax in place and then the gradient, with no one-hot or
// log-softmax copies. Supports one backward pass (no retain_graph).
torch::Tensor FullSoftmaxCrossEntropy(const torch::Tensor& q, const torch::Tensor& table,
                                      const torch::Tensor& targets);

// A uniformly random permutation of 0..n-1 with no fixed point (rejection sampling; about e
// tries). REQUIRES: n >= 2.
std::vector<int64_t> RandomDerangement(int64_t n, std::mt19937_64& rng);

}  // namespace gsau::learner
