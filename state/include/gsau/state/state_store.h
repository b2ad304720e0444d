// StateStore: the incremental user-item graph and user sessions, in RocksDB, applied exactly
// once together with the consumer offsets.
//
// Id spaces. Users and items get dense internal ids, 0-based, in order of first appearance:
// the first user ever seen is 0, the next new one 1, and so on (likewise for items). An id is
// never reused or changed, and stays the same across Close/Open, crashes and checkpoints. The
// learner may use them directly as embedding rows (add 1 where it reserves row 0 for padding).
//
// The data, as a reader sees it:
//  - session(u): the last N clicks of u as (item, event time), oldest first, every click kept
//    (a user clicking the same item twice has it twice). N = StateOptions::session_length.
//  - edge (u, i): exists once u has clicked i; carries the number of clicks and the latest
//    event time among them. A repeated click updates the edge, never adds a second one.
//  - degree(u) = number of distinct items of u; degree(i) = number of distinct users of i.
//  - offsets: per topic-partition, the next offset to consume. They are written in the same
//    RocksDB WriteBatch as the state changes of the events before them, so after any crash the
//    stored state is exactly the events before the stored offsets: seek the consumer there.
//    With each, when the batch gave one, a fingerprint of the record before it (the log this
//    state read, told from another of the same name).
//  - batch sequence: every ApplyBatch that writes is one batch, numbered 1, 2, 3, ...; 0 means
//    nothing was applied yet. It names a state version for the change feed and checkpoints.
//
// Change feed. Each batch also writes one change entry, keyed by its sequence number, listing
// the distinct (user, item) pairs it touched (users and items follow from them) and the clicks
// each of its users had before it. ChangesSince(s) unions the entries of batches s+1 .. current. Entries older than
// StateOptions::changelog_retention_batches are dropped; a reader further behind gets kNotFound
// and rebuilds from ForEachEdge / ForEachSession, which report the sequence number they saw so
// the reader can follow the feed from there. (A log keyed by sequence, rather than a
// last-changed sequence per key, lets a reader that is a few batches behind read only those
// batches instead of scanning everything.)
//
// Caches. The id maps (both directions), per-node degrees and click counts, the item -> users
// reverse adjacency and the offsets are kept in memory: ~100 bytes per user or item plus its
// external id, and 4 bytes per edge. Everything in memory is derived from the database and
// rebuilt by Open, so a crash loses nothing that a batch committed. Degrees, counts and the
// reverse adjacency are not stored at all: Open rebuilds them with one scan of the edges
// (~1-2 million edges a second), which keeps a click down to two RocksDB writes (its session
// entry and its edge). A batch either commits fully (database, then caches) or changes
// nothing.
//
// Thread safety: one writer thread at a time may call ApplyBatch, Flush, Compact and Close.
// Any number of threads may call the const methods concurrently with the writer and with each
// other; each read sees the state after some whole batch (never part of one). Readers do not
// wait while a batch is written to RocksDB (its WAL write, fsync with sync, a write stall):
// they read the last committed batch through a snapshot, and wait only for the commit to the
// in-memory caches that follows each write. The ForEach* iterations read one such snapshot
// without blocking the writer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gsau/common/event.h"
#include "gsau/common/status.h"
#include "gsau/state/state_options.h"

namespace gsau::state {

using UserId = uint32_t;  // dense, 0-based, see above
using ItemId = uint32_t;  // dense, 0-based, see above

struct SessionEntry {
  ItemId item = 0;
  int64_t ts_ms = 0;  // event time, ms since the Unix epoch

  friend bool operator==(const SessionEntry&, const SessionEntry&) = default;
};

struct Edge {
  UserId user = 0;
  ItemId item = 0;
  uint32_t count = 0;      // clicks of this user on this item
  int64_t last_ts_ms = 0;  // the latest event time among them

  friend bool operator==(const Edge&, const Edge&) = default;
};

struct NodeStats {
  uint32_t degree = 0;  // distinct neighbours
  uint64_t clicks = 0;  // clicks, repeats included

  friend bool operator==(const NodeStats&, const NodeStats&) = default;
};

// Sizes of the state after batch `batch_seq`.
struct StateCounts {
  uint64_t batch_seq = 0;
  uint64_t users = 0;   // ids 0 .. users-1 exist
  uint64_t items = 0;   // ids 0 .. items-1 exist
  uint64_t edges = 0;   // distinct (user, item) pairs
  uint64_t events = 0;  // clicks applied

