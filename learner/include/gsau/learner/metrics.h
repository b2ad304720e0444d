// Full-ranking metrics with one target per user: Recall@K (= HitRate@K), NDCG@K and MRR@K.
//
// A rank is 0-based: the number of other items scored at least as high as the target (ties
// count against it; TargetRanks in model.h), or kMissRank when it cannot be ranked. With one
// relevant item, Recall@K = [rank < K], NDCG@K = [rank < K] / log2(rank + 2) and
// MRR@K = [rank < K] / (rank + 1); each is averaged over the evaluated users.
//
// Thread safety: plain values.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
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

// The rank of a target that cannot be ranked (an item the model does not have yet, a user with
// nothing to embed): a miss at every cut-off. A rank of "the number of items" was a hit at
// @20 while fewer than 20 items existed.
inline constexpr int64_t kMissRank = std::numeric_limits<int64_t>::max();

class MetricAccumulator {
 public:
  void Add(int64_t rank);
  RankingMetrics Result() const;  // averages; all zero when nothing was added

 private:
  RankingMetrics sums_;
};

// A most-popular ranking kept up to date click by click: the baseline the prequential
// evaluation reports next to the model. Items are ordered by clicks, most first; items with
// equal clicks are tied, and Rank breaks ties at random (the expected figures of an arbitrary
// tie order; ordering ties by id favoured old items). Click, Above, Tied and Rank are O(1)
// whatever the catalogue size (item counts by click count: a click moves one item past one
// threshold); re-sorting the catalogue per applied batch cost O(items log items) on the
// learner thread.
//
// Thread safety: none; one owner.
class PopularityRanking {
 public:
  // Starts from clicks[i] clicks for item i.
  explicit PopularityRanking(std::span<const int64_t> clicks = {});

  // One more click on item; an item id never seen before joins with zero clicks first (and so
  // does every id below it).
  void Click(uint32_t item);
  // How many items have more clicks than item, and how many others have as many. An unknown
  // id counts as an item with zero clicks.
  int64_t Above(uint32_t item) const;
  int64_t Tied(uint32_t item) const;
  // 0-based rank: Above(item) plus a uniform draw from [0, Tied(item)].
  int64_t Rank(uint32_t item, std::mt19937_64& rng) const;
  int64_t Clicks(uint32_t item) const { return item < clicks_.size() ? clicks_[item] : 0; }
  size_t size() const { return clicks_.size(); }

 private:
  void Grow(size_t items);

  std::vector<int64_t> clicks_;  // by item
  // By click count c (0 .. most + 1): how many items have more than c clicks, and exactly c.
  std::vector<uint32_t> above_;
  std::vector<uint32_t> with_;
};

}  // namespace gsau::learner
