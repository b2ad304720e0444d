// bench_state: how fast the state store applies a real click stream, against a bare RocksDB
// WriteBatch loop that writes the very same keys and values (the ceiling: no reads, no id
// maps, no bookkeeping).
//
// Replays a dataset (default ../shared/datasets/amazon-beauty/interactions.tsv.gz, relative
// to the repository root) in time order, one partition, for each batch size; then prints the
// store's size on disk per event (after a flush and a full compaction: steady state, change
// feed included); then what checkpoints cost the writer and what the writer costs a reader of
// sessions. Last line:
//   BENCH state events_per_s=<n> ratio_vs_bare=<r> disk_bytes_per_event=<b> headline_batch=<batch>
//         checkpoints=<n> checkpoint_pause_ms=<longest apply while checkpoints are taken every second>
//         read_p99_us=<Session() latency beside the writer> read_max_us=<its longest>
//         read_p99_us_sync=<the same with state.sync on> read_max_us_sync=<...>
// The first three are those of batch 1000 when --batches has it, else of the largest batch
// given (headline_batch). checkpoint_pause_ms is left out when no checkpoint was taken (a run
// shorter than a second): its longest apply would not be a checkpoint's pause.
//
// White-box: it uses the store's private key encoding and RocksDB options (state/src) so that
// the bare loop writes byte for byte what the store writes, with the same options; it checks
// that the two databases end up with the same contents.
//
// Wall-clock rates depend on what else the machine runs; the rates per writer-CPU second (CPU
// time of the applying thread, the WAL write's system time included) are the steadier
// comparison on a shared machine. Store and bare runs alternate in order; medians are shown.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "changelog.h"
#include "db_options.h"
#include "gsau/common/log.h"
#include "gsau/data/interactions.h"
#include "gsau/state/state_store.h"
#include "keys.h"

namespace gsau::state {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string data = "../shared/datasets/amazon-beauty/interactions.tsv.gz";
  std::string dir;  // scratch databases; default a fresh one under $TMPDIR
  std::vector<size_t> batches = {1, 100, 1000, 10000};
  int repeat = 5;  // runs per batch size >= 100 (median reported); batch 1 runs once
  int64_t limit = 0;
  uint32_t session_length = 50;
  size_t write_buffer_mb = 0;  // 0: StateOptions' default
  int checkpoint_passes = 5;   // passes over the data for the checkpoint figures
  int read_passes = 5;         // and for the read figures (each pass adds the dataset's users again)
};

size_t g_write_buffer_bytes = 0;

[[noreturn]] void Usage(const char* argv0, const std::string& problem) {
  std::fprintf(stderr,
               "bench_state: %s\n"
               "usage: %s [--data PATH] [--dir DIR] [--batches 1,100,1000,10000] [--repeat N]\n"
               "          [--limit EVENTS] [--session-length N] [--write-buffer-mb MB] [--checkpoint-passes N]\n"
               "          [--read-passes N]\n"
               "  --batches: batch sizes > 0, comma-separated. The BENCH line's events_per_s, ratio_vs_bare and\n"
               "  disk_bytes_per_event are those of batch 1000 when given, else of the largest batch given;\n"
               "  headline_batch= says which.\n"
               "  --limit 0 (the default) reads the whole dataset; --write-buffer-mb 0 keeps the store's default.\n",
               problem.c_str(), argv0);
  std::exit(2);
}

