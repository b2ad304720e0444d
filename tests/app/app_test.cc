// The gsau executable as a user meets it: --help everywhere, broken configurations stop
// start-up naming the field, commands that have not landed say so.
#include <gtest/gtest.h>

#include "kafka_broker.h"
#include "temp_dir.h"

namespace gsau {
namespace {

using gsau::testing::RunCommand;

std::string Gsau() { return gsau::testing::BinaryDir() + "/gsau"; }

TEST(AppTest, EverySubcommandHasHelp) {
  for (const char* cmd : {"run", "demo", "train", "replay", "inspect"}) {
    std::string out;
    EXPECT_EQ(RunCommand(Gsau() + " " + cmd + " --help 2>&1", &out), 0) << cmd << ": " << out;
    EXPECT_NE(out.find("Usage"), std::string::npos) << cmd << ": " << out;
  }
}

TEST(AppTest, BrokenConfigurationNamesTheFieldAndStops) {
  gsau::testing::TempDir dir;
  std::string out;
  // A negative batch size, from a flag.
  EXPECT_EQ(RunCommand(Gsau() + " replay --synthetic 10 --set ingest.batch_max_events=-1 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("configuration error: ingest.batch_max_events: must be in [1, 1000000], got -1"),
            std::string::npos)
      << out;
  // An unknown key, from a file.
  gsau::testing::WriteFile(dir.File("c.yaml"), "state:\n  pathh: /tmp/x\n");
  EXPECT_EQ(RunCommand(Gsau() + " replay --synthetic 10 --config " + dir.File("c.yaml") + " 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("unknown configuration key 'state.pathh'"), std::string::npos) << out;
  // A missing file.
  EXPECT_EQ(RunCommand(Gsau() + " demo --config " + dir.File("nope.yaml") + " 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("config file '" + dir.File("nope.yaml") + "' does not exist"), std::string::npos) << out;
  // A bad value from the environment.
  EXPECT_EQ(RunCommand("GSAU_PUBLISHER_FORMAT=xml " + Gsau() + " replay --synthetic 10 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("publisher.format: must be one of json, binary, got 'xml'"), std::string::npos) << out;
}

TEST(AppTest, HelpConfigListsEveryFieldWithUnitsAndDefaults) {
  std::string out;
  ASSERT_EQ(RunCommand(Gsau() + " replay --help-config 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("| `ingest.batch_max_events` | `GSAU_INGEST_BATCH_MAX_EVENTS` | int | events | `1000` |"),
            std::string::npos)
      << out;
}

TEST(AppTest, CommandsNotLandedSaySoAndFail) {
  std::string out;
  EXPECT_EQ(RunCommand(Gsau() + " inspect 2>&1", &out), 3) << out;
  EXPECT_NE(out.find("not available"), std::string::npos) << out;
}

TEST(AppTest, RunWithoutBrokerIsAUsageErrorOrNotAvailable) {
  // A build without LibTorch has no learner: `run` says so (3); otherwise no broker is a usage error (2).
  std::string out;
  const int rc = RunCommand(Gsau() + " run --set learner.checkpoint_dir=/nonexistent/x 2>&1", &out);
  if (rc == 3) {
    EXPECT_NE(out.find("not available"), std::string::npos) << out;
  } else {
    EXPECT_EQ(rc, 2) << out;
    EXPECT_NE(out.find("no Kafka broker"), std::string::npos) << out;
  }
}

TEST(AppTest, ReplayWithoutBrokerIsAUsageError) {
  std::string out;
  EXPECT_EQ(RunCommand(Gsau() + " replay --synthetic 10 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("no Kafka broker"), std::string::npos) << out;
}

TEST(AppTest, DemoRunsEndToEndOnTheEmbeddedBroker) {
  std::string out;
  ASSERT_EQ(RunCommand(Gsau() + " demo --events 2000 --duration 60 --set metrics.listen_address=127.0.0.1:0 2>&1", &out),
            0)
      << out;
  EXPECT_NE(out.find("demo: ingested 2000 of 2000 replayed events exactly once"), std::string::npos) << out;
}

}  // namespace
}  // namespace gsau
