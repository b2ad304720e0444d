// Fast paths against exact references: sparse propagation vs a dense product, the loss terms vs
// values computed by hand, the grouped SASRec vs each sequence alone, packed attention vs a dense
// per-sequence reference and vs the grouped path.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <dlfcn.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "gsau/learner/attention.h"
#include "gsau/learner/loss.h"
#include "gsau/learner/metrics.h"
#include "gsau/learner/model.h"
#include "gsau/learner/sparse.h"
#include "gsau/learner/trainer.h"

namespace gsau::learner {
namespace {

TEST(SparsePropagation, EqualsDenseProductForwardAndGradients) {
  torch::manual_seed(7);
  const int64_t num_users = 6, num_items = 8;  // row 0 of each is padding, no edges
  std::mt19937_64 rng(3);
  std::vector<GraphPair> pairs;
  for (int k = 0; k < 20; ++k) {
    pairs.push_back({static_cast<int32_t>(1 + rng() % (num_users - 1)), static_cast<int32_t>(1 + rng() % (num_items - 1))});
  }
  pairs.push_back(pairs.front());  // a repeated click counts once in the adjacency
  const CsrMatrix l = BuildNormalizedAdjacency(num_users, num_items, pairs);
  const int64_t n = num_users + num_items;

  // Reference: dense A, D = rowsum + 1e-7, L = D^-1/2 A D^-1/2, in double.
  auto a = torch::zeros({n, n}, torch::kFloat64);
  for (const auto& p : pairs) {
    a[p.user][num_users + p.item] = 1.0;
    a[num_users + p.item][p.user] = 1.0;
  }
  const auto dinv = (a.sum(1) + 1e-7).pow(-0.5);
  const auto dense = dinv.unsqueeze(1) * a * dinv.unsqueeze(0);
  EXPECT_TRUE(torch::allclose(l.ToDense().to(torch::kFloat64), dense, 1e-6, 1e-6));

  const auto x0 = torch::randn({n, 5});
  const auto w = torch::randn({n, 5});
  auto x = x0.clone().requires_grad_(true);
  const auto y = LightGcnPropagate(l, x, 2);
  (y * w).sum().backward();

  auto xr = x0.to(torch::kFloat64).requires_grad_(true);
  const auto e1 = torch::mm(dense, xr);
  const auto e2 = torch::mm(dense, e1);
  const auto yr = (xr + e1 + e2) / 3.0;
  (yr * w.to(torch::kFloat64)).sum().backward();

  EXPECT_TRUE(torch::allclose(y.to(torch::kFloat64), yr, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(x.grad().to(torch::kFloat64), xr.grad(), 1e-5, 1e-5));
  // Padding rows have no edges: their propagated rows are x/3 (layer 0 only).
  EXPECT_TRUE(torch::allclose(y[0], x0[0] / 3.0, 1e-6, 1e-6));
}

// A pair outside the tables is refused: (1, 3) with 3 items wrote past the adjacency's end,
// (3, 1) with 3 users joined "user 3" to the first item's node.
TEST(SparsePropagation, PairsOutsideTheTablesAreRefused) {
  EXPECT_THROW(BuildNormalizedAdjacency(3, 3, {{1, 3}}), c10::Error);
  EXPECT_THROW(BuildNormalizedAdjacency(3, 3, {{3, 1}}), c10::Error);
  EXPECT_THROW(BuildNormalizedAdjacency(3, 3, {{-1, 1}}), c10::Error);
  EXPECT_NO_THROW(BuildNormalizedAdjacency(3, 3, {{2, 2}}));
}

// The batch-restricted propagation against the full one: a sparse random graph, so that the
// rows' neighbourhood is a strict part of it, layers 0 to 3, rows repeated and padding included.
TEST(SparsePropagation, RowsEqualFullPropagationForwardAndGradients) {
  torch::manual_seed(11);
  const int64_t num_users = 60, num_items = 80;
  std::mt19937_64 rng(5);
  std::vector<GraphPair> pairs;
  for (int k = 0; k < 150; ++k) {
    pairs.push_back({static_cast<int32_t>(1 + rng() % (num_users - 1)), static_cast<int32_t>(1 + rng() % (num_items - 1))});
  }
  const CsrMatrix l = BuildNormalizedAdjacency(num_users, num_items, pairs);
  const int64_t n = num_users + num_items;
  const auto rows = torch::tensor(std::vector<int64_t>{3, 17, 3, 0, num_users + 5, num_users + 41, 17, num_users});
  const auto x0 = torch::randn({n, 4});
  const auto w = torch::randn({rows.size(0), 4});
  for (int64_t layers = 0; layers <= 3; ++layers) {
    SCOPED_TRACE("layers " + std::to_string(layers));
    auto xf = x0.clone().requires_grad_(true);
    const auto full = LightGcnPropagate(l, xf, layers).index_select(0, rows);
    (full * w).sum().backward();
    auto xr = x0.clone().requires_grad_(true);
    const auto part = LightGcnPropagateRows(l, xr, layers, rows);
    (part * w).sum().backward();
    ASSERT_EQ(part.sizes(), full.sizes());
    EXPECT_TRUE(torch::allclose(part, full, 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(xr.grad(), xf.grad(), 1e-5, 1e-6));
    // Not vacuous: the gradient reaches rows beyond the asked ones once there are layers.
    const auto touched = xf.grad().abs().sum(1).gt(0).sum().item<int64_t>();
    if (layers >= 2) {
      EXPECT_GT(touched, 8);
    }
    if (layers == 1) {
      EXPECT_LT(touched, n / 2);  // ...but not every row: the neighbourhood is a strict part
    }
  }
  EXPECT_THROW(LightGcnPropagateRows(l, x0, 2, torch::tensor(std::vector<int64_t>{n})), c10::Error);

  // The model's training-step entry: user rows and item rows (item ids, not node ids).
  GsauModel model(GsauModelOptions(num_users, num_items).dim(4));
  const auto users = torch::tensor(std::vector<int64_t>{1, 7, 1, 59});
  const auto items = torch::tensor(std::vector<int64_t>{2, 2, 79, 40});
  const auto [gu_all, gi_all] = model->GraphForward(l);
  const auto [gu, gi] = model->GraphForwardRows(l, users, items);
  EXPECT_TRUE(torch::allclose(gu, gu_all.index_select(0, users), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(gi, gi_all.index_select(0, items), 1e-5, 1e-6));
}

// Fixed small inputs; the expected values are computed in plain doubles below.
const std::vector<std::vector<double>> kX = {{3, 4}, {1, 0}, {0, -2}, {1, 1}};
const std::vector<std::vector<double>> kY = {{0, 1}, {1, 1}, {-1, 0}, {2, -1}};

std::vector<double> Unit(const std::vector<double>& v) {
  const double n = std::sqrt(v[0] * v[0] + v[1] * v[1]);
  return {v[0] / n, v[1] / n};
}
double Sq(const std::vector<double>& a, const std::vector<double>& b) {
  const auto ua = Unit(a), ub = Unit(b);
  return (ua[0] - ub[0]) * (ua[0] - ub[0]) + (ua[1] - ub[1]) * (ua[1] - ub[1]);
}
torch::Tensor T(const std::vector<std::vector<double>>& v) {
  auto t = torch::empty({static_cast<int64_t>(v.size()), 2});
  for (size_t i = 0; i < v.size(); ++i) {
    t[static_cast<int64_t>(i)][0] = v[i][0];
    t[static_cast<int64_t>(i)][1] = v[i][1];
  }
  return t;
}

TEST(Loss, AlignEqualsHandValue) {
  double expected = 0;
  for (size_t k = 0; k < kX.size(); ++k) expected += Sq(kX[k], kY[k]);
  expected /= static_cast<double>(kX.size());
  EXPECT_NEAR(Align(T(kX), T(kY)).item<double>(), expected, 1e-6);
}

TEST(Loss, UniformityEqualsHandValue) {
  double sum = 0;
  int pairs = 0;
  for (size_t j = 0; j < kX.size(); ++j) {
    for (size_t k = j + 1; k < kX.size(); ++k, ++pairs) sum += std::exp(-2.0 * Sq(kX[j], kX[k]));
  }
  EXPECT_NEAR(Uniformity(T(kX), 2.0).item<double>(), std::log(sum / pairs), 1e-5);
  // Identical rows: every distance 0, log 1 = 0; a single row has no pair.
  EXPECT_NEAR(Uniformity(torch::ones({5, 3}), 2.0).item<double>(), 0.0, 1e-6);
  EXPECT_EQ(Uniformity(torch::ones({1, 3}), 2.0).item<double>(), 0.0);
}

TEST(Loss, PairUniformityEqualsHandValue) {
  double sum = 0;
  for (size_t k = 0; k < kX.size(); ++k) sum += std::exp(-2.0 * Sq(kX[k], kY[k]));
  EXPECT_NEAR(PairUniformity(T(kX), T(kY), 2.0).item<double>(), std::log(sum / kX.size()), 1e-5);
}

// Two opposite rows at t = 5: exp(-20) = 2e-9 was lost next to the diagonal's 2 (the full
// kernel's sum less its diagonal, in float32): log(0), a NaN gradient, "loss is not finite".
TEST(Loss, UniformityKeepsSmallKernelMass) {
  const auto x = torch::tensor({1.0f, 0.0f, -1.0f, 0.0f}).reshape({2, 2}).requires_grad_(true);
  const auto u = Uniformity(x, 5.0);
  EXPECT_NEAR(u.item<double>(), -20.0, 1e-3);
  u.backward();
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
  const auto y = torch::tensor({-1.0f, 0.0f, 1.0f, 0.0f}).reshape({2, 2});
  EXPECT_NEAR(PairUniformity(x.detach(), y, 30.0).item<double>(), -120.0, 1e-3) << "exp(-120) underflows float32";
}

// Values and gradients against the authors' formulation (pdist over j < k; the pairs' norms),
// computed in double by torch's own ops, on spread rows and on near-opposite ones at t = 2 and 5.
TEST(Loss, UniformityGradientsEqualTheReference) {
  torch::manual_seed(9);
  for (const double t : {2.0, 5.0}) {
    for (const bool opposite : {false, true}) {
      auto x0 = torch::randn({12, 6});
      if (opposite) x0 = torch::cat({x0.slice(0, 0, 6), -x0.slice(0, 0, 6) + 1e-3 * torch::randn({6, 6})});
      const auto y0 = torch::randn({12, 6});
      auto x = x0.clone().requires_grad_(true), y = y0.clone().requires_grad_(true);
      auto xr = x0.to(torch::kFloat64).requires_grad_(true), yr = y0.to(torch::kFloat64).requires_grad_(true);
      const auto loss = Uniformity(x, t) + PairUniformity(x, y, t);
      namespace F = torch::nn::functional;
      const auto xn = F::normalize(xr, F::NormalizeFuncOptions().dim(1));
      const auto yn = F::normalize(yr, F::NormalizeFuncOptions().dim(1));
      const auto ref = torch::pdist(xn, 2).pow(2).mul(-t).exp().mean().log() +
                       (xn - yn).norm(2, 1).pow(2).mul(-t).exp().mean().log();
      EXPECT_NEAR(loss.item<double>(), ref.item<double>(), 1e-4) << "t " << t << (opposite ? " opposite" : "");
      loss.backward();
      ref.backward();
      EXPECT_TRUE(torch::allclose(x.grad().to(torch::kFloat64), xr.grad(), 1e-3, 1e-4))
          << "t " << t << (opposite ? " opposite" : "");
      EXPECT_TRUE(torch::allclose(y.grad().to(torch::kFloat64), yr.grad(), 1e-3, 1e-4))
          << "t " << t << (opposite ? " opposite" : "");
    }
  }
}

TEST(Loss, GradientsAreFinite) {
  auto x = torch::randn({16, 8}).requires_grad_(true);
  auto y = torch::randn({16, 8}).requires_grad_(true);
  (Align(x, y) + Uniformity(x) + PairUniformity(x, y)).backward();
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(y.grad()).all().item<bool>());
}

TEST(Loss, FusedCrossEntropyEqualsTorchs) {
  torch::manual_seed(4);
  const auto q0 = torch::randn({6, 5});
  const auto t0 = torch::randn({9, 5});
  const auto targets = torch::tensor({0, 3, 8, 3, 1, 5}, torch::kInt64);
  auto q = q0.clone().requires_grad_(true), t = t0.clone().requires_grad_(true);
  auto qr = q0.clone().requires_grad_(true), tr = t0.clone().requires_grad_(true);
  const auto loss = FullSoftmaxCrossEntropy(q, t, targets);
  const auto ref = torch::nn::functional::cross_entropy(torch::matmul(qr, tr.t()), targets);
  EXPECT_NEAR(loss.item<double>(), ref.item<double>(), 1e-5);
  (3.0 * loss).backward();
  (3.0 * ref).backward();
  EXPECT_TRUE(torch::allclose(q.grad(), qr.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(t.grad(), tr.grad(), 1e-5, 1e-6));
}

TEST(Derangement, NeverHasAFixedPoint) {
  std::mt19937_64 rng(11);
  for (int64_t n = 2; n <= 64; ++n) {
    for (int trial = 0; trial < 200; ++trial) {
      const auto p = RandomDerangement(n, rng);
      ASSERT_EQ(static_cast<int64_t>(p.size()), n);
      std::set<int64_t> seen(p.begin(), p.end());
      ASSERT_EQ(static_cast<int64_t>(seen.size()), n);
      for (int64_t i = 0; i < n; ++i) ASSERT_NE(p[static_cast<size_t>(i)], i) << "n=" << n;
    }
  }
}

TEST(SasRec, GroupedBatchEqualsEachSequenceAlone) {
  torch::manual_seed(5);
  GsauModel model(GsauModelOptions(10, 30).dim(16).max_len(12).ffn_dim(32));
  model->eval();
  torch::NoGradGuard no_grad;
  std::mt19937_64 rng(2);
  const std::vector<int64_t> lengths = {1, 12, 3, 7, 2, 9, 5, 3, 11, 1, 6};
  const int64_t b = static_cast<int64_t>(lengths.size());
  auto items = torch::zeros({b, 12}, torch::kInt64);
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t j = 0; j < lengths[static_cast<size_t>(r)]; ++j) items[r][j] = static_cast<int64_t>(1 + rng() % 29);
  }
  const auto out = model->SequenceForward({items, torch::tensor(lengths, torch::kInt64)});
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{b, 16}));
  for (int64_t r = 0; r < b; ++r) {
    const int64_t len = lengths[static_cast<size_t>(r)];
    const auto alone = model->SequenceForward({items[r].slice(0, 0, len).unsqueeze(0), torch::tensor({len})});
    EXPECT_TRUE(torch::allclose(out[r], alone[0], 1e-4, 1e-5)) << "row " << r;
  }
  // Causality: the output for a prefix does not depend on later items.
  auto longer = items[1].unsqueeze(0).clone();
  const auto prefix = model->SequenceForward({longer, torch::tensor({int64_t{5}})});
  longer[0][7] = 29;
  const auto prefix_changed = model->SequenceForward({longer, torch::tensor({int64_t{5}})});
  EXPECT_TRUE(torch::allclose(prefix, prefix_changed));
}

// Dense attention of each sequence alone in float64: causal mask, softmax, the kernel's dropout
// mask, times V. qkv [T, 3d] double.
torch::Tensor ReferenceAttention(const torch::Tensor& qkv, const std::vector<int64_t>& offsets, int64_t heads,
                                 double p, uint64_t seed) {
  const int64_t d = qkv.size(1) / 3, hd = d / heads;
  std::vector<torch::Tensor> outs;
  for (size_t s = 0; s + 1 < offsets.size(); ++s) {
    const int64_t t0 = offsets[s], len = offsets[s + 1] - t0;
    const auto x = qkv.slice(0, t0, t0 + len);
    std::vector<torch::Tensor> per_head;
    for (int64_t h = 0; h < heads; ++h) {
      const auto q = x.slice(1, h * hd, (h + 1) * hd);
      const auto k = x.slice(1, d + h * hd, d + (h + 1) * hd);
      const auto v = x.slice(1, 2 * d + h * hd, 2 * d + (h + 1) * hd);
      const auto future = torch::ones({len, len}, torch::kBool).triu(1);
      auto scores = torch::matmul(q, k.t()) / std::sqrt(static_cast<double>(hd));
      auto probs = torch::softmax(scores.masked_fill(future, -10000.0), -1);
      if (p > 0) {
        auto keep = torch::zeros({len, len}, torch::kFloat64);
        for (int64_t i = 0; i < len; ++i) {
          for (int64_t j = 0; j < len; ++j) {
            keep[i][j] = PackedAttentionKeep(seed, p, static_cast<int64_t>(s), h, i, j);
          }
        }
        probs = probs * keep;
      }
      per_head.push_back(torch::matmul(probs, v));
    }
    outs.push_back(torch::cat(per_head, 1));
  }
  return torch::cat(outs, 0);
}

// 32 heads too: the kernel refused more than 16 (a limit of an old mask key) that the trainer's
// options accept, and failed at the first step.
TEST(PackedAttention, EqualsDenseReferenceForwardAndGradients) {
  torch::manual_seed(11);
  const std::vector<int64_t> offsets = {0, 1, 6, 8, 17, 20, 21};  // lengths 1, 5, 2, 9, 3, 1
  const int64_t t = offsets.back();
  for (const auto& [d, heads, p] : {std::tuple<int64_t, int64_t, double>{16, 2, 0.0}, {16, 2, 0.5}, {64, 32, 0.5}}) {
    const auto x0 = torch::randn({t, 3 * d});
    const auto w = torch::randn({t, d});
    auto x = x0.clone().requires_grad_(true);
    auto xr = x0.to(torch::kFloat64).requires_grad_(true);
    PackedAttentionOptions o;
    o.heads = heads;
    o.dropout = p;
    o.training = true;
    o.seed = 77;
    const auto out = PackedCausalAttention(x, torch::tensor(offsets, torch::kInt64), o);
    const auto ref = ReferenceAttention(xr, offsets, heads, p, 77);
    EXPECT_TRUE(torch::allclose(out.to(torch::kFloat64), ref, 1e-5, 1e-5)) << "p=" << p << " heads " << heads;
    (out * w).sum().backward();
    (ref * w.to(torch::kFloat64)).sum().backward();
    EXPECT_TRUE(torch::allclose(x.grad().to(torch::kFloat64), xr.grad(), 1e-4, 1e-5))
        << "p=" << p << " heads " << heads;
  }
}

TEST(PackedAttention, DropoutMaskIsSeededScaledAndOffWhenNotTraining) {
  int64_t kept = 0, total = 0;
  for (int64_t s = 0; s < 40; ++s) {
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t i = 0; i < 50; ++i) {
        for (int64_t j = 0; j <= i; ++j) {
          const float k = PackedAttentionKeep(5, 0.5, s, h, i, j);
          ASSERT_TRUE(k == 0.0f || k == 2.0f);
          kept += k > 0;
          ++total;
        }
      }
    }
  }
  EXPECT_NEAR(static_cast<double>(kept) / static_cast<double>(total), 0.5, 0.01);
  int64_t differ = 0;
  for (int64_t j = 0; j < 200; ++j) {
    differ += PackedAttentionKeep(5, 0.5, 0, 0, 60, j) != PackedAttentionKeep(6, 0.5, 0, 0, 60, j);
  }
  EXPECT_GT(differ, 50);
  // Not training: no mask, the same output as p = 0.
  const auto x = torch::randn({7, 12});
  const auto offsets = torch::tensor(std::vector<int64_t>{0, 3, 7}, torch::kInt64);
  PackedAttentionOptions off;
  off.heads = 2;
  off.dropout = 0.5;
  PackedAttentionOptions none;
  none.heads = 2;
  EXPECT_TRUE(torch::equal(PackedCausalAttention(x, offsets, off), PackedCausalAttention(x, offsets, none)));
}

