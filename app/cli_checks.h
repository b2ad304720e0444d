// Checks of numeric flag values whose messages say what is wanted. CLI11's own
// (PositiveNumber, NonNegativeNumber) read "Value 0 not in range 0.000000 to 1797...(309
// digits)" for 0, and call "abc" out of range rather than not a number. CLI11 puts the flag's
// name in front of the message; the command exits kExitUsage.
#pragma once

#include <CLI/CLI.hpp>

#include <cmath>
#include <functional>
#include <string>

namespace gsau::app {

// A number (integers included) for which `ok` holds; otherwise "<want>, not <value>".
inline CLI::Validator NumberCheck(const std::string& want, std::function<bool(double)> ok) {
  return CLI::Validator(
      [want, ok](std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v) || std::isnan(v)) return "'" + text + "' is not a number";
        return ok(v) ? std::string() : want + ", not " + text;
      },
      want);
}

inline CLI::Validator Positive() {
  return NumberCheck("must be > 0", [](double v) { return v > 0 && std::isfinite(v); });
}

inline CLI::Validator NonNegative() {
  return NumberCheck("must be >= 0", [](double v) { return v >= 0 && std::isfinite(v); });
}

// A share of something: [0, 1] ("[0, 1]"), [0, 1) ("[0, 1)", e.g. a dropout rate) or (0, 1].
inline CLI::Validator Share(bool zero, bool one) {
  const std::string want = std::string("must be in ") + (zero ? "[0" : "(0") + ", 1" + (one ? "]" : ")");
  return NumberCheck(want, [zero, one](double v) { return (zero ? v >= 0 : v > 0) && (one ? v <= 1 : v < 1); });
}

}  // namespace gsau::app
