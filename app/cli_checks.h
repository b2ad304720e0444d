// Checks of numeric flag values whose messages say what is wanted. CLI11's own
// (PositiveNumber, NonNegativeNumber) read "Value 0 not in range 0.000000 to 1797...(309
// digits)" for 0, and call "abc" out of range rather than not a number. CLI11 puts the flag's
// name in front of the message; the command exits kExitUsage.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
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

// A number in [lo, hi] ("must be in [lo, hi]"): for sizes whose absurd values would be taken
// and only fail once memory runs out (gsau train --dim 2147483648 ran 75 s and was killed).
inline CLI::Validator Within(double lo, double hi) {
  char want[96];
  std::snprintf(want, sizeof want, "must be in [%.15g, %.15g]", lo, hi);
  return NumberCheck(want, [lo, hi](double v) { return v >= lo && v <= hi; });
}

// An unsigned 64-bit integer written in full: CLI11 saturated a larger one (--seed
// 99999999999999999999 ran as 18446744073709551615, and the report said so).
inline CLI::Validator Uint64() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (!text.empty() && text[0] == '-') return "must be >= 0, not " + text;
        if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
          return "must be a whole number >= 0, not " + text;
        }
        const std::string max = "18446744073709551615";
        const std::string digits = text.substr(std::min(text.find_first_not_of('0'), text.size() - 1));
        if (digits.size() > max.size() || (digits.size() == max.size() && digits > max)) {
          return "must be at most " + max + ", not " + text;
        }
        return std::string();
      },
      "UINT64");
}

// A value that is not empty (an unset shell variable: `--out "$OUT"`).
inline CLI::Validator NonEmpty() {
  return CLI::Validator(
      [](std::string& text) { return text.empty() ? std::string("must not be empty") : std::string(); }, "");
}

}  // namespace gsau::app
