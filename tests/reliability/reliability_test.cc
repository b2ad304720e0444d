// The reliability suite (issue 8), against the real broker and the real `gsau` binary:
//   R1 kill -9 of `gsau run` at random moments during a stream, restarting each time
//   R2 the broker stopped mid-stream and restarted
//   R3 malformed and fuzzed events mixed with good ones
//   R4 a soak at a steady rate: resident memory and lag sampled
//   R5 the state's disk fills (a tmpfs) and space returns
//   R6 `gsau run` stopped while the broker is away: its last checkpoint comes before the
//      publisher's wait for deliveries
//   R7 `gsau run`'s disk fills up completely (a tmpfs) and space returns
// GSAU_RELIABILITY=full runs the sizes of the issue (`make reliability`); anything else the
// short variant that `make test` runs. Each check adds one summary row (its figures and
// PASS/FAIL/SKIPPED); the run ends with `BENCH reliability passed=<n> failed=<n> skipped=<n>`, and
// with GSAU_RELIABILITY_OUT=DIR also writes DIR/summary.md and the soak's CSV (and PNG);
// GSAU_SOAK_S=N makes R4's soak N seconds long.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <functional>
#include <limits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "ingest_helpers.h"
#include "kafka_broker.h"
#include "process.h"
#include "temp_dir.h"

namespace gsau {
namespace {

using namespace gsau::testing;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

bool Full() {
  const char* v = std::getenv("GSAU_RELIABILITY");
  return v != nullptr && std::string(v) == "full";
}

std::string OutDir() {
  const char* v = std::getenv("GSAU_RELIABILITY_OUT");
  return v == nullptr ? "" : v;
}

struct Row {
  std::string check, figures;
  bool pass = false;
  bool skipped = false;
};
std::vector<Row>& Rows() {
  static std::vector<Row> rows;
  return rows;
}

// Each check fills `figures`; TearDown records its row with the test's verdict.
class Reliability : public ::testing::Test {
 protected:
  void Record(const std::string& check) { check_ = check; }
  void Figure(const std::string& text) { figures_ += (figures_.empty() ? "" : ", ") + text; }
  void TearDown() override { Rows().push_back({check_, figures_, !HasFailure(), IsSkipped()}); }

 private:
  std::string check_, figures_;
};

class Summary : public ::testing::Environment {
 public:
  void TearDown() override {
    int passed = 0, failed = 0, skipped = 0;
    std::ostringstream md;
    md << "| check | figures | result |\n|---|---|---|\n";
    for (const auto& r : Rows()) {
      (r.skipped ? skipped : r.pass ? passed : failed)++;
      md << "| " << r.check << " | " << r.figures << " | " << (r.skipped ? "SKIPPED" : r.pass ? "PASS" : "FAIL")
         << " |\n";
    }
    std::printf("\n%s\n", md.str().c_str());
    if (!OutDir().empty()) {
      std::filesystem::create_directories(OutDir());
      std::ofstream(OutDir() + "/summary.md") << md.str();
    }
    std::printf("BENCH reliability passed=%d failed=%d skipped=%d\n", passed, failed, skipped);
  }
};
const auto* const kSummary = ::testing::AddGlobalTestEnvironment(new Summary);

// Every sample of `name` (all label sets) added up; NaN when the scrape has none (a renamed or
// missing metric, or no answer), so that no comparison with it holds: `== 0` would pass on a 0
// that nothing measured. `if_none` instead for a metric that may be absent (the heap gauges).
double Sum(int port, const std::string& name, double if_none = std::numeric_limits<double>::quiet_NaN()) {
  double total = 0;
  bool any = false;
  std::istringstream in(HttpGet(port, "/metrics"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name, 0) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (name.find('{') == std::string::npos && next != ' ' && next != '{') continue;
    total += std::stod(line.substr(line.rfind(' ') + 1));
    any = true;
  }
  return any ? total : if_none;
}

// `gsau run` (or `gsau ingest`) on its own topics, state and metrics port.
struct Gsau {
  std::string command = "run";
  std::string bootstrap, topic, state, checkpoints, log;
  int port = 0;  // of the running process's metrics, set by Start
  std::vector<std::string> extra;

