// Checkpoint folders: which ones count, how one replaces another of the same state batch, and
// what start-up mends after a stop in between. No broker: plain folders with a model.pt marker.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gsau/pipeline/checkpoints.h"
#include "gsau/pipeline/pipeline.h"
#include "temp_dir.h"

namespace gsau::pipeline {
namespace {

namespace fs = std::filesystem;
using gsau::testing::TempDir;
using gsau::testing::WriteFile;

// A checkpoint folder whose model.pt holds `model` (nothing when `model` is empty: incomplete).
std::string MakeCheckpoint(const TempDir& dir, const std::string& name, const std::string& model) {
  const std::string path = dir.File(name);
  fs::create_directories(fs::path(path) / "state");
  if (!model.empty()) WriteFile((fs::path(path) / "model.pt").string(), model);
  return path;
}

std::string Model(const std::string& checkpoint) {
  std::ifstream in(fs::path(checkpoint) / "model.pt");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Names(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) out.push_back(fs::path(p).filename().string());
  return out;
}

// RecoverCheckpoints' count, -1 for an error.
int Recovered(const std::string& dir) {
  const auto r = RecoverCheckpoints(dir);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : -1;
}

std::vector<std::string> Entries(const TempDir& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir.path())) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(CheckpointTest, OnlyCompleteCheckpointFoldersAreListedOldestFirst) {
  TempDir dir;
  MakeCheckpoint(dir, "ckpt-000000000020", "b");
  MakeCheckpoint(dir, "ckpt-000000000007", "a");
  MakeCheckpoint(dir, "ckpt-000000000030", "");  // no model.pt
  MakeCheckpoint(dir, "ckpt-000000000040.tmp", "c");
  MakeCheckpoint(dir, "ckpt-000000000050.replaced", "d");
  MakeCheckpoint(dir, "ckpt-", "e");
  MakeCheckpoint(dir, "ckpt-12x", "f");
  fs::create_directories(dir.path() / "before-rollback-17" / "ckpt-000000000060");
  WriteFile(dir.File("before-rollback-17/ckpt-000000000060/model.pt"), "g");
  WriteFile(dir.File("ckpt-000000000070"), "a file, not a folder");
  EXPECT_EQ(Names(ListCheckpoints(dir.path().string())),
            (std::vector<std::string>{"ckpt-000000000007", "ckpt-000000000020"}));
  EXPECT_TRUE(ListCheckpoints(dir.File("missing")).empty());
  // As recovered: ckpt-50.replaced stands in for its missing twin.
  EXPECT_EQ(Names(ListCheckpointsAsRecovered(dir.path().string())),
            (std::vector<std::string>{"ckpt-000000000007", "ckpt-000000000020", "ckpt-000000000050.replaced"}));
}

// The batch in a checkpoint's name (the start compares it with the state's when it passes an
// unreadable one over); 0 for what is not a checkpoint's name.
TEST(CheckpointTest, TheBatchOfACheckpointComesFromItsName) {
  EXPECT_EQ(CheckpointBatch("/c/ckpt-000000000042"), 42u);
  EXPECT_EQ(CheckpointBatch("/c/ckpt-000000000042/"), 42u);
  EXPECT_EQ(CheckpointBatch("ckpt-7.replaced"), 7u);
  EXPECT_EQ(CheckpointBatch("/c/ckpt-18446744073709551615"), 18446744073709551615u);
  EXPECT_EQ(CheckpointBatch("/c/ckpt-000000000042.tmp"), 0u);
  EXPECT_EQ(CheckpointBatch("/c/ckpt-12x"), 0u);
  EXPECT_EQ(CheckpointBatch("/c/ckpt-"), 0u);
  EXPECT_EQ(CheckpointBatch("/c/before-rollback-17"), 0u);
}

// The name a checkpoint is written under reads back as its batch; the folder it is built in is
// never listed, and start-up removes one a stop left.
TEST(CheckpointTest, ACheckpointIsBuiltBesideItsNameAndOnlyListedOnceInPlace) {
  TempDir dir("gsau-ckpt-name");
  const std::string final_dir = CheckpointPath(dir.path(), 42);
  EXPECT_EQ(fs::path(final_dir), fs::path(dir.path()) / "ckpt-000000000042");
  EXPECT_EQ(CheckpointBatch(final_dir), 42u);
  EXPECT_EQ(CheckpointBatch(CheckpointPath(dir.path(), 18446744073709551615u)), 18446744073709551615u);
  const std::string built = CheckpointBuildPath(final_dir);
  EXPECT_EQ(fs::path(built).parent_path(), fs::path(dir.path())) << "a sibling: the rename stays in one folder";
  MakeCheckpoint(dir, fs::path(built).filename().string(), "model");
  EXPECT_TRUE(ListCheckpoints(dir.path()).empty());
  EXPECT_TRUE(ListCheckpointsAsRecovered(dir.path()).empty());
  EXPECT_EQ(Recovered(dir.path()), 0);
  EXPECT_FALSE(fs::exists(built)) << "a stop before the rename leaves nothing start-up keeps";
  ASSERT_TRUE(fs::create_directories(built));
  WriteFile((fs::path(built) / "model.pt").string(), "model");
  ASSERT_TRUE(InstallCheckpoint(built, final_dir).ok());
  EXPECT_EQ(ListCheckpoints(dir.path()), std::vector<std::string>{final_dir});
}

// The rollback marker names its target absolute (a restart may run elsewhere) and is gone once
// cleared; clearing none is no error.
TEST(CheckpointTest, TheRollbackMarkerNamesItsTargetUntilCleared) {
  TempDir dir("gsau-marker");
  const std::string checkpoints = dir.File("checkpoints");
  EXPECT_FALSE(UnfinishedRollback(checkpoints).has_value());
  const std::string target = dir.File("archive/../archive/ckpt-000000000003");
  ASSERT_TRUE(WriteRollbackMarker(checkpoints, fs::relative(target).string()).ok());
  EXPECT_TRUE(fs::exists(RollbackMarkerPath(checkpoints)));
  EXPECT_EQ(fs::path(RollbackMarkerPath(checkpoints)).parent_path(), fs::path(checkpoints));
  // (relative() resolves symbolic links, a TMPDIR's among them: compared resolved)
  const auto marked = UnfinishedRollback(checkpoints);
  ASSERT_TRUE(marked.has_value());
  EXPECT_TRUE(fs::path(*marked).is_absolute()) << *marked;
  EXPECT_EQ(fs::weakly_canonical(*marked), fs::weakly_canonical(target));
  EXPECT_TRUE(ListCheckpoints(checkpoints).empty()) << "the marker is not a checkpoint";
  ASSERT_TRUE(ClearRollbackMarker(checkpoints).ok());
  EXPECT_FALSE(UnfinishedRollback(checkpoints).has_value());
  EXPECT_FALSE(fs::exists(RollbackMarkerPath(checkpoints)));
  EXPECT_TRUE(ClearRollbackMarker(checkpoints).ok());
}

// An entry stat() refuses threw std::filesystem::filesystem_error out of the listing: in the
// learner's interval checkpoint that ended the pipeline. Here a symlink loop (ELOOP; the tests
// run as root, for whom a folder's mode refuses nothing).
TEST(CheckpointTest, AnEntryThatCannotBeReadIsLeftOutNotThrown) {
  TempDir dir;
  MakeCheckpoint(dir, "ckpt-000000000007", "a");
  fs::create_symlink("ckpt-000000000009", dir.path() / "ckpt-000000000009");
  fs::create_symlink("ckpt-000000000010.replaced", dir.path() / "ckpt-000000000010.replaced");
  std::vector<std::string> listed, recovered;
  ASSERT_NO_THROW(listed = Names(ListCheckpoints(dir.path().string())));
  ASSERT_NO_THROW(recovered = Names(ListCheckpointsAsRecovered(dir.path().string())));
  EXPECT_EQ(listed, (std::vector<std::string>{"ckpt-000000000007"}));
  EXPECT_EQ(recovered, (std::vector<std::string>{"ckpt-000000000007"}));
}

TEST(CheckpointTest, ANewCheckpointOfTheSameBatchReplacesTheOldOneAndLeavesNothingBehind) {
  TempDir dir;
  const std::string final_dir = MakeCheckpoint(dir, "ckpt-000000000005", "old model");
  const std::string built = MakeCheckpoint(dir, "ckpt-000000000005.tmp", "new model");
  ASSERT_TRUE(InstallCheckpoint(built, final_dir).ok());
  EXPECT_EQ(Model(final_dir), "new model");
  EXPECT_EQ(Entries(dir), (std::vector<std::string>{"ckpt-000000000005"}));

  const std::string next = MakeCheckpoint(dir, "ckpt-000000000009.tmp", "next model");
  ASSERT_TRUE(InstallCheckpoint(next, dir.File("ckpt-000000000009")).ok()) << "nothing to replace";
  EXPECT_EQ(Names(ListCheckpoints(dir.path().string())),
            (std::vector<std::string>{"ckpt-000000000005", "ckpt-000000000009"}));
}

// The old code removed the checkpoint before renaming the new one in: with checkpoint_keep = 1
// a failure (or a stop) between the two left no checkpoint at all.
TEST(CheckpointTest, AFailedReplacementKeepsTheCheckpointThatWasThere) {
  TempDir dir;
  const std::string final_dir = MakeCheckpoint(dir, "ckpt-000000000005", "old model");
  const Status s = InstallCheckpoint(dir.File("ckpt-000000000005.tmp"), final_dir);  // never built
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("ckpt-000000000005.tmp"), std::string::npos) << s.ToString();
  EXPECT_EQ(Model(final_dir), "old model");
  EXPECT_EQ(Entries(dir), (std::vector<std::string>{"ckpt-000000000005"}));
}

