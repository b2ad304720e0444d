#include "gsau/state/state_store.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "reference_state.h"
#include "stream.h"
#include "temp_dir.h"

namespace gsau::state {
namespace {

using testing::DumpStore;
using testing::MakeEvents;
using testing::Reference;
using testing::StreamShape;

const TopicPartition kTp{"clicks", 0};

StateOptions SmallOptions(const std::string& path, uint32_t n = 50) {
  StateOptions o;
  o.path = path;
  o.session_length = n;
  o.block_cache_bytes = 8 << 20;
  o.write_buffer_bytes = 1 << 20;  // small memtables: flushes and SST reads happen in tests
  return o;
}

std::unique_ptr<StateStore> MustOpen(const StateOptions& o) {
  auto store = StateStore::Open(o);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(store).value() : nullptr;
}

// Applies events[begin, end) in random batch sizes in [1, max_batch], offsets = event index.
void ApplyInBatches(StateStore& store, const std::vector<ClickEvent>& events, size_t begin, size_t end,
                    std::mt19937_64& rng, size_t max_batch) {
  std::uniform_int_distribution<size_t> size(1, max_batch);
  for (size_t k = begin; k < end;) {
    const size_t n = std::min(size(rng), end - k);
    const PartitionOffset off{kTp, static_cast<int64_t>(k + n)};
    auto r = store.ApplyBatch(std::span(events).subspan(k, n), std::span(&off, 1));
    ASSERT_TRUE(r.ok()) << r.status();
    k += n;
  }
}

TEST(StateStoreTest, IncrementalBatchesEqualOneBatchFromScratch) {
  for (uint64_t seed : {1, 2, 3}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    gsau::testing::TempDir dir("gsau-state");
    const auto events = MakeEvents(seed, 0, 6000, StreamShape{400, 700});
    Reference ref(50);
    ref.Apply(events);
    const auto want = ref.ToDump();

    auto incremental = MustOpen(SmallOptions(dir.File("inc")));
    std::mt19937_64 rng(seed);
    ApplyInBatches(*incremental, events, 0, events.size(), rng, 300);

    auto scratch = MustOpen(SmallOptions(dir.File("scratch")));
    const PartitionOffset off{kTp, static_cast<int64_t>(events.size())};
    auto r = scratch->ApplyBatch(events, std::span(&off, 1));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->batch_seq, 1u);

    EXPECT_EQ(DumpStore(*incremental), want);
    EXPECT_EQ(DumpStore(*scratch), want);
    EXPECT_EQ(incremental->Counts().edges, ref.edges());
    EXPECT_EQ(incremental->Offset(kTp), static_cast<int64_t>(events.size()));
    EXPECT_EQ(scratch->Offset(kTp), static_cast<int64_t>(events.size()));
    // The stream has repeats and long sessions, or this test proves little.
    EXPECT_LT(ref.edges(), events.size() * 3 / 4);
    uint64_t longest = 0;
    for (UserId u = 0; u < ref.users(); ++u) longest = std::max(longest, incremental->UserStats(u).clicks);
    EXPECT_GT(longest, 100u);
    EXPECT_GT(ref.users(), 300u);
  }
}

TEST(StateStoreTest, SessionsKeepEveryClickInOrderTrimmedToN) {
  gsau::testing::TempDir dir("gsau-state");
  auto store = MustOpen(SmallOptions(dir.File("db"), 50));
  std::vector<ClickEvent> events;
  for (int k = 0; k < 137; ++k) {
    // Two items alternate with a third: the session repeats items, the edges do not.
    const std::string item = k % 3 == 2 ? "c" : (k % 2 ? "a" : "b");
    events.push_back({"alice", item, 1000 + k, "click"});
  }
  for (size_t k = 0; k < events.size(); k += 10) {
    const size_t n = std::min<size_t>(10, events.size() - k);
    ASSERT_TRUE(store->ApplyBatch(std::span(events).subspan(k, n), {}).ok());
  }
  auto session = store->Session(0);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_EQ(session->size(), 50u);
  for (size_t j = 0; j < 50; ++j) {
    const auto& e = events[137 - 50 + j];
    EXPECT_EQ((*session)[j].ts_ms, e.ts_ms);
    EXPECT_EQ((*session)[j].item, *store->FindItem(e.item_id));
  }
  EXPECT_EQ(store->UserStats(0), (NodeStats{3, 137}));
  EXPECT_EQ(store->Counts().edges, 3u);

  // A smaller N on reopen: reads give the last N at once.
  ASSERT_TRUE(store->Close().ok());
  store = MustOpen(SmallOptions(dir.File("db"), 7));
  session = store->Session(0);
  ASSERT_TRUE(session.ok());
  ASSERT_EQ(session->size(), 7u);
  EXPECT_EQ(session->back().ts_ms, 1000 + 136);
  size_t scanned = 0;
  ASSERT_TRUE(store->ForEachSession([&](UserId, std::span<const SessionEntry> s) { scanned = s.size(); }).ok());
  EXPECT_EQ(scanned, 7u);
}

// More than N clicks of one user inside one batch: the positions that fall out of the
// session within the batch are not left behind (seen by reopening with a larger N, which
// shows every stored entry).
TEST(StateStoreTest, SessionTrimmedWithinOneBatch) {
  gsau::testing::TempDir dir("gsau-state");
  std::vector<ClickEvent> events;
  for (int k = 0; k < 137; ++k) events.push_back({k % 2 ? "bob" : "alice", "i" + std::to_string(k % 11), k, "click"});
  {
    auto store = MustOpen(SmallOptions(dir.File("db"), 20));
    ASSERT_TRUE(store->ApplyBatch(events, {}).ok());
    EXPECT_EQ(store->Session(0)->size(), 20u);
    EXPECT_EQ(store->Session(0)->front().ts_ms, 136 - 38);
  }
  auto store = MustOpen(SmallOptions(dir.File("db"), 500));
  EXPECT_EQ(store->Session(0)->size(), 20u);
  EXPECT_EQ(store->Session(1)->size(), 20u);
  size_t scanned = 0;
  ASSERT_TRUE(store->ForEachSession([&](UserId, std::span<const SessionEntry> s) { scanned += s.size(); }).ok());
  EXPECT_EQ(scanned, 40u);
}

// N lowered, then raised between opens: the clicks the smaller N dropped stay dropped, in the
// per-user read and in the scan alike. Before the store trimmed at open, a click deleted only
// the position N behind it: entries from before the lowering stayed (5 and 6 below), the scan
// counted the last N stored entries and showed them, and a raised N read them back. The scan
// now also takes positions, not counts (for stores trimmed by no open since).
TEST(StateStoreTest, SessionLengthLoweredThenRaisedReadsTheSameEverywhere) {
  gsau::testing::TempDir dir("gsau-state");
  int64_t ts = 0;
  auto click = [&](StateStore& store, int times) {
    for (int k = 0; k < times; ++k, ++ts) {
      const ClickEvent e{"alice", "i" + std::to_string(ts), ts, "click"};
      ASSERT_TRUE(store.ApplyBatch(std::span(&e, 1), {}).ok());
    }
  };
  auto scan = [](StateStore& store) {
    std::vector<int64_t> out;
    EXPECT_TRUE(store.ForEachSession([&](UserId, std::span<const SessionEntry> s) {
                       for (const auto& e : s) out.push_back(e.ts_ms);
                     }).ok());
    return out;
  };
  auto read = [](StateStore& store) {
    std::vector<int64_t> out;
    const auto session = store.Session(0);
    EXPECT_TRUE(session.ok()) << session.status();
    if (session.ok()) {
      for (const auto& e : *session) out.push_back(e.ts_ms);
    }
    return out;
  };
  click(*MustOpen(SmallOptions(dir.File("db"), 5)), 10);  // clicks 5..9 kept
  click(*MustOpen(SmallOptions(dir.File("db"), 3)), 2);   // 9, 10, 11 (5, 6 trimmed at the open, 7, 8 by clicks 10, 11)
  auto store = MustOpen(SmallOptions(dir.File("db"), 5));
  EXPECT_EQ(read(*store), (std::vector<int64_t>{9, 10, 11}));
  EXPECT_EQ(scan(*store), read(*store));
  store.reset();
  store = MustOpen(SmallOptions(dir.File("db"), 7));  // reaches back to where clicks 5 and 6 were
  EXPECT_EQ(read(*store), (std::vector<int64_t>{9, 10, 11}));
  EXPECT_EQ(scan(*store), read(*store));
  store.reset();
  store = MustOpen(SmallOptions(dir.File("db"), 5));
  EXPECT_EQ(read(*store), (std::vector<int64_t>{9, 10, 11}));
  EXPECT_EQ(scan(*store), read(*store));
  click(*store, 1);
  EXPECT_EQ(read(*store), (std::vector<int64_t>{9, 10, 11, 12}));
  EXPECT_EQ(scan(*store), read(*store));
  click(*store, 3);
  EXPECT_EQ(read(*store), (std::vector<int64_t>{11, 12, 13, 14, 15}));
  EXPECT_EQ(scan(*store), read(*store));
  store.reset();

  // Lowered (clicks 13..15 kept, 11 and 12 removed at once), then raised past the old N.
  MustOpen(SmallOptions(dir.File("db"), 3)).reset();
  store = MustOpen(SmallOptions(dir.File("db"), 9));
  EXPECT_EQ(read(*store), (std::vector<int64_t>{13, 14, 15}));
  EXPECT_EQ(scan(*store), read(*store));
  click(*store, 1);
  EXPECT_EQ(read(*store), (std::vector<int64_t>{13, 14, 15, 16}));
  EXPECT_EQ(scan(*store), read(*store));
}

// RocksDB records the options it opened with in OPTIONS-<n>: its info log must roll (a
// process that runs for months would otherwise fill the disk with it).
TEST(StateStoreTest, InfoLogIsBounded) {
  gsau::testing::TempDir dir("gsau-state");
  auto store = MustOpen(SmallOptions(dir.File("db")));
  std::string options_file;
  for (const auto& f : std::filesystem::directory_iterator(dir.File("db"))) {
    const std::string name = f.path().filename().string();
    if (name.rfind("OPTIONS-", 0) == 0 && name > options_file) options_file = name;
  }
  ASSERT_FALSE(options_file.empty());
  std::ifstream in(dir.File("db") + "/" + options_file);
  int64_t max_log_file_size = -1, keep_log_file_num = -1;
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq);
    key.erase(0, key.find_first_not_of(' '));
    if (key == "max_log_file_size") max_log_file_size = std::stoll(line.substr(eq + 1));
    if (key == "keep_log_file_num") keep_log_file_num = std::stoll(line.substr(eq + 1));
  }
  EXPECT_GT(max_log_file_size, 0) << "0 = one log file that never rolls";
  EXPECT_LE(max_log_file_size, 64 << 20);
  EXPECT_GT(keep_log_file_num, 0);
  EXPECT_LE(keep_log_file_num * max_log_file_size, int64_t{256} << 20);
}