// The model hands attention one seed per call, seed + 0x9E3779B97F4A7C15 * call (NextDropoutSeed).
// No two (call, sequence, head) of a step may share a mask: with the seed added straight to the
// task's offset, call 2's head 3 drew call 5's head 0 (both blocks of one step with 4 heads).
TEST(PackedAttention, DropoutMasksOfCallsSequencesAndHeadsAreDistinct) {
  std::set<uint64_t> seen;
  for (uint64_t call = 1; call <= 8; ++call) {
    for (int64_t s = 0; s < 64; ++s) {
      for (int64_t h = 0; h < 4; ++h) {
        uint64_t bits = 0;  // the first 64 draws of the mask's last row
        for (int64_t j = 0; j < 64; ++j) {
          const uint64_t seed = 12345 + 0x9E3779B97F4A7C15ULL * call;
          bits |= static_cast<uint64_t>(PackedAttentionKeep(seed, 0.5, s, h, 63, j) > 0) << j;
        }
        EXPECT_TRUE(seen.insert(bits).second) << "call " << call << ", sequence " << s << ", head " << h;
      }
    }
  }
}

TEST(SasRec, PackedAttentionEqualsGroupedAttention) {
  torch::manual_seed(8);
  const auto options = GsauModelOptions(10, 30).dim(16).max_len(40).ffn_dim(32).hidden_dropout(0).attn_dropout(0);
  GsauModel packed(options);
  GsauModel grouped(GsauModelOptions(options).packed_attention(false));
  {
    torch::NoGradGuard no_grad;
    auto src = packed->parameters();
    auto dst = grouped->parameters();
    ASSERT_EQ(src.size(), dst.size());
    for (size_t k = 0; k < src.size(); ++k) dst[k].copy_(src[k]);
  }
  std::mt19937_64 rng(4);
  // Lengths across several of the grouped path's length caps, repeats and length 1.
  const std::vector<int64_t> lengths = {1, 40, 3, 7, 2, 17, 5, 3, 33, 1, 9, 26, 12};
  const int64_t b = static_cast<int64_t>(lengths.size());
  auto items = torch::zeros({b, 40}, torch::kInt64);
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t j = 0; j < lengths[static_cast<size_t>(r)]; ++j) items[r][j] = static_cast<int64_t>(1 + rng() % 29);
  }
  const SequenceBatch batch{items, torch::tensor(lengths, torch::kInt64)};
  const auto w = torch::randn({b, 16});
  const auto a = packed->SequenceForward(batch);
  const auto g = grouped->SequenceForward(batch);
  EXPECT_TRUE(torch::allclose(a, g, 1e-4, 1e-5));
  (a * w).sum().backward();
  (g * w).sum().backward();
  const auto pa = packed->named_parameters();
  const auto pg = grouped->named_parameters();
  for (const auto& item : pa) {
    const auto& ga = item.value().grad();
    const auto& gg = pg[item.key()].grad();
    ASSERT_EQ(ga.defined(), gg.defined()) << item.key();
    if (ga.defined()) {
      EXPECT_TRUE(torch::allclose(ga, gg, 1e-4, 1e-5)) << item.key();
    }
  }
}

