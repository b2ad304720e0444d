#include "gsau/common/log.h"

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <mutex>

#if defined(GSAU_HAVE_SPDLOG)
#include <spdlog/sinks/stdout_color_sinks.h>
#endif

namespace gsau::log {
namespace {
std::atomic<Level> g_level{Level::kInfo};
}  // namespace

bool ParseLevel(std::string_view s, Level* out) {
  if (s == "debug") *out = Level::kDebug;
  else if (s == "info") *out = Level::kInfo;
  else if (s == "warn") *out = Level::kWarn;
  else if (s == "error") *out = Level::kError;
  else return false;
  return true;
}

void SetLevel(Level level) {
  g_level = level;
#if defined(GSAU_HAVE_SPDLOG)
  switch (level) {
    case Level::kDebug: spdlog::set_level(spdlog::level::debug); break;
    case Level::kInfo: spdlog::set_level(spdlog::level::info); break;
    case Level::kWarn: spdlog::set_level(spdlog::level::warn); break;
    case Level::kError: spdlog::set_level(spdlog::level::err); break;
  }
#endif
}

void Init() {
#if defined(GSAU_HAVE_SPDLOG)
  // Logs go to stderr so that stdout stays free for figures (BENCH lines, reports).
  static std::once_flag once;
  std::call_once(once, [] {
    auto logger = spdlog::default_logger();
    logger->sinks().clear();
    logger->sinks().push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ %v");
  });
#endif
  Level level = Level::kInfo;
  const char* env = std::getenv("GSAU_LOG_LEVEL");
  const bool known = env == nullptr || ParseLevel(env, &level);
  SetLevel(level);
  // A misspelt level would otherwise pass for the default, and the lines asked for never come.
  if (!known) GSAU_LOG_WARN("GSAU_LOG_LEVEL={} is not debug, info, warn or error: logging at info", env);
}

#if !defined(GSAU_HAVE_SPDLOG)
namespace fallback {

bool Enabled(Level level) { return level >= g_level.load(); }

void Write(Level level, const std::string& line) {
  static std::mutex mu;
  static constexpr const char* kNames[] = {"D", "I", "W", "E"};
  std::lock_guard<std::mutex> lock(mu);
  std::cerr << kNames[static_cast<int>(level)] << ' ' << line << '\n';
}

}  // namespace fallback
#endif

}  // namespace gsau::log
