#include "demo_status.h"

#include <algorithm>
#include <cstdio>

namespace gsau::app {

std::string StreamPosition(uint64_t consumed, uint64_t total, double taken_s, double player_rate) {
  const auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  char out[160];
  if (consumed == 0) {
    // The first seconds go to ingest joining its consumer group, which read as a stalled demo.
    std::snprintf(out, sizeof out, "0 of %llu (ingest joining its consumer group)", u(total));
    return out;
  }
  // A backlog taken in at once is not the rate ahead, hence the player's pace as a ceiling; and the
  // clicks of the first poll over a few microseconds read as "ETA 0 s".
  const double taken = taken_s >= 1 ? static_cast<double>(consumed) / taken_s : 0;
  const double rate = taken <= 0 ? player_rate : player_rate > 0 ? std::min(player_rate, taken) : taken;
  const double left = static_cast<double>(total > consumed ? total - consumed : 0);
  char eta[48] = "";
  if (rate > 0) std::snprintf(eta, sizeof eta, ", ETA %.0f s", left / rate);
  std::snprintf(out, sizeof out, "%llu of %llu (%.0f%%%s)", u(consumed), u(total),
                100.0 * static_cast<double>(consumed) / static_cast<double>(std::max<uint64_t>(total, 1)), eta);
  return out;
}

}  // namespace gsau::app