  std::unique_ptr<ChildProcess> Start() {
    std::vector<std::string> argv = {BinaryDir() + "/gsau", command, "--bootstrap", bootstrap, "--state", state,
                                     "--status-interval", "5",
                                     "--set", "topics.clicks=" + topic,
                                     "--set", "topics.dead_letter=" + topic + ".dlq",
                                     "--set", "ingest.group_id=" + topic + "-group",
                                     "--set", "ingest.session_timeout_ms=6000",
                                     "--set", std::string("metrics.listen_address=") + kAnyMetricsAddress};
    if (command == "run") {
      for (const std::string& s : std::vector<std::string>{"--checkpoints", checkpoints, "--set", "topics.user_embeddings=" + topic + "-users", "--set",
            "topics.item_embeddings=" + topic + "-items", "--set", "learner.threads=1", "--set",
            "learner.prequential_csv="}) {
        argv.push_back(s);
      }
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    const uintmax_t from = FileSize(log);
    auto child = std::make_unique<ChildProcess>(argv, log);
    port = AnnouncedMetricsPort(log, from, *child);
    if (port < 0 && child->Running()) ADD_FAILURE() << kNoMetricsPort << Tail(log);
    return child;
  }
};

Gsau MakeGsau(const TempDir& dir, const std::string& bootstrap, const std::string& topic, const std::string& command) {
  Gsau g;
  g.command = command;
  g.bootstrap = bootstrap;
  g.topic = topic;
  g.state = dir.File("state");
  g.checkpoints = dir.File("checkpoints");
  g.log = dir.File(command + ".log");
  return g;
}

bool WaitFor(const std::function<bool()>& done, seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(200));
  }
  return done();
}

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// ---------------------------------------------------------------------------------------------

TEST_F(Reliability, R1KillNineDuringAStreamLosesNothingAndPublishesAgain) {
  Record("R1 kill -9 of gsau run, restarted");
  const int kills = Full() ? 20 : 3;
  const int n = Full() ? 40000 : 6000;
  const double rate = Full() ? 300 : 250;
  TempDir dir;
  const std::string topic = UniqueTopic("rel-r1");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 4, 1, {}}}, 20000).ok());
  const auto clicks = MakeClicks(n, 800, 400, 31);
  Gsau g = MakeGsau(dir, KafkaBootstrap(), topic, "run");
  // Restarts resume from recent checkpoints. The consumer group's debug lines go to the log:
  // when a restarted process consumes nothing, they say what the group did.
  g.extra = {"--set", "learner.checkpoint_interval_s=5", "--set", "kafka.properties.debug=cgrp"};
  auto child = g.Start();
  BackgroundProducer producer(KafkaBootstrap(), topic, clicks, rate);
  std::mt19937_64 rng(17);
  const double stream_s = n / rate;
  std::uniform_real_distribution<double> gap(0.3 * stream_s / kills, 1.5 * stream_s / kills);
  int republished = 0;
  for (int k = 0; k < kills; ++k) {
    // Published by this incarnation before it is killed (the user topic: a record per clicker).
    const bool published = WaitFor([&] { return Sum(g.port, "gsau_publisher_embeddings_published_total") > 0; },
                                    seconds(90));
    republished += published ? 1 : 0;
    EXPECT_TRUE(published) << "incarnation " << k << " published nothing\n" << Tail(g.log);
    std::this_thread::sleep_for(std::chrono::duration<double>(gap(rng)));
    child->Signal(SIGKILL);
    child->Wait(10000);
    child = g.Start();
  }
  const bool last = WaitFor([&] { return Sum(g.port, "gsau_publisher_embeddings_published_total") > 0; }, seconds(90));
  republished += last ? 1 : 0;
  ASSERT_TRUE(producer.Join());
  // Not an ASSERT: when the count is wrong, the comparison below says how (missing or doubled).
  double seen = -1;
  EXPECT_TRUE(WaitForStateEvents(g.port, n, seconds(180), &seen))
      << "gsau_state_events " << seen << " of " << n << "; what ingest said:\n"
      << GrepLines(g.log, "ingest: ", 150) << "\nthe log's end:\n"
      << Tail(g.log);
  child->Signal(SIGTERM);
  EXPECT_EQ(child->Wait(60000), 0) << Tail(g.log);
  const auto got = DumpAt(g.state);
  const auto want = Reference(clicks);
  EXPECT_EQ(got.events, want.events);
  EXPECT_TRUE(got == want) << "the state after the kills differs from an uninterrupted one";
  Figure(std::to_string(kills) + " kills");
  Figure(std::to_string(got.events) + "/" + std::to_string(n) + " events");
  Figure(std::string(got == want ? "state equal to the reference" : "state DIFFERS"));
  Figure("published after " + std::to_string(republished) + "/" + std::to_string(kills + 1) + " starts");
}

TEST_F(Reliability, R2BrokerStoppedMidStreamLosesNothingAndLagDrains) {
  Record("R2 broker stopped mid-stream");
  const int outage_s = Full() ? 30 : 10;
  const int n = Full() ? 30000 : 8000;
  TempDir dir;
  PrivateBroker broker(dir.File("broker"));  // R2 and R6 stop it
  const std::string topic = "rel-r2";
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(broker.bootstrap), {{topic, 2, 1, {}}}, 20000).ok());
  Gsau g = MakeGsau(dir, broker.bootstrap, topic, "run");
  auto child = g.Start();
  const auto clicks = MakeClicks(n, 500, 300, 41);
  const double rate = n / (2.0 * outage_s + 10.0);
  BackgroundProducer producer(broker.bootstrap, topic, clicks, rate);
  ASSERT_TRUE(WaitFor([&] { return Sum(g.port, "gsau_state_events") > 0; }, seconds(60))) << Tail(g.log);
  std::this_thread::sleep_for(seconds(3));
  ASSERT_TRUE(broker.Run("pause"));
  std::this_thread::sleep_for(seconds(outage_s));
  const double broker_errors = Sum(g.port, "gsau_errors_total{kind=\"broker\"", 0);
  const double during = Sum(g.port, "gsau_state_events");
  EXPECT_TRUE(child->Running()) << "no crash while the broker is away";
  ASSERT_TRUE(broker.Run("resume"));
  const auto back = Clock::now();
  ASSERT_TRUE(producer.Join());
  ASSERT_TRUE(WaitForStateEvents(g.port, n, seconds(180))) << Tail(g.log);
  const double drain_s = std::chrono::duration<double>(Clock::now() - back).count();
  const bool lag_zero = WaitFor([&] { return Sum(g.port, "gsau_ingest_consumer_lag_messages") == 0; }, seconds(30));
  EXPECT_TRUE(lag_zero) << "consumer lag drains to 0";
  // The outage shows: errors by kind (broker, or the produce/commit side of it).
  const double errors = Sum(g.port, "gsau_errors_total{");
  EXPECT_GT(errors, 0) << "the outage is visible in gsau_errors_total";
  child->Signal(SIGTERM);
  EXPECT_EQ(child->Wait(60000), 0) << Tail(g.log);
  const bool equal = DumpAt(g.state) == Reference(clicks);
  EXPECT_TRUE(equal);
  Figure("outage " + std::to_string(outage_s) + " s");
  Figure(Fmt("%.0f", during) + " events applied before/while down");
  Figure(Fmt("%.0f errors in the metrics", errors) + Fmt(" (%.0f broker)", broker_errors));
  Figure(Fmt("all applied %.1f s after restart", drain_s));
  Figure(std::string(lag_zero ? "lag 0" : "lag NOT drained"));
  Figure(std::string(equal ? "state equal to the reference" : "state DIFFERS"));
}

