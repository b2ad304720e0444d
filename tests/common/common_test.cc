#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "gsau/common/clock.h"
#include "gsau/common/cpu.h"
#include "gsau/common/embedding_sink.h"
#include "gsau/common/file.h"
#include "gsau/common/json.h"
#include "gsau/common/log.h"
#include "gsau/common/memory.h"
#include "gsau/common/progress.h"
#include "gsau/common/status.h"
#include "gsau/common/text.h"
#include "gsau/common/stop_signal.h"
#include "gsau/common/throttle.h"

namespace gsau {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return Status::InvalidArgument(std::to_string(x) + " is odd");
  return x / 2;
}

Status Quarter(int x, int* out) {
  GSAU_ASSIGN_OR_RETURN(int h, Half(x));
  GSAU_ASSIGN_OR_RETURN(*out, Half(h));
  return Status::Ok();
}

// A record with a NaN or an infinity is not sent (a tombstone, with no vector, always is).
TEST(EmbeddingSinkTest, PublishableRecordsAreTombstonesOrFinite) {
  EmbeddingRecord r;
  r.embedding = {0.5f, -2.0f, 0.0f};
  EXPECT_TRUE(Publishable(r));
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    r.embedding[1] = bad;
    EXPECT_FALSE(Publishable(r)) << bad;
  }
  EmbeddingRecord gone;
  gone.tombstone = true;
  EXPECT_TRUE(Publishable(gone));
}

// A misspelt GSAU_LOG_LEVEL passed for the default without a word.
TEST(LogTest, AnUnknownLevelInTheEnvironmentIsReported) {
  const char* was = std::getenv("GSAU_LOG_LEVEL");
  const std::string before = was != nullptr ? was : "";
  ::setenv("GSAU_LOG_LEVEL", "verbose", 1);
  ::testing::internal::CaptureStderr();
  log::Init();
  const std::string err = ::testing::internal::GetCapturedStderr();
  if (was != nullptr) {
    ::setenv("GSAU_LOG_LEVEL", before.c_str(), 1);
  } else {
    ::unsetenv("GSAU_LOG_LEVEL");
  }
  log::Init();  // the level the run was started with, for the tests after this one
  EXPECT_NE(err.find("GSAU_LOG_LEVEL=verbose is not"), std::string::npos) << err;
}

TEST(StatusTest, OkAndErrorsCarryCodeMessageAndContext) {
  EXPECT_TRUE(Status::Ok().ok());
  EXPECT_EQ(Status::Ok().ToString(), "OK");
  const Status s = Status::NotFound("topic clicks").WithContext("ingest");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.ToString(), "NotFound: ingest: topic clicks");
}

TEST(StatusTest, ResultPropagatesThroughMacros) {
  int out = 0;
  EXPECT_TRUE(Quarter(12, &out).ok());
  EXPECT_EQ(out, 3);
  const Status s = Quarter(6, &out);  // 6 -> 3, which is odd
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "3 is odd");
  EXPECT_EQ(Half(5).status().message(), "5 is odd");
  EXPECT_EQ(*Half(8), 4);
}

// A Result built from an OK Status (a bug) holds neither a value nor an OK status: it was
// ok() false with status() OK, and GSAU_ASSIGN_OR_RETURN passed it on as success.
TEST(StatusTest, AResultFromAnOkStatusIsAnError) {
#ifdef NDEBUG
  const Result<int> r{Status::Ok()};
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal) << r.status();
  auto passes_on = [&]() -> Status {
    GSAU_ASSIGN_OR_RETURN(const int v, r);
    (void)v;
    return Status::Ok();
  };
  EXPECT_FALSE(passes_on().ok());
#else
  EXPECT_DEATH({ const Result<int> r{Status::Ok()}; }, "OK Status has no value");