// Each point a stop can fall on inside InstallCheckpoint, as the folder is left, and what
// start-up makes of it.
// Old checkpoints go through a .tmp name before their files are removed: a stop part-way
// through a removal (model.pt still there, state files gone) left a folder that looked
// complete, listed and offered to a rollback.
TEST(CheckpointTest, PruningKeepsTheNewestAndLeavesNoHalfRemovedCheckpointListed) {
  TempDir dir;
  for (const char* n : {"ckpt-000000000003", "ckpt-000000000009", "ckpt-000000000011", "ckpt-000000000020"}) {
    MakeCheckpoint(dir, n, n);
  }
  MakeCheckpoint(dir, "ckpt-000000000030", "");  // incomplete: not counted, not touched
  EXPECT_EQ(PruneCheckpoints(dir.path().string(), 2), 2);
  EXPECT_EQ(Entries(dir), (std::vector<std::string>{"ckpt-000000000011", "ckpt-000000000020", "ckpt-000000000030"}));
  EXPECT_EQ(PruneCheckpoints(dir.path().string(), 2), 0);
  // What a stop inside a removal leaves (renamed, part of it gone): not listed; gone at start-up.
  MakeCheckpoint(dir, "ckpt-000000000011.tmp", "half removed");
  EXPECT_EQ(Names(ListCheckpointsAsRecovered(dir.path().string())),
            (std::vector<std::string>{"ckpt-000000000011", "ckpt-000000000020"}));
  fs::remove_all(dir.File("ckpt-000000000011"));
  EXPECT_EQ(Names(ListCheckpointsAsRecovered(dir.path().string())), (std::vector<std::string>{"ckpt-000000000020"}));
  ASSERT_TRUE(RecoverCheckpoints(dir.path().string()).ok());
  EXPECT_EQ(Entries(dir), (std::vector<std::string>{"ckpt-000000000020", "ckpt-000000000030"}));
}

