// Replay: turns an interactions dataset (or a synthetic stream) into click events on Kafka,
// in SYSTEM.md's format, keyed by user id, in event-time order.
//
// Record value: {"user_id":"...","item_id":"...","ts":<ms>,"event":"click"}. When the source
// has no times (per-user lines without a times file), "ts" is left out and the consumer
// takes the Kafka message timestamp, as SYSTEM.md allows.
//
// Thread safety: Replay() runs on the calling thread; `stop` may be set from another
// (a signal handler) to end it early.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "gsau/common/event.h"
#include "gsau/common/status.h"
#include "gsau/data/interactions.h"
#include "gsau/kafka/options.h"
#include "gsau/kafka/producer.h"

namespace gsau::replay {

struct ReplayOptions {
  std::string topic = "clicks";
  double rate = 0;            // events per second; 0 = as fast as possible
  int64_t limit = 0;          // stop after this many events (0 = all)
  // After every malformed_every-th event, one malformed record too (not JSON, a missing id, a
  // negative time, in turn), so the dead-letter path runs (the demo). 0 = none.
  int64_t malformed_every = 0;
  bool progress = true;       // draw a progress bar on stderr
  int flush_timeout_ms = 60000;
  kafka::ProducerOptions producer;
};

struct ReplayStats {
  int64_t events = 0;     // produced and delivered, malformed records included
  int64_t malformed = 0;  // of which malformed (ReplayOptions::malformed_every)
  double seconds = 0;     // wall time including the final flush
  double events_per_s() const { return seconds > 0 ? static_cast<double>(events) / seconds : 0; }
};

// The JSON value of one click event. `with_ts` false leaves "ts" out.
std::string EncodeClickJson(const ClickEvent& event, bool with_ts = true);

// Produces `events` (already in the order to send) to Kafka and waits for every delivery.
// Fails (kUnavailable) if the broker cannot be reached, and as soon as a delivery fails, saying
// how many events were sent and delivered and why. A stop ends it with kAborted, also while the
// local queue is full (waited out in slices of ProducerOptions::queue_full_timeout_ms, 200 ms
// when not set). The progress bar counts delivered events.
Result<ReplayStats> Replay(const std::vector<data::Interaction>& events, const kafka::KafkaOptions& kafka,
                           const ReplayOptions& options, const std::atomic<bool>* stop = nullptr);

// A seeded synthetic click stream with the shape of real ones: power-law item popularity,
// users who follow item-to-item habits, new users and items appearing over time.
struct SyntheticOptions {
  int64_t events = 100000;
  int users = 2000;
  int items = 1000;
  double habit_probability = 0.6;  // chance the next click follows the user's habit chain
  double zipf_exponent = 1.1;
  int64_t start_ms = 1'700'000'000'000;
  int64_t mean_gap_ms = 1000;      // mean gap between consecutive events (whole stream)
  uint64_t seed = 2020;
};
std::vector<data::Interaction> SyntheticStream(const SyntheticOptions& options);

}  // namespace gsau::replay