TEST(StateStoreTest, RepeatedPairUpdatesOneEdge) {
  gsau::testing::TempDir dir("gsau-state");
  auto store = MustOpen(SmallOptions(dir.File("db")));
  std::vector<ClickEvent> a = {{"u", "i", 500, "click"}, {"u", "i", 300, "click"}};
  std::vector<ClickEvent> b = {{"u", "i", 400, "click"}, {"v", "i", 100, "click"}};
  auto r = store->ApplyBatch(a, {});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->events.size(), 2u);
  EXPECT_TRUE(r->events[0].new_user && r->events[0].new_item && r->events[0].new_edge);
  EXPECT_FALSE(r->events[1].new_user || r->events[1].new_item || r->events[1].new_edge);
  r = store->ApplyBatch(b, {});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->events[0].new_edge);
  EXPECT_TRUE(r->events[1].new_user && r->events[1].new_edge && !r->events[1].new_item);
  EXPECT_EQ(r->events[1].user, 1u);
  EXPECT_EQ(r->events[0].click_index, 2u);  // u's third click
  EXPECT_EQ(r->events[1].click_index, 0u);  // v's first

  auto nb = store->UserNeighbours(0);
  ASSERT_TRUE(nb.ok());
  ASSERT_EQ(nb->size(), 1u);
  EXPECT_EQ((*nb)[0], (Edge{0, 0, 3, 500}));  // count 3, latest event time (not last applied)
  auto items = store->ItemNeighbours(0);
  ASSERT_TRUE(items.ok());
  EXPECT_EQ(*items, (std::vector<Edge>{{0, 0, 3, 500}, {1, 0, 1, 100}}));
  EXPECT_EQ(store->ItemStats(0), (NodeStats{2, 4}));
  EXPECT_EQ(store->Counts(), (StateCounts{2, 2, 1, 2, 4}));
  EXPECT_EQ(store->Session(0)->size(), 3u);
}

