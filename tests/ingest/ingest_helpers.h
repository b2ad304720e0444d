// Helpers for the ingest tests: producing clicks, and the state compared by external ids
// (internal ids depend on the interleaving of partitions, so two correct runs may differ).
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <stdexcept>
#include <thread>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gsau/common/event.h"
#include "gsau/kafka/admin.h"
#include "gsau/kafka/producer.h"
#include "gsau/state/state_store.h"
#include "process.h"
#include "temp_dir.h"

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
  o.read_only = true;  // a reader: also on a disk too full for a writable open
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

// Produces `clicks` to `topic` as good click records keyed by user and waits for them all.
inline void ProduceClicks(const kafka::KafkaOptions& k, const std::string& topic,
                          const std::vector<ClickEvent>& clicks) {
  auto producer = kafka::Producer::Create(k, {});
  ASSERT_TRUE(producer.ok()) << producer.status();
  for (const auto& c : clicks) {
    ASSERT_TRUE((*producer)->Produce(topic, c.user_id, ClickJson(c.user_id, c.item_id, c.ts_ms)).ok());
  }
  ASSERT_TRUE((*producer)->Flush(30000).ok());
}

// Produces `clicks` on a thread at about `rate` per second (or the first of them, up to a
// Stop()); Join() waits for every ack.
class BackgroundProducer {
 public:
  BackgroundProducer(const std::string& bootstrap, const std::string& topic, const std::vector<ClickEvent>& clicks,
                     double rate) {
    kafka::ProducerOptions po;
    po.message_timeout_ms = 300000;  // survives a broker outage
    auto p = kafka::Producer::Create(KafkaAt(bootstrap), po);
    if (!p.ok()) throw std::runtime_error(p.status().ToString());
    producer_ = std::move(p).value();
    thread_ = std::thread([this, topic, &clicks, rate] {
      const auto start = std::chrono::steady_clock::now();
      for (size_t i = 0; i < clicks.size() && !stop_; ++i) {
        std::this_thread::sleep_until(start + std::chrono::microseconds(static_cast<int64_t>(1e6 * i / rate)));
        const auto& c = clicks[i];
        if (!producer_->Produce(topic, c.user_id, ClickJson(c.user_id, c.item_id, c.ts_ms)).ok()) ok_ = false;
        produced_ = i + 1;
        producer_->Poll();
      }
      if (!producer_->Flush(200000).ok()) ok_ = false;
    });
  }
  ~BackgroundProducer() {  // (a test that failed part-way does not wait for the rest of the stream)
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool Join() {
    thread_.join();
    return ok_;
  }
  // Produces no more clicks: Produced() of them, the first ones, are all there will be.
  void Stop() { stop_ = true; }
  size_t Produced() const { return produced_; }
  // Records the broker acknowledged (after Join).
  int64_t Delivered() const { return producer_->counts().delivered; }

 private:
  std::unique_ptr<kafka::Producer> producer_;
  std::thread thread_;
  std::atomic<bool> ok_{true};
  std::atomic<bool> stop_{false};
  std::atomic<size_t> produced_{0};
};

// Waits until the process's state holds `n` events (gsau_state_events on its /metrics): true
// when it reaches exactly n; false when it passes n (an event applied twice) or the timeout ends
// first. *seen (if given) gets the last value scraped (-1: none).
inline bool WaitForStateEvents(int port, double n, std::chrono::seconds timeout, double* seen = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  double last = -1;
  bool done = false;
  while (!done && std::chrono::steady_clock::now() < deadline) {
    if (auto v = ScrapeMetric(port, "gsau_state_events")) {
      last = *v;
      done = last >= n;
    }
    if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (seen != nullptr) *seen = last;
  return last == n;
}

inline StateDump Reference(const std::vector<ClickEvent>& clicks) {
  TempDir dir;
  state::StateOptions o;
  o.path = dir.File("ref");
  auto s = state::StateStore::Open(o);
  EXPECT_TRUE((*s)->ApplyBatch(clicks, {}).ok());
  return Dump(**s);
}

}  // namespace gsau::testing
