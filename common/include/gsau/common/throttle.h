// Throttle: lets one kind of repeated message through at most once per interval, counting the
// ones held back, so that a failure repeated every few milliseconds (a broker away) logs a line
// every few seconds with how often it happened.
//
// Thread safety: Due() may be called from any thread (librdkafka's threads report through it).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

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

// A Throttle per kind of message, so that a rare message (an authentication failure) is not
// counted away inside a frequent one's interval (a broker away). At most `max_kinds` kinds are
// told apart; the rest share one. Thread-safe.
class KeyedThrottle {
 public:
  explicit KeyedThrottle(std::chrono::seconds interval, size_t max_kinds = 256)
      : interval_(interval), max_kinds_(max_kinds) {}
  int64_t Due(const std::string& kind) {
    Throttle* t = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = throttles_.find(kind);
      if (it == throttles_.end()) {
        it = throttles_.try_emplace(throttles_.size() < max_kinds_ ? kind : std::string("\0other", 6), interval_)
                 .first;
      }
      t = &it->second;
    }
    return t->Due();
  }

 private:
  std::mutex mu_;
  std::chrono::seconds interval_;
  size_t max_kinds_;
  std::map<std::string, Throttle> throttles_;  // nodes never move: pointers stay valid
};

}  // namespace gsau