// Bad values, each certainly rejected: classic mistakes, truncated JSON (a strict prefix of a
// JSON object is never one), and binary noise.
std::vector<std::string> MakeBad(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> bad;
  bad.reserve(static_cast<size_t>(n));
  const std::vector<std::string> fixed = {
      "not json", "", "[]", "{}", R"({"item_id":"i1","ts":1700000000000})",
      R"({"user_id":"u1","item_id":"i1","ts":-5})", R"({"user_id":true,"item_id":"i1","ts":1700000000000})",
      R"({"user_id":"u1","item_id":"i1","ts":"noon"})",
      R"({"user_id":")" + std::string(300, 'x') + R"(","item_id":"i1","ts":1700000000000})"};
  for (int i = 0; i < n; ++i) {
    switch (i % 4) {
      case 0:
        bad.push_back(fixed[rng() % fixed.size()]);
        break;
      case 1: {
        const std::string good = ClickJson("u" + std::to_string(rng() % 1000), "i" + std::to_string(rng() % 500),
                                           1700000000000 + static_cast<int64_t>(rng() % 1000000));
        bad.push_back(good.substr(0, rng() % (good.size() - 1)));  // strict prefix
        break;
      }
      default: {
        std::string noise(1 + rng() % 200, '\0');
        for (auto& c : noise) c = static_cast<char>(rng() & 0xff);
        noise[0] = static_cast<char>(0xff);  // never valid JSON (nor UTF-8)
        bad.push_back(std::move(noise));
        break;
      }
    }
  }
  return bad;
}

TEST_F(Reliability, R3MalformedAndFuzzedEventsAllReachTheDeadLetterTopic) {
  Record("R3 malformed and fuzzed events");
  const int n_bad = Full() ? 1000000 : 10000;
  const int n_good = Full() ? 100000 : 3000;
  TempDir dir;
  const std::string topic = UniqueTopic("rel-r3");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 4, 1, {}}}, 20000).ok());
  const auto good = MakeClicks(n_good, 1000, 500, 51);
  const auto bad = MakeBad(n_bad, 52);
  {
    kafka::ProducerOptions po;
    po.message_timeout_ms = 300000;
    auto producer = kafka::Producer::Create(KafkaAt(KafkaBootstrap()), po);
    ASSERT_TRUE(producer.ok());
    size_t g = 0;
    const size_t every = static_cast<size_t>(n_bad / n_good) + 1;
    for (size_t b = 0; b < bad.size(); ++b) {
      while (!(*producer)->Produce(topic, "k" + std::to_string(b % 97), bad[b]).ok()) (*producer)->Poll();
      if (b % every == 0 && g < good.size()) {
        const auto& c = good[g++];
        ASSERT_TRUE((*producer)->Produce(topic, c.user_id, ClickJson(c.user_id, c.item_id, c.ts_ms)).ok());
      }
      if (b % 1000 == 0) (*producer)->Poll();
    }
    for (; g < good.size(); ++g) {
      const auto& c = good[g];
      ASSERT_TRUE((*producer)->Produce(topic, c.user_id, ClickJson(c.user_id, c.item_id, c.ts_ms)).ok());
    }
    ASSERT_TRUE((*producer)->Flush(300000).ok());
  }
  Gsau g = MakeGsau(dir, KafkaBootstrap(), topic, "ingest");
  g.extra = {"--set", "ingest.batch_max_events=5000"};
  const auto start = Clock::now();
  auto child = g.Start();
  const double total = n_bad + n_good;
  ASSERT_TRUE(WaitFor([&] { return Sum(g.port, "gsau_ingest_events_consumed_total") >= total; },
                      seconds(Full() ? 1200 : 120)))
      << Tail(g.log);
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_TRUE(child->Running()) << "no crash";
  const double consumed = Sum(g.port, "gsau_ingest_events_consumed_total");
  const double applied = Sum(g.port, "gsau_ingest_events_applied_total");
  const double dead = Sum(g.port, "gsau_ingest_events_dead_lettered_total");
  EXPECT_EQ(consumed, applied + dead) << "consumed = applied + dead-lettered";
  EXPECT_EQ(applied, n_good);
  EXPECT_EQ(dead, n_bad);
  child->Signal(SIGTERM);
  EXPECT_EQ(child->Wait(60000), 0) << Tail(g.log);
  const auto dlq = ConsumeAll(KafkaBootstrap(), topic + ".dlq", n_bad, Full() ? 600000 : 60000);
  int64_t with_reason = 0;
  for (const auto& r : dlq) {
    for (const auto& [k, v] : r.headers) with_reason += k == "gsau.error.reason" && !v.empty();
  }
  EXPECT_EQ(static_cast<int64_t>(dlq.size()), n_bad);
  EXPECT_EQ(with_reason, n_bad) << "every dead letter says why";
  const bool equal = DumpAt(g.state) == Reference(good);
  EXPECT_TRUE(equal) << "the state holds exactly the good events";
  Figure(std::to_string(n_bad) + " bad + " + std::to_string(n_good) + " good");
  Figure(Fmt("consumed %.0f", consumed) + Fmt(" = applied %.0f", applied) + Fmt(" + dead-lettered %.0f", dead));
  Figure(std::to_string(dlq.size()) + " in the DLQ, " + std::to_string(with_reason) + " with a reason");
  Figure(Fmt("%.0f events/s", total / secs));
  Figure(std::string(equal ? "state = the good events" : "state DIFFERS"));
}