  friend bool operator==(const StateCounts&, const StateCounts&) = default;
};

// What one applied event became.
struct AppliedEvent {
  UserId user = 0;
  ItemId item = 0;
  int64_t ts_ms = 0;
  bool new_user = false;  // first event of this user
  bool new_item = false;  // first event of this item
  bool new_edge = false;  // first click of this user on this item
  // The click's position in the user's history: 0 for the user's first click ever. After the
  // batch, Session(user) holds positions [clicks - n, clicks) with clicks = UserStats(user).clicks
  // and n its size, so the items before this click are the entries left of position
  // `click_index` (the sequence sample "previous items -> item").
  uint64_t click_index = 0;
};

struct BatchResult {
  uint64_t batch_seq = 0;            // the sequence number the batch was given
  std::vector<AppliedEvent> events;  // one per input event, same order
};

// What changed in batches (from_seq, to_seq]. Vectors are sorted and without duplicates.
struct ChangeSet {
  uint64_t from_seq = 0;  // exclusive
  uint64_t to_seq = 0;    // inclusive
  std::vector<UserId> users;                      // clicked: session, stats changed
  std::vector<ItemId> items;                      // clicked: stats changed
  std::vector<std::pair<UserId, ItemId>> edges;   // created or updated
  // For each user in `users`, the clicks it had at from_seq: its clicks since are the session
  // positions from there on. Empty, with clicks_known false, when a batch of the range was
  // written by a version that did not record them.
  std::vector<std::pair<UserId, uint64_t>> clicks_before;
  bool clicks_known = true;
  // Users with id >= first_new_user and items with id >= first_new_item are new since
  // from_seq (they are also listed above).
  UserId first_new_user = 0;
  ItemId first_new_item = 0;
};

class StateStore {
 public:
  // Opens (or creates, see StateOptions::create_if_missing) the store at options.path and
  // rebuilds the in-memory caches from it. kInvalidArgument for bad options, kCorruption when
  // the stored data breaks an invariant (ids not dense or reused, an edge of an unknown user or
  // item, a malformed record).
  static Result<std::unique_ptr<StateStore>> Open(const StateOptions& options);

  // Copies the checkpoint in `checkpoint_dir` (made by CreateCheckpoint) to options.path,
  // which must not exist or be an empty folder (renamed over: not a mount point or a link), and
  // opens it there. The copy is made in options.path + ".restoring" (the parent folder must be
  // writable; an earlier one there is removed) and renamed into place once on disk, so a
  // restore cut short leaves no store at options.path, only that folder. The checkpoint is left
  // untouched, so it can be restored again (e.g. to roll back together with a learner checkpoint).
  static Result<std::unique_ptr<StateStore>> OpenFromCheckpoint(const std::string& checkpoint_dir,
                                                                const StateOptions& options);
  // Where OpenFromCheckpoint builds the copy for a store at `path`: "<path>.restoring" ("state/"
  // counts as "state").
  static std::string RestoringPath(const std::string& path);

  // An exclusive hold on the store at `path` without opening it, for work on its files that
  // must not run beside an open store (a rollback moving it aside). It takes RocksDB's own lock
  // (path/LOCK): kUnavailable while a writable store is open there; while held, a writable Open
  // of `path` fails. Between processes that is fcntl's lock; within one, RocksDB's set of held
  // names, which knows `path` only as spelled when the store was opened (and a hold taken under
  // another spelling would, when dropped, release the open store's lock): take it where this
  // process has not opened the store. No directory at `path`: a hold on nothing (the pointer is
  // null). Released when destroyed; the lock follows the file, so moving the directory while
  // holding it is safe.
  class Hold {
   public:
    virtual ~Hold() = default;
  };
  static Result<std::unique_ptr<Hold>> HoldExclusive(const std::string& path);

  ~StateStore();  // closes, logging (not returning) an error
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Closes the database (safe to call twice). REQUIRES: no other thread is inside a call. Afterwards the Result readers return kAborted,
  // the plain getters answer as for an empty store, and ApplyBatch fails with kAborted.
  Status Close();

