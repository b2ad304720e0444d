// Change entries: what one batch touched, stored under its sequence number (keys.h, "changes").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gsau/common/status.h"

namespace gsau::state {

struct ChangeEntry {
  uint32_t users_before = 0;  // user count before the batch
  uint32_t items_before = 0;  // item count before the batch
  // Touched (user << 32 | item) pairs. Encode: ascending and distinct (REQUIRES).
  std::vector<uint64_t> pairs;
  // (user, clicks the user had before the batch) for each user of the batch. Encode: ascending
  // and distinct users (REQUIRES). Entries written before this field existed have none: decoding
  // one clears has_clicks.
  std::vector<std::pair<uint32_t, uint64_t>> clicks_before;
  bool has_clicks = true;
};

void EncodeChangeEntry(const ChangeEntry& entry, std::string* out);
// Appends the entry's pairs and clicks_before to out's and sets its counts; clears
// out->has_clicks for an entry without clicks (it is never set again).
Status DecodeChangeEntry(std::string_view data, ChangeEntry* out);

}  // namespace gsau::state