// `text` as an integer in [lo, hi], or a usage error naming `flag`: std::stoul would throw
// past main, and would take "-1" for a huge size.
template <typename T>
T ParseInt(const char* argv0, const std::string& flag, const std::string& text, T lo, T hi) {
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi) {
    Usage(argv0, flag + " wants an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" +
                     text + "'");
  }
  return v;
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  const char* argv0 = argv[0];
  for (int k = 1; k < argc; ++k) {
    const std::string f = argv[k];
    auto next = [&]() -> std::string {
      if (k + 1 >= argc) Usage(argv0, f + " needs a value");
      return argv[++k];
    };
    if (f == "--data") {
      a.data = next();
    } else if (f == "--dir") {
      a.dir = next();
    } else if (f == "--batches") {
      a.batches.clear();
      const std::string s = next();
      for (size_t p = 0; p <= s.size();) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        // A batch of 0 would never advance through the stream.
        a.batches.push_back(ParseInt<size_t>(argv0, f, s.substr(p, q - p), 1, size_t{1} << 32));
        p = q + 1;
      }
    } else if (f == "--repeat") {
      a.repeat = ParseInt(argv0, f, next(), 1, 1000);
    } else if (f == "--limit") {
      a.limit = ParseInt<int64_t>(argv0, f, next(), 0, INT64_MAX);
    } else if (f == "--write-buffer-mb") {
      a.write_buffer_mb = ParseInt<size_t>(argv0, f, next(), 0, size_t{1} << 20);
    } else if (f == "--session-length") {
      a.session_length = ParseInt<uint32_t>(argv0, f, next(), 1, UINT32_MAX);
    } else if (f == "--checkpoint-passes") {
      a.checkpoint_passes = ParseInt(argv0, f, next(), 1, 1000);
    } else if (f == "--read-passes") {
      a.read_passes = ParseInt(argv0, f, next(), 1, 1000);
    } else {
      Usage(argv0, "unknown flag '" + f + "'");
    }
  }
  return a;
}

