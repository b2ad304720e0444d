#include "gsau/ingest/decoder.h"

#include <simdjson.h>

#include <algorithm>
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
    size_ = value.size();
    simdjson::dom::element doc;
    if (auto err = parser_.parse(reinterpret_cast<const uint8_t*>(buffer_.data()), value.size(), false).get(doc);
        err != simdjson::SUCCESS) {
      // Valid JSON the tree cannot hold: a number beyond 64 bits or a double's range, nesting
      // deeper than 64. Only our fields matter (unknown ones are ignored): read them alone.
      if (err == simdjson::NUMBER_ERROR || err == simdjson::DEPTH_ERROR) {
        const DecodeResult& r = DecodeFieldsOnly(value.size(), kafka_ts_ms);
        // The tree parses the whole value before it looks at a field, so a value that is not
        // JSON further on is not_json there, whatever its fields; the field-by-field read stops
        // at the first bad field of ours.
        if (r.ok || r.reason == BadReason::kNotJson) return r;
        if (auto check = CheckJson(value.size()); check != simdjson::SUCCESS) return NotJson(check);
        return r;
      }
      return NotJson(err);
    }
    simdjson::dom::object obj;
    if (doc.get(obj) != simdjson::SUCCESS) return Bad(BadReason::kNotObject, "not a JSON object");

    Fields f;
    for (auto field : obj) {
      const unsigned which = f.Which(field.key);
      if (which == Fields::kOther) continue;
      if (!f.See(which)) return Duplicate(field.key);
      if (which == Fields::kUser || which == Fields::kItem) {
        if (!ReadId(field.value, field.key, which == Fields::kUser ? r_.event.user_id : r_.event.item_id)) return r_;
      } else if (field.value.is_null()) {
        // Optional fields written as null (Jackson's and json.dumps' way of writing "absent").
        continue;
      } else if (which == Fields::kTs) {
        if (!field.value.is_int64()) return BadTs(field.value.is_number());
        f.ts = field.value.get_int64().value_unsafe();
        f.has_ts = true;
      } else {
        std::string_view ev;
        if (field.value.get(ev) != simdjson::SUCCESS) return Bad(BadReason::kWrongType, "event must be a string");
        if (ev.empty()) return EmptyEvent();
        r_.event.event_type.assign(ev);
      }
    }
    return Finish(f, kafka_ts_ms);
  }

 private:
  // Our fields as the object's fields go by. Each key is told apart once. JSON leaves a
  // repeated key's meaning open (Python keeps the last, simdjson's On-Demand finds the first),
  // so an event naming one of ours twice is bad.
  struct Fields {
    enum : unsigned { kOther = 0, kUser = 1, kItem = 2, kTs = 4, kEvent = 8 };
    unsigned seen = 0;
    bool has_ts = false;
    int64_t ts = 0;

    static unsigned Which(std::string_view key) {
      return key == "user_id" ? kUser : key == "item_id" ? kItem : key == "ts" ? kTs : key == "event" ? kEvent : kOther;
    }
    bool See(unsigned which) {  // false: seen before
      if ((seen & which) != 0) return false;
      seen |= which;
      return true;
    }
  };

  // The fields through simdjson's On-Demand parser, which holds no tree: numbers are checked
  // against JSON's grammar, not converted, unless they are ours. On-Demand skips a value left
  // unread by counting brackets alone, so every other value is walked (Walk): the tree parser had
  // stopped at its first error, and what came after it is unchecked. The value is in buffer_.
  const DecodeResult& DecodeFieldsOnly(size_t size, int64_t kafka_ts_ms) {
    namespace od = simdjson::ondemand;
    od::document doc;
    if (auto err = lazy_parser_.iterate(buffer_.data(), size, buffer_.size()).get(doc); err) return NotJson(err);
    od::object obj;
    if (auto err = doc.get_object().get(obj); err) {
      return err == simdjson::INCORRECT_TYPE ? Bad(BadReason::kNotObject, "not a JSON object") : NotJson(err);
    }
    Fields f;
    for (auto maybe_field : obj) {
      if (auto err = maybe_field.error(); err) return NotJson(err);
      od::field field = std::move(maybe_field).value_unsafe();
      std::string_view key;
      if (auto err = field.unescaped_key().get(key); err) return NotJson(err);
      const unsigned which = f.Which(key);
      if (which == Fields::kOther) {
        if (auto err = Walk(field.value(), 1); err) return NotJson(err);
        continue;
      }
      if (!f.See(which)) return Duplicate(key);
      od::value v = field.value();
      od::json_type type;
      if (auto err = v.type().get(type); err) return NotJson(err);
      // The type comes from the first character alone: the token must be one in full.
      if (type == od::json_type::number && !IsJsonNumber(Trimmed(v.raw_json_token()))) {
        return NotJson(simdjson::NUMBER_ERROR);
      }
      if (bool null = false; type == od::json_type::null && (v.is_null().get(null) || !null)) {
        return NotJson(simdjson::N_ATOM_ERROR);
      }
      if (which == Fields::kUser || which == Fields::kItem) {
        std::string& out = which == Fields::kUser ? r_.event.user_id : r_.event.item_id;
        std::string_view raw = type == od::json_type::number ? Trimmed(v.raw_json_token()) : std::string_view();
        if (raw == "-0") raw = "0";  // as the tree path writes it (the integer's decimal text)
        if (type == od::json_type::string) {
          std::string_view id;
          if (auto err = v.get_string().get(id); err) return NotJson(err);
          if (!TakeId(id, key, out)) return r_;
        } else if (type == od::json_type::number && IsJsonInteger(raw)) {
          // Its decimal text, as SYSTEM.md has integer ids (the grammar: no leading zeros).
          if (!TakeId(raw, key, out)) return r_;
        } else {
          return Bad(BadReason::kWrongType, std::string(key) + " must be a string or an integer");
        }
      } else if (type == od::json_type::null) {
        continue;
      } else if (which == Fields::kTs) {
        if (type != od::json_type::number || v.get_int64().get(f.ts) != simdjson::SUCCESS) {
          return BadTs(type == od::json_type::number);
        }
        f.has_ts = true;
      } else {
        std::string_view ev;
        if (type != od::json_type::string) return Bad(BadReason::kWrongType, "event must be a string");
        if (auto err = v.get_string().get(ev); err) return NotJson(err);
        if (ev.empty()) return EmptyEvent();
        r_.event.event_type.assign(ev);
      }
    }
    // After the object, the end of the value (the location is then out of bounds).
    if (const char* at = nullptr; doc.current_location().get(at) == simdjson::SUCCESS) {
      return Bad(BadReason::kNotJson, "not valid JSON: content after the object");
    }
    return Finish(f, kafka_ts_ms);
  }

  // Whether the value in buffer_ is JSON throughout (numbers against the grammar, not their
  // range). A value that is no container is JSON only as one number (the tree parser failed it
  // on a number's range: a lone string or atom it takes, or fails otherwise).
  simdjson::error_code CheckJson(size_t size) {
    namespace od = simdjson::ondemand;
    od::document doc;
    if (auto err = lazy_parser_.iterate(buffer_.data(), size, buffer_.size()).get(doc); err) return err;
    od::json_type type;
    if (auto err = doc.type().get(type); err) return err;
    if (type != od::json_type::object && type != od::json_type::array) {
      return IsJsonNumber(Trimmed(std::string_view(buffer_.data(), size))) ? simdjson::SUCCESS
                                                                            : simdjson::TRAILING_CONTENT;
    }
    od::value v;
    if (auto err = doc.get_value().get(v); err) return err;
    if (auto err = Walk(v, 0); err) return err;
    if (const char* at = nullptr; doc.current_location().get(at) == simdjson::SUCCESS) {
      return simdjson::TRAILING_CONTENT;
    }
    return simdjson::SUCCESS;
  }

  // Reads a value through, checking it is JSON: keys and strings unescaped, numbers against the
  // grammar (not converted), atoms in full, containers element by element. `depth`: the value's
  // nesting in the event (the event object is 0, a field's value 1). A container at depth
  // kMaxDepth or more is refused (a field's value may nest 511 deep): the recursion would
  // overflow the stack (a 1 MiB value holds 500,000 levels), and simdjson checks its own limit
  // (1024) by assertion only.
  static constexpr int kMaxDepth = 512;
  static simdjson::error_code Walk(simdjson::ondemand::value v, int depth) {
    namespace od = simdjson::ondemand;
    od::json_type type;
    if (auto err = v.type().get(type); err) return err;
    if ((type == od::json_type::object || type == od::json_type::array) && depth >= kMaxDepth) {
      return simdjson::DEPTH_ERROR;
    }
    switch (type) {
      case od::json_type::object: {
        od::object o;
        if (auto err = v.get_object().get(o); err) return err;
        for (auto maybe_field : o) {
          if (auto err = maybe_field.error(); err) return err;
          od::field field = std::move(maybe_field).value_unsafe();
          std::string_view key;
          if (auto err = field.unescaped_key().get(key); err) return err;
          if (auto err = Walk(field.value(), depth + 1); err) return err;
        }
        return simdjson::SUCCESS;
      }
      case od::json_type::array: {
        od::array a;
        if (auto err = v.get_array().get(a); err) return err;
        for (auto maybe_element : a) {
          if (auto err = maybe_element.error(); err) return err;
          if (auto err = Walk(std::move(maybe_element).value_unsafe(), depth + 1); err) return err;
        }
        return simdjson::SUCCESS;
      }
      case od::json_type::string: {
        std::string_view s;
        return v.get_string().get(s);
      }
      case od::json_type::number:
        return IsJsonNumber(Trimmed(v.raw_json_token())) ? simdjson::SUCCESS : simdjson::NUMBER_ERROR;
      case od::json_type::boolean: {
        // (get_bool's own error on a broken true/false says "not the requested type")
        bool b = false;
        if (v.get_bool().get(b) == simdjson::SUCCESS) return simdjson::SUCCESS;
        return Trimmed(v.raw_json_token()).starts_with('t') ? simdjson::T_ATOM_ERROR : simdjson::F_ATOM_ERROR;
      }
      case od::json_type::null: {
        bool null = false;
        if (auto err = v.is_null().get(null); err) return err;
        return null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
      }
    }
    return simdjson::INCORRECT_TYPE;
  }

  // JSON's grammar: -?(0|[1-9][0-9]*)
  static bool IsJsonInteger(std::string_view s) {
    if (!s.empty() && s.front() == '-') s.remove_prefix(1);
    if (s.empty() || (s.front() == '0' && s.size() > 1)) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  }

  // JSON's grammar: an integer, then an optional fraction (.[0-9]+) and exponent ([eE][+-]?[0-9]+).
  static bool IsJsonNumber(std::string_view s) {
    const auto digits = [&s]() {
      size_t n = 0;
      while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
      const std::string_view taken = s.substr(0, n);
      s.remove_prefix(n);
      return taken;
    };
    if (!s.empty() && s.front() == '-') s.remove_prefix(1);
    const std::string_view whole = digits();
    if (!IsJsonInteger(whole)) return false;
    if (!s.empty() && s.front() == '.') {
      s.remove_prefix(1);
      if (digits().empty()) return false;
    }
    if (!s.empty() && (s.front() == 'e' || s.front() == 'E')) {
      s.remove_prefix(1);
      if (!s.empty() && (s.front() == '+' || s.front() == '-')) s.remove_prefix(1);
      if (digits().empty()) return false;
    }
    return s.empty();
  }

  // JSON's whitespace off both ends (a raw token has none in front; a whole value may).
  static std::string_view Trimmed(std::string_view raw) {
    const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    while (!raw.empty() && space(raw.back())) raw.remove_suffix(1);
    while (!raw.empty() && space(raw.front())) raw.remove_prefix(1);
    return raw;
  }

  const DecodeResult& Finish(const Fields& f, int64_t kafka_ts_ms) {
    if ((f.seen & Fields::kUser) == 0) return Bad(BadReason::kMissingField, "missing user_id");
    if ((f.seen & Fields::kItem) == 0) return Bad(BadReason::kMissingField, "missing item_id");
    int64_t ts = f.ts;
    if (!f.has_ts) {
      if (kafka_ts_ms < 0) return Bad(BadReason::kBadTime, "no ts and no message timestamp");
      ts = kafka_ts_ms;
    }
    if (ts < options_.min_ts_ms || ts > options_.max_ts_ms) {
      const std::string what = (f.has_ts ? "ts " : "the message timestamp ") + std::to_string(ts);
      if (ts < 0) return Bad(BadReason::kBadTime, what + " is negative");
      if (ts < options_.min_ts_ms) {
        // A message timestamp of 0: a producer that set the record's time to the epoch, not seconds.
        const char* why = !f.has_ts && ts == 0 ? ": the producer set no real time?" : ": seconds, not milliseconds?";
        return Bad(BadReason::kBadTime,
                   what + " is before " + UtcDate(options_.min_ts_ms) + " (ingest.min_event_time_s)" + why);
      }
      return Bad(BadReason::kBadTime, what + " is after 2100 (not milliseconds?)");
    }
    if (options_.max_ahead_ms > 0 && now_ms >= 0 && ts - now_ms > options_.max_ahead_ms) {
      return Bad(BadReason::kBadTime, (f.has_ts ? "ts " : "the message timestamp ") + std::to_string(ts) + " is " +
                                          std::to_string((ts - now_ms) / 1000) +
                                          " s ahead of this machine's clock, over ingest.max_event_time_ahead_s (" +
                                          std::to_string(options_.max_ahead_ms / 1000) +
                                          "): the producer's clock ahead?");
    }
    r_.event.ts_ms = ts;
    if (r_.event.event_type.empty()) r_.event.event_type = kDefaultEventType;
    r_.ok = true;
    return r_;
  }

  // "event": "" names no type: read as "click" (as an absent one is), a producer's bug would pass
  // ingest.accepted_event_types unseen.
  const DecodeResult& EmptyEvent() { return Bad(BadReason::kWrongType, "event is an empty string"); }

  const DecodeResult& NotJson(simdjson::error_code err) {
    // A byte order mark in front (a Windows tool's UTF-8) fails as a structure error far from it.
    if (std::string_view(buffer_.data(), size_).starts_with("\xEF\xBB\xBF")) {
      return Bad(BadReason::kNotJson, "not valid JSON: the value starts with a UTF-8 byte order mark (EF BB BF), "
                                      "which JSON sent between systems must not (RFC 8259, 8.1)");
    }
    return Bad(BadReason::kNotJson, std::string("not valid JSON: ") + simdjson::error_message(err));
  }

  const DecodeResult& Duplicate(std::string_view key) {
    return Bad(BadReason::kDuplicateField, std::string(key) + " appears more than once");
  }

  // ts is there and not null, but not an int64: a number (a fraction, beyond 64 bits) or not.
  const DecodeResult& BadTs(bool number) {
    return Bad(number ? BadReason::kBadTime : BadReason::kWrongType, "ts must be an integer (ms since the epoch)");
  }

  bool TakeId(std::string_view s, std::string_view key, std::string& out) {
    if (s.empty()) {
      Bad(BadReason::kBadId, std::string(key) + " is empty");
      return false;
    }
    if (s.size() > kMaxIdBytes) {
      Bad(BadReason::kBadId,
          std::string(key) + " is " + std::to_string(s.size()) + " bytes, over " + std::to_string(kMaxIdBytes));
      return false;
    }
    out.assign(s);  // the parser has already checked the whole value is valid UTF-8
    return true;
  }

  bool ReadId(simdjson::dom::element v, std::string_view key, std::string& out) {
    if (std::string_view s; v.get(s) == simdjson::SUCCESS) return TakeId(s, key, out);
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
  simdjson::ondemand::parser lazy_parser_;  // DecodeFieldsOnly's
  std::string buffer_;
  size_t size_ = 0;  // of the value in buffer_ (past it: padding, and earlier values' bytes)
  DecodeResult r_;

 public:
  int64_t now_ms = -1;  // the clock of the current Decode (Decoder::Decode's now_ms)
};

Decoder::Decoder(DecoderOptions options) : impl_(std::make_unique<Impl>(options)) {}
Decoder::~Decoder() = default;

const DecodeResult& Decoder::Decode(std::string_view value, int64_t kafka_ts_ms, int64_t now_ms) {
  impl_->now_ms = now_ms;
  return impl_->Decode(value, kafka_ts_ms);
}

}  // namespace gsau::ingest
