// Writing JSON string literals: the one escaper of the project's hand-written JSON (event
// values, embedding records, reports).
//
// Escapes '"', '\\' and every control character below 0x20 (\n, \r, \t by name, the others as
// \u00XX); other bytes pass through, so valid UTF-8 in gives valid JSON out.
// Thread safety: pure functions.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include "gsau/common/text.h"  // IsValidUtf8: JSON text must be UTF-8

namespace gsau {

// Appends `s` to `out` as a quoted JSON string.
inline void AppendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (const char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(ch)));
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

// `s` as a quoted JSON string.
inline std::string JsonString(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  AppendJsonString(out, s);
  return out;
}

}  // namespace gsau