TEST(StateStoreTest, IdsStableAcrossReopen) {
  gsau::testing::TempDir dir("gsau-state");
  const auto events = MakeEvents(7, 0, 4000);
  Reference ref(50);
  ref.Apply(events);
  std::mt19937_64 rng(7);
  std::vector<std::string> users_before;
  {
    auto store = MustOpen(SmallOptions(dir.File("db")));
    ApplyInBatches(*store, events, 0, 2000, rng, 200);
    for (UserId u = 0; u < store->Counts().users; ++u) users_before.push_back(*store->UserExternalId(u));
  }  // destructor closes
  for (int reopen = 0; reopen < 2; ++reopen) {
    auto store = MustOpen(SmallOptions(dir.File("db")));
    ASSERT_EQ(store->Offset(kTp), 2000 + 1000 * reopen);
    for (UserId u = 0; u < users_before.size(); ++u) {
      EXPECT_EQ(*store->UserExternalId(u), users_before[u]);
      EXPECT_EQ(store->FindUser(users_before[u]), u);
    }
    ApplyInBatches(*store, events, 2000 + 1000 * reopen, 3000 + 1000 * reopen, rng, 200);
    ASSERT_TRUE(store->Close().ok());
    auto closed = store->Session(0);
    EXPECT_EQ(closed.status().code(), StatusCode::kAborted);
  }
  auto store = MustOpen(SmallOptions(dir.File("db")));
  EXPECT_EQ(DumpStore(*store), ref.ToDump());
}

// A hold is what keeps a rollback from moving a running store's files: it and a writable open
// exclude each other, within one process as between two (the crash tests' child covers the
// second kind for Open itself; fcntl and the in-process set are both RocksDB's).
TEST(StateStoreTest, AnExclusiveHoldAndAnOpenStoreExcludeEachOther) {
  gsau::testing::TempDir dir("gsau-state");
  const auto o = SmallOptions(dir.File("db"));
  auto nothing = StateStore::HoldExclusive(o.path);
  ASSERT_TRUE(nothing.ok()) << nothing.status();
  EXPECT_EQ(*nothing, nullptr) << "no store there yet: nothing to hold";
  {
    auto store = MustOpen(o);
    ASSERT_NE(store, nullptr);
    auto refused = StateStore::HoldExclusive(o.path);
    EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(refused.status().message().find("in use"), std::string::npos) << refused.status();
  }
  {
    auto hold = StateStore::HoldExclusive(o.path);
    ASSERT_TRUE(hold.ok()) << hold.status();
    ASSERT_NE(*hold, nullptr);
    EXPECT_FALSE(StateStore::Open(o).ok()) << "a writable open while held";
  }
  EXPECT_NE(MustOpen(o), nullptr) << "released with the hold";
}

TEST(StateStoreTest, CheckpointAndRestoreGiveTheSameAnswers) {
  gsau::testing::TempDir dir("gsau-state");
  const auto events = MakeEvents(11, 0, 5000);
  Reference at_checkpoint(50);
  at_checkpoint.Apply(std::vector<ClickEvent>(events.begin(), events.begin() + 3000));
  std::mt19937_64 rng(11);
  auto store = MustOpen(SmallOptions(dir.File("db")));
  ApplyInBatches(*store, events, 0, 3000, rng, 250);
  const uint64_t seq = store->BatchSeq();
  const auto before = DumpStore(*store);
  auto cp = store->CreateCheckpoint(dir.File("cp"));
  ASSERT_TRUE(cp.ok()) << cp.status();
  EXPECT_EQ(*cp, seq);
  EXPECT_FALSE(store->CreateCheckpoint(dir.File("cp")).ok()) << "an existing dir must not be overwritten";
  ApplyInBatches(*store, events, 3000, 5000, rng, 250);  // the live store moves on

  for (const char* target : {"restore1", "restore2"}) {
    auto restored = StateStore::OpenFromCheckpoint(dir.File("cp"), SmallOptions(dir.File(target)));
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_EQ((*restored)->BatchSeq(), seq);
    EXPECT_EQ((*restored)->Offset(kTp), 3000);
    EXPECT_EQ(DumpStore(**restored), before);
    EXPECT_EQ(before, at_checkpoint.ToDump());
    // The restored store takes new batches from where the checkpoint was.
    ApplyInBatches(**restored, events, 3000, 5000, rng, 500);
    Reference all(50);
    all.Apply(events);
    EXPECT_EQ(DumpStore(**restored), all.ToDump());
  }
  // A copy that fails part-way leaves no store at the target (it opened there, and with a WAL
  // its files without the copied log are not whole batches), nor its half-copy beside it.
  std::filesystem::copy(dir.File("cp"), dir.File("cp-bad"), std::filesystem::copy_options::recursive);
  ASSERT_EQ(mkfifo(dir.File("cp-bad/zz-fifo").c_str(), 0600), 0);  // a file the copy cannot take
  auto cut = StateStore::OpenFromCheckpoint(dir.File("cp-bad"), SmallOptions(dir.File("restore3")));
  EXPECT_EQ(cut.status().code(), StatusCode::kIoError) << cut.status();
  EXPECT_FALSE(std::filesystem::exists(dir.File("restore3/CURRENT")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("restore3.restoring")));
  // Into an empty folder, named with a trailing slash.
  std::filesystem::create_directory(dir.File("restore4"));
  auto into_empty = StateStore::OpenFromCheckpoint(dir.File("cp"), SmallOptions(dir.File("restore4") + "/"));
  ASSERT_TRUE(into_empty.ok()) << into_empty.status();
  EXPECT_EQ(DumpStore(**into_empty), before);
  // Opening the checkpoint directory itself also works.
  auto direct = StateStore::Open(SmallOptions(dir.File("cp")));
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(DumpStore(**direct), before);
  // Restoring over a non-empty directory is refused.
  EXPECT_EQ(StateStore::OpenFromCheckpoint(dir.File("cp"), SmallOptions(dir.File("db"))).status().code(),
            StatusCode::kInvalidArgument);
}

