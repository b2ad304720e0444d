#include "gsau/replay/replay.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "gsau/common/clock.h"
#include "gsau/common/log.h"
#include "gsau/common/json.h"
#include "gsau/common/progress.h"
#include "gsau/kafka/admin.h"

namespace gsau::replay {

std::string EncodeClickJson(const ClickEvent& e, bool with_ts) {
  std::string out;
  out.reserve(64 + e.user_id.size() + e.item_id.size());
  out += "{\"user_id\":";
  AppendJsonString(out, e.user_id);
  out += ",\"item_id\":";
  AppendJsonString(out, e.item_id);
  if (with_ts) {
    out += ",\"ts\":";
    out += std::to_string(e.ts_ms);
  }
  out += ",\"event\":";
  AppendJsonString(out, e.event_type.empty() ? kDefaultEventType : e.event_type);
  out += '}';
  return out;
}

Pacer::Clock::time_point Pacer::Due(int64_t sent, Clock::time_point now) {
  // The time is capped: a tiny rate overflowed the clock's nanoseconds into the past.
  const auto at = [&](int64_t k) {
    const double s = std::min(static_cast<double>(k - origin_sent_) / rate_, 1e9);
    return origin_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  const auto burst = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(max_burst_s_));
  if (now - at(sent) > burst) {
    origin_ = now - burst;  // behind by more than a burst: the schedule starts again from here
    origin_sent_ = sent;
  }
  return at(sent);
}

Result<ReplayStats> Replay(const std::vector<data::Interaction>& events, const kafka::KafkaOptions& kafka,
                           const ReplayOptions& options, const std::atomic<bool>* stop) {
  GSAU_RETURN_IF_ERROR(kafka::WaitForCluster(kafka, 30000, stop));  // a Ctrl-C while the brokers are away: at once
  kafka::ProducerOptions producer_options = options.producer;
  producer_options.name = "replay";
  // A full queue (the brokers slow or away) is waited out in slices that hear a stop and a
  // failed delivery: waiting in Produce until there was room, a Ctrl-C went unheard for minutes.
  if (producer_options.queue_full_timeout_ms < 0) producer_options.queue_full_timeout_ms = 200;
  // Its destructor's flush comes after Replay's own (which waited flush_timeout_ms, or was cut
  // short by a stop): a stop with the brokers away waited 30 s more there.
  producer_options.close_timeout_ms = std::min(producer_options.close_timeout_ms, 2000);
  GSAU_ASSIGN_OR_RETURN(auto producer, kafka::Producer::Create(kafka, producer_options));
  const int64_t n = options.limit > 0 ? std::min<int64_t>(options.limit, static_cast<int64_t>(events.size()))
                                      : static_cast<int64_t>(events.size());
  // Records: the events and the malformed records among them (ReplayOptions::malformed_every).
  const int64_t records = n + (options.malformed_every > 0 ? n / options.malformed_every : 0);
  ProgressOptions po;
  po.label = "replay " + options.topic;
  po.unit = "records delivered";
  po.out = stderr;
  std::unique_ptr<ProgressBar> bar;
  if (options.progress) bar = std::make_unique<ProgressBar>(records, po);

  const auto start = std::chrono::steady_clock::now();
  const auto stopped = [stop] { return stop != nullptr && stop->load(std::memory_order_relaxed); };
  // The bar counts what the brokers acknowledged, not what was queued (at full speed a whole
  // dataset fits in the local queue: the bar said 100% and the flush then waited unseen).
  const auto show = [&](int64_t sent) {
    if (bar) bar->Update(producer->counts().delivered, "sent " + std::to_string(sent));
  };
  // A failed delivery ends the replay at once: it went on to the end and said so only then.
  // `first`: a Flush's report of it, when one has taken it already (Flush reports a failure once).
  const auto failure = [&](int64_t sent, Status first = Status::Ok()) -> Status {
    const auto c = producer->counts();
    if (c.failed == 0 && !producer->failed_fatally()) return Status::Ok();
    if (first.ok()) first = producer->Flush(std::min(options.flush_timeout_ms, 5000));
    const auto after = producer->counts();
    return Status::Unavailable("deliveries failed: stopped after sending " + std::to_string(sent) + " of " +
                               std::to_string(n) + " events (" + std::to_string(after.delivered) +
                               " records delivered, " + std::to_string(after.failed) + " failed)" +
                               (first.ok() ? std::string() : ": " + first.message()));
  };
  const auto produce = [&](int64_t sent, std::string_view key, std::string_view value) -> Status {
    for (;;) {
      Status s = producer->Produce(options.topic, key, value);
      if (s.code() != StatusCode::kResourceExhausted) return s;
      GSAU_RETURN_IF_ERROR(failure(sent));
      if (stopped()) return Status::Aborted("stopped while the local queue was full");
      show(sent);
    }
  };
  ClickEvent click;
  Pacer pacer(options.rate, start);
  const int64_t unacknowledged_cap = MaxUnacknowledged(options.rate);
  int64_t sent = 0;
  int64_t malformed = 0;
  for (; sent < n; ++sent) {
    if (stopped()) break;
    if (options.rate > 0) {
      // Until the brokers have acknowledged all but a second's worth (MaxUnacknowledged); the
      // counts move as deliveries are polled, so at the cap it polls and waits.
      for (auto c = producer->counts(); c.produced - c.delivered - c.failed >= unacknowledged_cap && !stopped();
           c = producer->counts()) {
        producer->Poll();
        GSAU_RETURN_IF_ERROR(failure(sent));
        show(sent);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (stopped()) break;
      // In slices that hear a stop (at 0.5 events/s a Ctrl-C waited 2 s and sent one more).
      const auto due = pacer.Due(sent, std::chrono::steady_clock::now());
      for (auto now = std::chrono::steady_clock::now(); now < due && !stopped(); now = std::chrono::steady_clock::now()) {
        producer->Poll();
        GSAU_RETURN_IF_ERROR(failure(sent));
        std::this_thread::sleep_until(std::min(due, now + std::chrono::milliseconds(100)));
      }
      if (stopped()) break;
    }
    const auto& ev = events[static_cast<size_t>(sent)];
    click.user_id = ev.user_id;
    click.item_id = ev.item_id;
    click.event_type = ev.event;  // (empty: kDefaultEventType)
    click.ts_ms = options.stamp_send_time ? SystemClock::Get().NowMs() : ev.ts_ms;
    const std::string value = EncodeClickJson(click, ev.has_time || options.stamp_send_time);
    if (Status s = produce(sent, ev.user_id, value); !s.ok()) {
      if (s.code() == StatusCode::kAborted) break;
      return s;
    }
    if (options.malformed_every > 0 && (sent + 1) % options.malformed_every == 0) {
      static constexpr std::string_view kMalformed[] = {
          "click!",                                          // not JSON
          R"({"item_id":"i1","ts":1,"event":"click"})",      // no user id
          R"({"user_id":"u1","item_id":"i1","ts":-5})",      // negative time
      };
      if (Status s = produce(sent + 1, ev.user_id, kMalformed[malformed % 3]); !s.ok()) {
        if (s.code() == StatusCode::kAborted) {
          ++sent;  // its event went out
          break;
        }
        return s;
      }
      ++malformed;
    }
    if ((sent & 1023) == 0) {
      producer->Poll();
      GSAU_RETURN_IF_ERROR(failure(sent + 1));
    }
    // Paced, 1,024 events can take minutes: the bar (which throttles its own redraws) hears of
    // each one then.
    if (options.rate > 0 || (sent & 1023) == 0) show(sent + 1);
  }
  // The flush in slices, so that the bar follows the deliveries and a failure ends it. A stop
  // gives it 2 s: enough for brokers that answer, while brokers that are away would hold a
  // Ctrl-C for the whole flush timeout.
  const auto flush_start = std::chrono::steady_clock::now();
  const auto flush_deadline = flush_start + std::chrono::milliseconds(options.flush_timeout_ms);
  Status flushed;
  for (;;) {
    flushed = producer->Flush(200);
    show(sent);
    const auto now = std::chrono::steady_clock::now();
    if (flushed.ok() || producer->counts().failed > 0 || producer->failed_fatally() || now >= flush_deadline ||
        (stopped() && now - flush_start >= std::chrono::seconds(2))) {
      break;
    }
  }
  if (bar) bar->Finish("sent " + std::to_string(sent), producer->counts().delivered);
  if (!flushed.ok() && stopped() && producer->counts().failed == 0) {
    const auto c = producer->counts();
    return Status::Aborted("replay stopped after " + std::to_string(sent) + " events sent, " +
                           std::to_string(c.delivered) + " records delivered, " +
                           std::to_string(c.produced - c.delivered) + " not (yet) acknowledged");
  }
  if (!flushed.ok()) {
    if (Status f = failure(sent, flushed); !f.ok()) return f.WithContext("replay");
    const auto c = producer->counts();
    return Status::Unavailable("replay: " + std::to_string(c.produced - c.delivered) + " of " +
                               std::to_string(c.produced) + " records sent were not delivered within " +
                               std::to_string(options.flush_timeout_ms) + " ms: " + flushed.message());
  }
  ReplayStats stats;
  stats.events = producer->counts().delivered;
  stats.malformed = malformed;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (stopped()) {
    return Status::Aborted("replay stopped after " + std::to_string(stats.events) + " events");
  }
  return stats;
}

std::vector<data::Interaction> SyntheticStream(const SyntheticOptions& o) {
  std::mt19937_64 rng(o.seed);
  // Zipf CDF over item ranks; item k's popularity ~ 1 / (k+1)^s.
  std::vector<double> cdf(static_cast<size_t>(o.items));
  double acc = 0;
  for (int k = 0; k < o.items; ++k) {
    acc += 1.0 / std::pow(k + 1.0, o.zipf_exponent);
    cdf[static_cast<size_t>(k)] = acc;
  }
  // Each item leads to one habitual next item: a fixed random successor.
  std::vector<int> successor(static_cast<size_t>(o.items));
  std::uniform_int_distribution<int> any_item(0, o.items - 1);
  for (auto& s : successor) s = any_item(rng);
  std::vector<int> last(static_cast<size_t>(o.users), -1);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::exponential_distribution<double> gap(1.0 / static_cast<double>(std::max<int64_t>(1, o.mean_gap_ms)));

  std::vector<data::Interaction> out;
  out.reserve(static_cast<size_t>(o.events));
  double t = static_cast<double>(o.start_ms);
  for (int64_t e = 0; e < o.events; ++e) {
    // Half of the users and items exist from the start; the rest appear linearly over time.
    const double f = static_cast<double>(e) / static_cast<double>(std::max<int64_t>(1, o.events));
    const int active_users = std::max(1, static_cast<int>(o.users * (0.5 + 0.5 * f)));
    const int active_items = std::max(1, static_cast<int>(o.items * (0.5 + 0.5 * f)));
    const int u = std::uniform_int_distribution<int>(0, active_users - 1)(rng);
    int item;
    if (last[static_cast<size_t>(u)] >= 0 && unit(rng) < o.habit_probability &&
        successor[static_cast<size_t>(last[static_cast<size_t>(u)])] < active_items) {
      item = successor[static_cast<size_t>(last[static_cast<size_t>(u)])];
    } else {
      const double x = unit(rng) * cdf[static_cast<size_t>(active_items - 1)];
      item = static_cast<int>(std::lower_bound(cdf.begin(), cdf.begin() + active_items, x) - cdf.begin());
    }
    last[static_cast<size_t>(u)] = item;
    t += gap(rng);
    out.push_back({"u" + std::to_string(u), "i" + std::to_string(item), static_cast<int64_t>(t), e, true});
  }
  return out;
}

}  // namespace gsau::replay
