#include "gsau/common/stop_signal.h"

#include <time.h>

#include <csignal>
#include <cstdint>

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

}  // namespace gsau
