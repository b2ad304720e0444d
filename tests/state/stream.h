// A deterministic stream of click events for the state tests: event k is a pure function of
// (seed, k), so a crashed writer and the checker agree on the events without sharing state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gsau/common/event.h"

namespace gsau::state::testing {

struct StreamShape {
  uint32_t users = 300;
  uint32_t items = 500;
};

inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Skewed towards low numbers (squares of a uniform), so some users and items repeat a lot
// (long sessions, repeated pairs) while new ids keep appearing.
inline uint32_t Skewed(uint64_t h, uint32_t n) {
  const double u = static_cast<double>(h >> 11) * 0x1.0p-53;
  return static_cast<uint32_t>(u * u * n);
}

inline ClickEvent MakeEvent(uint64_t seed, uint64_t k, const StreamShape& shape = {}) {
  const uint64_t h1 = SplitMix64(seed * 0x100000001b3ULL + 2 * k);
  const uint64_t h2 = SplitMix64(seed * 0x100000001b3ULL + 2 * k + 1);
  ClickEvent e;
  const uint32_t user = Skewed(h1, shape.users);
  // Half the clicks go to one of the user's 4 favourite items: repeated (user, item) pairs.
  const uint32_t item = (h1 & 1) ? Skewed(h2, shape.items)
                                 : static_cast<uint32_t>(SplitMix64(user * 4 + (h2 & 3)) % shape.items);
  e.user_id = "u" + std::to_string(user);
  e.item_id = "item-" + std::to_string(item);
  // Mostly increasing time with jitter: some events arrive out of time order.
  e.ts_ms = 1'700'000'000'000 + static_cast<int64_t>(k) * 1000 + static_cast<int64_t>(h2 % 5000) - 2500;
  e.event_type = "click";
  return e;
}

inline std::vector<ClickEvent> MakeEvents(uint64_t seed, uint64_t begin, uint64_t end,
                                          const StreamShape& shape = {}) {
  std::vector<ClickEvent> out;
  out.reserve(end - begin);
  for (uint64_t k = begin; k < end; ++k) out.push_back(MakeEvent(seed, k, shape));
  return out;
}

}  // namespace gsau::state::testing
