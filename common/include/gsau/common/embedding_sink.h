// EmbeddingSink: where refreshed user and item embeddings go (the publisher's interface, in
// plain types, so the learner can publish without seeing Kafka).
//
// Layout: a vector is `dim` float32 values, row-major, the same numbers the model scores with.
// model_version: orders a key's records (the pipeline stamps the wall-clock ms of publishing,
// kept increasing across restarts); never decreases for the sink's lifetime (a publisher rejects
// a batch older than what it already sent).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gsau/common/status.h"

namespace gsau {

enum class EntityKind { kUser, kItem };

inline const char* EntityKindName(EntityKind k) { return k == EntityKind::kUser ? "user" : "item"; }

struct EmbeddingRecord {
  EntityKind kind = EntityKind::kUser;
  std::string id;                // the external id (the Kafka key downstream)
  int64_t model_version = 0;
  int64_t event_time_ms = 0;     // user: its newest click the record reflects; item: when taken
  std::vector<float> embedding;  // empty when `tombstone`
  bool tombstone = false;        // the id left the model: downstream deletes it
  // event_time_ms is a click this process applied (not a user published again at a restart,
  // whose click may be hours old): the sink's freshness measure counts it.
  bool observe_freshness = true;
  // The oldest event the record is the first to reflect, when it coalesces several (0: none
  // older than event_time_ms): freshness measures from it (the record is that late for it).
  int64_t oldest_event_time_ms = 0;
};

// A record a sink sends downstream: a tombstone, or a vector of finite values only. A NaN or an
// infinity would replace the id's last usable vector with one no reader can use (JSON has no
// NaN): a sink skips such a record (and counts it), and its caller does not count it as sent.
inline bool Publishable(const EmbeddingRecord& r) {
  return r.tombstone || std::all_of(r.embedding.begin(), r.embedding.end(), [](float v) { return std::isfinite(v); });
}

// Thread safety: an implementation says its own; callers that publish from several threads
// (the pipeline's learner and user publisher) serialise their calls.
class EmbeddingSink {
 public:
  virtual ~EmbeddingSink() = default;
  // Hands the records over; delivery may be asynchronous. Fails when a record's model
  // version is below one already published or before it in the batch (nothing of the batch is
  // sent then), or when the sink cannot accept records (a KafkaPublisher whose producer failed
  // fatally fails every call, an empty one too). A sink may deliver again, on a later call,
  // records whose delivery failed: call it now and then (an empty span serves) even when
  // nothing is due.
  virtual Status Publish(std::span<const EmbeddingRecord> records) = 0;
  // Waits up to `timeout_ms` until everything handed over is delivered.
  virtual Status Flush(int timeout_ms) = 0;
};

}  // namespace gsau
