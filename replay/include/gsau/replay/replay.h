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

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
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
  // Each event's time is the wall clock when it is produced (its own time, if any, is not
  // sent): a stream played into a live pipeline, whose freshness figures (event time to publish
  // time) then mean what they would on real traffic, stalls and start-up included.
  bool stamp_send_time = false;
  int flush_timeout_ms = 60000;
  kafka::ProducerOptions producer;
};

// At a rate, records not yet acknowledged are held to max(100, one second of events): with the
// brokers away librdkafka's local queue took up to 1,000,000 records, so the replay went on at its
// rate unseen (and --from-now stamped events that then waited in the queue for the whole outage);
// now it waits for the brokers, and then goes on as after any stall.
inline int64_t MaxUnacknowledged(double rate) {
  if (!(rate > 0)) return 100;  // NaN too
  return std::max<int64_t>(100, static_cast<int64_t>(std::ceil(std::min(rate, 1e15))));
}

// When each event of a rate-limited replay is due: `rate` events per second on average, against a
// schedule rather than the previous send (so the average is exact). After a stall (a full local
// queue, brokers away) it catches up by at most `max_burst_s` of events at full speed and then
// goes on at the rate: the time missed beyond that is not made up (after a minute away at 100/s,
// 6,000 events went out at once, onto an ingest that was itself catching up).
class Pacer {
 public:
  using Clock = std::chrono::steady_clock;
  Pacer(double rate, Clock::time_point start, double max_burst_s = 1.0)
      : rate_(rate), max_burst_s_(max_burst_s), origin_(start) {}
  // When event `sent` (0-based, asked in order) is due, given that it is `now`.
  Clock::time_point Due(int64_t sent, Clock::time_point now);

 private:
  double rate_, max_burst_s_;
  Clock::time_point origin_;
  int64_t origin_sent_ = 0;
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
