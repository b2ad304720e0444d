// The users' sequences of a dataset as one click stream for the online learner's benchmarks:
// each user's clicks in order, the next user drawn at random (seed 1), each click with the user's
// previous items (at most max_prefix) as its prefix. Learner ids are the dataset's ids - 1 (both
// dense, first appearance order).
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "gsau/learner/dataset.h"
#include "gsau/learner/online.h"

namespace gsau::bench {

inline std::vector<learner::OnlineEvent> InterleavedStream(const learner::LeaveOneOutData& data,
                                                           size_t max_prefix = 50) {
  std::vector<learner::OnlineEvent> events;
  std::mt19937_64 rng(1);
  std::vector<size_t> next(data.sequences.size(), 0), active;
  for (size_t u = 1; u < data.sequences.size(); ++u) {
    if (!data.sequences[u].empty()) active.push_back(u);
  }
  int64_t ts = 0;
  while (!active.empty()) {
    const size_t slot = rng() % active.size();
    const size_t u = active[slot];
    const auto& seq = data.sequences[u];
    const size_t p = next[u]++;
    learner::OnlineEvent e;
    e.user = static_cast<uint32_t>(u - 1);
    e.item = static_cast<uint32_t>(seq[p] - 1);
    e.ts_ms = ++ts;
    for (size_t j = p > max_prefix ? p - max_prefix : 0; j < p; ++j) {
      e.prefix.push_back(static_cast<uint32_t>(seq[j] - 1));
    }
    events.push_back(std::move(e));
    if (next[u] == seq.size()) {
      active[slot] = active.back();
      active.pop_back();
    }
  }
  return events;
}

}  // namespace gsau::bench
