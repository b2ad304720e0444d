// The GSAU model: one user table and one item table, shared by a LightGCN graph encoder and a
// SASRec sequence encoder (the item table is the same tensor in both).
//
// Shapes: tables are [num_users, d] and [num_items, d] (row 0 = padding). A SequenceBatch holds
// right-padded prefixes [B, L] (int64, padding 0, oldest item first) and their lengths [B] (>= 1).
// SASRec runs its token-wise layers on the packed real tokens only [T, d] (sorted by length). On
// the CPU attention runs on them as they are (PackedCausalAttention, attention.h); elsewhere, or
// with packed_attention off, per group of sequences of similar length, each group padded to its
// own longest sequence. Both are exact: padded keys are masked (-10000 as RecBole, exp underflows
// to 0) and padded queries are discarded, and most sequences are far shorter than max_len.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <utility>
#include <span>
#include <vector>

#include "gsau/learner/dataset.h"
#include "gsau/learner/sparse.h"

namespace gsau::learner {

struct GsauModelOptions {
  GsauModelOptions(int64_t num_users, int64_t num_items) : num_users_(num_users), num_items_(num_items) {}
  TORCH_ARG(int64_t, num_users);
  TORCH_ARG(int64_t, num_items);
  TORCH_ARG(int64_t, dim) = 64;
  TORCH_ARG(int64_t, max_len) = 50;        // learned positions 0..max_len-1
  TORCH_ARG(int64_t, seq_layers) = 2;      // transformer blocks
  TORCH_ARG(int64_t, heads) = 2;
  TORCH_ARG(int64_t, ffn_dim) = 256;
  TORCH_ARG(double, hidden_dropout) = 0.5;
  TORCH_ARG(double, attn_dropout) = 0.5;
  TORCH_ARG(double, layer_norm_eps) = 1e-12;
  TORCH_ARG(int64_t, graph_layers) = 2;    // LightGCN K
  // 0: Xavier-normal Embedding and Linear weights (GSAU's xavier_normal_initialization);
  // > 0: N(0, init_std) instead (RecBole's SASRec, initializer_range 0.02).
  TORCH_ARG(double, init_std) = 0.0;
  // On the CPU: attention over the packed tokens (attention.h) rather than padded length groups.
  TORCH_ARG(bool, packed_attention) = true;
};

// a @ b for [N, m, k] x [N, k, n] float32, differentiable in both. On the CPU it runs one
// parallel loop over N instead of torch's bmm, which calls a GEMM per batch entry (~3 us each,
// and grouped attention has thousands of tiny [L, 32] x [32, L] products per step). Used by the
// grouped attention path only (CUDA, or packed_attention off).
torch::Tensor SmallBatchedMatmul(const torch::Tensor& a, const torch::Tensor& b);

// Inverted dropout with a counter-based generator: each 4096-element chunk draws from
// splitmix64(seed, chunk), so the mask depends on `seed` only, not on the thread count. On the
// CPU it is several times faster than torch::dropout's bernoulli_ here. CUDA: torch::dropout.
torch::Tensor FastDropout(const torch::Tensor& x, double p, bool training, uint64_t seed);

struct SequenceBatch {
  torch::Tensor items;    // [B, L] int64, right-padded with 0
  torch::Tensor lengths;  // [B] int64, 1 <= length <= L
};

// Sequences [begin, end) of the length-sorted batch, whose tokens are rows [token_begin, token_end)
// of the packed layout; attention runs on them padded to `len`.
struct AttentionGroup {
  int64_t batch = 0;  // sequences in the group
  int64_t len = 0;    // longest sequence in the group
  int64_t token_begin = 0, token_end = 0;
  torch::Tensor flat_index;  // [tokens] int64: position of each token in the group's [batch * len]
  torch::Tensor mask;        // [batch, 1, len, len] additive: 0 allowed, -10000 masked
};

// One post-LN block as RecBole's TransformerLayer: attention -> dropout -> LN(x + .), then
// FFN (GELU) -> dropout -> LN(x + .).
class SasRecBlockImpl : public torch::nn::Module {
 public:
  SasRecBlockImpl(const GsauModelOptions& options);
  // h: packed tokens [T, d] of a length-sorted batch; sequence s is rows [offsets[s], offsets[s + 1])
  // (offsets: [S + 1] int64 on the CPU). Attention runs packed when `groups` is empty, else per
  // group, covering h in order. `seeds` gives one fresh dropout seed per call.
  torch::Tensor forward(const torch::Tensor& h, const torch::Tensor& offsets, const std::vector<AttentionGroup>& groups,
                        const std::function<uint64_t()>& seeds);