#endif
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// The first SIGTERM or SIGINT sets the flag and the process goes on; one more within a second
// is the same request delivered twice (a Ctrl-C to the process group and a wrapper forwarding
// it); a second one later ends the process as the signal's default action would (a stop that
// takes too long: Ctrl-C twice).
TEST(StopSignalTest, TheFirstSignalAsksASecondOneLaterEnds) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (const int sig : {SIGTERM, SIGINT}) {
    EXPECT_EXIT(
        {
          const auto& stop = InstallStopSignals();
          if (stop) _exit(3);
          std::raise(sig);
          if (!stop) _exit(4);  // the first did not set the flag
          std::raise(sig == SIGINT ? SIGTERM : SIGINT);  // the same stop, delivered twice
          std::this_thread::sleep_for(std::chrono::milliseconds(1100));
          std::raise(sig);
          _exit(5);  // the second did not end the process
        },
        ::testing::KilledBySignal(sig), "")
        << strsignal(sig);
  }
}

// --duration's flag: set by the time limit, or at once by the stop it watches; never by itself
// without a limit.
TEST(StopAfterTest, TheLimitOrTheStopSetsTheFlag) {
  using Clock = std::chrono::steady_clock;
  auto wait_for = [](const std::atomic<bool>& flag, int ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
    while (!flag && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return flag.load();
  };
  const std::atomic<bool> never{false};
  {
    const auto t0 = Clock::now();
    const StopAfter timed(never, 0.3);
    ASSERT_TRUE(wait_for(timed.flag(), 10000));
    EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(300));
    EXPECT_TRUE(timed.timed_out());
  }
  {
    std::atomic<bool> stop{false};
    const StopAfter stopped(stop, 3600);
    EXPECT_FALSE(wait_for(stopped.flag(), 200));
    stop = true;
    EXPECT_TRUE(wait_for(stopped.flag(), 10000));
    EXPECT_FALSE(stopped.timed_out());
  }
  {
    const StopAfter unlimited(never, 0);
    EXPECT_FALSE(wait_for(unlimited.flag(), 300));
    EXPECT_FALSE(unlimited.timed_out());
  }
}

// A teardown that blocks past its limit ends the process with the code given; one that ends in
// time leaves the process alone.
TEST(ExitIfTeardownHangsTest, ABlockedTeardownEndsTheProcessWithItsCode) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ExitIfTeardownHangs guard;
        guard.Arm(7, std::chrono::milliseconds(200), "the test's teardown");
        std::this_thread::sleep_for(std::chrono::seconds(30));  // a destructor that never returns
        _exit(0);
      },
      ::testing::ExitedWithCode(7), "the test's teardown did not finish in 200 ms");
  {
    ExitIfTeardownHangs guard;
    guard.Arm(7, std::chrono::milliseconds(200), "a quick teardown");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  SUCCEED() << "still running";
}