// Checkpoints taken while a writer applies batches (as the learner's thread takes them beside
// ingest's) hold exactly the batches up to the sequence they return: with a WAL, what came in
// after the flush outside the lock is in the checkpoint's copy of the WAL; without one, flushed
// inside it.
TEST(StateStoreTest, CheckpointsBesideAWriterHoldExactlyTheirBatches) {
  for (const bool wal : {true, false}) {
    gsau::testing::TempDir dir("gsau-state");
    const auto events = MakeEvents(12, 0, 20000);
    StateOptions o = SmallOptions(dir.File("db"));
    o.wal = wal;
    auto store = MustOpen(o);
    // The writer goes on to its next tenth of the stream only once a checkpoint was taken during
    // the last one (or 10 s passed): on a busy machine it could otherwise finish first.
    std::atomic<bool> done{false};
    std::atomic<int> checkpoints{0};
    std::thread writer([&] {
      std::mt19937_64 rng(12);
      const size_t tenth = events.size() / 10;
      for (size_t part = 0; part < 10; ++part) {
        const int before = checkpoints;
        ApplyInBatches(*store, events, part * tenth, part == 9 ? events.size() : (part + 1) * tenth, rng, 40);
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (checkpoints == before && std::chrono::steady_clock::now() < until) std::this_thread::yield();
      }
      done = true;
    });
    std::vector<std::pair<std::string, uint64_t>> taken;
    bool failed = false;
    while (!done) {
      const std::string cp = dir.File("cp" + std::to_string(taken.size()));
      auto seq = store->CreateCheckpoint(cp);
      if (!seq.ok()) {
        ADD_FAILURE() << seq.status();
        failed = true;
        break;
      }
      taken.emplace_back(cp, *seq);
      ++checkpoints;
    }
    writer.join();
    ASSERT_FALSE(failed);
    ASSERT_GE(taken.size(), 10u);
    const size_t stride = taken.size() / 10;  // ten of them restored and compared
    for (size_t n = 0; n < taken.size(); n += stride) {
      const auto& [cp, seq] = taken[n];
      auto restored = StateStore::OpenFromCheckpoint(cp, SmallOptions(cp + "-restored"));
      ASSERT_TRUE(restored.ok()) << restored.status();
      EXPECT_EQ((*restored)->BatchSeq(), seq) << "wal " << wal;
      // A checkpoint taken before the writer's first batch holds batch 0, with no offset yet.
      const auto applied = (*restored)->Offset(kTp);
      ASSERT_EQ(applied.has_value(), seq > 0) << "wal " << wal << ", batch " << seq;
      const int64_t upto = applied.value_or(0);
      Reference want(50);
      want.Apply(std::vector<ClickEvent>(events.begin(), events.begin() + upto));
      EXPECT_EQ(DumpStore(**restored), want.ToDump()) << "wal " << wal << ", checkpoint at " << upto;
    }
  }
}

TEST(StateStoreTest, ReadOnlyOpenSeesTheLiveStoreAndWritesNothing) {
  gsau::testing::TempDir dir("gsau-state");
  const auto events = MakeEvents(13, 0, 3000);
  std::mt19937_64 rng(13);
  StateOptions ro = SmallOptions(dir.File("db"));
  ro.read_only = true;
  EXPECT_EQ(StateStore::Open(ro).status().code(), StatusCode::kNotFound) << "no store yet: nothing created";
  EXPECT_FALSE(std::filesystem::exists(dir.File("db")));

  auto writer = MustOpen(SmallOptions(dir.File("db")));
  ApplyInBatches(*writer, events, 0, 2000, rng, 300);
  // While the writer holds the store open (and its lock), a reader opens it as of now.
  auto reader = StateStore::Open(ro);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(DumpStore(**reader), DumpStore(*writer));
  const PartitionOffset off{kTp, 2001};
  EXPECT_EQ((*reader)->ApplyBatch(std::span(events).subspan(2000, 1), std::span(&off, 1)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ((*reader)->Flush().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*reader)->Compact().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*reader)->CreateCheckpoint(dir.File("ckpt")).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir.File("ckpt")));
  reader->reset();
  // The writer goes on; a new reader sees the new batches.
  ApplyInBatches(*writer, events, 2000, 3000, rng, 300);
  ASSERT_TRUE(writer->Flush().ok());
  auto later = StateStore::Open(ro);
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(DumpStore(**later), DumpStore(*writer));
}

