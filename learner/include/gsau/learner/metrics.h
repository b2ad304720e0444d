// Full-ranking metrics with one target per user: Recall@K (= HitRate@K), NDCG@K and MRR@K.
//
// A rank is 0-based: the number of items scored strictly higher than the target. With one
// relevant item, Recall@K = [rank < K], NDCG@K = [rank < K] / log2(rank + 2) and
// MRR@K = [rank < K] / (rank + 1); each is averaged over the evaluated users.
//
// Thread safety: plain values.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace gsau::learner {

inline constexpr std::array<int, 4> kTopKs = {5, 10, 20, 50};

struct RankingMetrics {
  int64_t count = 0;
  std::array<double, kTopKs.size()> recall{};
  std::array<double, kTopKs.size()> ndcg{};
  std::array<double, kTopKs.size()> mrr{};

  // "recall@10", "ndcg@20", "mrr@5", ...; returns -1 for an unknown name.
  double Get(const std::string& name) const;
  // The names in a fixed order: recall@5..50, ndcg@5..50, mrr@5..50.
  static std::vector<std::string> Names();
  std::vector<double> Values() const;  // in the order of Names()
};

class MetricAccumulator {
 public:
  void Add(int64_t rank);
  RankingMetrics Result() const;  // averages; all zero when nothing was added

 private:
  RankingMetrics sums_;
};

}  // namespace gsau::learner
