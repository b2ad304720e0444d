#include "db_options.h"

#include <algorithm>
#include <rocksdb/memtablerep.h>

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>

#include "keys.h"

namespace gsau::state {
namespace {

rocksdb::CompressionType ToRocks(Compression c) {
  switch (c) {
    case Compression::kNone:
      return rocksdb::kNoCompression;
    case Compression::kLZ4:
      return rocksdb::kLZ4Compression;
    case Compression::kZSTD:
      return rocksdb::kZSTD;
  }
  return rocksdb::kLZ4Compression;
}

}  // namespace

DbSetup MakeDbSetup(const StateOptions& options) {
  DbSetup s;
  s.db.create_if_missing = options.create_if_missing;
  s.db.create_missing_column_families = true;
  s.db.max_background_jobs = options.max_background_jobs;
  // Spread page-cache writeback instead of stalling on large dirty ranges at fsync time.
  s.db.bytes_per_sync = 1 << 20;
  s.db.wal_bytes_per_sync = 1 << 20;
  // Without a WAL, a flush of one family must not run ahead of the others, or a crash would
  // leave part of a batch on disk: flush them together.
  s.db.atomic_flush = !options.wal;
  // RocksDB's info log (LOG) otherwise grows for as long as the process runs (stats dumps,
  // every flush and compaction): roll it at 16 MiB and keep 4, 64 MiB at most.
  s.db.max_log_file_size = 16 << 20;
  s.db.keep_log_file_num = 4;
  s.db.max_total_wal_size = 4 * options.write_buffer_bytes * options.max_write_buffer_number;
  // Every table file open from the start (RocksDB's default, relied on): a read-only open of a
  // store that a pipeline writes then keeps reading files its compactions delete.
  s.db.max_open_files = -1;

  // One block cache shared by every family, so the hot families take what they need.
  auto cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  const auto compression = ToRocks(options.compression);

  auto base = [&](bool bloom, size_t write_buffer) {
    rocksdb::ColumnFamilyOptions cf;
    rocksdb::BlockBasedTableOptions t;
    t.block_cache = cache;
    t.block_size = 16 * 1024;
    // Index and filter blocks live in the cache (bounded memory) but stay pinned at L0,
    // where every read looks.
    t.cache_index_and_filter_blocks = true;
    t.pin_l0_filter_and_index_blocks_in_cache = true;
    t.format_version = 5;
    if (bloom) {
      // Point lookups (edge existence on the write path) skip files without the key.
      t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10, false));
      t.whole_key_filtering = true;
    }
    cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
    cf.write_buffer_size = write_buffer;
    cf.max_write_buffer_number = options.max_write_buffer_number;
    cf.level_compaction_dynamic_level_bytes = true;
    cf.target_file_size_base = 64 << 20;
    cf.max_bytes_for_level_base = 4 * write_buffer;
    // L0/L1 are rewritten soon: compress from L2 down only.
    cf.compression_per_level = {rocksdb::kNoCompression, rocksdb::kNoCompression, compression,
                                compression, compression, compression, compression};
    cf.bottommost_compression = compression;
    return cf;
  };
  const size_t big = options.write_buffer_bytes;
  const size_t small = std::max<size_t>(big / 8, 1 << 20);

  s.families.resize(keys::kNumCfs);
  for (int i = 0; i < keys::kNumCfs; ++i) s.families[i].name = keys::kCfNames[i];
  s.families[keys::kDefault].options = base(false, 1 << 20);
  // meta: a few keys rewritten every batch; a small memtable keeps its flushes cheap.
  s.families[keys::kMeta].options = base(false, 1 << 20);
  // Id maps: append-only, only scanned (at Open); the in-memory maps answer lookups.
  s.families[keys::kUserIds].options = base(false, small);
  s.families[keys::kItemIds].options = base(false, small);
  // sessions: one put (and past N clicks one delete) per click, read as one range per user:
  // no filter (a range read cannot use it); deletes are dropped at compaction.
  s.families[keys::kSessions].options = base(false, big);
  // edges: read by key on every batch (is this pair new?) and by user prefix.
  // Most pairs of a batch are new edges: a bloom filter in the memtable too answers "absent"
  // without walking the memtable (2% of the memtable's size).
  s.families[keys::kEdges].options = base(true, big);
  s.families[keys::kEdges].options.memtable_prefix_bloom_size_ratio = 0.02;
  s.families[keys::kEdges].options.memtable_whole_key_filtering = true;
  // changes: a few bytes per touched pair, appended in key order, read by range (mostly the
  // newest entries, still in the memtable), trimmed from the front: a small memtable.
  s.families[keys::kChanges].options = base(false, small);

  // The two hot families are keyed by a 4-byte user id and read only by key or within one
  // user: a hash memtable (buckets by id, a small skip list in each) makes every
  // insert a hash plus a short walk, where one big skip list costs ~20 cache-missing key
  // comparisons (measured: ~2x the events/s at batch 1,000). What it costs: the prefix
  // extractor makes a plain Seek stay within one id (reads set prefix_same_as_start or
  // total_order_seek), a total-order scan first copies the memtable into a sorted list (fine
  // for the rare full scans), and the memtable rep takes one writer at a time (ours). The
  // per-bucket skip lists keep the usual height (12): a heavy user's bucket can hold thousands
  // of keys, and height 4 (RocksDB's default here) makes that a linear walk.
  const size_t buckets = std::max<size_t>(options.write_buffer_bytes / 512, 1024);
  for (const auto c : {keys::kSessions, keys::kEdges}) {
    auto& cf = s.families[c].options;
    cf.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(4));
    cf.memtable_factory.reset(rocksdb::NewHashSkipListRepFactory(buckets, /*skiplist_height=*/12,
                                                                  /*skiplist_branching_factor=*/4));
  }
  s.db.allow_concurrent_memtable_write = false;  // required by the hash memtable

  s.write.sync = options.sync;
  s.write.disableWAL = !options.wal;
  return s;
}

}  // namespace gsau::state
