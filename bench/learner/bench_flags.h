// Flag values of the online learner's benchmarks. A bad value calls `usage` with what is wrong
// (the benchmark's own, which prints its usage and exits).
#pragma once

#include <charconv>
#include <cstdlib>
#include <string>

namespace gsau::bench {

using UsageFn = void (*)(const std::string& problem);

// std::stoi would throw past main on "" (a flag given last without its value) or "x".
inline int ParseIntFlag(const std::string& flag, const std::string& text, int lo, UsageFn usage) {
  int v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo) {
    usage(flag + " wants an integer >= " + std::to_string(lo) + ", got '" + text + "'");
  }
  return v;
}

// A number in the open interval (0, 1).
inline double ParseFractionFlag(const std::string& flag, const std::string& text, UsageFn usage) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !(v > 0 && v < 1)) {
    usage(flag + " wants a number in (0, 1), got '" + text + "'");
  }
  return v;
}

}  // namespace gsau::bench