TEST(CheckpointTest, StartUpPutsBackTheCheckpointAStopLeftRenamedAside) {
  TempDir dir;
  // Stopped after renaming the old one aside, before renaming the new one in.
  MakeCheckpoint(dir, "ckpt-000000000005.replaced", "old model");
  MakeCheckpoint(dir, "ckpt-000000000005.tmp", "new model");
  EXPECT_TRUE(ListCheckpoints(dir.path().string()).empty()) << "the state the old code could leave";
  // A reader (inspect, evaluate) sees what start-up will put back, and changes nothing.
  EXPECT_EQ(Names(ListCheckpointsAsRecovered(dir.path().string())),
            (std::vector<std::string>{"ckpt-000000000005.replaced"}));
  EXPECT_EQ(Entries(dir), (std::vector<std::string>{"ckpt-000000000005.replaced", "ckpt-000000000005.tmp"}));
  EXPECT_EQ(Recovered(dir.path().string()), 1);
  EXPECT_EQ(Entries(dir), (std::vector<std::string>{"ckpt-000000000005"}));
  EXPECT_EQ(Model(dir.File("ckpt-000000000005")), "old model");
  EXPECT_EQ(Recovered(dir.path().string()), 0) << "nothing left to mend";
}

TEST(CheckpointTest, StartUpDropsTheOldCopyWhenTheNewOneIsInPlace) {
  TempDir dir;
  // Stopped after renaming the new one in, before removing the old one.
  MakeCheckpoint(dir, "ckpt-000000000005.replaced", "old model");
  MakeCheckpoint(dir, "ckpt-000000000005", "new model");
  MakeCheckpoint(dir, "ckpt-000000000003", "older model");
  EXPECT_EQ(Names(ListCheckpointsAsRecovered(dir.path().string())),
            (std::vector<std::string>{"ckpt-000000000003", "ckpt-000000000005"}));
  EXPECT_EQ(Recovered(dir.path().string()), 0);
  EXPECT_EQ(Entries(dir), (std::vector<std::string>{"ckpt-000000000003", "ckpt-000000000005"}));
  EXPECT_EQ(Model(dir.File("ckpt-000000000005")), "new model");
}

