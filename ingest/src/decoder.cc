#include "gsau/ingest/decoder.h"

#include <simdjson.h>

#include <cstdio>
#include <cstring>
#include <ctime>

namespace gsau::ingest {
namespace {

// "1973-03-03" for 100000000000 (UTC).
std::string UtcDate(int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
  return buf;
}

}  // namespace

std::string_view BadReasonName(BadReason r) {
  switch (r) {
    case BadReason::kEmptyValue: return "empty_value";
    case BadReason::kTooLarge: return "too_large";
    case BadReason::kNotJson: return "not_json";
    case BadReason::kNotObject: return "not_object";
    case BadReason::kMissingField: return "missing_field";
    case BadReason::kWrongType: return "wrong_type";
    case BadReason::kBadId: return "bad_id";
    case BadReason::kBadTime: return "bad_time";
    case BadReason::kDuplicateField: return "duplicate_field";
  }
  return "unknown";
}

class Decoder::Impl {
 public:
  explicit Impl(DecoderOptions options) : options_(options) {
    // The parser needs SIMDJSON_PADDING readable bytes after the document: values are copied
    // into this buffer, which keeps its capacity between calls (no allocation per event).
    buffer_.resize(options_.max_value_bytes + simdjson::SIMDJSON_PADDING);
    // Nesting beyond this is not a click event; capping it bounds the parser's memory.
    if (parser_.allocate(options_.max_value_bytes, 64) != simdjson::SUCCESS) throw std::bad_alloc();
  }

  const DecodeResult& Decode(std::string_view value, int64_t kafka_ts_ms) {
    r_.ok = false;
    r_.event.event_type.clear();
    if (value.empty()) return Bad(BadReason::kEmptyValue, "empty value");
    if (value.size() > options_.max_value_bytes) {
      return Bad(BadReason::kTooLarge, "value of " + std::to_string(value.size()) + " bytes is over the limit of " +
                                           std::to_string(options_.max_value_bytes));
    }
    std::memcpy(buffer_.data(), value.data(), value.size());
    simdjson::dom::element doc;
    if (auto err = parser_.parse(reinterpret_cast<const uint8_t*>(buffer_.data()), value.size(), false).get(doc);
        err != simdjson::SUCCESS) {
      return Bad(BadReason::kNotJson, std::string("not valid JSON: ") + simdjson::error_message(err));
    }
    simdjson::dom::object obj;
    if (doc.get(obj) != simdjson::SUCCESS) return Bad(BadReason::kNotObject, "not a JSON object");

    bool has_ts = false;
    int64_t ts = 0;
    // Each key is told apart once. JSON leaves a repeated key's meaning open (Python keeps the
    // last, simdjson's On-Demand finds the first), so an event naming one of ours twice is bad.
    enum : unsigned { kOther = 0, kUser = 1, kItem = 2, kTs = 4, kEvent = 8 };
    unsigned seen = 0;
    for (auto field : obj) {
      const std::string_view key = field.key;
      const unsigned f = key == "user_id" ? kUser
                         : key == "item_id" ? kItem
                         : key == "ts"      ? kTs
                         : key == "event"   ? kEvent
                                            : kOther;
      if (f == kOther) continue;
      if ((seen & f) != 0) return Bad(BadReason::kDuplicateField, std::string(key) + " appears more than once");
      seen |= f;
      if (f == kUser || f == kItem) {
        if (!ReadId(field.value, key, f == kUser ? r_.event.user_id : r_.event.item_id)) return r_;
      } else if (field.value.is_null()) {
        // Optional fields written as null (Jackson's and json.dumps' way of writing "absent").
        continue;
      } else if (f == kTs) {
        if (!field.value.is_int64()) {
          return Bad(field.value.is_number() ? BadReason::kBadTime : BadReason::kWrongType,
                     "ts must be an integer (ms since the epoch)");
        }
        ts = field.value.get_int64().value_unsafe();
        has_ts = true;
      } else {
        std::string_view ev;
        if (field.value.get(ev) != simdjson::SUCCESS) return Bad(BadReason::kWrongType, "event must be a string");
        r_.event.event_type.assign(ev);
      }
    }
    const bool has_user = (seen & kUser) != 0, has_item = (seen & kItem) != 0;  // read, or returned
    if (!has_user) return Bad(BadReason::kMissingField, "missing user_id");
    if (!has_item) return Bad(BadReason::kMissingField, "missing item_id");
    if (!has_ts) {
      if (kafka_ts_ms <= 0) return Bad(BadReason::kBadTime, "no ts and no message timestamp");
      ts = kafka_ts_ms;
    }
    if (ts < options_.min_ts_ms || ts > options_.max_ts_ms) {
      const std::string what = (has_ts ? "ts " : "the message timestamp ") + std::to_string(ts);
      if (ts < 0) return Bad(BadReason::kBadTime, what + " is negative");
      if (ts < options_.min_ts_ms) {
        return Bad(BadReason::kBadTime, what + " is before " + UtcDate(options_.min_ts_ms) +
                                            " (ingest.min_event_time_s): seconds, not milliseconds?");
      }
      return Bad(BadReason::kBadTime, what + " is after 2100 (not milliseconds?)");
    }
    r_.event.ts_ms = ts;
    if (r_.event.event_type.empty()) r_.event.event_type = "click";
    r_.ok = true;
    return r_;
  }

 private:
  bool ReadId(simdjson::dom::element v, std::string_view key, std::string& out) {
    std::string_view s;
    if (v.get(s) == simdjson::SUCCESS) {
      if (s.empty()) {
        Bad(BadReason::kBadId, std::string(key) + " is empty");
        return false;
      }
      if (s.size() > kMaxIdBytes) {
        Bad(BadReason::kBadId, std::string(key) + " is " + std::to_string(s.size()) + " bytes, over " +
                                   std::to_string(kMaxIdBytes));
        return false;
      }
      out.assign(s);  // the parser has already checked the whole value is valid UTF-8
      return true;
    }
    if (v.is_int64()) {
      out = std::to_string(v.get_int64().value_unsafe());
      return true;
    }
    if (v.is_uint64()) {
      out = std::to_string(v.get_uint64().value_unsafe());
      return true;
    }
    Bad(BadReason::kWrongType, std::string(key) + " must be a string or an integer");
    return false;
  }

  const DecodeResult& Bad(BadReason reason, std::string message) {
    r_.ok = false;
    r_.reason = reason;
    r_.message = std::move(message);
    return r_;
  }

  DecoderOptions options_;
  simdjson::dom::parser parser_;
  std::string buffer_;
  DecodeResult r_;
};

Decoder::Decoder(DecoderOptions options) : impl_(std::make_unique<Impl>(options)) {}
Decoder::~Decoder() = default;

const DecodeResult& Decoder::Decode(std::string_view value, int64_t kafka_ts_ms) {
  return impl_->Decode(value, kafka_ts_ms);
}

}  // namespace gsau::ingest