StateOptions BenchOptions(const std::string& path, uint32_t n) {
  StateOptions o;  // the defaults: what a deployment gets
  o.path = path;
  o.session_length = n;
  if (g_write_buffer_bytes > 0) o.write_buffer_bytes = g_write_buffer_bytes;
  return o;
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// CPU seconds of the calling thread: less disturbed than wall time when the machine is shared.
double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Timing {
  double wall = 0;
  double cpu = 0;  // the writing thread's only (flushes and compactions run on others)
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One write of the bare loop.
struct Op {
  keys::Cf cf;
  enum Kind { kPut, kDelete, kDeleteRange } kind;
  std::string key, value;  // kDeleteRange: [key, value)
};

// The writes the store makes for the stream cut into `batch`-sized batches, worked out with
// plain in-memory maps (the store reads edges back from RocksDB instead), in the store's order.
std::vector<std::vector<Op>> PlanWrites(const std::vector<ClickEvent>& events, size_t batch, uint64_t n) {
  std::unordered_map<std::string, uint32_t> users, items;
  std::vector<NodeStats> ustats, istats;
  std::unordered_map<uint64_t, keys::EdgeValue> edges;
  std::vector<std::vector<Op>> plan;
  char v[12];
  for (size_t start = 0, seq = 1; start < events.size(); start += batch, ++seq) {
    const size_t end = std::min(events.size(), start + batch);
    std::vector<Op> ops;
    const auto users_before = static_cast<uint32_t>(users.size());
    const auto items_before = static_cast<uint32_t>(items.size());
    std::vector<std::string> new_users, new_items;
    std::vector<uint64_t> pairs;
    std::map<uint64_t, bool> touched_edges;                 // value: created by this batch
    std::map<uint32_t, uint64_t> clicks_before;              // the change entry's, by user
    for (size_t k = start; k < end; ++k) {
      const auto& e = events[k];
      auto [ui, unew] = users.try_emplace(e.user_id, static_cast<uint32_t>(users.size()));
      if (unew) new_users.push_back(e.user_id), ustats.emplace_back();
      auto [ii, inew] = items.try_emplace(e.item_id, static_cast<uint32_t>(items.size()));
      if (inew) new_items.push_back(e.item_id), istats.emplace_back();
      const uint32_t u = ui->second, i = ii->second;
      const uint64_t p = (uint64_t{u} << 32) | i;
      pairs.push_back(p);
      auto [ei, enew] = edges.try_emplace(p, keys::EdgeValue{0, e.ts_ms});
      if (enew) ++ustats[u].degree, ++istats[i].degree;
      touched_edges.try_emplace(p, enew);
      ++ei->second.count;
      ei->second.last_ts_ms = std::max(ei->second.last_ts_ms, e.ts_ms);
      clicks_before.try_emplace(u, ustats[u].clicks);
      const uint64_t pos = ustats[u].clicks++;
      ++istats[i].clicks;
      keys::EncodeSessionValue(v, i, e.ts_ms);
      ops.push_back({keys::kSessions, Op::kPut, std::string(keys::SessionKey(u, pos).view()), std::string(v, 12)});
      if (pos >= n) ops.push_back({keys::kSessions, Op::kDelete, std::string(keys::SessionKey(u, pos - n).view()), {}});
    }
    // The store writes each family's keys in ascending order (see ApplyBatch): do the same.
    std::stable_sort(ops.begin(), ops.end(), [](const Op& a, const Op& b) { return a.key < b.key; });
    for (const auto& [p, created] : touched_edges) {
      const auto u = static_cast<uint32_t>(p >> 32), i = static_cast<uint32_t>(p);
      keys::EncodeEdgeValue(v, edges[p]);
      ops.push_back({keys::kEdges, Op::kPut, std::string(keys::PairKey(u, i).view()), std::string(v, 12)});
    }
    std::sort(new_users.begin(), new_users.end());
    std::sort(new_items.begin(), new_items.end());
    for (const auto& name : new_users) {
      const uint32_t id = users.at(name);
      ops.push_back({keys::kUserIds, Op::kPut, name, std::string(reinterpret_cast<const char*>(&id), 4)});
    }
    for (const auto& name : new_items) {
      const uint32_t id = items.at(name);
      ops.push_back({keys::kItemIds, Op::kPut, name, std::string(reinterpret_cast<const char*>(&id), 4)});
    }
    const uint64_t s = seq;
    ops.push_back({keys::kMeta, Op::kPut, "seq", std::string(reinterpret_cast<const char*>(&s), 8)});
    const int64_t next = static_cast<int64_t>(end);
    ops.push_back({keys::kMeta, Op::kPut, keys::OffsetKey("clicks", 0), std::string(reinterpret_cast<const char*>(&next), 8)});
    ChangeEntry change{users_before, items_before, {}, {}};
    for (const auto& [p, _] : touched_edges) change.pairs.push_back(p);
    change.clicks_before.assign(clicks_before.begin(), clicks_before.end());
    std::string payload;
    EncodeChangeEntry(change, &payload);
    ops.push_back({keys::kChanges, Op::kPut, std::string(keys::SeqKey(seq).view()), payload});
    const uint64_t retention = StateOptions().changelog_retention_batches;
    if (seq % 1024 == 0 && seq > retention) {
      ops.push_back({keys::kChanges, Op::kDeleteRange, std::string(keys::SeqKey(0).view()),
                     std::string(keys::SeqKey(seq - retention + 1).view())});
    }
    plan.push_back(std::move(ops));
  }
  return plan;
}

struct RawDb {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs;
  ~RawDb() {
    for (auto* h : cfs) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    if (db) db->Close().PermitUncheckedError();
  }
};

std::unique_ptr<RawDb> OpenRaw(const DbSetup& setup, const std::string& path) {
  auto r = std::make_unique<RawDb>();
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(setup.db, path, setup.families, &r->cfs, &raw);
  if (!s.ok()) {
    std::fprintf(stderr, "bench_state: open %s: %s\n", path.c_str(), s.ToString().c_str());
    std::exit(1);
  }
  r->db.reset(raw);
  return r;
}

// Time the bare loop takes to write `plan` into a fresh database at `path`.
Timing RunBare(const std::vector<std::vector<Op>>& plan, const std::string& path, uint32_t n) {
  const DbSetup setup = MakeDbSetup(BenchOptions(path, n));
  auto raw = OpenRaw(setup, path);
  rocksdb::WriteBatch wb;
  const auto t0 = Clock::now();
  const double c0 = ThreadCpuSeconds();
  for (const auto& ops : plan) {
    wb.Clear();
    for (const auto& op : ops) {
      switch (op.kind) {
        case Op::kPut:
          wb.Put(raw->cfs[op.cf], op.key, op.value);
          break;
        case Op::kDelete:
          wb.Delete(raw->cfs[op.cf], op.key);
          break;
        case Op::kDeleteRange:
          wb.DeleteRange(raw->cfs[op.cf], op.key, op.value);
          break;
      }
    }
    auto s = raw->db->Write(setup.write, &wb);
    if (!s.ok()) {
      std::fprintf(stderr, "bench_state: bare write: %s\n", s.ToString().c_str());
      std::exit(1);
    }
  }
  return {Seconds(t0, Clock::now()), ThreadCpuSeconds() - c0};
}

// Time the store takes to apply `events` in `batch`-sized batches into a fresh store.
Timing RunStore(const std::vector<ClickEvent>& events, size_t batch, const std::string& path, uint32_t n,
                uint64_t* disk_flushed, uint64_t* disk_compacted) {
  auto opened = StateStore::Open(BenchOptions(path, n));
  if (!opened.ok()) {
    std::fprintf(stderr, "bench_state: %s\n", opened.status().ToString().c_str());
    std::exit(1);
  }
  auto& store = **opened;
  const auto t0 = Clock::now();
  const double c0 = ThreadCpuSeconds();
  for (size_t start = 0; start < events.size(); start += batch) {
    const size_t len = std::min(batch, events.size() - start);
    const PartitionOffset off{{"clicks", 0}, static_cast<int64_t>(start + len)};
    auto r = store.ApplyBatch(std::span(events).subspan(start, len), std::span(&off, 1));
    if (!r.ok()) {
      std::fprintf(stderr, "bench_state: apply: %s\n", r.status().ToString().c_str());
      std::exit(1);
    }
  }
  const Timing t{Seconds(t0, Clock::now()), ThreadCpuSeconds() - c0};
  if (disk_flushed != nullptr) {
    if (!store.Flush().ok()) std::exit(1);
    *disk_flushed = store.DiskBytes().value();
    if (!store.Compact().ok()) std::exit(1);
    *disk_compacted = store.DiskBytes().value();
  }
  const StateCounts before = store.Counts();
  if (!store.Close().ok()) std::exit(1);
  if (disk_flushed != nullptr) {
    // Open after a clean close: id maps, one edge scan (degrees), offsets.
    const auto r0 = Clock::now();
    auto reopened = StateStore::Open(BenchOptions(path, n));
    const double reopen_s = Seconds(r0, Clock::now());
    if (!reopened.ok() || (*reopened)->Counts() != before) {
      std::fprintf(stderr, "bench_state: reopen gave a different state\n");
      std::exit(1);
    }
    std::printf("  reopen of %llu users, %llu items, %llu edges: %.3f s\n",
                static_cast<unsigned long long>(before.users), static_cast<unsigned long long>(before.items),
                static_cast<unsigned long long>(before.edges), reopen_s);
  }
  return t;
}

// Contents of every family but meta's stamps written once at open ("format", "session_length"),
// as one string per family.
std::vector<std::string> Contents(const std::string& path, uint32_t n) {
  auto raw = OpenRaw(MakeDbSetup(BenchOptions(path, n)), path);
  std::vector<std::string> out;
  for (auto* h : raw->cfs) {
    std::string all;
    rocksdb::ReadOptions ro;
    ro.total_order_seek = true;
    std::unique_ptr<rocksdb::Iterator> it(raw->db->NewIterator(ro, h));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key() == rocksdb::Slice(keys::kFormatKey) || it->key() == rocksdb::Slice(keys::kSessionLengthKey)) {
        continue;
      }
      all += it->key().ToString() + '\x01' + it->value().ToString() + '\x02';
    }
    out.push_back(std::move(all));
  }
  return out;
}