// Resident memory of pid: now (VmRSS) and its peak since the last ResetPeakRss (VmHWM).
struct Rss {
  int64_t now_kib = -1, peak_kib = -1;
};

Rss ReadRss(pid_t pid) {
  Rss r;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) r.now_kib = std::stoll(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) r.peak_kib = std::stoll(line.substr(6));
  }
  return r;
}

// Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS.
bool ResetPeakRss(pid_t pid) {
  std::ofstream out("/proc/" + std::to_string(pid) + "/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

TEST_F(Reliability, R4SoakKeepsMemoryAndLagBounded) {
  Record("R4 soak at a steady rate");
  // GSAU_SOAK_S overrides the length (experiments with the allocator; the issue's soak is 1800 s).
  const char* soak_env = std::getenv("GSAU_SOAK_S");
  const int soak_s = soak_env != nullptr ? std::atoi(soak_env) : Full() ? 1800 : 75;
  // Warm-up: until the live data stops growing. In the full soak the heap the program holds
  // between steps (gsau_process_heap_allocated_bytes, its minimum per 150 s) rose 63 -> 107 ->
  // 126 MiB by minute 10 and stayed at 121-129 MiB to minute 30 (the replay reservoir and the
  // recent window filling with full-length sessions); with a 5-minute warm-up the peaks of
  // minutes 5-7 sat 10% under the rest (docs/results/reliability/README.md).
  const int warmup_s = Full() ? 600 : 30;
  const int sample_s = Full() ? 10 : 5;
  ASSERT_GE(soak_s, warmup_s + 3 * sample_s) << "GSAU_SOAK_S: the soak must outlast the warm-up by 3 samples";
  const double rate = 200;
  TempDir dir;
  const std::string topic = UniqueTopic("rel-r4");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 4, 1, {}}}, 20000).ok());
  // A fixed population whose sessions reach the 50-click cap, and whose (user, item) pairs are
  // nearly all seen, during warm-up: afterwards the tables and the graph no longer grow and a
  // step's work is steady. (The state and the learner's graph grow with the edges by design:
  // a soak with 1,000 x 1,000 pairs grew 643 -> 706 MiB from minute 5 to 10 as edges kept
  // coming.) Full: 200 users x 100 items, 20,000 pairs, ~95% seen by the end of warm-up.
  const int users = Full() ? 200 : static_cast<int>(rate * warmup_s / 60);
  const auto clicks = MakeClicks(static_cast<int>(rate * soak_s), users, Full() ? 100 : 300, 61);
  Gsau g = MakeGsau(dir, KafkaBootstrap(), topic, "run");
  // The learner's replay reservoir, its largest cache, fills in the first 5 minutes (full) or
  // half the warm-up (short); at its default of 200,000 samples it took ~17 minutes at this
  // rate, growing ~310 MiB.
  const int replay = static_cast<int>(rate * std::min(warmup_s, 300) / 2);
  g.extra = {"--set", "state.write_buffer_mb=8", "--set", "state.block_cache_mb=32", "--set",
             "learner.replay_capacity=" + std::to_string(replay)};
  auto child = g.Start();
  ASSERT_TRUE(WaitFor([&] { return !HttpGet(g.port, "/metrics").empty(); }, seconds(60))) << Tail(g.log);
  BackgroundProducer producer(KafkaBootstrap(), topic, clicks, rate);
  // Each sample is the peak resident memory of its interval (VmHWM, reset after each
  // read): a step's temporaries come and go within a fraction of a second, so an instantaneous
  // RSS would sample the step's phase (between steps or inside one, hundreds of MiB apart);
  // the interval's peak is what a memory limit has to hold, and what a leak would raise. The
  // instantaneous RSS is recorded too.
  ASSERT_TRUE(ResetPeakRss(child->pid())) << "/proc/<pid>/clear_refs";
  struct Sample {
    double t;
    int64_t rss_kib, rss_peak_kib;
    double lag, events;
    double heap_allocated, heap_free;  // bytes (gsau_process_heap_*): what the RSS is made of
  };
  std::vector<Sample> samples;
  const auto start = Clock::now();
  for (int k = 1; k * sample_s <= soak_s; ++k) {
    std::this_thread::sleep_until(start + seconds(k * sample_s));
    const Rss rss = ReadRss(child->pid());
    ResetPeakRss(child->pid());
    samples.push_back({static_cast<double>(k * sample_s), rss.now_kib, rss.peak_kib,
                       Sum(g.port, "gsau_ingest_consumer_lag_messages"), Sum(g.port, "gsau_state_events"),
                       Sum(g.port, "gsau_process_heap_allocated_bytes", 0),
                       Sum(g.port, "gsau_process_heap_free_bytes", 0)});
    if (Full() && k % 30 == 0) {
      std::printf("R4: %d/%d s, rss peak %lld KiB, now %lld KiB (heap allocated %.0f MiB, free %.0f MiB), lag %.0f\n",
                  k * sample_s, soak_s, static_cast<long long>(samples.back().rss_peak_kib),
                  static_cast<long long>(samples.back().rss_kib), samples.back().heap_allocated / (1 << 20),
                  samples.back().heap_free / (1 << 20), samples.back().lag);
      std::fflush(stdout);
    }
  }
  ASSERT_TRUE(producer.Join());
  EXPECT_TRUE(child->Running());
  EXPECT_TRUE(WaitForStateEvents(g.port, static_cast<double>(clicks.size()), seconds(60))) << "every click applied";
  child->Signal(SIGTERM);
  EXPECT_EQ(child->Wait(60000), 0) << Tail(g.log);
  std::vector<int64_t> peaks, nows;
  // Lag after warm-up: the first samples count from before the consumer joined its group (the
  // producer starts with the process), so a slow join read as lag in a steady pipeline.
  double max_lag = 0, warmup_max_lag = 0;
  for (const auto& s : samples) {
    if (s.t > warmup_s && s.rss_peak_kib > 0 && s.rss_kib > 0) {
      peaks.push_back(s.rss_peak_kib);
      nows.push_back(s.rss_kib);
    }
    double& lag = s.t > warmup_s ? max_lag : warmup_max_lag;
    lag = std::max(lag, s.lag);
  }
  ASSERT_GE(peaks.size(), 3u);
  struct Band {
    double median, lo, hi, max;  // KiB, KiB, fractions of the median, KiB
  };
  const auto band = [](std::vector<int64_t> v) {
    std::sort(v.begin(), v.end());
    const double median = static_cast<double>(v[v.size() / 2]);
    return Band{median, static_cast<double>(v.front()) / median - 1.0, static_cast<double>(v.back()) / median - 1.0,
                static_cast<double>(v.back())};
  };
  const Band peak = band(peaks), now = band(nows);
  if (Full()) {
    EXPECT_GE(peak.lo, -0.10) << "resident memory (interval peaks) after warm-up within -10% of its median";
    EXPECT_LE(peak.hi, 0.10) << "resident memory (interval peaks) after warm-up within +10% of its median";
  } else {
    // 75 s cannot tell a plateau from slow growth: the short soak only guards against a gross
    // leak, and reports the band it saw.
    EXPECT_LE(peak.max, 2.0 * (1 << 20)) << "resident memory stays under 2 GiB";
  }
  EXPECT_LE(max_lag, rate * 10) << "lag after warm-up stays below 10 s of traffic";
  if (!OutDir().empty()) {
    std::filesystem::create_directories(OutDir());
    std::ofstream csv(OutDir() + "/soak.csv");
    csv << "t_s,rss_kib,rss_peak_kib,lag_messages,state_events,heap_allocated_bytes,heap_free_bytes\n";
    for (const auto& s : samples) {
      csv << s.t << ',' << s.rss_kib << ',' << s.rss_peak_kib << ',' << s.lag << ',' << s.events << ',' << s.heap_allocated << ','
          << s.heap_free << '\n';
    }
    csv.close();
    std::string out;
    EXPECT_EQ(RunCommand("python3 " + SourceDir() + "/scripts/plot_soak.py " + OutDir() + "/soak.csv " + OutDir() +
                             "/soak.png 2>&1",
                         &out),
              0)
        << "the soak's plot: " << out;
  }
  Figure(std::to_string(soak_s) + " s at " + Fmt("%.0f/s", rate) + ", " + std::to_string(users) + " users");
  Figure(std::to_string(sample_s) + Fmt("-s peak rss median %.0f MiB", peak.median / 1024) + Fmt(" (%+.1f%%", peak.lo * 100) +
         Fmt(" .. %+.1f%%)", peak.hi * 100));
  Figure(Fmt("instantaneous rss median %.0f MiB", now.median / 1024) + Fmt(" (%+.1f%%", now.lo * 100) +
         Fmt(" .. %+.1f%%)", now.hi * 100));
  Figure(Fmt("max lag %.0f after warm-up", max_lag) + Fmt(" (%.0f during it)", warmup_max_lag));
}

