#include "gsau/learner/metrics.h"

#include <algorithm>
#include <cmath>

namespace gsau::learner {

void MetricAccumulator::Add(int64_t rank) {
  ++sums_.count;
  for (size_t k = 0; k < kTopKs.size(); ++k) {
    if (rank < kTopKs[k]) {
      sums_.recall[k] += 1.0;
      sums_.ndcg[k] += 1.0 / std::log2(static_cast<double>(rank) + 2.0);
      sums_.mrr[k] += 1.0 / (static_cast<double>(rank) + 1.0);
    }
  }
}

RankingMetrics MetricAccumulator::Result() const {
  RankingMetrics m = sums_;
  if (m.count == 0) return m;
  const double n = static_cast<double>(m.count);
  for (size_t k = 0; k < kTopKs.size(); ++k) {
    m.recall[k] /= n;
    m.ndcg[k] /= n;
    m.mrr[k] /= n;
  }
  return m;
}

std::vector<std::string> RankingMetrics::Names() {
  std::vector<std::string> names;
  for (const char* metric : {"recall", "ndcg", "mrr"}) {
    for (int k : kTopKs) names.push_back(std::string(metric) + "@" + std::to_string(k));
  }
  return names;
}

std::vector<double> RankingMetrics::Values() const {
  std::vector<double> v;
  for (const auto* a : {&recall, &ndcg, &mrr}) v.insert(v.end(), a->begin(), a->end());
  return v;
}

double RankingMetrics::Get(const std::string& name) const {
  const auto names = Names();
  const auto values = Values();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return values[i];
  }
  return -1.0;
}

PopularityRanking::PopularityRanking(std::span<const int64_t> clicks) : clicks_(clicks.begin(), clicks.end()) {
  const int64_t most = clicks_.empty() ? 0 : *std::max_element(clicks_.begin(), clicks_.end());
  above_.assign(static_cast<size_t>(most) + 2, 0);
  with_.assign(static_cast<size_t>(most) + 2, 0);
  for (const int64_t c : clicks_) ++with_[static_cast<size_t>(c)];
  uint32_t above = 0;
  for (size_t c = with_.size(); c-- > 0;) {
    above_[c] = above;
    above += with_[c];
  }
}

void PopularityRanking::Grow(size_t items) {
  // New items have no clicks: nobody has fewer, so only the count at zero changes.
  if (clicks_.size() >= items) return;
  with_[0] += static_cast<uint32_t>(items - clicks_.size());
  clicks_.resize(items, 0);
}

void PopularityRanking::Click(uint32_t item) {
  Grow(static_cast<size_t>(item) + 1);
  const auto c = static_cast<size_t>(clicks_[item]++);
  if (above_.size() < c + 2) {
    above_.resize(c + 2, 0);  // nobody has more clicks than the new most
    with_.resize(c + 2, 0);
  }
  // Going from c to c + 1 clicks passes only the threshold "more than c".
  ++above_[c];
  --with_[c];
  ++with_[c + 1];
}

int64_t PopularityRanking::Above(uint32_t item) const { return above_[static_cast<size_t>(Clicks(item))]; }

int64_t PopularityRanking::Tied(uint32_t item) const {
  const int64_t with = with_[static_cast<size_t>(Clicks(item))];
  return item < clicks_.size() ? with - 1 : with;
}

int64_t PopularityRanking::Rank(uint32_t item, std::mt19937_64& rng) const {
  return Above(item) + std::uniform_int_distribution<int64_t>(0, Tied(item))(rng);
}

}  // namespace gsau::learner
