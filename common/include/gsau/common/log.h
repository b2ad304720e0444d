// Logging: GSAU_LOG_INFO("applied {} events in {:.1f} ms", n, ms) and friends.
//
// With spdlog (every full build) these forward to spdlog's default logger, fmt syntax.
// A learner-only build (LibTorch and nothing else, e.g. on a GPU machine) has no spdlog:
// there the same calls go through a small fallback that prints to stderr and understands
// "{}" and the precision form "{:.Nf}" (the only forms the learner uses).
//
// Thread safety: every function here may be called from any thread.
// Secrets: never log a configuration value that config/ marks secret (see Config::Redacted()).
#pragma once

#include <string>
#include <string_view>

namespace gsau::log {

enum class Level { kDebug, kInfo, kWarn, kError };

// Sets the threshold; messages below it are dropped. Default kInfo, or GSAU_LOG_LEVEL
// (debug|info|warn|error) read once by Init().
void SetLevel(Level level);
// Reads GSAU_LOG_LEVEL and configures the output format. Safe to call more than once.
void Init();
// Parses "debug", "info", "warn", "error"; returns false when `s` is none of them.
bool ParseLevel(std::string_view s, Level* out);

}  // namespace gsau::log

#if defined(GSAU_HAVE_SPDLOG)
#include <spdlog/spdlog.h>
#define GSAU_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define GSAU_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define GSAU_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define GSAU_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
#else
#include <sstream>
#include <iomanip>

namespace gsau::log::fallback {

bool Enabled(Level level);
void Write(Level level, const std::string& line);

inline void FormatInto(std::ostringstream& os, std::string_view f) { os << f; }

template <typename T, typename... Rest>
void FormatInto(std::ostringstream& os, std::string_view f, const T& v, const Rest&... rest) {
  const auto open = f.find('{');
  const auto close = open == std::string_view::npos ? open : f.find('}', open);
  if (close == std::string_view::npos) {
    os << f;
    return;
  }
  os << f.substr(0, open);
  const std::string_view spec = f.substr(open + 1, close - open - 1);
  const auto flags = os.flags();
  const auto prec = os.precision();
  if (spec.size() >= 4 && spec.substr(0, 2) == ":." && spec.back() == 'f') {
    os << std::fixed << std::setprecision(std::stoi(std::string(spec.substr(2, spec.size() - 3))));
  }
  os << v;
  os.flags(flags);
  os.precision(prec);
  FormatInto(os, f.substr(close + 1), rest...);
}

template <typename... Args>
void Log(Level level, std::string_view f, const Args&... args) {
  if (!Enabled(level)) return;
  std::ostringstream os;
  FormatInto(os, f, args...);
  Write(level, os.str());
}

}  // namespace gsau::log::fallback

#define GSAU_LOG_DEBUG(...) ::gsau::log::fallback::Log(::gsau::log::Level::kDebug, __VA_ARGS__)
#define GSAU_LOG_INFO(...) ::gsau::log::fallback::Log(::gsau::log::Level::kInfo, __VA_ARGS__)
#define GSAU_LOG_WARN(...) ::gsau::log::fallback::Log(::gsau::log::Level::kWarn, __VA_ARGS__)
#define GSAU_LOG_ERROR(...) ::gsau::log::fallback::Log(::gsau::log::Level::kError, __VA_ARGS__)
#endif
