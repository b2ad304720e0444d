#include "gsau/common/stop_signal.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace gsau {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<int64_t> g_first_ns{0};  // when the first signal came (monotonic), 0 before it
std::atomic<int> g_first_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int64_t>::is_always_lock_free &&
                  std::atomic<int>::is_always_lock_free,
              "set from a signal handler");

// A second signal sooner than this after the first is the same request delivered twice (Ctrl-C
// reaches the whole process group, and a wrapper script may forward it as SIGTERM too).
constexpr int64_t kSecondSignalAfterNs = 1'000'000'000;

void OnStopSignal(int sig) {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe, as are signal() and raise()
  const int64_t now = int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  int64_t first = 0;
  if (g_first_ns.compare_exchange_strong(first, now)) {
    g_first_signal = sig;
    g_stop = true;
    return;
  }
  if (now - first < kSecondSignalAfterNs) return;
  // The second: the default action, as if no handler had been installed.
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

const std::atomic<bool>& InstallStopSignals() {
  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
  return g_stop;
}

void EndByStopSignal() {
  const int sig = g_first_signal.load();
  if (sig == 0) return;
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

StopAfter::StopAfter(const std::atomic<bool>& stop, double seconds) : stop_(stop) {
  watcher_ = std::thread([this, seconds] {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const auto limit = std::chrono::duration<double>(seconds);
    std::unique_lock<std::mutex> lock(mu_);
    while (!closing_) {
      if (stop_) {
        flag_ = true;
        return;
      }
      const auto ran = Clock::now() - start;
      if (seconds > 0 && ran >= limit) {
        timed_out_ = true;
        flag_ = true;
        return;
      }
      auto wait = std::chrono::duration<double>(std::chrono::milliseconds(50));
      if (seconds > 0) wait = std::min(wait, limit - std::chrono::duration<double>(ran));
      cv_.wait_for(lock, wait);
    }
  });
}

StopAfter::~StopAfter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  watcher_.join();
}

void ExitIfTeardownHangs::Arm(int code, std::chrono::milliseconds limit, std::string what) {
  if (watcher_.joinable()) return;
  watcher_ = std::thread([this, code, limit, what = std::move(what)] {
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, limit, [this] { return done_; })) return;
    // write(2), not stdio: a thread blocked holding stderr's lock must not block the exit.
    const std::string line = "gsau: " + what + " did not finish in " + std::to_string(limit.count()) +
                             " ms: exiting (" + std::to_string(code) + ") without waiting for it\n";
    [[maybe_unused]] const ssize_t written = ::write(STDERR_FILENO, line.data(), line.size());
    std::_Exit(code);
  });
}

ExitIfTeardownHangs::~ExitIfTeardownHangs() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

}  // namespace gsau