TEST(SmallBatchedMatmul, EqualsBmmForwardAndGradients) {
  torch::manual_seed(3);
  const auto a0 = torch::randn({7, 5, 3});
  const auto b0 = torch::randn({7, 3, 4}).transpose(1, 2).contiguous().transpose(1, 2);  // strided
  const auto w = torch::randn({7, 5, 4});
  auto a = a0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
  auto ar = a0.clone().requires_grad_(true), br = b0.clone().requires_grad_(true);
  const auto c = SmallBatchedMatmul(a, b);
  const auto cr = torch::bmm(ar, br);
  EXPECT_TRUE(torch::allclose(c, cr, 1e-5, 1e-5));
  (c * w).sum().backward();
  (cr * w).sum().backward();
  EXPECT_TRUE(torch::allclose(a.grad(), ar.grad(), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(b.grad(), br.grad(), 1e-5, 1e-5));
}

TEST(FastDropout, KeepsTheRightShareScaledAndIsDeterministic) {
  const auto x = torch::ones({1000, 100});
  const auto y = FastDropout(x, 0.5, true, 42);
  const double kept = (y > 0).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(kept, 0.5, 0.01);
  EXPECT_TRUE(torch::all((y == 0) | (y == 2.0)).item<bool>());
  EXPECT_TRUE(torch::equal(y, FastDropout(x, 0.5, true, 42)));
  EXPECT_FALSE(torch::equal(y, FastDropout(x, 0.5, true, 43)));
  EXPECT_NEAR((FastDropout(x, 0.2, true, 7) > 0).to(torch::kFloat64).mean().item<double>(), 0.8, 0.01);
  EXPECT_TRUE(torch::equal(FastDropout(x, 0.5, false, 1), x));
  // Gradients flow through the kept entries only, scaled.
  auto z = torch::ones({64, 64}).requires_grad_(true);
  const auto out = FastDropout(z, 0.5, true, 9);
  out.sum().backward();
  EXPECT_TRUE(torch::equal(z.grad(), out.detach()));
}

// Ranks by hand: ties and NaN count against the target; -inf (padding, masked) never counts.
TEST(Model, TargetRanksCountTiesAndNaNAgainstTheTarget) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const auto scores = torch::tensor({-inf, 0.5f, 2.0f, 1.0f, 1.0f, 3.0f,     // target 1.0 (col 3): 2 above, 1 tie
                                     -inf, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,     // all alike: last of 5
                                     -inf, 9.0f, nan, 1.0f, 2.0f, -inf,      // target 9: a NaN counts
                                     -inf, 1.0f, 2.0f, nan, 4.0f, 5.0f})     // target NaN: a miss
                        .view({4, 6});
  const auto targets = torch::tensor({3, 1, 1, 3}, torch::kInt64);
  const auto ranks = TargetRanks(scores, scores.gather(1, targets.unsqueeze(1)));
  EXPECT_EQ(std::vector<int64_t>(ranks.data_ptr<int64_t>(), ranks.data_ptr<int64_t>() + 4),
            (std::vector<int64_t>{3, 4, 1, kMissRank}));
}