// The newest complete checkpoint folder under `dir` (ckpt-<12-digit state batch>); "" when none.
std::string NewestCheckpoint(const std::string& dir) {
  std::string newest;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("ckpt-", 0) == 0 && name.size() == 17 && std::filesystem::exists(e.path() / "model.pt")) {
      newest = std::max(newest, e.path().string());
    }
  }
  return newest;
}

// A 64 MiB tmpfs at `path` (created), unmounted on destruction. Without root (or
// CAP_SYS_ADMIN in a container) there is no small disk to fill: the checks that need one are
// skipped, said and not failed, so that `make test` passes for a normal user; CI runs as root.
struct SmallDisk {
  std::string path;
  int error = 0;  // errno of the mount; 0 when mounted
  explicit SmallDisk(std::string p) : path(std::move(p)) {
    std::filesystem::create_directories(path);
    if (mount("tmpfs", path.c_str(), "tmpfs", 0, "size=64m") != 0) error = errno;
  }
  ~SmallDisk() {
    if (error == 0) umount2(path.c_str(), MNT_DETACH);
  }
};
#define GSAU_NEED_SMALL_DISK(disk)                                                                \
  do {                                                                                            \
    if ((disk).error == EPERM) {                                                                  \
      Figure("needs root (CAP_SYS_ADMIN) for its tmpfs");                                         \
      GTEST_SKIP() << "this check mounts a 64 MiB tmpfs and needs root (CAP_SYS_ADMIN)";          \
    }                                                                                             \
    if ((disk).error != 0) FAIL() << "mounting a 64 MiB tmpfs: " << std::strerror((disk).error); \
  } while (false)

