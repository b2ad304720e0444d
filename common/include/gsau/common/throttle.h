// Throttle: lets one kind of repeated message through at most once per interval, counting the
// ones held back, so that a failure repeated every few milliseconds (a broker away) logs a line
// every few seconds with how often it happened.
//
// Thread safety: Due() may be called from any thread (librdkafka's threads report through it).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace gsau {

class Throttle {
 public:
  explicit Throttle(std::chrono::seconds interval) : interval_(interval) {}
  // Counts one occurrence. Returns how many there were since the last line (this one included)
  // when it is time for a line, else 0.
  int64_t Due() {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < interval_) return 0;
    last_ = now;
    const int64_t n = count_;
    count_ = 0;
    return n;
  }

 private:
  std::mutex mu_;
  std::chrono::seconds interval_;
  std::chrono::steady_clock::time_point last_{};
  int64_t count_ = 0;
};

}  // namespace gsau
