// The deployment's monitoring against a running pipeline: `gsau run` on the real broker, fed by
// `gsau replay` (and a few bad records for the dead-letter series), is scraped
//  - directly: every metric that the dashboard and the alert rules select is exported, with the
//    label values they match on;
//  - by the real Prometheus server (Debian's package) with deploy/alerts.yml loaded: the key series
//    exist and move, every dashboard query returns data and every alert rule evaluates cleanly.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "gsau/kafka/admin.h"
#include "gsau/kafka/producer.h"
#include "kafka_broker.h"
#include "ops_helpers.h"
#include "process.h"
#include "temp_dir.h"

namespace gsau {
namespace {

using namespace gsau::testing;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// Series that Prometheus itself makes for a scrape, not the pipeline.
const std::set<std::string> kPrometheusSeries = {"up"};

constexpr int kReplayEvents = 2000;
constexpr int kBadRecords = 3;

kafka::KafkaOptions KafkaAt(const std::string& bootstrap) {
  kafka::KafkaOptions k;
  k.bootstrap_servers = bootstrap;
  return k;
}

// Sum of every sample of `name` on the pipeline's /metrics (0 when there is none).
double MetricSum(int port, const std::string& name) {
  double sum = 0;
  for (const auto& s : ParseExposition(HttpBody(port, "/metrics"))) {
    if (s.name == name) sum += s.value;
  }
  return sum;
}

// Polls `done` every 200 ms until it holds or `timeout` passes.
template <typename Pred>
bool WaitFor(Pred done, seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(200));
  }
  return true;
}

// One pipeline for the whole suite: starting LibTorch and training a few steps is the slow part.
class OpsPipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("gsau-ops");
    const std::string bootstrap = KafkaBootstrap();
    const std::string clicks = UniqueTopic("ops-clicks");
    log_ = dir_->File("run.log");
    if (!kafka::EnsureTopics(KafkaAt(bootstrap), {{clicks, 4, 1, {}}}, 20000).ok()) {
      setup_error_ = "cannot create " + clicks;
      return;
    }
    std::vector<std::string> argv = {BinaryDir() + "/gsau", "run", "--bootstrap", bootstrap, "--state",
                                     dir_->File("state"), "--checkpoints", dir_->File("checkpoints"),
                                     "--status-interval", "5"};
    for (const std::string& kv :
         {"topics.clicks=" + clicks, "topics.dead_letter=" + clicks + ".dlq",
          "topics.user_embeddings=" + UniqueTopic("ops-users"), "topics.item_embeddings=" + UniqueTopic("ops-items"),
          "ingest.group_id=" + clicks + "-group", std::string("ingest.batch_max_wait_ms=50"),
          std::string("learner.threads=1"), std::string("learner.batch_size=128"),
          "learner.prequential_csv=" + dir_->File("prequential.csv"),
          std::string("metrics.listen_address=") + kAnyMetricsAddress}) {
      argv.push_back("--set");
      argv.push_back(kv);
    }
    run_ = new ChildProcess(argv, log_);
    port_ = AnnouncedMetricsPort(log_, 0, *run_);
    if (port_ < 0) {
      setup_error_ = kNoMetricsPort;
      return;
    }

    // A small replay of the synthetic stream, and a few records ingest must dead-letter.
    std::string out;
    const std::string replay = BinaryDir() + "/gsau replay --no-progress --bootstrap " + bootstrap + " --topic " + clicks;
    if (RunCommand(replay + " --synthetic " + std::to_string(kReplayEvents) + " 2>&1", &out) != 0) {
      setup_error_ = "gsau replay failed: " + out;
      return;
    }
    auto producer = kafka::Producer::Create(KafkaAt(bootstrap), {});
    if (!producer.ok()) {
      setup_error_ = producer.status().ToString();
      return;
    }
    const std::string bad[kBadRecords] = {"not json", R"({"item_id":"i1","ts":1})", R"({"user_id":"","item_id":"i"})"};
    for (const auto& value : bad) {
      if (!(*producer)->Produce(clicks, "bad", value).ok()) setup_error_ = "cannot produce a bad record";
    }
    if (!(*producer)->Flush(30000).ok()) setup_error_ = "bad records not delivered";
    if (!setup_error_.empty()) return;

    // Every stage has worked at least once: applied, dead-lettered, trained, ranked, published.
    const bool ready = WaitFor(
        [] {
          return MetricSum(port_, "gsau_ingest_events_applied_total") >= kReplayEvents &&
                 MetricSum(port_, "gsau_ingest_events_dead_lettered_total") >= kBadRecords &&
                 MetricSum(port_, "gsau_learner_steps_total") >= 1 &&
                 MetricSum(port_, "gsau_learner_prequential_predictions_total") >= 1 &&
                 MetricSum(port_, "gsau_publisher_embeddings_published_total") >= 1 &&
                 MetricSum(port_, "gsau_publisher_freshness_seconds_count") >= 1;
        },
        seconds(240));
    if (!ready) {
      setup_error_ = "the pipeline did not apply, dead-letter, train and publish in time";
      return;
    }
    // Clicks keep arriving while Prometheus watches (killed in TearDownTestSuite).
    replay_ = new ChildProcess({BinaryDir() + "/gsau", "replay", "--no-progress", "--bootstrap", bootstrap, "--topic",
                                clicks, "--synthetic", "60000", "--rate", "200"},
                               dir_->File("replay.log"));
  }

  static void TearDownTestSuite() {
    delete replay_;  // SIGKILL: it may be mid-stream
    replay_ = nullptr;
    if (run_ != nullptr && run_->Running()) {
      run_->Signal(SIGTERM);
      if (run_->Wait(60000) < 0) ADD_FAILURE() << "gsau run did not stop on SIGTERM\n" << Tail(log_, 4000);
    }
    delete run_;
    run_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(setup_error_.empty()) << setup_error_ << "\n" << Tail(log_, 6000);
    ASSERT_TRUE(run_->Running()) << Tail(log_, 6000);
  }

  static std::vector<Expression> DeployExpressions() {
    auto all = DashboardExpressions(nlohmann::json::parse(ReadFile(SourceDir() + "/deploy/grafana/dashboards/gsau.json")));
    for (auto& e : RuleExpressions(SourceDir() + "/deploy/alerts.yml")) all.push_back(std::move(e));
    return all;
  }

  static inline TempDir* dir_ = nullptr;
  static inline ChildProcess* run_ = nullptr;
  static inline ChildProcess* replay_ = nullptr;
  static inline int port_ = 0;
  static inline std::string log_;
  static inline std::string setup_error_;
};