// Grouped ranking equals ranks counted by hand from the dot products, whatever the group (one
// user, several, a last group short, all at once): small integer vectors, so that every score
// is exact and ties are many; a target beyond num_items is a miss; row 0 (padding) never counts.
TEST(Model, RankTargetsInGroupsEqualsRanksCountedByHand) {
  torch::manual_seed(3);
  const int64_t b = 7, d = 3, num_items = 8;
  const auto users = torch::randint(-2, 3, {b, d}).to(torch::kFloat32);
  const auto items = torch::randint(-2, 3, {num_items + 1, d}).to(torch::kFloat32);
  const std::vector<uint32_t> targets = {0, 3, 7, 8, 5, 5, 1};  // 8: not in the model
  std::vector<int64_t> expected;
  for (int64_t k = 0; k < b; ++k) {
    if (targets[static_cast<size_t>(k)] >= num_items) {
      expected.push_back(kMissRank);
      continue;
    }
    auto score = [&](int64_t row) { return (users[k] * items[row]).sum().item<float>(); };
    const float target = score(targets[static_cast<size_t>(k)] + 1);
    int64_t above = 0;
    for (int64_t row = 1; row <= num_items; ++row) above += score(row) >= target ? 1 : 0;
    expected.push_back(above - 1);
  }
  ASSERT_NE(std::count(expected.begin(), expected.end(), 0), b - 1) << "ranks too plain to tell groups apart";
  const int64_t row = num_items + 1;  // the scores of one user
  for (const int64_t max_scores : {int64_t{1}, row, 2 * row, 3 * row, int64_t{1} << 24}) {
    EXPECT_EQ(RankTargets(users, items, targets, num_items, max_scores), expected) << "max_scores " << max_scores;
  }
}

