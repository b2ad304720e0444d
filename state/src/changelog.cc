#include "changelog.h"

#include "keys.h"

namespace gsau::state {

void EncodeChangeEntry(const ChangeEntry& entry, std::string* out) {
  out->clear();
  keys::PutVarint(out, entry.users_before);
  keys::PutVarint(out, entry.items_before);
  keys::PutVarint(out, entry.pairs.size());
  uint64_t prev = 0;
  for (uint64_t p : entry.pairs) {
    keys::PutVarint(out, p - prev);  // ascending: deltas are small within a user
    prev = p;
  }
  // Added after the first format: an entry may end before it (see DecodeChangeEntry).
  keys::PutVarint(out, entry.clicks_before.size());
  uint32_t prev_user = 0;
  for (const auto& [user, clicks] : entry.clicks_before) {
    keys::PutVarint(out, user - prev_user);
    keys::PutVarint(out, clicks);
    prev_user = user;
  }
}

Status DecodeChangeEntry(std::string_view data, ChangeEntry* out) {
  const char* p = data.data();
  const char* end = p + data.size();
  uint64_t users = 0, items = 0, n = 0;
  if (!keys::GetVarint(&p, end, &users) || !keys::GetVarint(&p, end, &items) ||
      !keys::GetVarint(&p, end, &n) || n > data.size()) {
    return Status::Corruption("change entry: bad header");
  }
  if (users > UINT32_MAX || items > UINT32_MAX) return Status::Corruption("change entry: bad id counts");
  out->users_before = static_cast<uint32_t>(users);
  out->items_before = static_cast<uint32_t>(items);
  uint64_t prev = 0;
  for (uint64_t k = 0; k < n; ++k) {
    uint64_t d = 0;
    if (!keys::GetVarint(&p, end, &d)) return Status::Corruption("change entry: truncated");
    prev += d;
    out->pairs.push_back(prev);
  }
  if (p == end) {
    out->has_clicks = false;  // written before entries recorded clicks
    return Status::Ok();
  }
  uint64_t m = 0;
  if (!keys::GetVarint(&p, end, &m) || m > data.size()) return Status::Corruption("change entry: bad click count");
  uint64_t user = 0;
  for (uint64_t k = 0; k < m; ++k) {
    uint64_t d = 0, clicks = 0;
    if (!keys::GetVarint(&p, end, &d) || !keys::GetVarint(&p, end, &clicks)) {
      return Status::Corruption("change entry: truncated clicks");
    }
    user += d;
    if (user > UINT32_MAX) return Status::Corruption("change entry: bad user");
    out->clicks_before.emplace_back(static_cast<uint32_t>(user), clicks);
  }
  if (p != end) return Status::Corruption("change entry: trailing bytes");
  return Status::Ok();
}

}  // namespace gsau::state
