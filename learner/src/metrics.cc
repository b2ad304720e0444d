#include "gsau/learner/metrics.h"

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

}  // namespace gsau::learner
