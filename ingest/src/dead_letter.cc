#include "gsau/ingest/dead_letter.h"

#include <algorithm>

namespace gsau::ingest {
namespace {

// librdkafka's own framing of a v2 record is under 100 bytes and a header's under 10; these
// allowances are far above both, so a fitted record is never refused for a few bytes.
constexpr size_t kRecordAllowance = 1024;
constexpr size_t kHeaderAllowance = 32;

bool IsErrorHeader(const std::string& name) { return name.rfind("gsau.error.", 0) == 0; }

}  // namespace

size_t DeadLetterWireBytes(const DeadLetterRecord& r) {
  size_t n = kRecordAllowance + r.key.size() + r.value.size();
  for (const auto& [k, v] : r.headers) n += kHeaderAllowance + k.size() + v.size();
  return n;
}

bool FitDeadLetter(DeadLetterRecord& r, size_t max_bytes) {
  if (DeadLetterWireBytes(r) <= max_bytes) return false;
  // The three notes first, so that the room they take is counted before anything is cut.
  const std::string value_bytes = std::to_string(r.value.size());
  r.headers.emplace_back("gsau.error.value_bytes", value_bytes);
  size_t over = DeadLetterWireBytes(r) - std::min(max_bytes, DeadLetterWireBytes(r));
  r.value.resize(r.value.size() - std::min(over, r.value.size()));
  if (DeadLetterWireBytes(r) <= max_bytes) return true;

  const auto original = [](const auto& h) { return !IsErrorHeader(h.first); };
  const auto dropped = std::count_if(r.headers.begin(), r.headers.end(), original);
  std::erase_if(r.headers, original);
  r.headers.emplace_back("gsau.error.headers_dropped", std::to_string(dropped));
  if (DeadLetterWireBytes(r) <= max_bytes) return true;

  r.headers.emplace_back("gsau.error.key_bytes", std::to_string(r.key.size()));
  over = DeadLetterWireBytes(r) - std::min(max_bytes, DeadLetterWireBytes(r));
  r.key.resize(r.key.size() - std::min(over, r.key.size()));
  return true;
}

}  // namespace gsau::ingest