TEST(FileTest, WriteFileAtomicallyReplacesWholeOrNotAtAll) {
  const auto dir = std::filesystem::temp_directory_path() / ("gsau-file-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "f").string();
  ASSERT_TRUE(WriteFileAtomically(path, [](const ByteSink& sink) {
                EXPECT_EQ(sink("ab", 2), 2u);
                EXPECT_EQ(sink("cd", 2), 2u);
              }).ok());
  EXPECT_EQ(ReadAll(path), "abcd");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  // A producer that throws half-way: the old file stays, no temporary is left.
  const Status thrown = WriteFileAtomically(path, [](const ByteSink& sink) {
    sink("xy", 2);
    throw std::runtime_error("serializer broke");
  });
  EXPECT_EQ(thrown.code(), StatusCode::kIoError);
  EXPECT_NE(thrown.message().find("serializer broke"), std::string::npos) << thrown;
  EXPECT_EQ(ReadAll(path), "abcd");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  // A full disk (the temporary file is /dev/full): the sink still takes every byte (a caller
  // that checks the count must not throw), the error comes back, the old file stays.
  std::filesystem::create_symlink("/dev/full", path + ".tmp");
  size_t taken = 0;
  const Status full = WriteFileAtomically(path, [&](const ByteSink& sink) {
    for (int k = 0; k < 3; ++k) taken += sink("0123456789", 10);
  });
  EXPECT_EQ(taken, 30u);
  EXPECT_EQ(full.code(), StatusCode::kIoError);
  EXPECT_NE(full.message().find(std::strerror(ENOSPC)), std::string::npos) << full;
  EXPECT_EQ(ReadAll(path), "abcd");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  std::filesystem::remove_all(dir);
}

TEST(FileTest, SameMountComparesTheNearestExistingFolders) {
  const auto dir = std::filesystem::temp_directory_path() / ("gsau-mount-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  struct Cleanup {
    std::filesystem::path dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  const std::string file = (dir / "f").string();
  ASSERT_TRUE(WriteTextAtomically(file, "x").ok());
  auto same = SameMount(dir.string(), (dir / "not" / "there" / "yet").string());
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_TRUE(*same);
  same = SameMount("", ".");
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_TRUE(*same);
  // Below a file: not a path that can ever be made, an error naming it.
  const auto under_file = SameMount(file + "/x", dir.string());
  ASSERT_FALSE(under_file.ok());
  EXPECT_EQ(under_file.status().code(), StatusCode::kIoError);
  EXPECT_NE(under_file.status().message().find(file + "/x"), std::string::npos) << under_file.status();
  // procfs is a mount of its own wherever the temporary folder is (where it is mounted at all).
  struct statfs proc {};
  if (::statfs("/proc", &proc) != 0 || proc.f_type != PROC_SUPER_MAGIC) GTEST_SKIP() << "no procfs at /proc";
  same = SameMount("/proc", dir.string());
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_FALSE(*same);
}

TEST(FileTest, FileLockExcludesASecondHolderUntilReleased) {
  const auto path = (std::filesystem::temp_directory_path() / ("gsau-lock-" + std::to_string(::getpid()))).string();
  {
    auto first = FileLock::Take(path, "a test holds it");
    ASSERT_TRUE(first.ok()) << first.status();
    const auto second = FileLock::Take(path, "a test holds it");
    EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(second.status().message().find("by process " + std::to_string(::getpid())), std::string::npos)
        << second.status();
  }
  EXPECT_TRUE(FileLock::Take(path, "released").ok());
  std::filesystem::remove(path);
}

TEST(FileTest, SyncPathSyncsFilesAndFoldersAndNamesWhatItCannotOpen) {
  const auto dir = std::filesystem::temp_directory_path() / ("gsau-sync-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string file = (dir / "f").string();
  std::ofstream(file) << "x";
  EXPECT_TRUE(SyncPath(file).ok());
  EXPECT_TRUE(SyncPath(dir.string()).ok());
  const std::string missing = (dir / "missing").string();
  const Status s = SyncPath(missing);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find(missing), std::string::npos) << s.ToString();
  std::filesystem::remove_all(dir);
}

// The first occurrence is due at once; those within the interval are counted, and the next
// line after it carries their count.
TEST(ThrottleTest, LetsOneLineThroughPerIntervalWithTheCountHeldBack) {
  Throttle t(std::chrono::seconds(1));
  EXPECT_EQ(t.Due(), 1);
  for (int k = 0; k < 5; ++k) EXPECT_EQ(t.Due(), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(t.Due(), 6);
  EXPECT_EQ(t.Due(), 0);
}

// A rare kind is not counted away inside a frequent one's interval; kinds beyond max_kinds
// share one throttle.
TEST(ThrottleTest, KeyedThrottleKeepsKindsApartUpToItsLimit) {
  KeyedThrottle t(std::chrono::seconds(60), /*max_kinds=*/2);
  EXPECT_EQ(t.Due("broker down"), 1);
  EXPECT_EQ(t.Due("broker down"), 0);
  EXPECT_EQ(t.Due("authentication"), 1);  // its own interval
  EXPECT_EQ(t.Due("third"), 1);           // past the limit: the shared "other" throttle
  EXPECT_EQ(t.Due("fourth"), 0);          // the same one, inside its interval
  EXPECT_EQ(t.Due("authentication"), 0);
}

// Every character JSON requires escaped is, and nothing else: a report naming a path with a
// quote or a newline stayed unparseable before (gsau evaluate pasted paths in raw).
TEST(JsonTest, StringsEscapeQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(JsonString("plain/path é"), "\"plain/path é\"");
  EXPECT_EQ(JsonString("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(JsonString("l1\nl2\r\t"), "\"l1\\nl2\\r\\t\"");
  EXPECT_EQ(JsonString(std::string("\x01\x1f\0", 3)), "\"\\u0001\\u001f\\u0000\"");
  std::string out = "{\"k\":";
  AppendJsonString(out, "v");
  EXPECT_EQ(out, "{\"k\":\"v\"");
}

// Well-formed UTF-8 as RFC 3629 (and Python's bytes.decode('utf-8')) has it: the boundaries of
// each length, overlong forms, surrogates and code points past U+10FFFF.
TEST(JsonTest, Utf8IsWellFormedOnlyAsRfc3629Says) {
  for (const std::string ok : {"", "abc", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9D\x84\x9E", "\xF4\x8F\xBF\xBF",
                               "\xED\x9F\xBF", "\xEE\x80\x80", "\xE0\xA0\x80", "\xF0\x90\x80\x80", "\xC2\x80",
                               "\x7F"}) {
    EXPECT_TRUE(IsValidUtf8(ok)) << JsonString(ok);
  }
  for (const std::string bad : {"Jos\xE9", "\x80", "\xC0\xAF", "\xC1\xBF", "\xE0\x80\xAF", "\xE0\x9F\xBF",
                                "\xED\xA0\x80", "\xED\xBF\xBF", "\xF0\x8F\xBF\xBF", "\xF4\x90\x80\x80",
                                "\xF5\x80\x80\x80", "\xFF", "\xC3", "\xE2\x82", "\xF0\x9D\x84", "\xE2\x28\xA1",
                                "a\xC3\xA9\xC3"}) {
    EXPECT_FALSE(IsValidUtf8(bad)) << JsonString(bad);
  }
}

TEST(TextTest, Utf8SequenceLengthsAreTheLeadBytesWhenWellFormed) {
  const std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xE9z";
  EXPECT_EQ(Utf8SequenceLength(s, 0), 1u);
  EXPECT_EQ(Utf8SequenceLength(s, 1), 2u);
  EXPECT_EQ(Utf8SequenceLength(s, 3), 3u);
  EXPECT_EQ(Utf8SequenceLength(s, 6), 4u);
  EXPECT_EQ(Utf8SequenceLength(s, 10), 0u) << "a Latin-1 byte before an ASCII one";
  EXPECT_EQ(Utf8SequenceLength(s, 2), 0u) << "a continuation byte";
  EXPECT_EQ(Utf8SequenceLength("\xF0\x9F\x98", 0), 0u) << "cut short";
}

// Ids shown to a person: what would act on a terminal (ESC, C1 controls, bidi overrides), cut a
// C string (NUL) or break a line is escaped; the escapes are told apart from text that spells
// them (a backslash is doubled); well-formed UTF-8 text stays as it is.
TEST(TextTest, DisplayTextEscapesWhatWouldActAndKeepsTheRest) {
  EXPECT_EQ(DisplayText("sku-9 u42"), "sku-9 u42");
  const std::string utf8 = "\xC3\xA9\xE2\x9C\x93\xF0\x9F\x98\x80 \xE2\x81\xB0";  // é✓😀 and U+2070
  EXPECT_EQ(DisplayText(utf8), utf8);
  EXPECT_EQ(DisplayText("a\\b"), "a\\\\b");
  EXPECT_EQ(DisplayText("l1\nl2\r\t"), "l1\\nl2\\r\\t");
  EXPECT_EQ(DisplayText(std::string("nul\0A", 5)), "nul\\x00A");
  EXPECT_EQ(DisplayText("\x1B[31mred\x1B]0;title\x07\x7F"), "\\x1B[31mred\\x1B]0;title\\x07\\x7F");
  EXPECT_EQ(DisplayText("Jos\xE9"), "Jos\\xE9");
  EXPECT_EQ(DisplayText("\xC2\x9B" "2J"), "\\u{009B}2J") << "C1 CSI";
  EXPECT_EQ(DisplayText("abc\xE2\x80\xAE" "fdp.exe"), "abc\\u{202E}fdp.exe") << "right-to-left override";
  EXPECT_EQ(DisplayText("\xE2\x81\xA6x\xE2\x81\xA9"), "\\u{2066}x\\u{2069}");
  EXPECT_EQ(DisplayText("\xEF\xBB\xBFu1"), "\\u{FEFF}u1") << "a BOM in front: not shown as u1";
  EXPECT_EQ(DisplayText("u\xE2\x80\x8B" "1\xE2\x80\xA8"), "u\\u{200B}1\\u{2028}") << "zero-width space, line separator";
  EXPECT_EQ(DisplayText("a\xC2\xAD" "b\xE2\x81\xA0"), "a\\u{00AD}b\\u{2060}");
  EXPECT_EQ(DisplayText("\xE2\x80\xAF\xC2\xA0\xE2\x80\x8A"), "\xE2\x80\xAF\xC2\xA0\xE2\x80\x8A")
      << "visible spaces next to those ranges stay";
  EXPECT_EQ(DisplayText("\xED\xA0\x80"), "\\xED\\xA0\\x80") << "a surrogate is not UTF-8";
  // Text that spells an escape stays apart from the byte it names.
  EXPECT_NE(DisplayText(std::string("a\0", 2)), DisplayText("a\\x00"));
  EXPECT_NE(DisplayText("\n"), DisplayText("\\n"));
}

// Whatever the bytes, the text shown is well-formed UTF-8 with no control character on one line.
TEST(TextTest, DisplayTextOfAnyBytesIsOneLineOfPrintableUtf8) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255), length(0, 24);
  for (int trial = 0; trial < 20000; ++trial) {
    std::string s(static_cast<size_t>(length(rng)), '\0');
    for (char& c : s) c = static_cast<char>(byte(rng));
    const std::string shown = DisplayText(s);
    ASSERT_TRUE(IsValidUtf8(shown)) << JsonString(s);
    for (size_t i = 0; i < shown.size(); i += Utf8SequenceLength(shown, i)) {
      const auto b = static_cast<unsigned char>(shown[i]);
      ASSERT_FALSE(b < 0x20 || b == 0x7F) << JsonString(s);
      ASSERT_FALSE(b == 0xC2 && static_cast<unsigned char>(shown[i + 1]) < 0xA0) << JsonString(s);
    }
  }
}

// A process pinned to one core, or given a quota of 1.5 cores, sized its thread pools by the
// machine's cores (hardware_concurrency), and every parallel region waited on threads with no
// core to run on.
TEST(CpuTest, UsableCoresFollowTheAffinityMask) {
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  const int allowed = CPU_COUNT(&saved);
  EXPECT_GE(UsableCores(), 1);
  EXPECT_LE(UsableCores(), allowed);
  int first = 0;
  while (!CPU_ISSET(first, &saved)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  const int pinned = UsableCores();
  ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
  EXPECT_EQ(pinned, 1);
}

// The quota may sit on any cgroup between the process's and the root (a systemd unit's
// CPUQuota): the smallest one counts; only the root's was read.
TEST(CpuTest, CgroupQuotasAreFoundAboveTheProcessesCgroup) {
  const auto root = std::filesystem::temp_directory_path() / ("gsau-cgroup-" + std::to_string(getpid()));
  std::filesystem::remove_all(root);
  auto write = [&](const std::string& rel, const std::string& text) {
    std::filesystem::create_directories((root / rel).parent_path());
    std::ofstream(root / rel) << text << "\n";
  };
  write("cpu.max", "max 100000");
  write("system.slice/cpu.max", "300000 100000");
  write("system.slice/gsau.service/cpu.max", "max 100000");
  EXPECT_EQ(CgroupCpuQuota("0::/system.slice/gsau.service\n", root.string()), 3);
  write("system.slice/gsau.service/cpu.max", "150000 100000");
  EXPECT_EQ(CgroupCpuQuota("0::/system.slice/gsau.service\n", root.string()), 2);
  EXPECT_EQ(CgroupCpuQuota("0::/\n", root.string()), std::nullopt);
  // v1: the cpu controller's hierarchy, named among others on its line.
  write("cpu/docker/abc/cpu.cfs_quota_us", "100000");
  write("cpu/docker/abc/cpu.cfs_period_us", "100000");
  write("cpu/cpu.cfs_quota_us", "-1");
  write("cpu/cpu.cfs_period_us", "100000");
  EXPECT_EQ(CgroupCpuQuota("5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n", root.string()), 1);
  EXPECT_EQ(CgroupCpuQuota("4:cpuacct:/docker/abc\n", root.string()), std::nullopt);
  std::filesystem::remove_all(root);
}

TEST(CpuTest, CgroupQuotaIsRoundedUp) {
  EXPECT_EQ(CoresOfCpuMax("200000 100000"), 2);
  EXPECT_EQ(CoresOfCpuMax("150000 100000\n"), 2);
  EXPECT_EQ(CoresOfCpuMax("50000 100000"), 1);
  EXPECT_EQ(CoresOfCpuMax("max 100000"), std::nullopt);
  EXPECT_EQ(CoresOfCpuMax(""), std::nullopt);
  EXPECT_EQ(CoresOfCpuMax("garbage"), std::nullopt);
}

// What top -H and ps -L show for a thread (/proc's comm), cut to Linux's 15 bytes.
TEST(CpuTest, ThreadsAreNamedAsTopShowsThem) {
  std::string shown, long_shown;
  std::thread([&] {
    NameThisThread("gsau-learner");
    std::ifstream("/proc/thread-self/comm") >> shown;
    NameThisThread("gsau-a-name-longer-than-fifteen");
    std::ifstream("/proc/thread-self/comm") >> long_shown;
  }).join();
  EXPECT_EQ(shown, "gsau-learner");
  EXPECT_EQ(long_shown, "gsau-a-name-lon");
}

TEST(ClockTest, ManualClockMovesOnlyWhenAdvanced) {
  ManualClock clock(1000);
  EXPECT_EQ(clock.NowMs(), 1000);
  clock.AdvanceMs(250);
  EXPECT_EQ(clock.NowMs(), 1250);
  EXPECT_EQ(clock.MonotonicNs(), 1250 * 1'000'000LL);
}

TEST(ProgressTest, RendersPercentCountsAndEta) {
  ProgressOptions o;
  o.label = "replay";
  o.unit = "events";
  o.force_plain = true;
  o.out = std::tmpfile();
  ProgressBar bar(200, o);
  bar.Update(50);
  const std::string line = bar.Render("loss=0.5");
  EXPECT_NE(line.find("replay ["), std::string::npos) << line;
  EXPECT_NE(line.find(" 25.0% 50/200 events"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA "), std::string::npos) << line;
  EXPECT_NE(line.find("loss=0.5"), std::string::npos) << line;
  bar.Finish();
  std::fclose(o.out);
}

// A redrawn line longer than the terminal wrapped, and each redraw left its first rows behind
// (gsau train's bar with its loss terms is ~150 columns).
TEST(ProgressTest, RedrawnLinesFitTheTerminal) {
  const std::string line(150, 'x');
  EXPECT_EQ(FitToColumns(line, 80), std::string(79, 'x'));
  EXPECT_EQ(FitToColumns(line, 0), line) << "width unknown";
  EXPECT_EQ(FitToColumns("short", 80), "short");
  // Whole UTF-8 characters: "é" is two bytes, one column.
  EXPECT_EQ(FitToColumns("\xC3\xA9\xC3\xA9\xC3\xA9", 3), "\xC3\xA9\xC3\xA9");
}

TEST(ProgressTest, FormatsDurations) {
  EXPECT_EQ(FormatDuration(42), "42s");
  EXPECT_EQ(FormatDuration(185), "3m05s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_EQ(FormatDuration(-1), "?");
}

TEST(ProcessMemoryTest, SeesAnAllocationComeAndGo) {
  const ProcessMemory before = ReadProcessMemory();
  ASSERT_GT(before.resident_bytes, 0);
  ASSERT_GE(before.heap_allocated_bytes, 0) << before.allocator;
#ifdef GSAU_TEST_ALLOCATOR
  EXPECT_STREQ(before.allocator, GSAU_TEST_ALLOCATOR) << "the allocator the test links is the one found";
#endif
  constexpr size_t kBytes = 64 << 20;
  auto* p = static_cast<char*>(std::malloc(kBytes));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, kBytes);  // touched: resident
  const ProcessMemory during = ReadProcessMemory();
  EXPECT_GE(during.heap_allocated_bytes - before.heap_allocated_bytes, static_cast<int64_t>(kBytes)) << during.allocator;
  EXPECT_GE(during.resident_bytes - before.resident_bytes, static_cast<int64_t>(kBytes) * 9 / 10);
  EXPECT_EQ(p[kBytes - 1], 1);
  std::free(p);
  ReleaseFreeMemory();
  const ProcessMemory after = ReadProcessMemory();
  EXPECT_LT(after.heap_allocated_bytes, during.heap_allocated_bytes - static_cast<int64_t>(kBytes) / 2);
  EXPECT_GE(after.heap_free_bytes, 0);
  // A sanitizer's allocator keeps freed memory (ASan's quarantine), and nothing releases it.
  if (std::string(after.allocator) == "sanitizer") return;
  EXPECT_LT(after.resident_bytes, during.resident_bytes - static_cast<int64_t>(kBytes) / 2)
      << "freed and released: no longer resident";
}

// What a long command relies on: freed pages leave the process without anyone calling
// ReleaseFreeMemory, and stopping does not wait out the interval.
TEST(ProcessMemoryTest, ReleaserHandsFreedPagesBackOnItsOwn) {
  if (std::string(ReadProcessMemory().allocator) == "sanitizer") {
    GTEST_SKIP() << "a sanitizer's allocator keeps freed memory on purpose: there is nothing to release";
  }
  constexpr size_t kBytes = 64 << 20;
  auto* p = static_cast<char*>(std::malloc(kBytes));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, kBytes);
  const ProcessMemory during = ReadProcessMemory();
  EXPECT_EQ(p[kBytes - 1], 1);
  std::free(p);
  const ProcessMemory freed = ReadProcessMemory();
  // The premise: the allocator kept the freed pages (jemalloc with decay off, jemalloc_conf.cc).
  // glibc's malloc maps a block this large on its own and unmaps it at free(): nothing is left
  // for a releaser to hand back, and the check below would pass without it.
  if (std::string(freed.allocator) == "jemalloc") {
    EXPECT_GT(freed.resident_bytes, during.resident_bytes - static_cast<int64_t>(kBytes) / 2);
  } else if (freed.resident_bytes < during.resident_bytes - static_cast<int64_t>(kBytes) / 2) {
    GTEST_SKIP() << freed.allocator << " returned the pages at free(): nothing for the releaser to do";
  }
  ProcessMemory after;
  {
    const MemoryReleaser releaser(std::chrono::milliseconds(20));
    for (int i = 0; i < 500 && releaser.releases() < 2; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_GE(releaser.releases(), 2);
    after = ReadProcessMemory();
  }
  EXPECT_LT(after.resident_bytes, during.resident_bytes - static_cast<int64_t>(kBytes) / 2)
      << after.allocator << ": freed pages still resident";

  const auto start = std::chrono::steady_clock::now();
  { const MemoryReleaser idle(std::chrono::hours(1)); }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30)) << "stopping waited out the interval";
}

}  // namespace
}  // namespace gsau