// What a state checkpoint costs ingest, and what ingest costs a reader. The longest and the
// 99th-percentile ApplyBatch (batches of 1000) while another thread takes a checkpoint every
// `checkpoint_every_s` (as the pipeline's learner does), against the same stream without
// checkpoints; and, with `reader`, the latency of Session() for a random known user, read at
// random moments (0-400 us apart) on a third thread (as the user publisher reads the sessions it
// embeds) while the batches go in. The stream is the dataset `passes` times, each pass with users of its own, so that
// memtables fill between checkpoints.
struct Beside {
  double checkpoint_every_s = 0;
  bool reader = false;
  bool sync = false;  // state.sync: one fsync per batch
};

struct Pauses {
  double max_ms = 0, p99_ms = 0;
  double events_per_s = 0;
  int checkpoints = 0;
  // Session() reads beside the writer (reader only), microseconds.
  int64_t reads = 0;
  double read_p50_us = 0, read_p99_us = 0, read_p999_us = 0, read_max_us = 0;
};

Pauses RunBeside(const std::vector<ClickEvent>& events, int passes, const fs::path& dir, uint32_t n,
                 const Beside& beside) {
  StateOptions o = BenchOptions((dir / "store").string(), n);
  o.sync = beside.sync;
  auto opened = StateStore::Open(o);
  if (!opened.ok()) {
    std::fprintf(stderr, "bench_state: %s\n", opened.status().ToString().c_str());
    std::exit(1);
  }
  auto& store = **opened;
  std::atomic<bool> done{false};
  Pauses p;
  std::thread checkpointer;
  if (beside.checkpoint_every_s > 0) {
    checkpointer = std::thread([&] {
      auto next = Clock::now();
      while (!done) {
        next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(beside.checkpoint_every_s));
        while (!done && Clock::now() < next) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (done) break;
        const fs::path cp = dir / ("cp-" + std::to_string(p.checkpoints));
        if (auto r = store.CreateCheckpoint(cp.string()); !r.ok()) {
          std::fprintf(stderr, "bench_state: checkpoint: %s\n", r.status().ToString().c_str());
          std::exit(1);
        }
        fs::remove_all(cp);
        ++p.checkpoints;
      }
    });
  }
  std::vector<double> read_us;
  std::thread reader;
  if (beside.reader) {
    reader = std::thread([&] {
      std::mt19937_64 rng(7);
      while (!done) {
        const uint64_t users = store.Counts().users;
        if (users == 0) {
          std::this_thread::yield();
          continue;
        }
        const auto u = static_cast<UserId>(rng() % users);
        // Reads at random moments (open loop), not back to back: a reader in a loop sees one slow
        // read per batch however long the batch held it, and would not let it in between.
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 400));
        const auto t0 = Clock::now();
        auto s = store.Session(u);
        read_us.push_back(Seconds(t0, Clock::now()) * 1e6);
        if (!s.ok() || s->empty()) {
          std::fprintf(stderr, "bench_state: session of user %u: %s\n", u,
                       s.ok() ? "empty" : s.status().ToString().c_str());
          std::exit(1);
        }
      }
    });
  }
  std::vector<double> ms;
  std::vector<ClickEvent> batch;
  int64_t offset = 0;
  const auto start = Clock::now();
  for (int pass = 0; pass < passes; ++pass) {
    for (size_t first = 0; first < events.size(); first += 1000) {
      batch.assign(events.begin() + static_cast<long>(first),
                   events.begin() + static_cast<long>(std::min(events.size(), first + 1000)));
      for (auto& e : batch) e.user_id += "/" + std::to_string(pass);
      offset += static_cast<int64_t>(batch.size());
      const PartitionOffset off{{"clicks", 0}, offset};
      const auto t0 = Clock::now();
      auto r = store.ApplyBatch(batch, std::span(&off, 1));
      ms.push_back(Seconds(t0, Clock::now()) * 1000);
      if (!r.ok()) {
        std::fprintf(stderr, "bench_state: apply: %s\n", r.status().ToString().c_str());
        std::exit(1);
      }
    }
  }
  p.events_per_s = static_cast<double>(offset) / Seconds(start, Clock::now());
  done = true;
  if (checkpointer.joinable()) checkpointer.join();
  if (reader.joinable()) reader.join();
  if (!store.Close().ok()) std::exit(1);
  fs::remove_all(dir / "store");
  std::sort(ms.begin(), ms.end());
  p.max_ms = ms.back();
  p.p99_ms = ms[ms.size() * 99 / 100];
  if (!read_us.empty()) {
    std::sort(read_us.begin(), read_us.end());
    const size_t k = read_us.size();
    p.reads = static_cast<int64_t>(k);
    p.read_p50_us = read_us[k / 2];
    p.read_p99_us = read_us[k * 99 / 100];
    p.read_p999_us = read_us[k * 999 / 1000];
    p.read_max_us = read_us.back();
  }
  return p;
}

