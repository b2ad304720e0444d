// StateOptions: how the state store lays itself out on disk and trades memory for speed.
//
// One struct, built by config/ (only config/ reads files and flags). Every field has a
// default that suits one 2-core machine with a few GiB to spare; the comment on each says
// its unit and what moving it costs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "gsau/common/status.h"

namespace gsau::state {

enum class Compression {
  kNone,  // fastest writes, largest files
  kLZ4,   // cheap to compress and decompress; the usual choice for hot data
  kZSTD,  // ~20-30% smaller than LZ4 at a few times its CPU cost
};

struct StateOptions {
  // Directory of the RocksDB database. Required. Created when missing (see create_if_missing).
  std::string path;

  // Create an empty store when `path` holds none. false: Open fails with kNotFound instead
  // (use it where a missing store means a mistake, e.g. a restore).
  bool create_if_missing = true;

  // Open without writing anything (RocksDB's read-only mode): for inspecting a store, also one
  // a running pipeline holds open (it then shows the state as of the open; keep such a handle
  // short-lived: the writer may delete files it has not read yet). ApplyBatch, Flush, Compact
  // and CreateCheckpoint fail with kInvalidArgument; the store must exist (create_if_missing is
  // ignored).
  bool read_only = false;

  // N: how many of a user's most recent clicks the session keeps (items, with times), oldest
  // dropped first. Unit: clicks. The learner's sequence model reads the last 50, so keep
  // N >= 50 in production; smaller values are accepted (tests). Larger N costs N * 12 bytes
  // per user on disk and a longer scan per session read. May change between opens: the first
  // writable open with a new N removes what lies beyond each user's last N clicks (lowering N
  // drops those clicks for good; raising it keeps nothing older than what is stored), and reads
  // always return at most the current N. A read_only open reads at the N the store was last
  // trimmed to (its writer's) instead, so that a reader shows the sessions the writer keeps.
  uint32_t session_length = 50;

  // Shared LRU block cache for every column family, bytes. Hot SST blocks (recent edges and
  // sessions) are read from here instead of the page cache. Bigger: fewer disk reads when the
  // edge set outgrows the memtables; the memory is taken whether used or not only as blocks
  // are read.
  size_t block_cache_bytes = size_t{256} << 20;

  // Memtable size of each of the large column families (edges, sessions; the small ones get
  // 1/8 of it, at least 1 MiB), bytes. Bigger: fewer, larger flushes and less write amplification; costs up to
  // max_write_buffer_number * this per family in RAM and a longer WAL replay after a crash.
  size_t write_buffer_bytes = size_t{64} << 20;

  // Memtables per large column family (one active, the rest being flushed). 2 lets writes go
  // on while one flushes; more only helps when flushes fall behind.
  int max_write_buffer_number = 2;

  // Compression of SST files below the first two levels (level 0 and the base level stay
  // uncompressed: they are rewritten soon, and compressing them only burns CPU on the write
  // path; with dynamic level sizes RocksDB applies the second entry to the base level, and the
  // bottommost level is always compressed).
  Compression compression = Compression::kLZ4;

  // Write-ahead log. true (the default, and what exactly-once across crashes relies on
  // without extra flushes): every batch is in the WAL before ApplyBatch returns, so a killed
  // process loses nothing it was told was applied. false: writes skip the WAL (faster); a
  // crash then loses the batches since the last flush, but never half of one (flushes are
  // atomic across column families), and since the offsets are lost with them, the consumer
  // re-reads exactly those events. Use false only where re-reading is cheap.
  bool wal = true;

  // fsync the WAL on every batch. false (default): a batch survives a process crash (it is
  // in the OS page cache) but the last few may be lost on power loss or a kernel crash; the
  // state stays a whole number of batches either way, and the stored offsets match it, so
  // exactly-once still holds (the lost events are consumed again). true: also survives power
  // loss, at the cost of one fsync per batch (~0.1-10 ms depending on the disk).
  bool sync = false;

  // How many of the most recent batches the change feed (ChangesSince) can answer for. Unit:
  // batches. Older change entries are deleted every 1,024 batches. A reader that falls
  // further behind gets kNotFound and must rebuild from ForEachEdge / ForEachSession. Costs
  // ~3-5 bytes per distinct (user, item) pair of each retained batch.
  uint64_t changelog_retention_batches = 100'000;

  // Free space the disk holding `path` must keep, bytes: ApplyBatch writes nothing and fails
  // with kUnavailable (the message says how much is free) while less is free, so a filling
  // disk stops ingest before RocksDB itself runs out (flushes and compactions need room too,
  // up to a few write buffers). The caller holds the batch and retries; it goes through as
  // soon as space returns. (A write that fails anyway leaves RocksDB read-only until it
  // resumes; the RocksDB 7.8 of Debian asserts on that path, so this guard is what keeps the
  // process up.) A writable Open fails the same way (kUnavailable) while less than this floor,
  // or 64 MiB if lower, is free: RocksDB writes as it opens and aborts on a full disk.
  // 0 disables the checks.
  uint64_t min_free_disk_bytes = uint64_t{256} << 20;

  // RocksDB background threads for flushes and compactions. 2 suits a 2-core machine.
  int max_background_jobs = 2;

  // Checks the options; kInvalidArgument names the first bad field.
  Status Validate() const;
};

}  // namespace gsau::state