// Fills the disk of `dir` with `dir`/filler (appended to) until `leave` bytes are free (0: until
// a write fails).
void FillDisk(const std::string& dir, uintmax_t leave) {
  std::ofstream filler(dir + "/filler", std::ios::binary | std::ios::app);
  const std::string chunk(1 << 16, 'f');
  while (filler && std::filesystem::space(dir).available > leave + chunk.size()) {
    filler.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    filler.flush();
  }
  while (leave == 0 && filler) {  // the last pages
    filler.write(chunk.data(), 4096);
    filler.flush();
  }
}

// The state's event count once ingest holds at the disk's floor: the floor refused a batch
// (gsau_errors_total{kind="apply"} rose) and the count then stayed the same for two seconds; -1
// when that did not come within `timeout`. A fixed wait could read it while a batch that passed
// the free-space check was still going in, late with the test beside this one on the other core.
double HeldStateEvents(int port, seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  if (!WaitFor([&] { return Sum(port, "gsau_errors_total{kind=\"apply\"", 0) > 0; }, timeout)) return -1;
  double last = Sum(port, "gsau_state_events");
  int same = 0;
  while (same < 2 && Clock::now() < deadline) {
    std::this_thread::sleep_for(seconds(1));
    const double now = Sum(port, "gsau_state_events");
    same = now == last ? same + 1 : 0;
    last = now;
  }
  return same == 2 ? last : -1;
}

TEST_F(Reliability, R5FullDiskStopsIngestWhichRecoversWhenSpaceReturns) {
  Record("R5 state disk fills, then frees");
  const int hold_s = Full() ? 30 : 10;
  const int n = Full() ? 40000 : 12000;
  TempDir dir;
  const std::string fs = dir.File("fs");
  SmallDisk disk(fs);
  GSAU_NEED_SMALL_DISK(disk);
  const std::string topic = UniqueTopic("rel-r5");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 2, 1, {}}}, 20000).ok());
  Gsau g = MakeGsau(dir, KafkaBootstrap(), topic, "ingest");
  g.state = fs + "/state";
  g.extra = {"--set", "state.min_free_disk_mb=16", "--set", "state.write_buffer_mb=2"};
  auto child = g.Start();
  const auto clicks = MakeClicks(n, 600, 300, 71);
  BackgroundProducer producer(KafkaBootstrap(), topic, clicks, n / (hold_s + 20.0));
  ASSERT_TRUE(WaitFor([&] { return Sum(g.port, "gsau_state_events") > 500; }, seconds(60))) << Tail(g.log);
  FillDisk(fs, 8u << 20);  // up to 8 MiB short of full: under the 16 MiB floor
  const double held_at = HeldStateEvents(g.port, seconds(30));
  ASSERT_GE(held_at, 0) << "ingest did not hold at the floor\n" << Tail(g.log);
  std::this_thread::sleep_for(seconds(hold_s));
  const double still = Sum(g.port, "gsau_state_events");
  const double apply_errors = Sum(g.port, "gsau_errors_total{kind=\"apply\"");
  EXPECT_TRUE(child->Running()) << "no crash on a full disk";
  EXPECT_EQ(still, held_at) << "nothing is written while the disk is below its floor";
  EXPECT_LT(still, n);
  EXPECT_GT(apply_errors, 0) << "the stall shows in gsau_errors_total{kind=apply}";
  const bool says_why = Tail(g.log, 20000).find("free on the disk of") != std::string::npos;
  EXPECT_TRUE(says_why) << "the log says why ingest stopped";
  std::filesystem::remove(fs + "/filler");
  const auto freed = Clock::now();
  ASSERT_TRUE(producer.Join());
  ASSERT_TRUE(WaitForStateEvents(g.port, n, seconds(120))) << Tail(g.log);
  const double recover_s = std::chrono::duration<double>(Clock::now() - freed).count();
  child->Signal(SIGTERM);
  EXPECT_EQ(child->Wait(60000), 0) << Tail(g.log);
  // Whole batches with matching offsets, and exactly the produced events.
  state::StateOptions o;
  o.path = g.state;
  o.read_only = true;
  int64_t offsets = 0;
  uint64_t events = 0;
  {
    auto s = state::StateStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    for (const auto& p : (*s)->Offsets()) offsets += p.next_offset;
    events = (*s)->Counts().events;
  }
  EXPECT_EQ(static_cast<uint64_t>(offsets), events) << "no offset past an unapplied event";
  const bool equal = DumpAt(g.state) == Reference(clicks);
  EXPECT_TRUE(equal);
  Figure(Fmt("held at %.0f events", held_at) + " for " + std::to_string(hold_s) + " s");
  Figure(Fmt("%.0f apply errors", apply_errors));
  Figure(std::string(says_why ? "log says why" : "log SILENT"));
  Figure(Fmt("all %.0f applied", static_cast<double>(n)) + Fmt(" %.1f s after space returned", recover_s));
  Figure(std::string(equal && static_cast<uint64_t>(offsets) == events ? "state and offsets exact" : "state DIFFERS"));
}