// A file no one may remove, root included (the ext4/xfs immutable attribute), for the length of
// a test; null where the filesystem or the process's privileges do not allow it. A test killed
// while holding one leaves a folder under the temp directory that only `chattr -i` frees.
class ImmutableFile {
 public:
  static std::unique_ptr<ImmutableFile> Make(const std::string& path) {
    WriteFile(path, "x");
    auto f = std::unique_ptr<ImmutableFile>(new ImmutableFile(path));
    return f->Set(true) ? std::move(f) : nullptr;
  }
  ~ImmutableFile() { Set(false); }

 private:
  explicit ImmutableFile(std::string path) : path_(std::move(path)) {}
  bool Set(bool on) {
    const int fd = ::open(path_.c_str(), O_RDONLY);
    if (fd < 0) return false;
    int flags = 0;
    bool ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    ok = ok && ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    ::close(fd);
    return ok;
  }
  std::string path_;
};

// A checkpoint that could not be put back (its incomplete twin cannot be removed) let the
// pipeline start, from an older checkpoint or none: it is an error naming the path.
TEST(CheckpointTest, ACheckpointThatCannotBePutBackIsAnError) {
  TempDir dir;
  MakeCheckpoint(dir, "ckpt-000000000005.replaced", "old model");
  MakeCheckpoint(dir, "ckpt-000000000005", "");  // the new one, stopped half-built
  auto pinned = ImmutableFile::Make(dir.File("ckpt-000000000005/state/pinned"));
  if (!pinned) GTEST_SKIP() << "no immutable attribute here (needs CAP_LINUX_IMMUTABLE and ext4 or xfs)";
  const auto r = RecoverCheckpoints(dir.path().string());
  ASSERT_FALSE(r.ok()) << "put back " << *r;
  EXPECT_EQ(r.status().code(), StatusCode::kIoError) << r.status();
  EXPECT_NE(r.status().message().find("ckpt-000000000005"), std::string::npos) << r.status();
  EXPECT_EQ(Model(dir.File("ckpt-000000000005.replaced")), "old model") << "left where it was";
  pinned.reset();
  EXPECT_EQ(Recovered(dir.path().string()), 1);
  EXPECT_EQ(Model(dir.File("ckpt-000000000005")), "old model");
}

TEST(CheckpointTest, StartUpLeavesWhatItDoesNotOwnAndWhatItCannotUse) {
  TempDir dir;
  MakeCheckpoint(dir, "ckpt-000000000008.replaced", "");  // incomplete: nothing to put back
  fs::create_directories(dir.path() / "before-rollback-17" / "ckpt-000000000060.replaced");
  WriteFile(dir.File("before-rollback-17/ckpt-000000000060.replaced/model.pt"), "kept aside");
  MakeCheckpoint(dir, "notes.tmp", "");
  EXPECT_EQ(Recovered(dir.path().string()), 0);
  EXPECT_EQ(Entries(dir), (std::vector<std::string>{"before-rollback-17", "ckpt-000000000008.replaced",
                                                    "notes.tmp"}));
  EXPECT_TRUE(fs::exists(dir.File("before-rollback-17/ckpt-000000000060.replaced/model.pt")));
  EXPECT_EQ(Recovered(dir.File("missing")), 0);
}

// Pipeline options with the state and checkpoints in `dir`, a small state store.
PipelineOptions SmallPipeline(const TempDir& dir) {
  PipelineOptions o;
  o.state.path = dir.File("state");
  o.state.block_cache_bytes = 8 << 20;
  o.state.write_buffer_bytes = 1 << 20;
  o.checkpoint_dir = dir.File("checkpoints");
  return o;
}

