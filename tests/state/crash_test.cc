// Crash test: a child process applies batches in a loop and is killed with SIGKILL at random
// moments (while opening, writing, flushing, compacting); after each kill the reopened state
// must be exactly the first k whole batches, with offsets that say k.
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "gsau/state/state_store.h"
#include "reference_state.h"
#include "stream.h"
#include "temp_dir.h"

namespace gsau::state {
namespace {

constexpr uint64_t kSeed = 42;
constexpr uint64_t kBatch = 100;
constexpr int kKills = 24;

TEST(StateCrashTest, KilledWriterLeavesWholeBatchesAndMatchingOffsets) {
  gsau::testing::TempDir dir("gsau-state-crash");
  const std::string db = dir.File("db");
  const std::string batch_arg = std::to_string(kBatch);
  const std::string seed_arg = std::to_string(kSeed);
  std::mt19937_64 rng(20261127);
  // Most kills land 0-150 ms after the child has opened the store (mid-stream: in a write, a
  // flush, a compaction); every fifth lands 0-40 ms after the start (in Open's recovery).
  std::uniform_int_distribution<int> delay_ms(0, 150), early_ms(0, 40);

  testing::Reference ref(8);
  uint64_t applied = 0;  // events the reference holds
  int killed_running = 0, progressed = 0;
  for (int round = 0; round < kKills; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    const std::string fd_arg = std::to_string(ready[1]);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(ready[0]);
      execl(GSAU_STATE_CRASH_CHILD, GSAU_STATE_CRASH_CHILD, db.c_str(), seed_arg.c_str(), batch_arg.c_str(),
            fd_arg.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(ready[1]);
    const bool early = round % 5 == 4;
    if (!early) {
      pollfd p{ready[0], POLLIN, 0};
      EXPECT_EQ(poll(&p, 1, 60'000), 1) << "the child did not commit a first batch within 60 s";
    }
    close(ready[0]);
    std::this_thread::sleep_for(std::chrono::milliseconds(early ? early_ms(rng) : delay_ms(rng)));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    if (WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) {
      ++killed_running;
    } else {
      ADD_FAILURE() << "child exited by itself, status " << wstatus;
    }

    StateOptions o;
    o.path = db;
    o.session_length = 8;
    o.write_buffer_bytes = 1 << 20;
    o.block_cache_bytes = 8 << 20;
    auto opened = StateStore::Open(o);
    if (!opened.ok() && opened.status().code() == StatusCode::kNotFound) continue;  // killed before creating it
    ASSERT_TRUE(opened.ok()) << opened.status();
    auto& store = **opened;

    const int64_t next = store.Offset({"clicks", 0}).value_or(0);
    const int64_t batches = store.Offset({"clicks", 1}).value_or(0);
    ASSERT_EQ(next % static_cast<int64_t>(kBatch), 0) << "offset inside a batch";
    ASSERT_EQ(next, batches * static_cast<int64_t>(kBatch)) << "the two offsets of a batch disagree";
    ASSERT_EQ(store.BatchSeq(), static_cast<uint64_t>(batches)) << "batch sequence and offsets disagree";
    ASSERT_GE(static_cast<uint64_t>(next), applied) << "a committed batch was lost";
    if (static_cast<uint64_t>(next) > applied) ++progressed;
    ref.Apply(testing::MakeEvents(kSeed, applied, static_cast<uint64_t>(next), testing::StreamShape{2000, 3000}));
    applied = static_cast<uint64_t>(next);
    const StateCounts c = store.Counts();
    ASSERT_EQ(c.events, applied) << "state holds a different number of events than the offsets say";
    ASSERT_EQ(c.users, ref.users());
    ASSERT_EQ(c.items, ref.items());
    ASSERT_EQ(c.edges, ref.edges());
    // Full comparison on some rounds and the last (it reads every session and edge).
    if (round % 4 == 3 || round == kKills - 1) {
      ASSERT_EQ(testing::DumpStore(store), ref.ToDump());
    }
    auto changes = store.ChangesSince(0);
    ASSERT_TRUE(changes.ok()) << changes.status();
    ASSERT_EQ(changes->to_seq, static_cast<uint64_t>(batches));
  }
  std::printf("crash test: %d kills, %d with progress, %llu events in %llu batches\n", killed_running,
              progressed, static_cast<unsigned long long>(applied),
              static_cast<unsigned long long>(applied / kBatch));
  EXPECT_GE(killed_running, 20);
  EXPECT_GE(progressed, kKills / 2) << "the child rarely got to write: the test proves little";
  EXPECT_GT(applied, 10 * kBatch);
}

}  // namespace
}  // namespace gsau::state