// `gsau run` with its state and checkpoints on a disk that fills up completely: checkpoints
// fail (counted, retried) while ingest holds, the process stays up; a restart while the disk is
// full says why and exits 1; once space returns, everything is applied and checkpointed.
// (Saving model.pt aborted the process on the short write, exit 134, and a restart on the full
// disk aborted in RocksDB's open: with a restart policy, a crash loop.)
TEST_F(Reliability, R7FullDiskDuringRunFailsCheckpointsNotTheProcess) {
  Record("R7 gsau run: disk fills, then frees");
  const int hold_s = Full() ? 30 : 10;
  const int n = Full() ? 20000 : 8000;
  TempDir dir;
  const std::string fs = dir.File("fs");
  SmallDisk disk(fs);
  GSAU_NEED_SMALL_DISK(disk);
  const std::string topic = UniqueTopic("rel-r7");
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(KafkaBootstrap()), {{topic, 2, 1, {}}}, 20000).ok());
  Gsau g = MakeGsau(dir, KafkaBootstrap(), topic, "run");
  g.state = fs + "/state";
  g.checkpoints = fs + "/checkpoints";
  g.extra = {"--set", "state.min_free_disk_mb=16", "--set", "state.write_buffer_mb=2", "--set",
             "learner.checkpoint_interval_s=2"};
  auto child = g.Start();
  const auto clicks = MakeClicks(n, 500, 250, 91);
  BackgroundProducer producer(KafkaBootstrap(), topic, clicks, n / (hold_s + 25.0));
  const auto applied_and_checkpointed = [&] {
    return Sum(g.port, "gsau_state_events") > 500 && !NewestCheckpoint(g.checkpoints).empty();
  };
  ASSERT_TRUE(WaitFor(applied_and_checkpointed, seconds(90)))
      << Tail(g.log);
  // Under the 16 MiB floor first, and full only once ingest holds: a write already past its
  // free-space check when the disk filled could fail inside RocksDB (the path Debian's RocksDB
  // 7.8 asserts on), which is not what this check is about.
  FillDisk(fs, 8u << 20);
  const double held_at = HeldStateEvents(g.port, seconds(30));
  ASSERT_GE(held_at, 0) << "ingest did not hold at the floor\n" << Tail(g.log);
  FillDisk(fs, 0);
  std::this_thread::sleep_for(seconds(2));
  std::this_thread::sleep_for(seconds(hold_s));
  const double still = Sum(g.port, "gsau_state_events");
  const double checkpoint_errors = Sum(g.port, "gsau_errors_total{kind=\"checkpoint\"");
  const bool up = child->Running();
  EXPECT_TRUE(up) << "no crash on a full disk (exit " << child->Wait(0) << ")\n" << Tail(g.log);
  EXPECT_EQ(still, held_at) << "nothing is written while the disk is full";
  EXPECT_GT(checkpoint_errors, 0) << "failed checkpoints show in gsau_errors_total{kind=checkpoint}\n" << Tail(g.log);
  // Killed and started again while the disk is still full.
  child->Signal(SIGKILL);
  child->Wait(10000);
  child = g.Start();
  const int refused = child->Wait(60000);
  const bool says_why = Tail(g.log, 4000).find("not opening the store until space returns") != std::string::npos;
  EXPECT_EQ(refused, 1) << "a start on a full disk exits 1 (134: aborted)\n" << Tail(g.log);
  EXPECT_TRUE(says_why) << Tail(g.log);
  // The space comes back by the restart's own clean-up: the filler becomes a checkpoint a kill
  // left half-built (a rename, no space freed), which the start removes before it checks for
  // space. It refused before, until the folder was deleted by hand.
  const std::string half_built = g.checkpoints + "/ckpt-999999999999.tmp";
  std::filesystem::create_directories(half_built);
  std::filesystem::rename(fs + "/filler", half_built + "/model.pt");
  const auto freed = Clock::now();
  const std::string before = NewestCheckpoint(g.checkpoints);
  child = g.Start();
  ASSERT_TRUE(producer.Join());
  ASSERT_TRUE(WaitForStateEvents(g.port, n, seconds(120))) << Tail(g.log);
  const double recover_s = std::chrono::duration<double>(Clock::now() - freed).count();
  const bool checkpointed = WaitFor([&] { return NewestCheckpoint(g.checkpoints) > before; }, seconds(30));
  EXPECT_TRUE(checkpointed) << "checkpoints resume once space returns\n" << Tail(g.log);
  EXPECT_FALSE(std::filesystem::exists(half_built));
  child->Signal(SIGTERM);
  EXPECT_EQ(child->Wait(60000), 0) << Tail(g.log);
  const bool equal = DumpAt(g.state) == Reference(clicks);
  EXPECT_TRUE(equal);
  Figure(Fmt("held at %.0f events", held_at) + " for " + std::to_string(hold_s) + " s" + (up ? "" : ", process DIED"));
  Figure(Fmt("%.0f failed checkpoints", checkpoint_errors));
  Figure("restart on the full disk: exit " + std::to_string(refused) + (says_why ? ", says why" : ", SILENT"));
  Figure(Fmt("all %.0f applied", static_cast<double>(n)) + Fmt(" %.1f s after space returned", recover_s) +
         " (by cleaning up a half-built checkpoint)");
  Figure(std::string(equal ? "state exact" : "state DIFFERS") + (checkpointed ? ", checkpointed again" : ""));
}

