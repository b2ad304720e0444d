// The warnings replay and demo give before they send a dataset: what the configured ingest would
// dead-letter or skip, said up front rather than found in the dead-letter topic.
#include "dataset_checks.h"

#include <algorithm>
#include <map>
#include <string>

#include "gsau/common/event.h"
#include "gsau/common/log.h"
#include "gsau/common/text.h"

namespace gsau::app {

// Times that ingest's decoder dead-letters (bad_time): before ingest.min_event_time_s or after
// 2100. Said before anything is sent, as a dataset whose times are sequence numbers, or in a
// unit the magnitude rule misreads, would otherwise arrive only in the dead-letter topic.
void WarnOfTimesIngestRefuses(const std::vector<data::Interaction>& events, const config::Config& cfg,
                              std::string_view who) {
  const auto decoder = config::ToIngestOptions(cfg).decoder;
  const int64_t floor_ms = decoder.min_ts_ms;
  int64_t early = 0, late = 0;
  const data::Interaction* first = nullptr;
  for (const auto& e : events) {
    if (!e.has_time || (e.ts_ms >= floor_ms && e.ts_ms <= decoder.max_ts_ms)) continue;
    (e.ts_ms < floor_ms ? early : late)++;
    if (first == nullptr) first = &e;
  }
  if (first == nullptr) return;
  GSAU_LOG_WARN(
      "{}: {} of {} events have times ingest dead-letters as bad_time ({} before ingest.min_event_time_s = {} s, "
      "{} after 2100; the first: user {} at {} ms): check --ts-unit, or set ingest.min_event_time_s=0 for times that "
      "are sequence numbers",
      who, early + late, events.size(), early, cfg.ingest.min_event_time_s, late, DisplayText(first->user_id),
      first->ts_ms);
}

// Events ingest would not apply for what they are, not when: ids over kMaxIdBytes (dead-lettered
// as bad_id), ids or types that are not UTF-8 (their JSON is not valid: not_json; a Latin-1 file's
// "Jos\xE9" reads fine offline) and types ingest.accepted_event_types leaves out (skipped, as a
// dataset's views when only purchases are accepted, or a type spelt otherwise than the list:
// "purchase", "transaction").
void WarnOfEventsIngestLeaves(const std::vector<data::Interaction>& events, const config::Config& cfg,
                              std::string_view who) {
  const auto& accepted = cfg.ingest.accepted_event_types;
  int64_t long_ids = 0, not_utf8 = 0, skipped = 0;
  const data::Interaction* first_long = nullptr;
  std::string first_not_utf8;
  std::map<std::string, int64_t> skipped_types;
  for (const auto& e : events) {
    // Each event counted once, for what ingest does first: the JSON, then the ids, then the type.
    if (!IsValidUtf8(e.user_id) || !IsValidUtf8(e.item_id) || !IsValidUtf8(e.event)) {
      if (not_utf8++ == 0) {
        first_not_utf8 = !IsValidUtf8(e.user_id)   ? "user " + DisplayText(e.user_id)
                         : !IsValidUtf8(e.item_id) ? "item " + DisplayText(e.item_id)
                                                   : "event type " + DisplayText(e.event);
      }
      continue;
    }
    if (e.user_id.size() > kMaxIdBytes || e.item_id.size() > kMaxIdBytes) {
      if (long_ids++ == 0) first_long = &e;
      continue;
    }
    const std::string_view type = e.event.empty() ? kDefaultEventType : std::string_view(e.event);
    if (!accepted.empty() && std::find(accepted.begin(), accepted.end(), type) == accepted.end()) {
      ++skipped;
      ++skipped_types[std::string(type)];
    }
  }
  if (first_long != nullptr) {
    GSAU_LOG_WARN("{}: {} of {} events have an id over {} bytes, which ingest dead-letters as bad_id (the first: "
                  "user {} bytes, item {} bytes)",
                  who, long_ids, events.size(), kMaxIdBytes, first_long->user_id.size(), first_long->item_id.size());
  }
  if (not_utf8 > 0) {
    GSAU_LOG_WARN("{}: {} of {} events have an id or type that is not UTF-8, which ingest dead-letters as "
                  "not_json (the first: {}): convert the file to UTF-8 (iconv -f latin1 -t utf-8)",
                  who, not_utf8, events.size(), first_not_utf8);
  }
  if (skipped > 0) {
    std::string types;
    for (const auto& [type, n] : skipped_types) {
      if (types.size() > 200) {
        types += ", ...";
        break;
      }
      types += (types.empty() ? "" : ", ") + DisplayText(type) + " " + std::to_string(n);
    }
    std::string list;
    for (const auto& a : accepted) list += (list.empty() ? "" : ", ") + DisplayText(a);
    GSAU_LOG_WARN("{}: {} of {} events have a type ingest.accepted_event_types [{}] does not accept ({}): ingest "
                  "skips them",
                  who, skipped, events.size(), list, types);
  }
}

}  // namespace gsau::app