// LightGCN-only's mask: the items before the target (only those, only in the sample's own row,
// for the batch's rows begin..end), and never the target, even when the user clicked it before.
TEST(Model, MaskClickedItemsMasksEarlierClicksButNotTheTarget) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<std::vector<int32_t>> sequences = {{}, {1, 2, 3, 4}, {5, 2, 5, 1}};
  const std::vector<SequenceSample> samples = {
      {1, 2, 3},  // user 1, target 3 after {1, 2}: outside the batch below
      {1, 3, 4},  // user 1, target 4 after {1, 2, 3}
      {2, 2, 5},  // user 2, target 5 after {5, 2}: 5 again, so only 2 is masked
      {2, 1, 2},  // user 2, target 2 after {5}
  };
  auto scores = torch::arange(1, 19, torch::kFloat32).view({3, 6});
  const auto before = scores.clone();
  MaskClickedItems(scores, samples, 1, 4, sequences);
  auto expected = before.clone();
  for (const auto& [row, item] : std::vector<std::pair<int, int>>{{0, 1}, {0, 2}, {0, 3}, {1, 2}, {2, 5}}) {
    expected[row][item] = -inf;
  }
  EXPECT_TRUE(torch::equal(scores, expected)) << scores;
}

TEST(Model, XavierNormalInit) {
  torch::manual_seed(1);
  GsauModel model(GsauModelOptions(2001, 3001));
  // xavier_normal std = sqrt(2 / (fan_in + fan_out)) = sqrt(2 / (rows + 64)) for a table.
  EXPECT_NEAR(model->item_table().std().item<double>(), std::sqrt(2.0 / (3001 + 64)), 2e-4);
  EXPECT_NEAR(model->user_table().std().item<double>(), std::sqrt(2.0 / (2001 + 64)), 3e-4);
}

