// libFuzzer target for the click-event decoder: `make fuzz-decoder`.
// Any input must decode to either a bad event with a message, or a ClickEvent that obeys the
// rules; a crash, a sanitizer report or a broken rule is a finding. An independent JSON parser
// (nlohmann's) is the reference: what the decoder accepts must be a JSON object holding the
// event it decoded, and what it calls not JSON must be rejected by the reference too (but for
// what the decoder refuses on purpose: nesting of 512 or deeper, a leading byte-order mark).
// A value with a number beyond a double's range is not compared (the reference stops there).
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "gsau/ingest/decoder.h"

namespace {

using nlohmann::json;

// The id the decoder should have taken from `v`, or nullopt for one whose text the reference
// does not keep (an integer beyond 64 bits, which it reads as a double). A value of any other
// type gives a text no decoded id equals: the decoder must not have taken it.
std::optional<std::string> ExpectedId(const json& v, const std::string& decoded) {
  if (v.is_string()) return v.get<std::string>();
  // "-0" and "0" are one integer: compare values, not texts (non-negative ones are unsigned).
  const auto same = [&decoded](auto want) {
    decltype(want) got{};
    const auto [end, ec] = std::from_chars(decoded.data(), decoded.data() + decoded.size(), got);
    return ec == std::errc() && end == decoded.data() + decoded.size() && got == want;
  };
  if (v.is_number_unsigned()) return same(v.get<uint64_t>()) ? decoded : std::string("(another integer)");
  if (v.is_number_integer()) return same(v.get<int64_t>()) ? decoded : std::string("(another integer)");
  const bool integer_text =
      !decoded.empty() && std::all_of(decoded.begin() + (decoded[0] == '-' ? 1 : 0), decoded.end(),
                                      [](char c) { return c >= '0' && c <= '9'; });
  if (v.is_number_float() && integer_text) return std::nullopt;
  return std::string("(not an id: ") + v.type_name() + ")";
}

// The reference's view of a value: its deepest nesting and, when it stops, whether at a number
// out of a double's range (valid JSON grammar, which the decoder accepts). It stops there, so
// nothing after such a number is checked: the value's validity is then unknown.
struct Shape : nlohmann::json_sax<json> {
  int depth = 0, max_depth = 0;
  bool error = false, overflow = false;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return Open(); }
  bool key(string_t&) override { return true; }
  bool end_object() override { return --depth >= 0; }
  bool start_array(std::size_t) override { return Open(); }
  bool end_array() override { return --depth >= 0; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error = true;
    overflow = e.id == 406;
    return false;
  }
  bool Open() {
    max_depth = std::max(max_depth, ++depth);
    return true;
  }
};

void CheckAgainstReference(std::string_view value, const gsau::ingest::DecodeResult& r, int64_t kafka_ts) {
  // No JSON text holds a NUL byte; the reference reads one as the end of its input.
  if (value.find('\0') != std::string_view::npos) {
    if (r.ok) __builtin_trap();
    return;
  }
  Shape shape;
  json::sax_parse(value, &shape);
  if (shape.overflow) return;
  const bool valid = !shape.error;
  if (r.ok) {
    if (!valid) __builtin_trap();  // the decoder took what is not JSON
    const json j = json::parse(value);
    if (!j.is_object()) __builtin_trap();
    for (const auto& [field, decoded] : {std::pair{"user_id", &r.event.user_id}, {"item_id", &r.event.item_id}}) {
      if (!j.contains(field)) __builtin_trap();
      if (const auto want = ExpectedId(j.at(field), *decoded); want && *want != *decoded) __builtin_trap();
    }
    // A null ts or event is as good as none (the decoder's rule, decoder_test's first case).
    const auto given = [&j](const char* field) { return j.contains(field) && !j.at(field).is_null(); };
    if (given("ts")) {
      const json& ts = j.at("ts");
      if (!(ts.is_number_integer() || ts.is_number_unsigned()) || ts.get<int64_t>() != r.event.ts_ms) __builtin_trap();
    } else if (r.event.ts_ms != kafka_ts) {
      __builtin_trap();
    }
    if (given("event") && !j.at("event").is_string()) __builtin_trap();
    if (r.event.event_type != (given("event") ? j.at("event").get<std::string>() : std::string("click"))) {
      __builtin_trap();
    }
  } else if (r.reason == gsau::ingest::BadReason::kNotJson && valid) {
    // Valid JSON the decoder called not JSON, but for what it refuses on purpose.
    const bool bom = value.substr(0, 3) == "\xEF\xBB\xBF";
    if (!bom && shape.max_depth < 500) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static gsau::ingest::Decoder decoder;
  const std::string_view value(reinterpret_cast<const char*>(data), size);
  const int64_t kafka_ts = size > 0 && (data[0] & 1) ? 1700000000000 : -1;
  const auto& r = decoder.Decode(value, kafka_ts);
  if (r.ok) {
    if (r.event.user_id.empty() || r.event.item_id.empty() || r.event.user_id.size() > gsau::kMaxIdBytes ||
        r.event.item_id.size() > gsau::kMaxIdBytes || r.event.ts_ms < 0 || r.event.event_type.empty()) {
      __builtin_trap();
    }
  } else if (r.message.empty()) {
    __builtin_trap();
  }
  CheckAgainstReference(value, r, kafka_ts);
  return 0;
}
