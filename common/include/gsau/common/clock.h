// Clock: the one way core logic reads time, so tests can drive it by hand.
//
// Units: milliseconds since the Unix epoch (wall time) and nanoseconds of a monotonic clock.
// Thread safety: SystemClock is stateless; ManualClock is safe to read and advance from
// any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace gsau {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall time, ms since the Unix epoch. May jump (NTP); use for event and publish times.
  virtual int64_t NowMs() const = 0;
  // Monotonic time in ns from an unspecified origin; use for durations and deadlines.
  virtual int64_t MonotonicNs() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  int64_t MonotonicNs() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // A process-wide instance; never destroyed.
  static const SystemClock& Get() {
    static const SystemClock* clock = new SystemClock();
    return *clock;
  }
};

// A clock that moves only when told to. Both readings advance together.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 0) : ms_(start_ms) {}
  int64_t NowMs() const override { return ms_.load(); }
  int64_t MonotonicNs() const override { return ms_.load() * 1'000'000; }
  void AdvanceMs(int64_t ms) { ms_ += ms; }

 private:
  std::atomic<int64_t> ms_;
};

}  // namespace gsau