  // Applies `events` in order, and sets the stored next offset of each partition in
  // `offsets` (with its last_record fingerprint), as ONE atomic RocksDB WriteBatch: after a
  // crash either all of it is there or none. Returns the batch's sequence number and the
  // internal ids of the events.
  //  - Events with an empty or oversized (> kMaxIdBytes) id make the whole call fail with
  //    kInvalidArgument before anything is written (ingest validates first: this is a guard).
  //  - An offset lower than the one stored for its partition, a negative one, or a
  //    partition listed twice fails the call with kInvalidArgument: going back would apply
  //    events twice.
  //  - Both empty: nothing is written; the current sequence is returned.
  //  - Events may be out of time order; the session keeps the order given, the edge keeps the
  //    latest time.
  //  - ClickEvent::event_type is not stored: ingest filters the accepted types before this.
  //  - On a RocksDB write error (disk full), nothing of the batch is applied and the error is
  //    returned; RocksDB may then refuse further writes until the store is reopened.
  // REQUIRES: called from one thread at a time (see the thread-safety contract above).
  Result<BatchResult> ApplyBatch(std::span<const ClickEvent> events,
                                 std::span<const PartitionOffset> offsets);

  // Reads. Unknown ids (>= the count) give kNotFound from the Result readers and zeros from
  // the plain getters.

  // The last N clicks of `user`, oldest first.
  Result<std::vector<SessionEntry>> Session(UserId user) const;
  // The items of `user`, ascending by item id.
  Result<std::vector<Edge>> UserNeighbours(UserId user) const;
  // The users of `item`, ascending by user id.
  Result<std::vector<Edge>> ItemNeighbours(ItemId item) const;

  NodeStats UserStats(UserId user) const;
  NodeStats ItemStats(ItemId item) const;
  StateCounts Counts() const;
  uint64_t BatchSeq() const;

  // The stored next offset of every partition ever given to ApplyBatch, sorted, each with the
  // fingerprint of the record before it when the batch that set the offset gave one.
  std::vector<PartitionOffset> Offsets() const;
  std::optional<int64_t> Offset(const TopicPartition& tp) const;
  // The partition's stored offset with its last_record, read together; none when no
  // fingerprint is known for that offset.
  std::optional<PartitionOffset> LastRecord(const TopicPartition& tp) const;

  // External id <-> internal id.
  std::optional<UserId> FindUser(std::string_view external_id) const;
  std::optional<ItemId> FindItem(std::string_view external_id) const;
  Result<std::string> UserExternalId(UserId user) const;
  Result<std::string> ItemExternalId(ItemId item) const;

  // Changes in batches (from_seq, BatchSeq()]. kNotFound when the feed no longer holds
  // batch from_seq + 1 (reader too far behind: rebuild), kInvalidArgument when from_seq is
  // ahead of the store.
  Result<ChangeSet> ChangesSince(uint64_t from_seq) const;
  // The oldest `from_seq` ChangesSince still answers.
  uint64_t OldestChangeSeq() const;

  // Every edge, ascending by (user, item), from one snapshot; returns that snapshot's counts
  // (its batch_seq is where to follow the change feed from). The callback must not call back
  // into the store's writer methods.
  Result<StateCounts> ForEachEdge(const std::function<void(const Edge&)>& fn) const;
  // Every non-empty session, ascending by user, oldest click first, from one snapshot.
  Result<StateCounts> ForEachSession(
      const std::function<void(UserId, std::span<const SessionEntry>)>& fn) const;

  // Writes an openable copy of the store (a RocksDB Checkpoint: hard links where the file
  // system allows) to `dir`, which must not exist. Returns the batch sequence it holds, to be
  // saved with the learner's checkpoint. kUnavailable below StateOptions::min_free_disk_bytes
  // (it flushes the memtables first). Writers wait only while the files are linked and the WAL
  // written since that flush is copied (a few ms; bench-state's checkpoint_pause_ms).
  Result<uint64_t> CreateCheckpoint(const std::string& dir) const;

  // Maintenance: flush memtables to SST files; compact everything (steady-state size).
  Status Flush();
  Status Compact();
  // Bytes of the live SST and WAL files.
  Result<uint64_t> DiskBytes() const;

  const StateOptions& options() const { return options_; }

 private:
  class Impl;
  StateStore(const StateOptions& options, std::unique_ptr<Impl> impl);

  StateOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gsau::state
