// The hand-off from ingest to the learner: batches of events that the state store applied.
//
// Ingest pushes each applied batch, one without events too (records skipped or dead-lettered:
// the state's batch sequence moved); the learner pops them. The queue is bounded by a count of
// events: when it has no room, ingest pauses its partitions (backpressure) instead of
// buffering without bound, and resumes once the learner has drained it to half the bound.
// Batches without events do not count there: one pushed behind another such batch replaces it
// (only the newest sequence number says anything), so a stream of bad records cannot grow the
// queue while the learner is held up.
//
// Thread safety: AppliedQueue is safe for one or more producers and consumers.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

#include "gsau/state/state_store.h"

namespace gsau::ingest {

struct AppliedBatch {
  uint64_t batch_seq = 0;                    // the state's sequence number for this batch
  std::vector<state::AppliedEvent> events;   // in apply order
  int64_t applied_at_ms = 0;                 // wall time of the commit
};

// Where ingest puts what it applied. Thread safety: ingest calls from its one thread while
// others drain what it put; an implementation must allow that (AppliedQueue does).
class AppliedSink {
 public:
  virtual ~AppliedSink() = default;
  // True when `events` more events fit.
  virtual bool HasRoom(size_t events) const = 0;
  // The bound, in events. Ingest, once paused for want of room, resumes when the queue has
  // drained to half of it (or to one batch below it, for a batch larger than that).
  virtual size_t capacity() const = 0;
  // Takes the batch. May exceed the bound by one batch (the check comes before consuming).
  virtual void Push(AppliedBatch batch) = 0;
};

class AppliedQueue final : public AppliedSink {
 public:
  explicit AppliedQueue(size_t capacity_events) : capacity_(capacity_events) {}

  bool HasRoom(size_t events) const override {
    std::lock_guard<std::mutex> lock(mu_);
    return queued_events_ + events <= capacity_;
  }
  size_t capacity() const override { return capacity_; }

  void Push(AppliedBatch batch) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (batch.events.empty() && !batches_.empty() && batches_.back().events.empty()) {
        batches_.back().batch_seq = std::max(batches_.back().batch_seq, batch.batch_seq);
        batches_.back().applied_at_ms = batch.applied_at_ms;
      } else {
        queued_events_ += batch.events.size();
        batches_.push_back(std::move(batch));
      }
    }
    cv_.notify_one();
  }

  // Waits up to `timeout_ms` for a batch; nullopt on timeout.
  std::optional<AppliedBatch> Pop(int timeout_ms) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return !batches_.empty(); })) {
      return std::nullopt;
    }
    AppliedBatch b = std::move(batches_.front());
    batches_.pop_front();
    queued_events_ -= b.events.size();
    return b;
  }

  size_t queued_events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return queued_events_;
  }

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<AppliedBatch> batches_;
  size_t queued_events_ = 0;
};

}  // namespace gsau::ingest
