// Helpers for the ingest tests: producing clicks, and the state compared by external ids
// (internal ids depend on the interleaving of partitions, so two correct runs may differ).
#pragma once

#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gsau/common/event.h"
#include "gsau/kafka/admin.h"
#include "gsau/kafka/producer.h"
#include "gsau/state/state_store.h"

namespace gsau::testing {

struct StateDump {
  std::map<std::string, std::vector<std::pair<std::string, int64_t>>> sessions;  // user -> (item, ts)
  std::map<std::pair<std::string, std::string>, std::pair<uint32_t, int64_t>> edges;  // -> (count, last ts)
  uint64_t events = 0;
  friend bool operator==(const StateDump&, const StateDump&) = default;
};

inline StateDump Dump(const state::StateStore& s) {
  StateDump d;
  d.events = s.Counts().events;
  (void)s.ForEachSession([&](state::UserId u, std::span<const state::SessionEntry> entries) {
    auto& out = d.sessions[s.UserExternalId(u).value()];
    for (const auto& e : entries) out.emplace_back(s.ItemExternalId(e.item).value(), e.ts_ms);
  });
  (void)s.ForEachEdge([&](const state::Edge& e) {
    d.edges[{s.UserExternalId(e.user).value(), s.ItemExternalId(e.item).value()}] = {e.count, e.last_ts_ms};
  });
  return d;
}

inline StateDump DumpAt(const std::string& path, uint32_t session_length = 50) {
  state::StateOptions o;
  o.path = path;
  o.create_if_missing = false;
  o.session_length = session_length;
  auto s = state::StateStore::Open(o);
  if (!s.ok()) return {};
  return Dump(**s);
}

// The JSON of a good click.
inline std::string ClickJson(const std::string& user, const std::string& item, int64_t ts) {
  return R"({"user_id":")" + user + R"(","item_id":")" + item + R"(","ts":)" + std::to_string(ts) +
         R"(,"event":"click"})";
}

// A seeded stream of good clicks over `users` users and `items` items, with repeats.
inline std::vector<ClickEvent> MakeClicks(int n, int users, int items, uint64_t seed) {
  std::vector<ClickEvent> out;
  uint64_t x = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (int i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const int u = static_cast<int>((x >> 33) % static_cast<uint64_t>(users));
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const int it = static_cast<int>((x >> 33) % static_cast<uint64_t>(items));
    out.push_back({"user-" + std::to_string(u), "item-" + std::to_string(it), 1700000000000 + i, "click"});
  }
  return out;
}

inline kafka::KafkaOptions KafkaAt(const std::string& bootstrap) {
  kafka::KafkaOptions k;
  k.bootstrap_servers = bootstrap;
  return k;
}

}  // namespace gsau::testing
