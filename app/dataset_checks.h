// Checks of a dataset against the configured ingest, before replay or demo sends it: events
// ingest would dead-letter or skip are counted and said in a warning (nothing is refused).
// Thread safety: free functions, no shared state.
#pragma once

#include <string_view>
#include <vector>

#include "gsau/config/config.h"
#include "gsau/data/interactions.h"

namespace gsau::app {

// Times ingest's decoder dead-letters (bad_time): before ingest.min_event_time_s or after 2100.
// Events without a time (user lines without times) are not counted.
// `who` begins each warning (the command: replay, demo).
void WarnOfTimesIngestRefuses(const std::vector<data::Interaction>& events, const config::Config& cfg,
                              std::string_view who);

// Ids or types that are not UTF-8 (not_json), ids over kMaxIdBytes (bad_id), and types
// ingest.accepted_event_types leaves out (skipped); each event counted once, for the first.
void WarnOfEventsIngestLeaves(const std::vector<data::Interaction>& events, const config::Config& cfg,
                              std::string_view who);

}  // namespace gsau::app