// A stop with the broker away: the publisher's flush then waits its 30 s for deliveries, and
// an orchestrator's SIGKILL at the end of a 30 s grace period (Kubernetes' default) fell
// before a last checkpoint written after that wait. The checkpoint comes first now; when the
// broker returns within the wait, its users_published_through is brought up to its batch.
TEST_F(Reliability, R6StopWhileTheBrokerIsAwayCheckpointsBeforeWaitingForDeliveries) {
  Record("R6 stop while the broker is away");
  const int n = 3000;
  TempDir dir;
  PrivateBroker broker(dir.File("broker"));  // R2 and R6 stop it
  const std::string topic = "rel-r6";
  ASSERT_TRUE(kafka::EnsureTopics(KafkaAt(broker.bootstrap), {{topic, 2, 1, {}}}, 20000).ok());
  Gsau g = MakeGsau(dir, broker.bootstrap, topic, "run");
  g.extra = {"--set", "learner.checkpoint_interval_s=3600"};  // the stop's is the only checkpoint
  auto child = g.Start();
  ProduceClicks(KafkaAt(broker.bootstrap), topic, MakeClicks(n, 200, 100, 81));
  ASSERT_TRUE(WaitForStateEvents(g.port, n, seconds(120))) << Tail(g.log);
  ASSERT_TRUE(broker.Run("pause"));
  const auto stopped = Clock::now();
  child->Signal(SIGTERM);
  std::string checkpoint;
  const bool written = WaitFor([&] { return !(checkpoint = NewestCheckpoint(g.checkpoints)).empty(); }, seconds(25));
  const double written_s = std::chrono::duration<double>(Clock::now() - stopped).count();
  const bool waiting = child->Running();
  uint64_t through_then = 0;
  std::ifstream(checkpoint + "/users_published_through") >> through_then;
  ASSERT_TRUE(broker.Run("resume"));
  EXPECT_TRUE(written) << "no checkpoint 25 s after SIGTERM\n" << Tail(g.log);
  EXPECT_TRUE(waiting) << "the process had ended: the publisher did not wait for the broker\n" << Tail(g.log);
  EXPECT_EQ(child->Wait(90000), 0) << "the broker came back within the flush's 30 s\n" << Tail(g.log);
  uint64_t batch = 0;
  {
    state::StateOptions o;
    o.path = g.state;
    o.create_if_missing = false;
    auto s = state::StateStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    batch = (*s)->BatchSeq();
  }
  ASSERT_FALSE(checkpoint.empty());
  EXPECT_EQ(NewestCheckpoint(g.checkpoints), checkpoint) << "one last checkpoint";
  EXPECT_EQ(std::stoull(std::filesystem::path(checkpoint).filename().string().substr(5)), batch)
      << "the last checkpoint covers every applied batch";
  uint64_t through = 0;
  std::ifstream(checkpoint + "/users_published_through") >> through;
  EXPECT_EQ(through, batch) << "every user's record was delivered once the broker returned";
  Figure(Fmt("checkpoint %.1f s after SIGTERM", written_s) +
         (waiting ? ", publisher still waiting" : ", process ENDED"));
  Figure("users_published_through " + std::to_string(through_then) + " then " + std::to_string(through) + " of " +
         std::to_string(batch));
}

}  // namespace
}  // namespace gsau