TEST(Model, RecBoleNormalInit) {
  torch::manual_seed(1);
  GsauModel model(GsauModelOptions(2001, 3001).init_std(0.02));
  EXPECT_NEAR(model->item_table().std().item<double>(), 0.02, 3e-4);
}

// Creating a trainer settles OpenBLAS's threads beside torch's: it must leave torch the count it
// was given (openblas_set_num_threads on OpenBLAS's OpenMP build sets the calling thread's
// OpenMP count, torch's too), and hold OpenBLAS's pthread build, whose own pool fights torch's
// threads, to one thread.
TEST(Trainer, KeepsTorchThreadsWhateverTheBlas) {
  std::vector<data::Interaction> events;
  for (int u = 0; u < 8; ++u) {
    for (int t = 0; t < 5; ++t) {
      std::string user = "u", item = "i";
      user += std::to_string(u);
      item += std::to_string((u + t) % 6);
      events.push_back({user, item, t, t});
    }
  }
  auto d = BuildLeaveOneOut(events);
  ASSERT_TRUE(d.ok()) << d.status();
  TrainOptions o;
  o.dim = 8;
  o.ffn_dim = 16;
  o.device = "cpu";
  o.threads = 2;
  o.progress = false;
  // Torch sets this thread's OpenMP count lazily on its first parallel call, which would undo a
  // change made before it: make that call first, as any real run has by then.
  torch::set_num_threads(1);
  (void)torch::get_num_threads();
  auto t = Trainer::Create(*d, o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(torch::get_num_threads(), 2);  // libtorch's answer: this thread's OpenMP count
  using GetInt = int (*)();
  auto* get_parallel = reinterpret_cast<GetInt>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  auto* get_threads = reinterpret_cast<GetInt>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (get_parallel == nullptr || get_threads == nullptr) GTEST_SKIP() << "the BLAS is not OpenBLAS";
  if (get_parallel() == 1) {
    EXPECT_EQ(get_threads(), 1) << "OpenBLAS pthread build";
  }
  std::cout << "OpenBLAS parallel mode " << get_parallel() << " (0 serial, 1 pthreads, 2 OpenMP), "
            << get_threads() << " threads\n";
}

}  // namespace
}  // namespace gsau::learner
