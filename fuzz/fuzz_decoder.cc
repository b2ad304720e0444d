// libFuzzer target for the click-event decoder: `make fuzz-decoder`.
// Any input must decode to either a bad event with a message, or a ClickEvent that obeys the
// rules; a crash, a sanitizer report or a broken rule is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gsau/ingest/decoder.h"

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
  return 0;
}