int Main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  g_write_buffer_bytes = args.write_buffer_mb << 20;
  log::Init();
  log::SetLevel(log::Level::kWarn);  // the store logs each open at info

  std::string data = args.data;
  if (!fs::exists(data) && fs::path(data).is_relative()) {
    const fs::path alt = fs::path(GSAU_SOURCE_DIR) / data;
    if (fs::exists(alt)) data = alt.string();
  }
  data::ReadOptions ro;
  ro.limit = args.limit;
  auto rows = data::ReadInteractions(data, ro);
  if (!rows.ok()) {
    std::fprintf(stderr, "bench_state: %s\n", rows.status().ToString().c_str());
    return 1;
  }
  data::SortByTime(*rows);
  std::vector<ClickEvent> events;
  events.reserve(rows->size());
  for (auto& r : *rows) events.push_back({std::move(r.user_id), std::move(r.item_id), r.ts_ms, "click"});
  rows->clear();
  if (events.empty()) {
    std::fprintf(stderr, "bench_state: no events in %s: nothing to measure\n", data.c_str());
    return 1;
  }
  const double n_events = static_cast<double>(events.size());

  const fs::path dir = args.dir.empty()
                           ? fs::temp_directory_path() / ("gsau-bench-state-" + std::to_string(::getpid()))
                           : fs::path(args.dir);
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::printf("bench_state: %zu events from %s (time order), session length %u, scratch %s\n", events.size(),
              data.c_str(), args.session_length, dir.c_str());

  const size_t headline_batch = std::find(args.batches.begin(), args.batches.end(), size_t{1000}) != args.batches.end()
                                    ? 1000
                                    : *std::max_element(args.batches.begin(), args.batches.end());
  double headline_rate = 0, headline_ratio = 0, headline_disk = 0;
  for (size_t batch : args.batches) {
    const int runs = batch == 1 ? 1 : args.repeat;
    const auto plan = PlanWrites(events, batch, args.session_length);
    size_t ops = 0;
    for (const auto& b : plan) ops += b.size();
    std::vector<double> store_s, bare_s, store_cpu, bare_cpu;
    uint64_t flushed = 0, compacted = 0;
    for (int r = 0; r < runs; ++r) {
      const std::string sp = (dir / ("store-" + std::to_string(batch) + "-" + std::to_string(r))).string();
      const std::string bp = (dir / ("bare-" + std::to_string(batch) + "-" + std::to_string(r))).string();
      const bool last = r == runs - 1;
      // Alternate which goes first: the second run finds memory the first one already faulted in.
      Timing st, bt;
      if (r % 2 == 0) {
        bt = RunBare(plan, bp, args.session_length);
        st = RunStore(events, batch, sp, args.session_length, last ? &flushed : nullptr, &compacted);
      } else {
        st = RunStore(events, batch, sp, args.session_length, last ? &flushed : nullptr, &compacted);
        bt = RunBare(plan, bp, args.session_length);
      }
      store_s.push_back(st.wall);
      bare_s.push_back(bt.wall);
      store_cpu.push_back(st.cpu);
      bare_cpu.push_back(bt.cpu);
      if (last && Contents(sp, args.session_length) != Contents(bp, args.session_length)) {
        std::fprintf(stderr, "bench_state: the bare loop did not write what the store wrote (batch %zu)\n", batch);
        return 1;
      }
      fs::remove_all(sp);
      fs::remove_all(bp);
    }
    const double rate = n_events / Median(store_s);
    const double bare = n_events / Median(bare_s);
    std::printf("batch=%-6zu store events/s=%8.0f  bare WriteBatch events/s=%8.0f  ratio=%.2f  |  per writer-CPU "
                "second: store %8.0f, bare %8.0f, ratio %.2f  |  writes/event=%.2f  disk B/event: flushed %.1f, "
                "compacted %.1f  (median of %d, same keys: yes)\n",
                batch, rate, bare, rate / bare, n_events / Median(store_cpu), n_events / Median(bare_cpu),
                Median(bare_cpu) / Median(store_cpu), static_cast<double>(ops) / n_events,
                static_cast<double>(flushed) / n_events, static_cast<double>(compacted) / n_events, runs);
    std::fflush(stdout);
    if (batch == headline_batch) {
      headline_rate = rate;
      headline_ratio = rate / bare;
      headline_disk = static_cast<double>(compacted) / n_events;
    }
  }
  const Pauses quiet = RunBeside(events, args.checkpoint_passes, dir, args.session_length, {});
  const Pauses busy = RunBeside(events, args.checkpoint_passes, dir, args.session_length, {.checkpoint_every_s = 1.0});
  std::printf("checkpoints (batch 1000, %d passes = %.0f events): a checkpoint every 1 s (%d): longest apply %.1f ms, "
              "p99 %.1f ms; none: longest %.1f ms, p99 %.1f ms\n",
              args.checkpoint_passes, n_events * args.checkpoint_passes, busy.checkpoints, busy.max_ms, busy.p99_ms,
              quiet.max_ms, quiet.p99_ms);
  if (busy.checkpoints == 0) {
    std::printf("no checkpoint was taken (the run lasted under 1 s): no checkpoint pause to report\n");
  }
  std::fflush(stdout);
  Pauses read[2];
  for (const bool sync : {false, true}) {
    const Pauses r = RunBeside(events, args.read_passes, dir, args.session_length, {.reader = true, .sync = sync});
    std::printf("Session() beside the writer (batch 1000, %d passes, state.sync %s): %lld reads, p50 %.0f us, "
                "p99 %.0f us, p99.9 %.0f us, max %.0f us; writer %.0f events/s, longest apply %.1f ms\n",
                args.read_passes, sync ? "on" : "off", static_cast<long long>(r.reads), r.read_p50_us,
                r.read_p99_us, r.read_p999_us, r.read_max_us, r.events_per_s, r.max_ms);
    std::fflush(stdout);
    read[sync ? 1 : 0] = r;
  }
  fs::remove_all(dir);
  std::printf("BENCH state events_per_s=%.0f ratio_vs_bare=%.2f disk_bytes_per_event=%.1f headline_batch=%zu "
              "checkpoints=%d",
              headline_rate, headline_ratio, headline_disk, headline_batch, busy.checkpoints);
  if (busy.checkpoints > 0) std::printf(" checkpoint_pause_ms=%.1f", busy.max_ms);
  // A pass whose reader made no reads has no latency to report: its keys are left out, as the
  // checkpoint pause is when no checkpoint was taken.
  if (read[0].reads > 0) std::printf(" read_p99_us=%.0f read_max_us=%.0f", read[0].read_p99_us, read[0].read_max_us);
  if (read[1].reads > 0) {
    std::printf(" read_p99_us_sync=%.0f read_max_us_sync=%.0f", read[1].read_p99_us, read[1].read_max_us);
  }
  std::printf("\n");
  return 0;
}

}  // namespace
}  // namespace gsau::state

int main(int argc, char** argv) { return gsau::state::Main(argc, argv); }
