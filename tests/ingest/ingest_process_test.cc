// `gsau ingest` as a process against the real broker: kill -9 at random moments, two
// processes in one group with a failover, and the broker stopped mid-stream.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "ingest_helpers.h"
#include "kafka_broker.h"
#include "process.h"
#include "temp_dir.h"

namespace gsau {
namespace {

using namespace gsau::testing;
using std::chrono::milliseconds;
using std::chrono::seconds;

struct IngestProcess {
  std::string bootstrap, topic, group, state, log, instance;
  int port = 0;  // of the running process's metrics, set by Start
  int batch = 200;
  int session_timeout_ms = 6000;

  std::unique_ptr<ChildProcess> Start() {
    std::vector<std::string> argv = {BinaryDir() + "/gsau",
                                     "ingest",
                                     "--bootstrap",
                                     bootstrap,
                                     "--state",
                                     state,
                                     "--status-interval",
                                     "2",
                                     "--set",
                                     "topics.clicks=" + topic,
                                     "--set",
                                     "topics.dead_letter=" + topic + ".dlq",
                                     "--set",
                                     "ingest.group_id=" + group,
                                     "--set",
                                     "ingest.batch_max_events=" + std::to_string(batch),
                                     "--set",
                                     "ingest.batch_max_wait_ms=50",
                                     "--set",
                                     "ingest.session_timeout_ms=" + std::to_string(session_timeout_ms),
                                     "--set",
                                     std::string("metrics.listen_address=") + kAnyMetricsAddress};
    if (!instance.empty()) {
      argv.push_back("--set");
      argv.push_back("ingest.group_instance_id=" + instance);
    }
    const uintmax_t from = FileSize(log);
    auto child = std::make_unique<ChildProcess>(argv, log);
    port = AnnouncedMetricsPort(log, from, *child);
    if (port < 0 && child->Running()) ADD_FAILURE() << kNoMetricsPort << Tail(log);
    return child;
  }
};

// Opens a stopped process's state: whole batches only, and offsets that match them.
uint64_t CheckWholeBatches(const std::string& path) {
  state::StateOptions o;
  o.path = path;
  auto s = state::StateStore::Open(o);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return 0;
  int64_t offsets = 0;
  for (const auto& p : (*s)->Offsets()) offsets += p.next_offset;
  const uint64_t events = (*s)->Counts().events;
  EXPECT_EQ(static_cast<uint64_t>(offsets), events) << "every consumed record is applied, no more, no less";
  return events;
}

TEST(IngestProcessTest, KillNineAtRandomMomentsLosesNothingAndAppliesNothingTwice) {
  const std::string topic = UniqueTopic("kill9");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 4, 1, {}}}, 20000).ok());
  TempDir dir;
  IngestProcess p{KafkaBootstrap(), topic, UniqueTopic("kill9-group"), dir.File("state"), dir.File("ingest.log"),
                  "ingest-1"};
  auto clicks = MakeClicks(72000, 500, 800, 99);
  // Events arrive until the kill loop ends (at most 120 s of them), so every kill lands while
  // they do: a fixed 40 s of them ran out before the loop did on a slow machine.
  BackgroundProducer producer(KafkaBootstrap(), topic, clicks, 600);

  std::mt19937 rng(2020);
  std::uniform_int_distribution<int> wait_ms(400, 1800);
  constexpr int kKills = 10;
  std::vector<uint64_t> after_kill;
  for (int k = 0; k < kKills; ++k) {
    auto child = p.Start();
    // The kill lands a random moment after the process owns its partitions: a full build's gsau
    // links LibTorch and takes a while to load, so a clock started at spawn often killed it
    // before it had applied anything (CI saw 1 progressing kill of 10).
    const auto up_deadline = std::chrono::steady_clock::now() + seconds(30);
    while (ScrapeMetric(p.port, "gsau_ingest_assigned_partitions").value_or(0) < 1 &&
           std::chrono::steady_clock::now() < up_deadline && child->Running()) {
      std::this_thread::sleep_for(milliseconds(20));
    }
    std::this_thread::sleep_for(milliseconds(wait_ms(rng)));
    ASSERT_TRUE(child->Running()) << Tail(p.log);
    child->Signal(SIGKILL);
    ASSERT_EQ(child->Wait(10000), 128 + SIGKILL);
    after_kill.push_back(CheckWholeBatches(p.state));
  }
  const bool all_sent = producer.Produced() == clicks.size();
  producer.Stop();
  ASSERT_TRUE(producer.Join());
  EXPECT_FALSE(all_sent) << "the stream ended before the kill loop";
  clicks.resize(producer.Produced());
  int progressed = 0;
  for (size_t k = 1; k < after_kill.size(); ++k) progressed += after_kill[k] > after_kill[k - 1];
  EXPECT_GE(progressed, kKills / 2) << "the kills must land while events are being applied";

  auto last = p.Start();
  if (!WaitForStateEvents(p.port, static_cast<double>(clicks.size()), seconds(90))) {
    // Say where the missing events are: each partition's end against the offset in the state.
    std::map<int32_t, int64_t> end;
    for (const auto& r : ConsumeAll(KafkaBootstrap(), topic, -1, 30000)) {
      end[r.partition] = std::max(end[r.partition], r.offset + 1);
    }
    state::StateOptions o;
    o.path = p.state;
    o.read_only = true;
    std::ostringstream where;
    if (auto s = state::StateStore::Open(o); s.ok()) {
      where << (*s)->Counts().events << " events in the state;";
      for (const auto& po : (*s)->Offsets()) {
        where << " partition " << po.tp.partition << ": state at " << po.next_offset << ", topic end "
              << end[po.tp.partition] << ";";
      }
    }
    int64_t records = 0;
    for (const auto& [part, e] : end) records += e;
    FAIL() << "not every event was applied: " << where.str() << " the broker acknowledged " << producer.Delivered()
           << " of " << clicks.size() << " records; the topic holds " << records << "\n"
           << Tail(p.log);
  }
  last->Signal(SIGTERM);
  ASSERT_EQ(last->Wait(30000), 0) << Tail(p.log);
  CheckWholeBatches(p.state);
  EXPECT_EQ(DumpAt(p.state), Reference(clicks)) << "the final state equals a run without kills";
}

