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
};

void EncodeChangeEntry(const ChangeEntry& entry, std::string* out);
// Appends the entry's pairs to out->pairs and sets its counts.
Status DecodeChangeEntry(std::string_view data, ChangeEntry* out);

}  // namespace gsau::state