 private:
  // After attention: output projection, dropout, LN(h + .), then the FFN half of the block.
  torch::Tensor Rest(const torch::Tensor& h, const torch::Tensor& context, const std::function<uint64_t()>& seeds);

  GsauModelOptions options_;
  torch::nn::Linear query_{nullptr}, key_{nullptr}, value_{nullptr}, dense_{nullptr};
  torch::nn::LayerNorm attn_norm_{nullptr};
  torch::nn::Linear ffn_in_{nullptr}, ffn_out_{nullptr};
  torch::nn::LayerNorm ffn_norm_{nullptr};
};
TORCH_MODULE(SasRecBlock);

class GsauModelImpl : public torch::nn::Module {
 public:
  explicit GsauModelImpl(const GsauModelOptions& options);

  // Xavier-normal (or N(0, init_std)) for every Embedding and Linear weight, zero Linear
  // biases, LayerNorm (1, 0).
  void reset();

  const GsauModelOptions& options() const { return options_; }
  torch::Tensor user_table() const { return user_table_->weight; }
  torch::Tensor item_table() const { return item_table_->weight; }

  // LightGCN outputs for every user and item: ([num_users, d], [num_items, d]).
  std::pair<torch::Tensor, torch::Tensor> GraphForward(const CsrMatrix& adjacency);
  // The same outputs for the given user rows and item rows only ([users.numel(), d],
  // [items.numel(), d]), from their neighbourhoods (LightGcnPropagateRows): a training step.
  // REQUIRES: `host_adjacency` on the CPU.
  std::pair<torch::Tensor, torch::Tensor> GraphForwardRows(const CsrMatrix& host_adjacency, const torch::Tensor& users,
                                                           const torch::Tensor& items);
  // SASRec output at each sequence's last real position: [B, d].
  torch::Tensor SequenceForward(const SequenceBatch& batch);

  // Seeds the dropout masks and restarts their sequence: the masks after it depend on the seed
  // and the training calls since, nothing before (the trainer reseeds every epoch, the online
  // learner every step, so a resumed run repeats an uninterrupted one).
  void set_dropout_seed(uint64_t seed) {
    dropout_seed_ = seed;
    dropout_calls_ = 0;
  }
  // A fresh seed for one dropout call. Only training calls draw: inference (validation, user
  // embeddings between steps) leaves the sequence where it was.
  uint64_t NextDropoutSeed() { return dropout_seed_ + 0x9E3779B97F4A7C15ULL * ++dropout_calls_; }

 private:
  GsauModelOptions options_;
  torch::nn::Embedding user_table_{nullptr}, item_table_{nullptr}, positions_{nullptr};
  torch::nn::LayerNorm input_norm_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  uint64_t dropout_seed_ = 0;
  uint64_t dropout_calls_ = 0;
};
TORCH_MODULE(GsauModel);

// 0-based rank of each row's target: how many other items score at least as high. scores [B, N]
// (padding and masked items -inf), target_scores [B, 1]; returns [B] int64 on their device.
// Ties count against the target (a model scoring every item alike ranks no target first), and
// so does a NaN score; a NaN target score is kMissRank (a miss at every cut-off).
torch::Tensor TargetRanks(const torch::Tensor& scores, const torch::Tensor& target_scores);

// Ranks (as TargetRanks) of targets[k] among the items for user vector k: users [B, d], items
// [rows, d] with row 0 the padding (ranked below every item), item i in row i + 1. A target >=
// num_items is kMissRank. Scored a group of users at a time, so that at most about max_scores
// scores (one group's [group, rows]; at least one user's) are held at once: a whole [B, rows]
// matrix and its masks took gigabytes at a million items. Returns B ranks.
std::vector<int64_t> RankTargets(const torch::Tensor& users, const torch::Tensor& items,
                                 std::span<const uint32_t> targets, int64_t num_items,
                                 int64_t max_scores = int64_t{16} << 20);

// LightGCN-only's history mask: sets to -inf, in row k of scores [end - begin, N], every item
// the user of samples[begin + k] clicked before that sample's target (sequences[user][0, end)),
// as RecBole masks a general model's training items. The target itself is never masked: a user
// clicking an item again would otherwise be a miss whatever the model scores (RecBole's is).
void MaskClickedItems(torch::Tensor& scores, const std::vector<SequenceSample>& samples, int64_t begin, int64_t end,
                      const std::vector<std::vector<int32_t>>& sequences);

}  // namespace gsau::learner