TEST(IngestProcessTest, TwoProcessesSplitPartitionsAndTheSurvivorTakesOver) {
  const std::string topic = UniqueTopic("failover");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 4, 1, {}}}, 20000).ok());
  TempDir dir;
  const std::string group = UniqueTopic("failover-group");
  IngestProcess a{KafkaBootstrap(), topic, group, dir.File("a"), dir.File("a.log"), ""};
  IngestProcess b{KafkaBootstrap(), topic, group, dir.File("b"), dir.File("b.log"), ""};
  const auto clicks = MakeClicks(12000, 400, 600, 5);
  auto pa = a.Start();
  auto pb = b.Start();
  // Both join and split the 4 partitions.
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  std::optional<double> na, nb;
  while (std::chrono::steady_clock::now() < deadline) {
    na = ScrapeMetric(a.port, "gsau_ingest_assigned_partitions");
    nb = ScrapeMetric(b.port, "gsau_ingest_assigned_partitions");
    if (na && nb && *na > 0 && *nb > 0 && *na + *nb == 4) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(na && nb && *na > 0 && *nb > 0 && *na + *nb == 4) << Tail(a.log) << Tail(b.log);

  BackgroundProducer producer(KafkaBootstrap(), topic, clicks, 3000);
  // Killed once it has applied some of its share (a fixed 2 s could find nothing applied yet on
  // a loaded machine); the stream lasts 4 s.
  double a_events = 0;
  for (const auto until = std::chrono::steady_clock::now() + seconds(30);
       a_events == 0 && std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(milliseconds(50))) {
    a_events = ScrapeMetric(a.port, "gsau_state_events").value_or(0);
  }
  EXPECT_GT(a_events, 0) << "A was applying its partitions when killed";
  pa->Signal(SIGKILL);
  ASSERT_EQ(pa->Wait(10000), 128 + SIGKILL);
  ASSERT_TRUE(producer.Join());

  // B gets every partition and, from its own state's offsets (the beginning for A's), ends
  // up with every event exactly once.
  ASSERT_TRUE(WaitForStateEvents(b.port, static_cast<double>(clicks.size()), seconds(90))) << Tail(b.log);
  EXPECT_EQ(ScrapeMetric(b.port, "gsau_ingest_assigned_partitions").value_or(0), 4);
  pb->Signal(SIGTERM);
  ASSERT_EQ(pb->Wait(30000), 0) << Tail(b.log);
  EXPECT_EQ(DumpAt(b.state), Reference(clicks));
  const uint64_t in_a = CheckWholeBatches(a.state);
  EXPECT_GT(in_a, 0u);
  EXPECT_LT(in_a, clicks.size());
}