// A read-only open beside a writer whose compactions delete files (gsau inspect on a running
// pipeline): the manifest it read could name a file deleted before it opened it, and the open
// failed as "Corruption: ... No such file". It is tried again and succeeds.
TEST(StateStoreTest, ReadOnlyOpensBesideCompactionsSucceed) {
  gsau::testing::TempDir dir("gsau-state");
  const auto events = MakeEvents(17, 0, 40000);
  auto writer = MustOpen(SmallOptions(dir.File("db")));
  std::mt19937_64 rng(17);
  ApplyInBatches(*writer, events, 0, 1000, rng, 200);
  ASSERT_TRUE(writer->Flush().ok());
  std::atomic<bool> done{false};
  std::atomic<int> compactions{0};
  std::thread w([&] {
    size_t next = 1000;
    while (!done.load() && next < events.size()) {
      const size_t end = std::min(events.size(), next + 500);
      ApplyInBatches(*writer, events, next, end, rng, 250);
      next = end;
      // A flush per round and a full compaction every fourth: far more often than a pipeline
      // compacts, so that opens meet files being deleted.
      if (!writer->Flush().ok()) break;
      if (next % 2000 == 0) {
        if (!writer->Compact().ok()) break;
        ++compactions;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  StateOptions ro = SmallOptions(dir.File("db"));
  ro.read_only = true;
  int opened = 0;
  std::vector<std::string> failures;
  for (int k = 0; k < 60 && failures.size() < 3; ++k) {
    auto reader = StateStore::Open(ro);
    if (reader.ok()) {
      ++opened;
    } else {
      failures.push_back(reader.status().ToString());
    }
  }
  done = true;
  w.join();
  EXPECT_GT(compactions.load(), 0);
  EXPECT_EQ(opened, 60) << (failures.empty() ? std::string() : failures.front());
}

// A reader configured with another session length than the writer's (gsau inspect without the
// pipeline's configuration) showed sessions cut to its own N: it reads at the writer's N.
TEST(StateStoreTest, ReadOnlyOpenReadsSessionsAtTheWritersLength) {
  gsau::testing::TempDir dir("gsau-state");
  {
    auto writer = MustOpen(SmallOptions(dir.File("db"), 5));
    for (int64_t ts = 0; ts < 7; ++ts) {
      const ClickEvent e{"alice", "i" + std::to_string(ts), ts, "click"};
      ASSERT_TRUE(writer->ApplyBatch(std::span(&e, 1), {}).ok());
    }
  }
  for (const uint32_t n : {3u, 5u, 9u}) {
    StateOptions ro = SmallOptions(dir.File("db"), n);
    ro.read_only = true;
    auto reader = StateStore::Open(ro);
    ASSERT_TRUE(reader.ok()) << reader.status();
    const auto session = (*reader)->Session(0);
    ASSERT_TRUE(session.ok()) << session.status();
    std::vector<int64_t> read;
    for (const auto& e : *session) read.push_back(e.ts_ms);
    EXPECT_EQ(read, (std::vector<int64_t>{2, 3, 4, 5, 6})) << "reader's session_length " << n;
    std::vector<int64_t> scanned;
    ASSERT_TRUE((*reader)
                    ->ForEachSession([&](UserId, std::span<const SessionEntry> s) {
                      for (const auto& e : s) scanned.push_back(e.ts_ms);
                    })
                    .ok());
    EXPECT_EQ(scanned, read) << "reader's session_length " << n;
  }
}

// Below its free-space floor the store writes nothing and says why; the same batch goes
// through once the floor is met (here: reopened with a floor the disk has).
TEST(StateStoreTest, LowDiskSpaceHoldsWritesUntilThereIsRoom) {
  gsau::testing::TempDir dir("gsau-state");
  const auto events = MakeEvents(5, 0, 500);
  auto o = SmallOptions(dir.File("db"));
  o.min_free_disk_bytes = uint64_t{1} << 62;  // no disk has this much free
  {
    auto store = MustOpen(o);
    const PartitionOffset off{kTp, 500};
    auto r = store->ApplyBatch(events, std::span(&off, 1));
    ASSERT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status();
    EXPECT_NE(r.status().ToString().find("free on the disk of"), std::string::npos) << r.status();
    EXPECT_EQ(store->Counts().events, 0u);
    EXPECT_TRUE(store->Offsets().empty());
  }
  o.min_free_disk_bytes = 1;
  {
    auto store = MustOpen(o);
    const PartitionOffset off{kTp, 500};
    ASSERT_TRUE(store->ApplyBatch(events, std::span(&off, 1)).ok());
    EXPECT_EQ(store->Counts().events, 500u);
  }
  // Below the floor a batch that is wrong in itself is still refused as such (an offset going
  // back is kInvalidArgument, which ingest does not retry; it was kUnavailable, retried until
  // space returned), and an empty batch writes nothing, so it is no error.
  o.min_free_disk_bytes = uint64_t{1} << 62;
  auto store = MustOpen(o);
  const PartitionOffset back{kTp, 5};
  EXPECT_EQ(store->ApplyBatch({}, std::span(&back, 1)).status().code(), StatusCode::kInvalidArgument);
  auto empty = store->ApplyBatch({}, {});
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->batch_seq, store->BatchSeq());
}

// 150,000 clicks: the longer ranges accumulate more entries than ChangesSince keeps before it
// deduplicates on the way (1 << 16), so that pass is checked too.
TEST(StateStoreTest, ChangeFeedListsWhatEachRangeOfBatchesTouched) {
  gsau::testing::TempDir dir("gsau-state");
  const auto events = MakeEvents(5, 0, 150000, StreamShape{200, 300});
  auto store = MustOpen(SmallOptions(dir.File("db")));
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<size_t> size(1, 120);
  std::vector<std::set<std::pair<UserId, ItemId>>> touched{{}};  // by batch seq
  std::vector<std::pair<uint64_t, uint64_t>> counts_after{{0, 0}};  // users, items
  std::vector<std::map<UserId, uint64_t>> clicks_after{{}};           // every user's clicks
  for (size_t k = 0; k < events.size();) {
    const size_t n = std::min(size(rng), events.size() - k);
    auto r = store->ApplyBatch(std::span(events).subspan(k, n), {});
    ASSERT_TRUE(r.ok());
    std::set<std::pair<UserId, ItemId>> t;
    auto clicks = clicks_after.back();
    for (const auto& a : r->events) {
      t.emplace(a.user, a.item);
      ++clicks[a.user];
    }
    touched.push_back(t);
    clicks_after.push_back(std::move(clicks));
    counts_after.emplace_back(store->Counts().users, store->Counts().items);
    k += n;
  }
  const uint64_t last = store->BatchSeq();
  ASSERT_EQ(last + 1, touched.size());
  auto check = [&](const StateStore& s, uint64_t from) {
    SCOPED_TRACE("from " + std::to_string(from));
    auto c = s.ChangesSince(from);
    ASSERT_TRUE(c.ok()) << c.status();
    std::set<std::pair<UserId, ItemId>> edges;
    for (uint64_t b = from + 1; b <= last; ++b) edges.insert(touched[b].begin(), touched[b].end());
    std::set<UserId> users;
    std::set<ItemId> items;
    for (auto [u, i] : edges) users.insert(u), items.insert(i);
    EXPECT_EQ(c->from_seq, from);
    EXPECT_EQ(c->to_seq, last);
    EXPECT_EQ(c->edges, std::vector(edges.begin(), edges.end()));
    EXPECT_EQ(c->users, std::vector(users.begin(), users.end()));
    EXPECT_EQ(c->items, std::vector(items.begin(), items.end()));
    EXPECT_EQ(c->first_new_user, counts_after[from].first);
    EXPECT_EQ(c->first_new_item, counts_after[from].second);
    EXPECT_TRUE(c->clicks_known);
    std::vector<std::pair<UserId, uint64_t>> clicks_before;
    for (UserId u : users) clicks_before.emplace_back(u, clicks_after[from][u]);
    EXPECT_EQ(c->clicks_before, clicks_before);
    for (const auto& [u, before] : c->clicks_before) {
      EXPECT_EQ(store->UserStats(u).clicks, clicks_after[last][u]);  // the test's own count holds
    }
  };
  for (uint64_t from : {uint64_t{0}, uint64_t{1}, last / 3, last / 2, last - 1, last}) check(*store, from);
  EXPECT_EQ(store->ChangesSince(last + 1).status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(store->Close().ok());
  store = MustOpen(SmallOptions(dir.File("db")));
  for (uint64_t from : {uint64_t{0}, last / 2, last}) check(*store, from);
}

TEST(StateStoreTest, ChangeFeedForgetsOldBatchesAfterRetention) {
  gsau::testing::TempDir dir("gsau-state");
  auto o = SmallOptions(dir.File("db"));
  o.changelog_retention_batches = 100;
  auto store = MustOpen(o);
  const auto events = MakeEvents(9, 0, 2100);
  for (size_t k = 0; k < events.size(); ++k) ASSERT_TRUE(store->ApplyBatch(std::span(events).subspan(k, 1), {}).ok());
  // Trimmed at batch 2048 (every 1,024 batches) to the last 100 batches.
  EXPECT_EQ(store->OldestChangeSeq(), 2048u - 100u);
  EXPECT_EQ(store->ChangesSince(100).status().code(), StatusCode::kNotFound);
  auto c = store->ChangesSince(2048 - 100);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->to_seq, 2100u);
  ASSERT_TRUE(store->Close().ok());
  store = MustOpen(o);
  EXPECT_EQ(store->OldestChangeSeq(), 2048u - 100u);
  EXPECT_TRUE(store->ChangesSince(2000).ok());
}

TEST(StateStoreTest, BadInputChangesNothing) {
  gsau::testing::TempDir dir("gsau-state");
  auto store = MustOpen(SmallOptions(dir.File("db")));
  const PartitionOffset o10{kTp, 10};
  ASSERT_TRUE(store->ApplyBatch(MakeEvents(1, 0, 10), std::span(&o10, 1)).ok());
  const auto before = DumpStore(*store);
  const auto counts = store->Counts();

  const PartitionOffset back{kTp, 9};
  EXPECT_EQ(store->ApplyBatch(MakeEvents(1, 10, 11), std::span(&back, 1)).status().code(),
            StatusCode::kInvalidArgument);
  const PartitionOffset twice[] = {{kTp, 11}, {kTp, 12}};
  EXPECT_EQ(store->ApplyBatch(MakeEvents(1, 10, 11), twice).status().code(), StatusCode::kInvalidArgument);
  const PartitionOffset negative{{"other", 3}, -1};
  EXPECT_EQ(store->ApplyBatch({}, std::span(&negative, 1)).status().code(), StatusCode::kInvalidArgument);
  std::vector<ClickEvent> bad = MakeEvents(1, 10, 12);
  bad[1].item_id = std::string(kMaxIdBytes + 1, 'x');
  EXPECT_EQ(store->ApplyBatch(bad, {}).status().code(), StatusCode::kInvalidArgument);
  bad[1].item_id = "";
  EXPECT_EQ(store->ApplyBatch(bad, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Counts(), counts);
  EXPECT_EQ(DumpStore(*store), before);

  // Nothing at all: no batch. Offsets alone (every event of a poll dead-lettered): a batch.
  auto r = store->ApplyBatch({}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->batch_seq, counts.batch_seq);
  const PartitionOffset two[] = {{kTp, 15}, {{"clicks", 1}, 4}};
  r = store->ApplyBatch({}, two);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->batch_seq, counts.batch_seq + 1);
  EXPECT_EQ(store->Offsets(), (std::vector<PartitionOffset>{{kTp, 15}, {{"clicks", 1}, 4}}));
  ASSERT_TRUE(store->Close().ok());
  store = MustOpen(SmallOptions(dir.File("db")));
  EXPECT_EQ(store->Offsets(), (std::vector<PartitionOffset>{{kTp, 15}, {{"clicks", 1}, 4}}));
  EXPECT_EQ(store->BatchSeq(), counts.batch_seq + 1);
  EXPECT_TRUE(store->ChangesSince(0)->edges.size() > 0);
}

// The fingerprint of the record before each partition's offset travels with the offset, across
// a reopen; an offset moved on without one (a caller that has none) leaves none known, not the
// old offset's.
TEST(StateStoreTest, EachOffsetKeepsTheFingerprintOfTheRecordBeforeIt) {
  gsau::testing::TempDir dir("gsau-state");
  auto store = MustOpen(SmallOptions(dir.File("db")));
  const TopicPartition other{"clicks", 1};
  const auto fingerprint = [&](const TopicPartition& tp) -> uint64_t {
    const auto r = store->LastRecord(tp);
    if (r) {
      EXPECT_EQ(r->next_offset, store->Offset(tp)) << "the fingerprint of another offset";
    }
    return r ? r->last_record : 0;
  };
  const PartitionOffset first[] = {{kTp, 10, 0xABCDEF0123456789ULL}, {other, 4, 7}};
  ASSERT_TRUE(store->ApplyBatch(MakeEvents(1, 0, 10), first).ok());
  EXPECT_EQ(fingerprint(kTp), 0xABCDEF0123456789ULL);
  EXPECT_EQ(fingerprint(other), 7u);
  EXPECT_EQ(fingerprint({"clicks", 9}), 0u);
  const PartitionOffset moved[] = {{other, 6}};  // no fingerprint
  ASSERT_TRUE(store->ApplyBatch({}, moved).ok());
  EXPECT_EQ(fingerprint(other), 0u);
  ASSERT_TRUE(store->Close().ok());
  store = MustOpen(SmallOptions(dir.File("db")));
  EXPECT_EQ(store->Offsets(),
            (std::vector<PartitionOffset>{{kTp, 10, 0xABCDEF0123456789ULL}, {other, 6, 0}}));
  const PartitionOffset again[] = {{kTp, 12, 99}};
  ASSERT_TRUE(store->ApplyBatch(MakeEvents(1, 10, 12), again).ok());
  ASSERT_TRUE(store->Close().ok());
  store = MustOpen(SmallOptions(dir.File("db")));
  EXPECT_EQ(fingerprint(kTp), 99u);
  EXPECT_EQ(store->Offset(kTp), 12);
}

// Without a WAL nothing is lost on a clean close (RocksDB flushes then), and the flushes are
// atomic across families.
TEST(StateStoreTest, WithoutWalACleanCloseKeepsEverything) {
  gsau::testing::TempDir dir("gsau-state");
  auto o = SmallOptions(dir.File("db"));
  o.wal = false;
  o.compression = Compression::kZSTD;
  const auto events = MakeEvents(13, 0, 3000);
  Reference ref(50);
  ref.Apply(events);
  {
    auto store = MustOpen(o);
    std::mt19937_64 rng(13);
    ApplyInBatches(*store, events, 0, events.size(), rng, 400);
    ASSERT_TRUE(store->Compact().ok());
  }
  auto store = MustOpen(o);
  EXPECT_EQ(DumpStore(*store), ref.ToDump());
  EXPECT_EQ(store->Offset(kTp), 3000);
  ASSERT_TRUE(store->Close().ok());
  ASSERT_TRUE(store->Close().ok());
  EXPECT_EQ(store->Counts(), StateCounts{});
  EXPECT_FALSE(store->FindUser("u0").has_value());
  EXPECT_EQ(store->ApplyBatch(events, {}).status().code(), StatusCode::kAborted);
  // Every Result reader says closed, none that the id is unknown (a publisher dropped the row).
  EXPECT_EQ(store->Session(0).status().code(), StatusCode::kAborted);
  EXPECT_EQ(store->UserNeighbours(0).status().code(), StatusCode::kAborted);
  EXPECT_EQ(store->ItemNeighbours(0).status().code(), StatusCode::kAborted);
  EXPECT_EQ(store->UserExternalId(0).status().code(), StatusCode::kAborted);
  EXPECT_EQ(store->ItemExternalId(0).status().code(), StatusCode::kAborted);
  EXPECT_EQ(store->ChangesSince(0).status().code(), StatusCode::kAborted);
}

TEST(StateStoreTest, OptionsAreValidated) {
  StateOptions o;
  EXPECT_EQ(StateStore::Open(o).status().code(), StatusCode::kInvalidArgument);  // no path
  gsau::testing::TempDir dir("gsau-state");
  o = SmallOptions(dir.File("db"));
  o.session_length = 0;
  EXPECT_EQ(StateStore::Open(o).status().code(), StatusCode::kInvalidArgument);
  o = SmallOptions(dir.File("db"));
  o.sync = true;
  o.wal = false;
  const auto sync_without_wal = StateStore::Open(o).status();
  EXPECT_EQ(sync_without_wal.code(), StatusCode::kInvalidArgument) << sync_without_wal;
  EXPECT_NE(sync_without_wal.message().find("sync needs wal"), std::string::npos) << sync_without_wal;
  o = SmallOptions(dir.File("missing"));
  o.create_if_missing = false;
  EXPECT_EQ(StateStore::Open(o).status().code(), StatusCode::kNotFound);
}

// Readers on other threads see whole batches only: every batch adds exactly kPerBatch clicks
// of one user, so any count a reader sees is a multiple of it, that user's session is the last
// min(64, clicks) clicks of some batch, and the stats always agree with the count. The writer
// writes outside the readers' lock: a session read from the database as it is rather than as of
// the cached count (the batch written, not yet committed) lacks the clicks the new batch trimmed.
TEST(StateStoreTest, ConcurrentReadersSeeWholeBatches) {
  gsau::testing::TempDir dir("gsau-state");
  auto store = MustOpen(SmallOptions(dir.File("db"), 64));
  constexpr int kPerBatch = 16;
  constexpr int kBatches = 300;
  std::atomic<bool> done{false};
  std::atomic<int> violations{0}, reads{0};
  auto reader = [&] {
    while (!done.load()) {
      const auto c = store->Counts();
      if (c.events % kPerBatch != 0 || c.events != c.batch_seq * kPerBatch) ++violations;
      if (c.users > 0) {
        auto s = store->Session(0);
        const auto st = store->UserStats(0);
        // (Two calls: each sees a whole batch, maybe not the same one.)
        if (!s.ok() || s->empty() || st.clicks % kPerBatch != 0) {
          ++violations;
        } else {
          // Click b * kPerBatch + k has time b * 100 + k: the session holds clicks
          // [clicks - min(64, clicks), clicks) for clicks a multiple of kPerBatch.
          auto index = [&](const SessionEntry& e) { return e.ts_ms / 100 * kPerBatch + e.ts_ms % 100; };
          const int64_t clicks = index(s->back()) + 1;
          bool ok = clicks % kPerBatch == 0 && static_cast<int64_t>(s->size()) == std::min<int64_t>(64, clicks);
          for (size_t j = 0; ok && j < s->size(); ++j) {
            ok = index((*s)[j]) == clicks - static_cast<int64_t>(s->size() - j);
          }
          if (!ok) ++violations;
        }
      }
      uint64_t edges = 0;
      auto scanned = store->ForEachEdge([&](const Edge&) { ++edges; });
      if (!scanned.ok() || scanned->edges != edges) ++violations;
      ++reads;
    }
  };
  std::thread r1(reader), r2(reader);
  for (int b = 0; b < kBatches; ++b) {
    std::vector<ClickEvent> events;
    for (int k = 0; k < kPerBatch; ++k) {
      events.push_back({"solo", "i" + std::to_string((b * kPerBatch + k) % 97), b * 100 + k, "click"});
    }
    ASSERT_TRUE(store->ApplyBatch(events, {}).ok());
  }
  done = true;
  r1.join();
  r2.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_GT(reads.load(), 0);
}


// Readers that overlap one another must not keep the writer out: glibc's rwlock lets new
// readers in while the writer waits, and Session/ItemNeighbours read RocksDB under the shared
// lock, so three threads reading in a loop let 4-230 batches through a minute. They now read
// outside it (1,000 batches: ~1 s). A liveness bound, not a speed target.
TEST(StateStoreTest, ReadersInALoopDoNotHoldOffTheWriter) {
  gsau::testing::TempDir dir("gsau-state");
  auto store = MustOpen(SmallOptions(dir.File("db"), 64));
  auto apply = [&](int b) {
    std::vector<ClickEvent> events;
    for (int k = 0; k < 100; ++k) {
      events.push_back({"u" + std::to_string((b * 100 + k) % 50), "i" + std::to_string(k % 7), b * 100 + k, "click"});
    }
    return store->ApplyBatch(events, {}).status();
  };
  ASSERT_TRUE(apply(0).ok());
  const UserId user = store->FindUser("u0").value();
  const ItemId item = store->FindItem("i0").value();
  std::atomic<bool> done{false};
  std::atomic<int64_t> reads{0};
  auto reader = [&](int k) {
    while (!done.load()) {
      const bool ok = k == 0 ? store->ItemNeighbours(item).ok() : store->Session(user).ok();
      if (ok) ++reads;
    }
  };
  std::vector<std::thread> readers;
  for (int k = 0; k < 3; ++k) readers.emplace_back(reader, k);
  constexpr int kBatches = 1000;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int applied = 1;
  while (applied < kBatches && std::chrono::steady_clock::now() < deadline) {
    const Status s = apply(applied);
    EXPECT_TRUE(s.ok()) << s;  // not ASSERT: the readers must be joined first
    if (!s.ok()) break;
    ++applied;
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(applied, kBatches) << "the writer got " << applied << " batches in within 60 s beside " << reads.load()
                               << " reads";
  EXPECT_GT(reads.load(), 0);
}

// Every reader answers from the batch its caches were committed with: a read made between two
// Counts() calls holds a whole batch between theirs, never the batch still being committed.
// Batch b: "solo" clicks items i<c % 97> for its clicks c = 14b .. 14b + 13 (time c); new user
// u<b> and u<b-1> click "hot" (time b).
TEST(StateStoreTest, NeighbourAndChangeReadsAgreeWithCountsBesideAWriter) {
  gsau::testing::TempDir dir("gsau-state");
  auto options = SmallOptions(dir.File("db"), 64);
  options.changelog_retention_batches = 8;
  auto store = MustOpen(options);
  constexpr int kSolo = 14, kItems = 97, kBatches = 1500;
  auto apply = [&](int b) {
    std::vector<ClickEvent> events;
    for (int k = 0; k < kSolo; ++k) {
      const int c = b * kSolo + k;
      events.push_back({"solo", "i" + std::to_string(c % kItems), c, "click"});
    }
    events.push_back({"u" + std::to_string(b), "hot", b, "click"});
    if (b > 0) events.push_back({"u" + std::to_string(b - 1), "hot", b, "click"});
    return store->ApplyBatch(events, {}).status();
  };
  ASSERT_TRUE(apply(0).ok());
  ASSERT_TRUE(apply(1).ok());
  const UserId solo = store->FindUser("solo").value();
  const ItemId hot = store->FindItem("hot").value();
  ASSERT_EQ(solo, 0u);  // then u<b> is user b + 1

  std::atomic<bool> done{false};
  std::atomic<int> violations{0}, reads{0};
  std::mutex mu;
  std::vector<std::string> first_violations;
  auto violation = [&](const std::string& what) {
    ++violations;
    std::lock_guard lock(mu);
    if (first_violations.size() < 5) first_violations.push_back(what);
  };
  // The batches `seq` lies within (both read around it).
  auto check_seq = [&](const char* reader, uint64_t seq, uint64_t lo, uint64_t hi) {
    if (seq < lo || seq > hi) {
      violation(std::string(reader) + " holds batch " + std::to_string(seq) + " outside [" + std::to_string(lo) +
                ", " + std::to_string(hi) + "]");
    }
  };
  auto reader = [&] {
    while (!done.load()) {
      const uint64_t before = store->BatchSeq();
      auto mine = store->UserNeighbours(solo);
      auto users = store->ItemNeighbours(hot);
      const uint64_t from = std::max<uint64_t>({store->OldestChangeSeq(), before > 3 ? before - 3 : 1, 1});
      auto changes = store->ChangesSince(from);
      const uint64_t after = store->BatchSeq();
      if (!mine.ok() || !users.ok()) {
        violation("read failed");
        continue;
      }
      // solo: n clicks, edge i<j> counted once for each c < n with c % 97 == j, last at the
      // largest such c.
      uint64_t n = 0;
      for (const auto& e : *mine) n += e.count;
      if (n % kSolo != 0 || mine->size() != std::min<uint64_t>(n, kItems)) {
        violation("solo has " + std::to_string(n) + " clicks on " + std::to_string(mine->size()) + " items");
      } else {
        check_seq("UserNeighbours", n / kSolo, before, after);
        for (const auto& e : *mine) {
          auto name = store->ItemExternalId(e.item);
          const uint64_t j = name.ok() ? std::stoull(name->substr(1)) : kItems;
          const uint64_t count = j < n ? (n - 1 - j) / kItems + 1 : 0;
          const int64_t last = static_cast<int64_t>(j + (count - 1) * kItems);
          if (count == 0 || e.count != count || e.last_ts_ms != last) {
            violation("solo's edge to item " + std::to_string(e.item));
          }
        }
      }
      // hot: users u<0> .. u<m-1> after batch m; each twice, the newest once (at time m - 1).
      const size_t m = users->size();
      check_seq("ItemNeighbours", m, before, after);
      for (size_t k = 0; k < m; ++k) {
        const auto& e = (*users)[k];
        const bool newest = k + 1 == m;
        if (e.user != k + 1 || e.count != (newest ? 1u : 2u) ||
            e.last_ts_ms != static_cast<int64_t>(newest ? k : k + 1)) {
          violation("hot's user " + std::to_string(e.user) + " of " + std::to_string(m) + " has " +
                    std::to_string(e.count) + " clicks");
        }
      }
      // Batches (from, to] touched solo and u<from - 1> .. u<to - 1>; u<from> was the first new.
      if (changes.ok()) {
        check_seq("ChangesSince", changes->to_seq, before, after);
        const uint64_t span = changes->to_seq - from;
        if (span > 0 && (changes->users.size() != span + 2 || changes->first_new_user != from + 1 ||
                         changes->users.front() != solo)) {
          violation("changes (" + std::to_string(from) + ", " + std::to_string(changes->to_seq) + "] list " +
                    std::to_string(changes->users.size()) + " users");
        }
      } else if (changes.status().code() != StatusCode::kNotFound) {  // trimmed meanwhile: fine
        violation("ChangesSince: " + changes.status().ToString());
      }
      ++reads;
    }
  };
  std::thread r1(reader), r2(reader);
  for (int b = 2; b < kBatches; ++b) ASSERT_TRUE(apply(b).ok());
  done = true;
  r1.join();
  r2.join();
  EXPECT_EQ(violations.load(), 0) << ::testing::PrintToString(first_violations);
  EXPECT_GT(reads.load(), 0);
}

}  // namespace
}  // namespace gsau::state
