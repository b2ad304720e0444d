#include "gsau/common/stop_signal.h"

#include <csignal>

namespace gsau {
namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

void OnStopSignal(int sig) {
  if (!g_stop.exchange(true)) return;
  // The second: the default action, as if no handler had been installed (both calls are
  // async-signal-safe).
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

const std::atomic<bool>& InstallStopSignals() {
  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
  return g_stop;
}

}  // namespace gsau
