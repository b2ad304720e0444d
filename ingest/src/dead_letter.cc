#include "gsau/ingest/dead_letter.h"

#include <algorithm>

namespace gsau::ingest {
namespace {

// librdkafka counts a v2 record's framing (under 100 bytes) and each header's (a few varints)
// against message.max.bytes; these allowances are above both, so a fitted record is not
// refused for a few bytes, and small enough for librdkafka's smallest message.max.bytes (1000).
constexpr size_t kRecordAllowance = 256;
constexpr size_t kHeaderAllowance = 16;

size_t HeaderBytes(const kafka::Headers& headers) {
  size_t n = 0;
  for (const auto& [k, v] : headers) n += kHeaderAllowance + k.size() + (v ? v->size() : 0);
  return n;
}

bool Noted(const DeadLetterRecord& r, const std::string& name) {
  return std::any_of(r.error.begin(), r.error.end(), [&](const auto& h) { return h.first == name; });
}

// Adds the note `name` = `value` unless an earlier fitting made it (it holds the original size).
void Note(DeadLetterRecord& r, const std::string& name, size_t value) {
  if (!Noted(r, name)) r.error.emplace_back(name, std::to_string(value));
}

// Shortens `s` by up to `over` bytes; returns what is still over.
size_t CutTail(std::string& s, size_t over) {
  const size_t cut = std::min(over, s.size());
  s.resize(s.size() - cut);
  return over - cut;
}

}  // namespace

kafka::Headers DeadLetterRecord::AllHeaders() const {
  kafka::Headers all = headers;
  all.insert(all.end(), error.begin(), error.end());
  return all;
}

size_t DeadLetterWireBytes(const DeadLetterRecord& r) {
  return kRecordAllowance + r.key.size() + r.value.size() + HeaderBytes(r.headers) + HeaderBytes(r.error);
}

bool FitDeadLetter(DeadLetterRecord& r, size_t max_bytes) {
  if (DeadLetterWireBytes(r) <= max_bytes) return false;
  // Each note is added before measuring, so that the room it takes is counted.
  const bool value_cut_before = Noted(r, "gsau.error.value_bytes");
  const size_t value_bytes = r.value.size();
  Note(r, "gsau.error.value_bytes", value_bytes);
  auto over = [&] { return DeadLetterWireBytes(r) - std::min(max_bytes, DeadLetterWireBytes(r)); };
  if (over() <= r.value.size()) {
    CutTail(r.value, over());
    return true;
  }
  if (!r.headers.empty()) {
    Note(r, "gsau.error.headers_dropped", r.headers.size());
    r.headers.clear();
  }
  if (CutTail(r.value, over()) == 0) {
    // The headers alone made room: a note of a value cut on a whole one misled an operator
    // looking for the letters whose value was cut.
    if (!value_cut_before && r.value.size() == value_bytes) {
      r.error.erase(std::find_if(r.error.begin(), r.error.end(),
                                 [](const auto& h) { return h.first == "gsau.error.value_bytes"; }));
    }
    return true;
  }
  Note(r, "gsau.error.key_bytes", r.key.size());
  CutTail(r.key, over());
  return true;
}

}  // namespace gsau::ingest