// Histogram series (_bucket, _sum, _count) are found under their family's `# TYPE name histogram`.
TEST_F(OpsPipelineTest, EveryMetricOfTheDashboardAndTheAlertsIsExported) {
  const std::string text = HttpBody(port_, "/metrics");
  const auto samples = ParseExposition(text);
  const auto types = ExpositionTypes(text);
  std::set<std::string> exported;
  for (const auto& s : samples) exported.insert(s.name);

  std::set<std::string> checked;
  for (const auto& e : DeployExpressions()) {
    const auto selectors = Selectors(e.expr);
    EXPECT_FALSE(selectors.empty()) << e.where << " selects nothing: " << e.expr;
    for (const auto& sel : selectors) {
      if (kPrometheusSeries.count(sel.metric)) continue;
      ASSERT_TRUE(sel.metric.starts_with("gsau_")) << e.where << ": '" << sel.metric << "' is not a gsau metric";
      // The family: the name itself, or a histogram's name without its series suffix.
      std::string family = sel.metric;
      for (const std::string suffix : {"_bucket", "_sum", "_count"}) {
        const std::string base = sel.metric.substr(0, sel.metric.size() - std::min(sel.metric.size(), suffix.size()));
        if (sel.metric.ends_with(suffix) && types.count(base) && types.at(base) == "histogram") family = base;
      }
      EXPECT_TRUE(types.count(family)) << e.where << ": no family " << family << " in /metrics";
      if (family != sel.metric) {
        EXPECT_EQ(types.at(family), "histogram") << e.where << ": " << sel.metric;
      } else if (types.count(family)) {
        EXPECT_NE(types.at(family), "histogram") << e.where << ": " << family << " is a histogram: select "
                                                 << family << "_bucket, _sum or _count";
      }
      EXPECT_TRUE(exported.count(sel.metric)) << e.where << ": no sample of " << sel.metric << " in /metrics";
      // Equality matchers pick label values that exist (a typo would give an empty panel).
      for (const auto& m : sel.matchers) {
        if (m.op != "=" || m.label == "__name__" || m.label == "job" || m.label == "instance") continue;
        const bool found = std::any_of(samples.begin(), samples.end(), [&](const Sample& s) {
          auto it = s.labels.find(m.label);
          return s.name == sel.metric && it != s.labels.end() && it->second == m.value;
        });
        EXPECT_TRUE(found) << e.where << ": no sample " << sel.metric << "{" << m.label << "=\"" << m.value << "\"}";
      }
      checked.insert(sel.metric);
    }
  }
  EXPECT_GE(checked.size(), 20u) << "the dashboard and the alerts select fewer metrics than expected";
  for (const std::string name : {"gsau_publisher_freshness_seconds_bucket", "gsau_learner_online_metric",
                                 "gsau_ingest_events_dead_lettered_total", "gsau_learner_steps_total"}) {
    EXPECT_TRUE(checked.count(name)) << name;
  }
}