// After a kill -9 the group waits out the dead member's session before it assigns the restarted
// process anything; the lag gauge read 0 all that time while the backlog grew. It starts from
// the state's offsets against the partitions' ends, asked again each second while the brokers
// do not answer: asked once, a broker slow to answer the process just started left it at 0
// (here the broker is stopped, SIGSTOP, until that first ask has missed).
TEST(IngestProcessTest, TheLagIsKnownBeforeTheFirstAssignmentAfterAKill) {
  TempDir dir;
  PrivateBroker broker(dir.File("broker"), 600);
  const std::string topic = UniqueTopic("lag-restart");
  const auto k = KafkaAt(broker.bootstrap);
  ASSERT_TRUE(kafka::EnsureTopics(k, {{topic, 1, 1, {}}}, 20000).ok());
  IngestProcess p{broker.bootstrap, topic, UniqueTopic("lag-restart-group"), dir.File("state"),
                  dir.File("ingest.log"), /*instance=*/""};
  // The window before the restarted process is assigned anything: its start against the stopped
  // broker (the dead-letter topic's 10 s metadata wait, the first ask) comes out of it.
  p.session_timeout_ms = 90000;
  const auto clicks = MakeClicks(500, 50, 80, 41);
  ProduceClicks(k, topic, std::vector<ClickEvent>(clicks.begin(), clicks.begin() + 300));
  auto first = p.Start();
  ASSERT_TRUE(WaitForStateEvents(p.port, 300, seconds(60))) << Tail(p.log);
  first->Signal(SIGKILL);
  ASSERT_EQ(first->Wait(10000), 128 + SIGKILL);
  ProduceClicks(k, topic, std::vector<ClickEvent>(clicks.begin() + 300, clicks.end()));
  pid_t broker_pid = 0;
  std::ifstream(broker.dir + "/pid") >> broker_pid;
  ASSERT_GT(broker_pid, 0);
  struct Continued {  // the broker runs on whatever fails below
    pid_t pid;
    ~Continued() { kill(pid, SIGCONT); }
  } continued{broker_pid};
  ASSERT_EQ(kill(broker_pid, SIGSTOP), 0);
  auto second = p.Start();
  bool missed = false;
  for (const auto until = std::chrono::steady_clock::now() + seconds(45);
       !missed && std::chrono::steady_clock::now() < until && second->Running();) {
    std::this_thread::sleep_for(milliseconds(100));
    missed = Tail(p.log, 1 << 20).find("no log end yet for 1 partition(s)") != std::string::npos;
  }
  ASSERT_EQ(kill(broker_pid, SIGCONT), 0);
  ASSERT_TRUE(missed) << "the first ask for the log's end did not miss\n" << Tail(p.log);
  // Before the group assigns the partition (the dead member's session), the gauge shows the 200
  // records the state has not read.
  bool seen = false;
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while (!seen && std::chrono::steady_clock::now() < deadline && second->Running()) {
    const auto assigned = ScrapeMetric(p.port, "gsau_ingest_assigned_partitions");
    const auto lag = ScrapeMetric(p.port, "gsau_ingest_consumer_lag_messages");
    if (assigned && *assigned >= 1) break;
    seen = lag && *lag == 200;
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_TRUE(seen) << "no lag of 200 before the first assignment\n" << Tail(p.log);
  second->Signal(SIGTERM);
  EXPECT_EQ(second->Wait(60000), 0) << Tail(p.log);
}

// The clicks topic deleted under a running ingest: after a SIGTERM the process stopped, then hung
// for ever in the consumer's destruction (librdkafka 2.0's rd_kafka_destroy, librdkafka #3007),
// ignoring further signals and reading as "up". Its teardown is bounded: it ends, with the exit
// status of the stop, whatever librdkafka does.
TEST(IngestProcessTest, ATopicDeletedUnderIngestDoesNotHangItsExit) {
  const std::string topic = UniqueTopic("deleted");
  const auto k = KafkaAt(KafkaBootstrap());
  ASSERT_TRUE(kafka::EnsureTopics(k, {{topic, 4, 1, {}}}, 20000).ok());
  TempDir dir;
  IngestProcess p{KafkaBootstrap(), topic, UniqueTopic("deleted-group"), dir.File("state"), dir.File("ingest.log"),
                  /*instance=*/""};
  ProduceClicks(k, topic, MakeClicks(400, 50, 80, 43));
  auto child = p.Start();
  ASSERT_TRUE(WaitForStateEvents(p.port, 400, seconds(60))) << Tail(p.log);
  DeleteTopic(KafkaBootstrap(), topic);
  std::this_thread::sleep_for(seconds(8));  // the consumer finds its partitions gone
  child->Signal(SIGTERM);
  EXPECT_EQ(child->Wait(90000), 0) << Tail(p.log);
  EXPECT_EQ(CheckWholeBatches(p.state), 400u);
}

TEST(IngestProcessTest, BrokerStoppedForTwentySecondsMidStreamLosesNothing) {
  TempDir dir;
  PrivateBroker broker(dir.File("broker"), 900);
  const std::string& bootstrap = broker.bootstrap;
  std::string out;

  const std::string topic = "clicks-outage";
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(bootstrap), {{topic, 2, 1, {}}}, 20000).ok());
  IngestProcess p{bootstrap, topic, "outage-group", dir.File("state"), dir.File("ingest.log"), ""};
  auto child = p.Start();
  const auto clicks = MakeClicks(12000, 300, 500, 21);
  BackgroundProducer producer(bootstrap, topic, clicks, 400);  // ~30 s of events

  // Until ingest has applied something (a fixed 5 s was too short on a loaded machine, where the
  // group coordinator was still loading), so that the outage falls mid-stream.
  double before = 0;
  for (const auto deadline = std::chrono::steady_clock::now() + seconds(60);
       before == 0 && std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(seconds(1))) {
    before = ScrapeMetric(p.port, "gsau_state_events").value_or(0);
  }
  EXPECT_GT(before, 0);
  ASSERT_TRUE(broker.Run("pause", &out)) << out;
  std::this_thread::sleep_for(seconds(20));
  const double errors = ScrapeMetric(p.port, "gsau_errors_total{kind=\"broker\",stage=\"ingest\"}").value_or(0);
  EXPECT_GT(errors, 0) << "the outage is visible in the metrics";
  EXPECT_TRUE(child->Running()) << "no crash while the broker is away";
  // The dead-letter producer's report of it, while it lasts: with no dead letter to send, its
  // lines came out at the stop, after the broker was back.
  EXPECT_FALSE(GrepLines(p.log, "dead-letter producer: Kafka error").empty()) << Tail(p.log);
  ASSERT_TRUE(broker.Run("resume", &out)) << out;

  ASSERT_TRUE(producer.Join());
  ASSERT_TRUE(WaitForStateEvents(p.port, static_cast<double>(clicks.size()), seconds(120))) << Tail(p.log);
  child->Signal(SIGTERM);
  ASSERT_EQ(child->Wait(30000), 0) << Tail(p.log);
  EXPECT_EQ(DumpAt(p.state), Reference(clicks));
}

}  // namespace
}  // namespace gsau
