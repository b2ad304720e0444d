// The gsau executable as a user meets it: --help everywhere, broken configurations stop
// start-up naming the field, the demo runs the whole loop and inspect shows what it left.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "gsau/kafka/admin.h"
#ifdef GSAU_HAVE_RUN
#include "gsau/learner/online.h"
#endif
#include "gsau/replay/replay.h"

#include "kafka_broker.h"
#include "process.h"
#include "temp_dir.h"

namespace gsau {
namespace {

using gsau::testing::RunCommand;

std::string Gsau() { return gsau::testing::BinaryDir() + "/gsau"; }

// What this build's gsau has (tests/app/CMakeLists.txt gives both the executable's definitions):
// a command it has answering "not available" (exit 3) fails a test instead of skipping it.
#ifdef GSAU_HAVE_RUN
constexpr bool kHaveRun = true;  // run, demo, inspect, evaluate
#else
constexpr bool kHaveRun = false;
#endif
#ifdef GSAU_HAVE_TORCH
constexpr bool kHaveTrain = true;  // train, split
#else
constexpr bool kHaveTrain = false;
#endif

TEST(AppTest, EverySubcommandHasHelp) {
  for (const char* cmd : {"run", "demo", "train", "replay", "inspect", "evaluate"}) {
    std::string out;
    EXPECT_EQ(RunCommand(Gsau() + " " + cmd + " --help 2>&1", &out), 0) << cmd << ": " << out;
    EXPECT_NE(out.find("Usage"), std::string::npos) << cmd << ": " << out;
  }
}

// A bare `gsau`, a new user's first try, says what to run (it said "A subcommand is required").
TEST(AppTest, ABareGsauSaysWhatToRun) {
  std::string out;
  EXPECT_EQ(RunCommand(Gsau() + " 2>&1", &out), 2) << out;
  if (kHaveRun) {
    EXPECT_NE(out.find("`gsau demo` runs the whole loop on one machine"), std::string::npos) << out;
  }
  EXPECT_NE(out.find("replay"), std::string::npos) << "the command list: " << out;
  EXPECT_EQ(out.find("A subcommand is required"), std::string::npos) << out;
}

TEST(AppTest, BrokenConfigurationNamesTheFieldAndStops) {
  gsau::testing::TempDir dir;
  std::string out;
  // A negative batch size, from a flag.
  EXPECT_EQ(RunCommand(Gsau() + " replay --synthetic 10 --set ingest.batch_max_events=-1 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("configuration error: ingest.batch_max_events (--set): must be in [1, 1000000], got -1"),
            std::string::npos)
      << out;
  // An unknown key, from a file.
  gsau::testing::WriteFile(dir.File("c.yaml"), "state:\n  pathh: /tmp/x\n");
  EXPECT_EQ(RunCommand(Gsau() + " replay --synthetic 10 --config " + dir.File("c.yaml") + " 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("unknown configuration key 'state.pathh'"), std::string::npos) << out;
  // A bad value from the environment.
  EXPECT_EQ(RunCommand("GSAU_PUBLISHER_FORMAT=xml " + Gsau() + " replay --synthetic 10 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("publisher.format (environment GSAU_PUBLISHER_FORMAT): must be one of json, binary, got 'xml'"),
            std::string::npos)
      << out;
#ifdef GSAU_HAVE_RUN
  // A learner device this machine lacks: refused as the configuration's error, before anything
  // starts (the learner refused it after the metrics port was bound, exit 1, naming no field).
  if (!learner::CudaAvailable()) {
    EXPECT_EQ(RunCommand(Gsau() + " run --bootstrap 127.0.0.1:1 --set learner.device=cuda --set state.path=" +
                             dir.File("state") + " --set learner.checkpoint_dir=" + dir.File("ckpt") + " 2>&1",
                         &out),
              2)
        << out;
    EXPECT_NE(out.find("gsau run: configuration error: learner.device: cuda, but LibTorch sees no CUDA device"),
              std::string::npos)
        << out;
  }
#endif
}

// The same for the commands that need the learner (run, demo, evaluate); a build without it has
// none of them (they answer exit 3, "not available": RunWithoutBrokerIsAUsageErrorOrNotAvailable).
TEST(AppTest, BrokenRunDemoAndEvaluateInvocationsStopStartUp) {
  if (!kHaveRun) GTEST_SKIP() << "this build has no run, demo or evaluate";
  gsau::testing::TempDir dir;
  std::string out;
  // A missing file.
  EXPECT_EQ(RunCommand(Gsau() + " demo --config " + dir.File("nope.yaml") + " 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("config file '" + dir.File("nope.yaml") + "' does not exist"), std::string::npos) << out;
  // A synthetic stream without users (it crashed, after wiping --dir).
  std::filesystem::create_directories(dir.File("keep"));
  gsau::testing::WriteFile(dir.File("keep/marker"), "x");
  EXPECT_EQ(RunCommand(Gsau() + " demo --users 0 --dir " + dir.File("keep") + " 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("--users"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::exists(dir.File("keep/marker")));
  EXPECT_EQ(RunCommand(Gsau() + " demo --habit 1.5 --dir " + dir.File("keep") + " 2>&1", &out), 2) << out;
  // Good flags, but --dir holds what no demo wrote: the demo replaces its directory, so it refuses.
  EXPECT_EQ(RunCommand(Gsau() + " demo --events 10 --dir " + dir.File("keep") + " 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("holds marker, which no demo wrote"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::exists(dir.File("keep/marker")));
  EXPECT_EQ(RunCommand(Gsau() + " demo --events 10 --dir " + dir.File("keep/marker") + " 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("is not a directory"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::exists(dir.File("keep/marker")));
  // `gsau run`'s data directory has the demo's names (state, checkpoints, prequential.csv) but
  // not its marker: a demo pointed at it deleted a pipeline's state and checkpoints.
  std::filesystem::create_directories(dir.File("gsau-data/state"));
  std::filesystem::create_directories(dir.File("gsau-data/checkpoints/ckpt-000000000001"));
  gsau::testing::WriteFile(dir.File("gsau-data/checkpoints/ckpt-000000000001/model.pt"), "x");
  EXPECT_EQ(RunCommand(Gsau() + " demo --events 10 --dir " + dir.File("gsau-data") + " 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("without the demo's marker (.gsau-demo)"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::exists(dir.File("gsau-data/checkpoints/ckpt-000000000001/model.pt")));
  // What escapes a command as an exception (here a path component too long for the filesystem,
  // from evaluate's throwing fs::exists: should that call stop throwing, find another) ends with
  // its message and exit 1; it aborted (134).
  const std::string long_name = dir.File(std::string(300, 'x'));
  EXPECT_EQ(RunCommand(Gsau() + " evaluate --checkpoint " + long_name + " --data " + long_name + " 2>&1", &out), 1)
      << out;
  EXPECT_NE(out.find("gsau: "), std::string::npos) << out;
  // Checkpoints inside the state, through run's own flags (validated with the configuration,
  // named as the source): a rollback would move the checkpoint away with the state.
  EXPECT_EQ(RunCommand(Gsau() + " run --bootstrap 127.0.0.1:1 --state " + dir.File("s") + " --checkpoints " +
                           dir.File("s/ckpt") + " 2>&1",
                       &out),
            2)
      << out;
  EXPECT_NE(out.find("learner.checkpoint_dir (--checkpoints): must not lie inside state.path"), std::string::npos)
      << out;
  // `--config "$CFG"` with CFG unset: an error, not a run on the defaults.
  EXPECT_EQ(RunCommand(Gsau() + " run --config '' --bootstrap 127.0.0.1:1 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("--config: must name a file"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir.File("s"))) << "nothing opened";
}

// Numbers out of range are usage errors (2) naming the flag and what it takes: train took a
// dropout of 1.5, t = 0, seed -1 (as 2^64 - 1) and threads -3 and trained; --dim 7 failed deep in
// torch (exit 1); CLI11's own checks said "Value 0 not in range 0.000000 to 1797...". A mistyped
// command was told "A subcommand is required"; split wrote one output over the other, or over
// its input.
TEST(AppTest, BadFlagValuesAndMistypedCommandsAreUsageErrorsNamingThem) {
  gsau::testing::TempDir dir;
  std::string tsv = "user_id\titem_id\ttimestamp\n";
  for (int u = 0; u < 30; ++u) {
    for (int k = 0; k < 6; ++k) {
      tsv += "u" + std::to_string(u) + "\ti" + std::to_string((u * 7 + k * 3) % 20) + "\t" +
             std::to_string(1700000000 + u * 100 + k) + "\n";
    }
  }
  const std::string data = dir.File("d.tsv");
  gsau::testing::WriteFile(data, tsv);
  std::string out;
  const std::string train = Gsau() + " train --data " + data + " --out " + dir.File("run") + " --epochs 1 ";
  const bool has_train =
      RunCommand(Gsau() + " train --help 2>&1", &out) == 0 && out.find("not available") == std::string::npos;
  EXPECT_EQ(has_train, kHaveTrain) << out;
  if (has_train) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"--dropout 1.5", "--dropout: must be in [0, 1), not 1.5"},
        {"--attn-dropout 1", "--attn-dropout: must be in [0, 1), not 1"},
        {"--temperature 0", "--temperature: must be > 0, not 0"},
        {"--seed -1", "--seed: must be >= 0, not -1"},
        {"--threads -3", "--threads: must be >= 0, not -3"},
        {"--lr -1", "--lr: must be >= 0, not -1"},
        {"--dim 0", "--dim: must be in [1, 4096], not 0"},
        // Sizes that only failed once memory ran out (killed after 75 s), or wrote a 12.8 GB
        // checkpoint of positions no sequence reaches.
        {"--dim 2147483648", "--dim: must be in [1, 4096], not 2147483648"},
        {"--max-len 100000000", "--max-len: must be in [1, 10000], not 100000000"},
        // Saturated to 18446744073709551615 (and the report said so).
        {"--seed 99999999999999999999", "--seed: must be at most 18446744073709551615, not 99999999999999999999"},
        {"--seed 1.5", "--seed: must be a whole number >= 0, not 1.5"},
        {"--train-fraction 0", "--train-fraction: must be in (0, 1], not 0"},
        {"--dim 7", "dim must be a positive multiple of heads (2), got 7"},
    };
    for (const auto& [flags, message] : cases) {
      EXPECT_EQ(RunCommand(train + flags + " 2>&1", &out), 2) << flags << ": " << out;
      EXPECT_NE(out.find(message), std::string::npos) << flags << ": " << out;
    }
    EXPECT_FALSE(std::filesystem::exists(dir.File("run/report.json")));
    // Checked before the data is read (a typo used to wait for the whole load): a missing
    // --data is not reached.
    const std::string unread = Gsau() + " train --data " + dir.File("none.tsv") + " --out " + dir.File("run") + " ";
    for (const auto& [flags, message] : std::vector<std::pair<std::string, std::string>>{
             {"--valid-metric NDCG@20", "unknown valid metric NDCG@20 (one of recall@5"},
             {"--resume --overwrite", "resume and overwrite exclude each other"},
             {"--init-std nan", "init_std must be -1"}}) {
      EXPECT_EQ(RunCommand(unread + flags + " 2>&1", &out), 2) << flags << ": " << out;
      EXPECT_NE(out.find(message), std::string::npos) << flags << ": " << out;
    }
    // An unset variable (--out "$OUT"): the run trained and wrote nothing, exit 0.
    EXPECT_EQ(RunCommand(Gsau() + " train --data " + data + " --out '' 2>&1", &out), 2) << out;
    EXPECT_NE(out.find("--out: must not be empty"), std::string::npos) << out;
    // --plot without its script: said before training (it trained, then exited 1 for the plot).
    {
      const std::string elsewhere = dir.File("bin/gsau");
      std::filesystem::create_directories(dir.File("bin"));
      std::filesystem::copy_file(Gsau(), elsewhere);
      EXPECT_EQ(RunCommand("cd " + dir.File("bin") + " && ./gsau train --data " + data + " --out " +
                               dir.File("plotted") + " --plot 2>&1",
                           &out),
                2)
          << out;
      EXPECT_NE(out.find("--plot: scripts/plot_training.py not found"), std::string::npos) << out;
      EXPECT_FALSE(std::filesystem::exists(dir.File("plotted")));
    }
    // What the run refuses before training is a usage error too: a new run over an earlier one,
    // a resume with other settings (both were exit 1, as a failure while training).
    const std::string tiny = train + "--dim 8 --threads 1 ";
    ASSERT_EQ(RunCommand(tiny + "2>&1", &out), 0) << out;
    // evaluate reads an online checkpoint; given train's output it says where that run's test is.
    EXPECT_EQ(RunCommand(Gsau() + " evaluate --checkpoint " + dir.File("run") + " --data " + data + " 2>&1", &out), 1)
        << out;
    EXPECT_NE(out.find("is gsau train's output, whose test metrics are in " + dir.File("run/report.json")),
              std::string::npos)
        << out;
    EXPECT_EQ(RunCommand(tiny + "2>&1", &out), 2) << out;
    EXPECT_NE(out.find("--resume continues it"), std::string::npos) << out;
    EXPECT_EQ(RunCommand(tiny + "--resume --lr 0.5 2>&1", &out), 2) << out;
    EXPECT_NE(out.find("written with other settings (lr 0.001, now 0.5)"), std::string::npos) << out;
    const std::string split = Gsau() + " split --data " + data + " ";
    EXPECT_EQ(RunCommand(split + "--offline-out " + dir.File("a.tsv") + " --online-out " + dir.File("a.tsv") + " 2>&1",
                         &out),
              2)
        << out;
    EXPECT_NE(out.find("are the same file"), std::string::npos) << out;
    EXPECT_EQ(RunCommand(split + "--offline-out " + data + " --online-out " + dir.File("b.tsv") + " 2>&1", &out), 2)
        << out;
    EXPECT_NE(out.find("is the --data file"), std::string::npos) << out;
    const std::string to_dir = "--offline-out " + dir.path().string() + " --online-out " + dir.File("b.tsv");
    EXPECT_EQ(RunCommand(split + to_dir + " 2>&1", &out), 2) << out;
    EXPECT_NE(out.find("is a directory"), std::string::npos) << out;
    // An output that cannot be written: refused before the other is (one file of the pair was
    // left behind, beside another run's second).
    const std::string no_dir = "--offline-out " + dir.File("a.tsv") + " --online-out " + dir.File("nodir/b.tsv");
    EXPECT_EQ(RunCommand(split + no_dir + " 2>&1", &out), 2) << out;
    EXPECT_NE(out.find("--online-out " + dir.File("nodir/b.tsv") + ": no folder"), std::string::npos) << out;
    EXPECT_FALSE(std::filesystem::exists(dir.File("a.tsv")));
    EXPECT_FALSE(std::filesystem::exists(dir.File("b.tsv")));
    std::string kept;
    ASSERT_EQ(RunCommand("cat " + data, &kept), 0);
    EXPECT_EQ(kept, tsv) << "the input was rewritten";
  }
  // A --data that holds nothing stops the demo before it starts a broker or clears its --dir.
  gsau::testing::WriteFile(dir.File("empty.tsv"), "");
  for (const std::string& bad : {dir.File("empty.tsv"), dir.path().string(), dir.File("none.tsv")}) {
    const int rc = RunCommand(Gsau() + " demo --data " + bad + " --dir " + dir.File("demo") + " 2>&1", &out);
    if (rc == 3 && !kHaveRun) break;  // no learner in this build
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find("gsau demo: "), std::string::npos) << out;
    EXPECT_EQ(out.find("broker"), std::string::npos) << out;
    EXPECT_FALSE(std::filesystem::exists(dir.File("demo")));
  }
  if (kHaveRun) {
    EXPECT_EQ(RunCommand(Gsau() + " run --status-interval 0 2>&1", &out), 2) << out;
    EXPECT_NE(out.find("--status-interval: must be > 0, not 0"), std::string::npos) << out;
    EXPECT_EQ(RunCommand(Gsau() + " demo --events abc 2>&1", &out), 2) << out;
    EXPECT_NE(out.find("--events: 'abc' is not a number"), std::string::npos) << out;
    EXPECT_EQ(RunCommand(Gsau() + " demo --events 0 2>&1", &out), 2) << out;
    EXPECT_NE(out.find("--events 0 (the whole file) needs --data"), std::string::npos) << out;
  }
  EXPECT_EQ(RunCommand(Gsau() + " trian --data x 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("unknown command 'trian'; the commands are "), std::string::npos) << out;
  EXPECT_NE(out.find("train"), std::string::npos) << out;
}

// A mistyped flag, or one the command lacks, was answered with the first required flag missing
// ("--data is required" to `gsau train --dat x` and to `gsau train --help-config`).
TEST(AppTest, AnUnknownFlagIsNamedBeforeAMissingRequiredOne) {
  if (!kHaveTrain) GTEST_SKIP() << "this build has no train";
  std::string out;
  EXPECT_EQ(RunCommand(Gsau() + " train --dat x 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("gsau train: unknown arguments --dat x (gsau train --help lists its flags)"), std::string::npos)
      << out;
  EXPECT_EQ(RunCommand(Gsau() + " split --help-config 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("gsau split: unknown argument --help-config"), std::string::npos) << out;
  // One of the root's is the root's to name, not the command's.
  EXPECT_EQ(RunCommand(Gsau() + " --bogus train --data x 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("gsau: unknown argument --bogus (gsau --help lists its flags)"), std::string::npos) << out;
  // Nothing unknown: the missing flag is still what is said.
  EXPECT_EQ(RunCommand(Gsau() + " train --data x 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("--out is required"), std::string::npos) << out;
}

// Flags that were parsed and dropped without a word are usage errors now, and evaluate's
// --help-config answered "--checkpoint is required".
TEST(AppTest, FlagsACommandWouldIgnoreAreRefused) {
  std::string out;
  EXPECT_EQ(RunCommand(Gsau() + " replay --synthetic 10 --format tsv --bootstrap 127.0.0.1:1 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("describe a --data file, not --synthetic"), std::string::npos) << out;
  if (!kHaveRun) return;
  EXPECT_EQ(RunCommand(Gsau() + " run --bootstrap 127.0.0.1:1 --init-data x.tsv 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("go with --init-offline"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(Gsau() + " run --bootstrap 127.0.0.1:1 --init-times t.txt 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("go with --init-offline"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(Gsau() + " evaluate --help-config 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("| `state.path` |"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(Gsau() + " evaluate --data x 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("--checkpoint and --data are required"), std::string::npos) << out;
}

TEST(AppTest, HelpConfigListsEveryFieldWithUnitsAndDefaults) {
  std::string out;
  ASSERT_EQ(RunCommand(Gsau() + " replay --help-config 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("| `ingest.batch_max_events` | `GSAU_INGEST_BATCH_MAX_EVENTS` | int in [1, 1000000] | events | "
                     "`1000` |"),
            std::string::npos)
      << out;
}

TEST(AppTest, InspectWithoutAStoreFailsSayingSo) {
  // A build without LibTorch has no inspect (3); otherwise a missing store is an error (1).
  gsau::testing::TempDir dir;
  std::string out;
  const int rc = RunCommand(Gsau() + " inspect --dir " + dir.File("none") + " 2>&1", &out);
  if (rc == 3 && !kHaveRun) {
    EXPECT_NE(out.find("not available"), std::string::npos) << out;
  } else {
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find("no store at " + dir.File("none") + "/state"), std::string::npos) << out;
    EXPECT_FALSE(std::filesystem::exists(dir.File("none"))) << "inspect must not create anything";
  }
}

// A reader that went away (`gsau run 2>&1 | tee log`, and a Ctrl-C ends tee too) makes writes to
// stderr fail, it does not kill gsau with SIGPIPE (exit 141) before its last checkpoint.
TEST(AppTest, AStderrWhoseReaderLeftDoesNotKill) {
  gsau::testing::TempDir dir;
  std::string out;
  // The reader (true) is gone before the writer starts; the writer's own status comes back.
  auto with_gone_reader = [](const std::string& cmd) {
    return "bash -c '(sleep 0.5; " + cmd + ") 2>&1 | true; exit ${PIPESTATUS[0]}'";
  };
  if (RunCommand(with_gone_reader("yes"), &out) != 128 + SIGPIPE) {
    GTEST_SKIP() << "SIGPIPE is ignored where this test runs (inherited): nothing to show";
  }
  const int rc = RunCommand(with_gone_reader(Gsau() + " inspect --dir " + dir.File("none")), &out);
  EXPECT_EQ(rc, kHaveRun ? 1 : 3) << "(1: no store; 3: a build without inspect)";
}

TEST(AppTest, RunWithoutBrokerIsAUsageErrorOrNotAvailable) {
  // A build without LibTorch has no learner: `run` says so (3); otherwise no broker is a usage error (2).
  std::string out;
  const int rc = RunCommand(Gsau() + " run --set learner.checkpoint_dir=/nonexistent/x 2>&1", &out);
  if (rc == 3 && !kHaveRun) {
    EXPECT_NE(out.find("not available"), std::string::npos) << out;
  } else {
    EXPECT_EQ(rc, 2) << out;
    EXPECT_NE(out.find("no Kafka broker"), std::string::npos) << out;
  }
}

// A SIGTERM while start-up waits for brokers that do not answer ends the run at once, with exit 0
// (nothing ran yet); it waited out publisher.connect_timeout_ms (30 s) and then exited 1.
TEST(AppTest, ASignalWhileTheBrokersDoNotAnswerEndsTheStartUp) {
  if (!kHaveRun) GTEST_SKIP() << "this build has no run";
  gsau::testing::TempDir dir;
  const std::string log = dir.File("run.log");
  gsau::testing::ChildProcess run({Gsau(), "run", "--bootstrap", "127.0.0.1:1", "--state", dir.File("state"),
                                   "--checkpoints", dir.File("checkpoints"), "--set",
                                   "metrics.listen_address=127.0.0.1:0"},
                                  log);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (gsau::testing::GrepLines(log, "run: configuration").empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(gsau::testing::GrepLines(log, "run: configuration").empty()) << gsau::testing::Tail(log);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // into the wait for the brokers
  run.Signal(SIGTERM);
  // Far below the 30 s wait: no speed target, only whether the stop ended it.
  EXPECT_EQ(run.Wait(15000), 0) << gsau::testing::Tail(log);
  EXPECT_FALSE(gsau::testing::GrepLines(log, "stop requested during start-up").empty()) << gsau::testing::Tail(log);
  // The metrics line gives the port bound, not the configured 0.
  const auto url = gsau::testing::GrepLines(log, "run: metrics at http://127.0.0.1:");
  ASSERT_FALSE(url.empty()) << gsau::testing::Tail(log);
  EXPECT_EQ(url.find(":0/metrics"), std::string::npos) << url;
}

// --duration counts from the start, start-up included: a run whose brokers do not answer stopped
// only after publisher.connect_timeout_ms (30 s), however short its --duration. It ends at the
// limit, as a failure (it never reached its brokers), saying so.
TEST(AppTest, DurationEndsARunStillWaitingForItsBrokers) {
  if (!kHaveRun) GTEST_SKIP() << "this build has no run";
  gsau::testing::TempDir dir;
  const std::string log = dir.File("run.log");
  gsau::testing::ChildProcess run({Gsau(), "run", "--bootstrap", "127.0.0.1:1", "--state", dir.File("state"),
                                   "--checkpoints", dir.File("checkpoints"), "--duration", "3", "--set",
                                   "metrics.listen_address=127.0.0.1:0"},
                                  log);
  // Far below the 30 s wait: no speed target, only whether the limit ended it.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(run.Wait(25000), 1) << gsau::testing::Tail(log);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20)) << "the limit did not end the wait";
  EXPECT_FALSE(gsau::testing::GrepLines(log, "--duration reached during start-up: the brokers did not answer").empty())
      << gsau::testing::Tail(log);
}

TEST(AppTest, ReplayWithoutBrokerIsAUsageError) {
  std::string out;
  EXPECT_EQ(RunCommand(Gsau() + " replay --synthetic 10 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("no Kafka broker"), std::string::npos) << out;
  // Paths replay never opens are not held against it (a file where run's state would go).
  gsau::testing::TempDir dir;
  const std::string file = dir.File("plain");
  std::ofstream(file) << "x";
  EXPECT_EQ(RunCommand(Gsau() + " replay --synthetic 10 --set state.path=" + file + " 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("no Kafka broker"), std::string::npos) << out;
  EXPECT_EQ(out.find("state.path"), std::string::npos) << out;
  // run writes them: named there.
  if (!kHaveRun) return;
  EXPECT_EQ(RunCommand(Gsau() + " run --bootstrap 127.0.0.1:1 --set state.path=" + file + " 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("state.path (--set): must be a directory"), std::string::npos) << out;
}

// Ctrl-C is how a replay is ended early: it said "Aborted" and exited 1, as for a failure.
TEST(AppTest, AReplayStoppedWithCtrlCEndsCleanly) {
  const std::string bootstrap = gsau::testing::KafkaBootstrap();
  const std::string clicks = gsau::testing::UniqueTopic("replay-stopped");
  kafka::KafkaOptions k;
  k.bootstrap_servers = bootstrap;
  ASSERT_TRUE(kafka::EnsureTopics(k, {{clicks, 1, 1, {}}}, 20000).ok());
  std::string out;
  // 8 s: a SIGINT before the replay loop (a slow start under load) would end it before a record.
  const int rc = RunCommand("timeout --preserve-status -s INT 8 " + Gsau() + " replay --synthetic 100000 --rate 200 " +
                                "--no-progress --topic " + clicks + " --bootstrap " + bootstrap + " 2>&1",
                            &out);
  // Ends as interrupted by SIGINT (130), as gsau train does: a script tells a replay cut short
  // from a whole one (it exited 0).
  EXPECT_EQ(rc, 130) << out;
  EXPECT_NE(out.find("gsau replay: stopped: replay stopped after "), std::string::npos) << out;
  // A Ctrl-C while the brokers do not answer ends it at once; it waited the 30 s out.
  const auto t0 = std::chrono::steady_clock::now();
  const int away = RunCommand("timeout --preserve-status -s INT 2 " + Gsau() +
                                  " replay --synthetic 100 --no-progress --bootstrap 127.0.0.1:1 2>&1",
                              &out);
  EXPECT_EQ(away, 130) << out;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20)) << out;
}

// Ctrl-C on a long gsau train killed it wherever it was; now it stops at the next step with the
// files of the last finished epoch and says how to go on, and --resume does. It still ends as
// interrupted by SIGINT (130 in the shell), so a script's loop of trainings stops as well.
TEST(AppTest, ATrainingStoppedWithCtrlCSaysHowToResume) {
  if (!kHaveTrain) GTEST_SKIP() << "this build has no learner";
  gsau::testing::TempDir dir;
  std::string tsv = "user_id\titem_id\ttimestamp\n";
  for (int u = 0; u < 40; ++u) {
    for (int k = 0; k < 8; ++k) {
      tsv += "u" + std::to_string(u) + "\ti" + std::to_string((u * 5 + k * 3) % 25) + "\t" + std::to_string(k) + "\n";
    }
  }
  gsau::testing::WriteFile(dir.File("d.tsv"), tsv);
  const std::string train = Gsau() + " train --data " + dir.File("d.tsv") + " --out " + dir.File("run") +
                            " --dim 8 --threads 1 --patience 100000 ";
  const std::string csv = dir.File("run/metrics.csv");
  // SIGINT once the first epoch's row is written (the handler is in place well before).
  std::string out;
  const std::string rows_written = "$(cat " + csv + " 2>/dev/null | wc -l)";
  const int rc = RunCommand("(" + train + "--epochs 100000 > " + dir.File("out.txt") + " 2>&1 & pid=$!; " +
                                "for k in $(seq 1200); do [ \"" + rows_written + "\" -ge 2 ] && break; " +
                                "sleep 0.1; done; kill -INT $pid; wait $pid); rc=$?; cat " + dir.File("out.txt") +
                                "; exit $rc",
                            &out);
  EXPECT_EQ(rc, 130) << out;
  EXPECT_NE(out.find("gsau train: stopped: stopped "), std::string::npos) << out;
  EXPECT_NE(out.find(": --resume continues from there"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir.File("run/report.json")));
  std::string rows;
  ASSERT_EQ(RunCommand("wc -l < " + csv, &rows), 0);
  const int finished = std::stoi(rows) - 1;
  ASSERT_GE(finished, 1) << out;
  EXPECT_NE(out.find("holds epochs 1-" + std::to_string(finished) + ":"), std::string::npos) << out;
  ASSERT_EQ(RunCommand(train + "--resume --epochs " + std::to_string(finished + 1) + " 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("resumed from "), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::exists(dir.File("run/report.json")));
}

// On a real broker the demo plays into topics of its own run, never the configured ones (a
// deployment's: its synthetic and malformed clicks and its users' embeddings would land there),
// and a second run does not read the first one's clicks.
// Ctrl-C ends the demo early with its summary, as interrupted (130, as replay and train): it
// exited 0, as if the stream had played whole.
TEST(AppTest, ADemoStoppedWithCtrlCPrintsItsSummaryAndEndsAsInterrupted) {
  gsau::testing::TempDir dir;
  std::string out;
  const int rc = RunCommand("timeout --preserve-status -k 90 -s INT 12 " + Gsau() +
                                " demo --events 100000 --rate 500 --users 300 --items 200 --dir " + dir.File("demo") +
                                " --set metrics.listen_address=127.0.0.1:0 --set learner.threads=1 2>&1",
                            &out);
  if (rc == 3 && !kHaveRun) GTEST_SKIP() << "this build has no learner: " << out;
  EXPECT_EQ(rc, 130) << out;
  EXPECT_NE(out.find(" events applied, "), std::string::npos) << out;
  EXPECT_NE(out.find("demo: state and checkpoints in "), std::string::npos) << out;
}

TEST(AppTest, DemoOnARealBrokerLeavesTheConfiguredTopicsAlone) {
  const std::string bootstrap = gsau::testing::KafkaBootstrap();
  const std::string clicks = gsau::testing::UniqueTopic("configured-clicks");
  const std::string users = gsau::testing::UniqueTopic("configured-users");
  kafka::KafkaOptions k;
  k.bootstrap_servers = bootstrap;
  ASSERT_TRUE(kafka::EnsureTopics(k, {{clicks, 1, 1, {}}, {users, 1, 1, {}}}, 20000).ok());
  gsau::testing::TempDir dir;
  for (int run = 1; run <= 2; ++run) {
    std::string out;
    const int rc = RunCommand(Gsau() + " demo --events 1000 --rate 2000 --users 300 --items 200 --dir " +
                                  dir.File("demo") + " --set kafka.bootstrap_servers=" + bootstrap +
                                  " --set topics.clicks=" + clicks + " --set topics.user_embeddings=" + users +
                                  " --set metrics.listen_address=127.0.0.1:0 --set learner.threads=1 2>&1",
                              &out);
    if (rc == 3 && !kHaveRun) GTEST_SKIP() << "this build has no learner: " << out;
    ASSERT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("this run's topics are gsau-demo-"), std::string::npos) << out;
    EXPECT_NE(out.find("demo: 1000 events applied, 1 dead-lettered"), std::string::npos)
        << "run " << run << " took in its own clicks only\n" << out;
  }
  EXPECT_TRUE(gsau::testing::ConsumeAll(bootstrap, clicks, -1, 10000).empty()) << "clicks played into " << clicks;
  EXPECT_TRUE(gsau::testing::ConsumeAll(bootstrap, users, -1, 10000).empty()) << "embeddings published to " << users;
}

TEST(AppTest, DemoRunsTheWholeLoopOnTheEmbeddedBrokerAndInspectShowsIt) {
  gsau::testing::TempDir dir;
  std::string out;
  const std::string demo = Gsau() + " demo --events 3000 --rate 1500 --users 2000 --items 1000 --dir " + dir.File("demo") +
                           " --set metrics.listen_address=127.0.0.1:0 --set learner.threads=1 --set state.path=" +
                           dir.File("elsewhere") + " --set learner.embedding_dim=32 2>&1";
  const int rc = RunCommand(demo, &out);
  if (rc == 3 && !kHaveRun) GTEST_SKIP() << "this build has no learner: " << out;
  ASSERT_EQ(rc, 0) << out;
  // A configured state.path is replaced by --dir's, and the demo says so.
  EXPECT_NE(out.find("gsau demo: state.path is set, but the demo keeps everything in --dir"), std::string::npos)
      << out;
  EXPECT_FALSE(std::filesystem::exists(dir.File("elsewhere")));
  // Every click applied exactly once, the three malformed records (one per 1,000) dead-lettered,
  // the learner stepped and ranked clicks, embeddings went out.
  EXPECT_NE(out.find("demo: 3000 events applied, 3 dead-lettered"), std::string::npos) << out;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(out, m, std::regex(R"((\d+) learner steps; (\d+) user and (\d+) item records published)")))
      << out;
  EXPECT_GT(std::stoll(m[1]), 0) << out;
  EXPECT_GT(std::stoll(m[2]), 0) << out;
  EXPECT_GT(std::stoll(m[3]), 0) << out;
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(over (\d+) clicks ranked before training)"))) << out;
  EXPECT_GT(std::stoll(m[1]), 100) << out;
  EXPECT_NE(out.find("events/s"), std::string::npos) << "a status line: " << out;
  // Its progress: records taken of the 3,000 clicks and 3 malformed ones the player sends.
  EXPECT_NE(out.find(" of 3003 ("), std::string::npos) << out;

  // inspect on what the demo left: statistics, a user's session and top-K, an item's neighbours.
  // Without the demo's settings: the model's shape (dim 32, not the default 64) comes from the
  // checkpoint (it failed as "written for another model shape").
  replay::SyntheticOptions so;
  so.events = 3000;
  const auto stream = replay::SyntheticStream(so);
  const std::string user = stream.front().user_id, item = stream.front().item_id;
  ASSERT_EQ(RunCommand(Gsau() + " inspect --dir " + dir.File("demo") + " --user " + user + " --item " + item +
                           " -k 5 2>&1",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("users, "), std::string::npos) << out;
  EXPECT_NE(out.find("model " + dir.File("demo") + "/checkpoints/ckpt-"), std::string::npos) << out;
  EXPECT_NE(out.find("user " + user + " (id "), std::string::npos) << out;
  EXPECT_NE(out.find("top-5 items for the next click"), std::string::npos) << out;
  EXPECT_NE(out.find("   5. "), std::string::npos) << "five items listed: " << out;
  EXPECT_NE(out.find("item " + item + " (id "), std::string::npos) << out;
  EXPECT_NE(out.find("nearest items"), std::string::npos) << out;
  EXPECT_EQ(out.find("do not belong together"), std::string::npos) << out;
  // Another deployment's state (a smaller one) beside this model: inspect says they do not belong
  // together before naming the model's rows by that state's ids (gsau run refuses the pair).
  ASSERT_EQ(RunCommand(Gsau() + " demo --events 100 --rate 1000 --users 50 --items 40 --dir " + dir.File("small") +
                           " --set metrics.listen_address=127.0.0.1:0 --set learner.threads=1 2>&1",
                       &out),
            0)
      << out;
  ASSERT_EQ(RunCommand(Gsau() + " inspect --state " + dir.File("small") + "/state --checkpoints " + dir.File("demo") +
                           "/checkpoints 2>&1",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("warning: the state (batch "), std::string::npos) << out;
  EXPECT_NE(out.find("they do not belong together"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(Gsau() + " inspect --dir " + dir.File("demo") + " --user nobody-here 2>&1", &out), 1) << out;
  EXPECT_NE(out.find("no user 'nobody-here' in the state (it has "), std::string::npos) << out;
  EXPECT_NE(out.find(" users, e.g. u"), std::string::npos) << "real ids beside the mistyped one: " << out;
  EXPECT_EQ(out.find("rollback"), std::string::npos) << out;
  // Half-way through a rollback, inspect says so before showing a pair that may not match.
  std::ofstream(dir.File("demo") + "/checkpoints/ROLLBACK_IN_PROGRESS") << "/x/ckpt-000000000007\n";
  ASSERT_EQ(RunCommand(Gsau() + " inspect --dir " + dir.File("demo") + " 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("warning: a rollback to /x/ckpt-000000000007 did not finish"), std::string::npos) << out;
  std::filesystem::remove(dir.File("demo") + "/checkpoints/ROLLBACK_IN_PROGRESS");
  // A stop inside a checkpoint's replacement leaves the newest renamed aside (ckpt-N.replaced);
  // inspect shows it, as the next start puts it back (it showed the one before, or none).
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.File("demo") + "/checkpoints")) {
    const std::string name = e.path().filename().string();
    if (name.rfind("ckpt-", 0) == 0) names.push_back(name);
  }
  ASSERT_FALSE(names.empty()) << "the demo checkpoints when it stops";
  std::sort(names.begin(), names.end());
  const std::string newest = dir.File("demo") + "/checkpoints/" + names.back();
  std::filesystem::rename(newest, newest + ".replaced");
  ASSERT_EQ(RunCommand(Gsau() + " inspect --dir " + dir.File("demo") + " 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("model " + newest + ".replaced: "), std::string::npos) << out;
  // A newest checkpoint that is not readable (its model.pt cut short): the one before it is shown,
  // with a warning (inspect failed on it).
  std::filesystem::rename(newest + ".replaced", newest);
  const std::string cut = dir.File("demo") + "/checkpoints/ckpt-999999999999";
  std::filesystem::copy(newest, cut, std::filesystem::copy_options::recursive);
  std::filesystem::resize_file(cut + "/model.pt", 100);
  ASSERT_EQ(RunCommand(Gsau() + " inspect --dir " + dir.File("demo") + " 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("warning: " + cut + " cannot be read ("), std::string::npos) << out;
  EXPECT_NE(out.find("model " + newest + ": "), std::string::npos) << out;
  // This state is behind the unreadable one's batch: gsau run refuses the pair, inspect says so.
  EXPECT_NE(out.find("is behind the unreadable checkpoint (batch 999999999999)"), std::string::npos) << out;
  // A demo's directory carries its marker, and the next demo replaces it; --rate 0 plays as fast
  // as it can, as replay's (it was refused).
  EXPECT_TRUE(std::filesystem::exists(dir.File("small/.gsau-demo")));
  EXPECT_EQ(RunCommand(Gsau() + " demo --events 100 --rate 0 --users 50 --items 40 --dir " + dir.File("small") +
                           " --set metrics.listen_address=127.0.0.1:0 --set learner.threads=1 2>&1",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("malformed records, one per 1000) as fast as possible into "), std::string::npos) << out;
  EXPECT_NE(out.find("demo: 100 events applied, 0 dead-lettered"), std::string::npos) << out;
  // At full speed a model ranking below most-popular is said to be the pace's doing, not the model's.
  std::smatch figures;
  ASSERT_TRUE(std::regex_search(out, figures,
                                std::regex("online recall@20 ([0-9.]+) vs most-popular ([0-9.]+) over ([0-9]+) clicks")))
      << out;
  const bool behind = std::stod(figures[1]) < std::stod(figures[2]) && std::stoll(figures[3]) > 0;
  EXPECT_EQ(out.find("at --rate 0 the clicks outran the learner") != std::string::npos, behind) << out;
  // The default directory as a demo before the marker left it (make demo refused it): replaced.
  std::filesystem::create_directories(dir.File("cwd/gsau-demo/state"));
  std::filesystem::create_directories(dir.File("cwd/gsau-demo/checkpoints"));
  EXPECT_EQ(RunCommand("cd " + dir.File("cwd") + " && " + Gsau() +
                           " demo --events 100 --rate 1000 --users 50 --items 40 --set "
                           "metrics.listen_address=127.0.0.1:0 --set learner.threads=1 2>&1",
                       &out),
            0)
      << out;
  EXPECT_TRUE(std::filesystem::exists(dir.File("cwd/gsau-demo/.gsau-demo")));
  EXPECT_EQ(out.find("outran the learner"), std::string::npos) << "only said at --rate 0: " << out;
}

// A dataset's event types reach ingest (RetailRocket's layout): with only transactions
// accepted, the demo applies those and says how many of the rest ingest skipped; its summary
// showed the applied ones alone, and most of the stream went unaccounted for.
TEST(AppTest, ADemoOfATypedDatasetSaysWhatIngestSkipped) {
  gsau::testing::TempDir dir;
  std::string rows = "timestamp,visitorid,event,itemid,transactionid\n";
  int transactions = 0, others = 0;
  for (int k = 0; k < 600; ++k) {
    const char* type = k % 5 == 0 ? "transaction" : k % 5 == 1 ? "addtocart" : "view";
    (k % 5 == 0 ? transactions : others)++;
    rows += std::to_string(1433221332117 + 1000LL * k) + "," + std::to_string(k % 40) + "," + type + "," +
            std::to_string(k % 30) + "," + (k % 5 == 0 ? "1" : "") + "\n";
  }
  gsau::testing::WriteFile(dir.File("events.csv"), rows);
  std::string out;
  const int rc = RunCommand(Gsau() + " demo --data " + dir.File("events.csv") + " --events 0 --rate 3000 --dir " +
                                dir.File("d") +
                                " --set metrics.listen_address=127.0.0.1:0 --set learner.threads=1"
                                " --set 'ingest.accepted_event_types=[transaction]' 2>&1",
                            &out);
  if (rc == 3 && !kHaveRun) GTEST_SKIP() << "this build has no learner: " << out;
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("demo: " + std::to_string(transactions) + " events applied, 0 dead-lettered, " +
                     std::to_string(others) + " skipped (types ingest.accepted_event_types leaves out)"),
            std::string::npos)
      << out;
  // Said before the stream starts, as replay says it.
  EXPECT_NE(out.find(std::to_string(others) + " of 600 events have a type ingest.accepted_event_types [transaction] "
                     "does not accept (addtocart 120, view 360)"),
            std::string::npos)
      << out;
}

// A demo whose metrics port was taken (another demo's: 9464 by default) went on without /metrics.
// It serves them on a free port of the same host and says so, with a URL a browser takes (the
// host ":P" means every address: http://:P/metrics was printed for it).
TEST(AppTest, ADemoWhoseMetricsPortIsTakenServesThemOnAnother) {
  const gsau::testing::SilentListener held;
  ASSERT_GT(held.port(), 0);
  const std::string port = std::to_string(held.port());
  gsau::testing::TempDir dir;
  std::string out;
  const int rc = RunCommand(Gsau() + " demo --events 200 --rate 0 --dir " + dir.File("d") +
                                " --set metrics.listen_address=:" + port + " --set learner.threads=1 2>&1",
                            &out);
  if (rc == 3 && !kHaveRun) GTEST_SKIP() << "this build has no learner: " << out;
  ASSERT_EQ(rc, 0) << out;
  const std::regex line("metrics at http://127\\.0\\.0\\.1:([0-9]+)/metrics \\(:" + port + ": [^)]+\\)");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, line)) << out;
  EXPECT_NE(m[1].str(), port);
  EXPECT_EQ(out.find("continuing without /metrics"), std::string::npos) << out;
}

TEST(AppTest, EvaluateRanksTheLeaveOneOutSamplesOfAFileWithTheOnlineModel) {
  // 300 users walking a cycle of 50 items, 8 clicks each, as per-user lines; the demo streams
  // them (test items included), then evaluate maps the file's ids to the model's by name.
  gsau::testing::TempDir dir;
  std::string lines;
  for (int u = 0; u < 300; ++u) {
    lines += "user" + std::to_string(u);
    for (int t = 0; t < 8; ++t) lines += " item" + std::to_string((u * 7 + t) % 50);
    lines += "\n";
  }
  gsau::testing::WriteFile(dir.File("cycle.txt"), lines);
  std::string out;
  const int rc = RunCommand(Gsau() + " demo --data " + dir.File("cycle.txt") + " --events 0 --rate 3000 --dir " +
                                dir.File("d") +
                                " --set metrics.listen_address=127.0.0.1:0 --set learner.threads=1"
                                " --set learner.embedding_dim=32 2>&1",
                            &out);
  if (rc == 3 && !kHaveRun) GTEST_SKIP() << "this build has no learner: " << out;
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("playing 2400 clicks"), std::string::npos) << "--events 0: the whole file\n" << out;
  // evaluate below is not told the demo's dim (32): it reads the model's shape from the checkpoint.
  ASSERT_EQ(RunCommand(Gsau() + " evaluate --checkpoint " + dir.File("d") + "/checkpoints --data " +
                           dir.File("cycle.txt") + " --out " + dir.File("eval.json") + " 2>&1",
                       &out),
            0)
      << out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"("test": \{"count": (\d+), "recall@5": ([0-9.]+), "recall@10": ([0-9.]+), "recall@20": ([0-9.]+), "recall@50": ([0-9.]+))")))
      << out;
  EXPECT_EQ(m[1], "300") << "one test sample per user";
  // 50 items: every mapped target ranks below 50, and a target the mapping missed would rank
  // 50 (a miss), so recall@50 = 1 says every name was matched.
  EXPECT_EQ(std::stod(m[5]), 1.0) << out;
  EXPECT_LE(std::stod(m[2]), std::stod(m[3])) << out;
  EXPECT_LE(std::stod(m[3]), std::stod(m[4])) << out;
  EXPECT_NE(out.find(R"("unknown_targets": {"valid": 0, "test": 0})"), std::string::npos) << out;
  const auto text = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string report = text(dir.File("eval.json"));
  EXPECT_NE(report.find("\"unknown_targets\""), std::string::npos) << "the report file: " << report;
  // A report that cannot be written whole (here its temporary file's name is taken) leaves the
  // earlier one as it was: it was opened, emptied and cut short.
  std::filesystem::create_directory(dir.File("eval.json.tmp"));
  EXPECT_EQ(RunCommand(Gsau() + " evaluate --checkpoint " + dir.File("d") + "/checkpoints --data " +
                           dir.File("cycle.txt") + " --out " + dir.File("eval.json") + " 2>&1",
                       &out),
            1)
      << out;
  EXPECT_EQ(text(dir.File("eval.json")), report);
  // A file none of whose items the model knows (another dataset): an error, not all-zero
  // metrics with exit 0.
  std::string other;
  for (int u = 0; u < 40; ++u) other += "person" + std::to_string(u) + " x1 x2 x3 x4 x5\n";
  gsau::testing::WriteFile(dir.File("other.txt"), other);
  EXPECT_EQ(RunCommand(Gsau() + " evaluate --checkpoint " + dir.File("d") + "/checkpoints --data " +
                           dir.File("other.txt") + " --out " + dir.File("other.json") + " 2>&1",
                       &out),
            1)
      << out;
  EXPECT_NE(out.find("is it the dataset this pipeline streamed?"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir.File("other.json")));
  // --out naming the dataset: a usage error before anything is read (the report replaced it).
  EXPECT_EQ(RunCommand(Gsau() + " evaluate --checkpoint " + dir.File("d") + "/checkpoints --data " +
                           dir.File("cycle.txt") + " --out " + dir.File("cycle.txt") + " 2>&1",
                       &out),
            2)
      << out;
  EXPECT_NE(out.find("is the --data file"), std::string::npos) << out;
  EXPECT_EQ(text(dir.File("cycle.txt")), lines);
  EXPECT_EQ(RunCommand(Gsau() + " evaluate --checkpoint " + dir.File("d") + "/checkpoints --data " +
                           dir.File("cycle.txt") + " --out " + dir.File("no-such-dir/e.json") + " 2>&1",
                       &out),
            2)
      << out;
  EXPECT_NE(out.find("no folder"), std::string::npos) << out;
  // Users of 3 clicks give a validation and a test sample each and no training sample:
  // evaluation needs none (it was refused as "no training sample").
  gsau::testing::WriteFile(dir.File("three.txt"), "a item0 item1 item2\nb item7 item8 item9\nc item3 item4 item5\n");
  ASSERT_EQ(RunCommand(Gsau() + " evaluate --checkpoint " + dir.File("d") + "/checkpoints --data " +
                           dir.File("three.txt") + " 2>&1",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find(R"("test": {"count": 3,)"), std::string::npos) << out;
}

}  // namespace
}  // namespace gsau