// A rollback beside a running pipeline (the old process not stopped yet, a rolling update)
// would move that one's state and checkpoints from under it: it must refuse and touch nothing.
TEST(CheckpointTest, ARollbackRefusesWhileTheStateIsOpenAndMovesNothing) {
  TempDir dir("gsau-rollback");
  PipelineOptions o = SmallPipeline(dir);
  const std::string target = MakeCheckpoint(dir, "checkpoints/ckpt-000000000001", "target");
  MakeCheckpoint(dir, "checkpoints/ckpt-000000000002", "newer");
  o.rollback_from = target;
  auto running = state::StateStore::Open(o.state);
  ASSERT_TRUE(running.ok()) << running.status();

  auto p = Pipeline::Create(o, nullptr);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable) << p.status();
  EXPECT_NE(p.status().message().find("in use"), std::string::npos) << p.status();
  EXPECT_EQ(Names(ListCheckpoints(o.checkpoint_dir)),
            (std::vector<std::string>{"ckpt-000000000001", "ckpt-000000000002"}));
  EXPECT_EQ(Entries(dir), (std::vector<std::string>{"checkpoints", "state"})) << "the state was not moved aside";
  EXPECT_FALSE(fs::exists(fs::path(o.checkpoint_dir) / "ROLLBACK_IN_PROGRESS"))
      << "a refused rollback leaves no mark (it would keep the running pipeline from restarting)";
  EXPECT_TRUE((*running)->ApplyBatch(std::vector<ClickEvent>{{"u", "i", 1, "click"}}, {}).ok())
      << "the running store goes on";
}

// A rollback to a checkpoint outside checkpoint_dir moves every checkpoint and the state aside
// before it copies the target in: stopped there, a plain start found nothing and began a new
// model from an empty state. It must refuse, naming the rollback to finish.
TEST(CheckpointTest, APlainStartAfterAnUnfinishedRollbackRefusesNamingIt) {
  TempDir dir("gsau-rollback");
  PipelineOptions o = SmallPipeline(dir);
  o.publisher.kafka.bootstrap_servers = "127.0.0.1:1";  // nothing listens: fail fast past the state
  o.publisher.connect_timeout_ms = 1000;
  {
    auto running = state::StateStore::Open(o.state);
    ASSERT_TRUE(running.ok()) << running.status();
  }
  MakeCheckpoint(dir, "checkpoints/ckpt-000000000005", "ours");
  // The target's state/ has no CURRENT: the copy fails as one cut short by a kill would.
  // Given relative, as typed in a shell: the mark names it absolute, for a restart run elsewhere.
  const std::string target = MakeCheckpoint(dir, "archive/ckpt-000000000003", "archived");
  o.rollback_from = fs::relative(target).string();
  ASSERT_TRUE(fs::path(o.rollback_from).is_relative());
  auto rollback = Pipeline::Create(o, nullptr);
  ASSERT_FALSE(rollback.ok());
  EXPECT_TRUE(ListCheckpoints(o.checkpoint_dir).empty()) << "the abandoned line was moved aside";

  o.rollback_from.clear();
  auto plain = Pipeline::Create(o, nullptr);
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.status().code(), StatusCode::kInvalidArgument) << plain.status();
  EXPECT_NE(plain.status().message().find("a rollback to " + target + " did not finish"), std::string::npos)
      << plain.status();
  EXPECT_NE(plain.status().message().find("(and " + o.state.path + ".restoring, if there"), std::string::npos)
      << plain.status();
  EXPECT_FALSE(fs::exists(o.state.path)) << "no new state was started";
}

// A queue smaller than an ingest batch paused ingest for ever (it waits for room for a whole
// batch), silently: config/ refused it for gsau run, the library did not. Nothing is opened.
TEST(CheckpointTest, AQueueSmallerThanABatchIsRefusedAtCreate) {
  TempDir dir("gsau-queue");
  PipelineOptions o = SmallPipeline(dir);
  o.ingest.batch_max_events = 1000;
  o.queue_capacity = 10;
  auto p = Pipeline::Create(o, nullptr);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument) << p.status();
  EXPECT_NE(p.status().message().find("queue_capacity (10) must be at least ingest.batch_max_events (1000)"),
            std::string::npos)
      << p.status();
  EXPECT_FALSE(fs::exists(o.state.path)) << "refused before the state was opened";
}

}  // namespace
}  // namespace gsau::pipeline
