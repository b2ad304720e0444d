// The state as a plain in-memory model (the exact reference the store is checked against),
// and a full dump of a StateStore through its public API in the same shape.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <gtest/gtest.h>

#include "gsau/state/state_store.h"

namespace gsau::state::testing {

struct Dump {
  std::vector<std::string> users, items;  // external ids by internal id
  std::vector<Edge> edges;                // ascending (user, item)
  std::vector<std::vector<SessionEntry>> sessions;  // by user
  std::vector<NodeStats> user_stats, item_stats;
  std::vector<std::vector<UserId>> item_users;      // by item, ascending
  uint64_t events = 0;

  friend bool operator==(const Dump&, const Dump&) = default;
};

class Reference {
 public:
  explicit Reference(uint32_t session_length) : n_(session_length) {}

  void Apply(const ClickEvent& e) {
    const uint32_t u = Id(users_, user_names_, e.user_id);
    const uint32_t i = Id(items_, item_names_, e.item_id);
    user_stats_.resize(user_names_.size());
    item_stats_.resize(item_names_.size());
    sessions_.resize(user_names_.size());
    auto [it, inserted] = edges_.try_emplace({u, i}, Edge{u, i, 0, e.ts_ms});
    if (inserted) {
      ++user_stats_[u].degree;
      ++item_stats_[i].degree;
    }
    ++it->second.count;
    it->second.last_ts_ms = std::max(it->second.last_ts_ms, e.ts_ms);
    ++user_stats_[u].clicks;
    ++item_stats_[i].clicks;
    sessions_[u].push_back({i, e.ts_ms});
    ++events_;
  }
  void Apply(const std::vector<ClickEvent>& events) {
    for (const auto& e : events) Apply(e);
  }

  Dump ToDump() const {
    Dump d;
    d.users = user_names_;
    d.items = item_names_;
    for (const auto& [k, e] : edges_) d.edges.push_back(e);
    for (const auto& s : sessions_) {
      const size_t skip = s.size() > n_ ? s.size() - n_ : 0;
      d.sessions.emplace_back(s.begin() + static_cast<long>(skip), s.end());
    }
    d.user_stats = user_stats_;
    d.item_stats = item_stats_;
    d.item_users.resize(item_names_.size());
    for (const auto& [k, e] : edges_) d.item_users[k.second].push_back(k.first);
    d.events = events_;
    return d;
  }

  uint64_t users() const { return user_names_.size(); }
  uint64_t items() const { return item_names_.size(); }
  uint64_t edges() const { return edges_.size(); }

 private:
  static uint32_t Id(std::unordered_map<std::string, uint32_t>& map, std::vector<std::string>& names,
                     const std::string& ext) {
    auto [it, inserted] = map.try_emplace(ext, static_cast<uint32_t>(names.size()));
    if (inserted) names.push_back(ext);
    return it->second;
  }

  size_t n_;
  std::unordered_map<std::string, uint32_t> users_, items_;
  std::vector<std::string> user_names_, item_names_;
  std::map<std::pair<uint32_t, uint32_t>, Edge> edges_;
  std::vector<std::vector<SessionEntry>> sessions_;
  std::vector<NodeStats> user_stats_, item_stats_;
  uint64_t events_ = 0;
};

// Everything the store answers, read through every public reader (the per-id readers and the
// snapshot iterations must agree with each other too).
inline Dump DumpStore(const StateStore& store) {
  Dump d;
  const StateCounts counts = store.Counts();
  for (UserId u = 0; u < counts.users; ++u) {
    auto name = store.UserExternalId(u);
    EXPECT_TRUE(name.ok()) << name.status();
    d.users.push_back(name.ok() ? *name : "");
    EXPECT_EQ(store.FindUser(d.users.back()), u);
    d.user_stats.push_back(store.UserStats(u));
    auto session = store.Session(u);
    EXPECT_TRUE(session.ok()) << session.status();
    d.sessions.push_back(session.ok() ? *session : std::vector<SessionEntry>{});
  }
  for (ItemId i = 0; i < counts.items; ++i) {
    auto name = store.ItemExternalId(i);
    EXPECT_TRUE(name.ok()) << name.status();
    d.items.push_back(name.ok() ? *name : "");
    EXPECT_EQ(store.FindItem(d.items.back()), i);
    d.item_stats.push_back(store.ItemStats(i));
    auto nb = store.ItemNeighbours(i);
    EXPECT_TRUE(nb.ok()) << nb.status();
    std::vector<UserId> users;
    if (nb.ok()) {
      for (const Edge& e : *nb) users.push_back(e.user);
    }
    d.item_users.push_back(users);
  }
  auto scanned = store.ForEachEdge([&](const Edge& e) { d.edges.push_back(e); });
  EXPECT_TRUE(scanned.ok()) << scanned.status();
  if (scanned.ok()) {
    EXPECT_EQ(*scanned, counts);
  }
  EXPECT_EQ(counts.edges, d.edges.size());
  d.events = counts.events;

  // Cross-checks: per-user neighbours and per-item neighbours against the edge scan; the
  // session scan against the per-user sessions.
  std::vector<Edge> by_user;
  for (UserId u = 0; u < counts.users; ++u) {
    auto nb = store.UserNeighbours(u);
    EXPECT_TRUE(nb.ok()) << nb.status();
    if (nb.ok()) by_user.insert(by_user.end(), nb->begin(), nb->end());
  }
  EXPECT_EQ(by_user, d.edges);
  for (ItemId i = 0; i < counts.items; ++i) {
    auto nb = store.ItemNeighbours(i);
    if (!nb.ok()) continue;
    for (const Edge& e : *nb) {
      auto it = std::lower_bound(d.edges.begin(), d.edges.end(), e, [](const Edge& a, const Edge& b) {
        return std::pair(a.user, a.item) < std::pair(b.user, b.item);
      });
      EXPECT_TRUE(it != d.edges.end() && *it == e);
    }
  }
  std::vector<std::vector<SessionEntry>> scanned_sessions(counts.users);
  auto ss = store.ForEachSession([&](UserId u, std::span<const SessionEntry> s) {
    ASSERT_LT(u, counts.users);
    scanned_sessions[u].assign(s.begin(), s.end());
  });
  EXPECT_TRUE(ss.ok()) << ss.status();
  EXPECT_EQ(scanned_sessions, d.sessions);
  return d;
}

}  // namespace gsau::state::testing