// Prometheus's /api/v1/query: the result vector of `expr` (nullopt when the query failed).
std::optional<nlohmann::json> Query(int port, const std::string& expr, std::string* error) {
  const auto j = HttpGetJson(port, "/api/v1/query?query=" + UrlEncode(expr));
  if (!j) {
    *error = "no answer";
    return std::nullopt;
  }
  if (j->value("status", "") != "success") {
    *error = j->dump();
    return std::nullopt;
  }
  return j->at("data").at("result");
}

// The value of the first sample of `expr`'s result, if any.
std::optional<double> QueryValue(int port, const std::string& expr) {
  std::string error;
  const auto r = Query(port, expr, &error);
  if (!r || !r->is_array() || r->empty()) return std::nullopt;
  return std::stod(r->at(0).at("value").at(1).get<std::string>());
}

TEST_F(OpsPipelineTest, PrometheusScrapesThePipelineAndTheKeySeriesMove) {
  const auto started = Clock::now();
  TempDir dir("gsau-prometheus");
  const int prom = FreePort();
  WriteFile(dir.File("prometheus.yml"),
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files:\n  - " + SourceDir() + "/deploy/alerts.yml\n"
            "scrape_configs:\n  - job_name: gsau\n    static_configs:\n      - targets: [\"127.0.0.1:" +
                std::to_string(port_) + "\"]\n");
  ChildProcess server({"/usr/bin/prometheus", "--config.file=" + dir.File("prometheus.yml"),
                       "--storage.tsdb.path=" + dir.File("tsdb"), "--web.listen-address=127.0.0.1:" + std::to_string(prom),
                       "--log.level=warn"},
                      dir.File("prometheus.log"));
  const std::string log = dir.File("prometheus.log");
  ASSERT_TRUE(WaitFor([&] { return HttpGet(prom, "/-/ready").find(" 200 ") != std::string::npos; }, seconds(30)))
      << Tail(log);

  // The key series, first seen, then seen to rise: ingest applies the clicks that keep coming and
  // the learner keeps stepping.
  const std::string applied = "gsau_ingest_events_applied_total{job=\"gsau\"}";
  const std::string steps = "gsau_learner_steps_total{job=\"gsau\"}";
  std::optional<double> applied0, steps0;
  ASSERT_TRUE(WaitFor(
      [&] {
        applied0 = QueryValue(prom, applied);
        steps0 = QueryValue(prom, steps);
        return applied0 && steps0;
      },
      seconds(20)))
      << "Prometheus has no " << applied << " or " << steps << "\n"
      << Tail(log);
  EXPECT_GE(*applied0, kReplayEvents);
  EXPECT_EQ(QueryValue(prom, "up{job=\"gsau\"}").value_or(-1), 1.0);
  double applied1 = 0, steps1 = 0;
  EXPECT_TRUE(WaitFor(
      [&] {
        applied1 = QueryValue(prom, applied).value_or(0);
        steps1 = QueryValue(prom, steps).value_or(0);
        return applied1 > *applied0 && steps1 > *steps0;
      },
      seconds(30)))
      << "applied " << *applied0 << " -> " << applied1 << ", steps " << *steps0 << " -> " << steps1 << "\n"
      << Tail(log_, 3000);

  // Every dashboard query runs and has data; every alert expression runs (most alerts select
  // nothing on a healthy pipeline). Grafana's $__rate_interval becomes a window Prometheus knows.
  for (const auto& e : DeployExpressions()) {
    std::string expr = e.expr, error;
    for (size_t at; (at = expr.find("$__rate_interval")) != std::string::npos;) expr.replace(at, 16, "1m");
    const auto result = Query(prom, expr, &error);
    ASSERT_TRUE(result.has_value()) << e.where << ": " << expr << "\n" << error;
    if (e.where.starts_with("dashboard")) {
      EXPECT_FALSE(result->empty()) << e.where << " shows no data: " << expr;
    }
  }

  // The rules are loaded and evaluate without error against the live series.
  std::string rules_state;
  EXPECT_TRUE(WaitFor(
      [&] {
        const auto j = HttpGetJson(prom, "/api/v1/rules");
        if (!j || j->value("status", "") != "success") return false;
        int ok = 0, total = 0;
        for (const auto& g : j->at("data").at("groups")) {
          for (const auto& r : g.at("rules")) {
            ++total;
            if (r.value("health", "") == "ok") ++ok;
          }
        }
        rules_state = j->dump();
        return total == static_cast<int>(RuleExpressions(SourceDir() + "/deploy/alerts.yml").size()) && ok == total;
      },
      seconds(20)))
      << rules_state;

  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait(20000), 0) << Tail(log);
  const auto took = std::chrono::duration_cast<seconds>(Clock::now() - started).count();
  std::cout << "prometheus part: " << took << " s; applied " << *applied0 << " -> " << applied1 << ", steps "
            << *steps0 << " -> " << steps1 << "\n";
}

}  // namespace
}  // namespace gsau
