// gsau demo: the zero-setup run of the whole loop on one machine. An embedded Kafka broker
// (librdkafka's in-process mock cluster, unless kafka.bootstrap_servers names a real one, where
// the demo uses topics of its own run, never the configured ones), a
// click stream played into it at a steady rate (the synthetic stream, or --data FILE), with a
// malformed record now and then for the dead-letter path, and the pipeline of `gsau run`
// (ingest -> state, continual learner, embedding publisher) on it. A status line shows it
// move; /metrics is served; it stops on Ctrl-C, after --duration, or when the stream has been
// taken in. Its state and checkpoints stay in --dir for `gsau inspect`.
//
// The mock cluster rather than the local broker script: it needs no Java and starts in
// milliseconds, and the demo's point is the loop, not the broker (the tests use the real one).
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>

#include <prometheus/counter.h>

#include "cli_checks.h"
#include "commands.h"
#include "config_flags.h"
#include "dataset_checks.h"
#include "demo_status.h"
#include "gsau/common/log.h"
#include "gsau/common/stop_signal.h"
#include "gsau/kafka/admin.h"
#include "gsau/metrics/metrics.h"
#include "gsau/pipeline/pipeline.h"
#include "gsau/replay/replay.h"
#include "pipeline_config.h"

namespace gsau::app {
namespace {

namespace fs = std::filesystem;

struct DemoFlags {
  ConfigFlags config;
  std::string data;
  std::string dir = "gsau-demo";
  int64_t events = 120000;
  // The synthetic stream's shape: about six clicks per user over 20,000 users and 5,000
  // items by default, as in public e-commerce datasets (Amazon Beauty: 9 per user).
  replay::SyntheticOptions synthetic = [] {
    replay::SyntheticOptions o;
    o.users = 20000;
    o.items = 5000;
    return o;
  }();
  double rate = 1000;
  double duration_s = 0;
  double status_interval_s = 2;
};

// An in-process Kafka cluster; owns the client handle that hosts it.
class EmbeddedBroker {
 public:
  static Result<std::unique_ptr<EmbeddedBroker>> Start(int partitions, const std::vector<std::string>& topics) {
    char err[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == nullptr) return Status::Internal(std::string("embedded broker: ") + err);
    rd_kafka_mock_cluster_t* mc = rd_kafka_mock_cluster_new(rk, 1);
    if (mc == nullptr) {
      rd_kafka_destroy(rk);
      return Status::Internal("embedded broker: rd_kafka_mock_cluster_new failed");
    }
    for (const auto& t : topics) rd_kafka_mock_topic_create(mc, t.c_str(), partitions, 1);
    return std::unique_ptr<EmbeddedBroker>(new EmbeddedBroker(rk, mc));
  }
  ~EmbeddedBroker() {
    rd_kafka_mock_cluster_destroy(cluster_);
    rd_kafka_destroy(handle_);
  }
  std::string bootstrap() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }

 private:
  EmbeddedBroker(rd_kafka_t* rk, rd_kafka_mock_cluster_t* mc) : handle_(rk), cluster_(mc) {}
  rd_kafka_t* handle_;
  rd_kafka_mock_cluster_t* cluster_;
};

// The stream to play, read before anything starts (a bad --data file stopped the demo only after
// it had started a broker and cleared --dir). Its times are the send times (stamp_send_time).
Result<std::vector<data::Interaction>> DemoStream(const DemoFlags& f) {
  std::vector<data::Interaction> events;
  if (!f.data.empty()) {
    GSAU_ASSIGN_OR_RETURN(events, data::ReadInteractions(f.data));
    data::SortByTime(events);
    if (f.events > 0 && static_cast<int64_t>(events.size()) > f.events) events.resize(static_cast<size_t>(f.events));
  } else {
    replay::SyntheticOptions so = f.synthetic;
    so.events = f.events;
    events = replay::SyntheticStream(so);
  }
  return events;
}

// In each directory a demo makes: only a directory holding it is replaced by the next demo.
constexpr const char* kDemoMarker = ".gsau-demo";

int RunDemo(const DemoFlags& f) {
  if (MaybePrintConfigHelp(f.config)) return kExitOk;
  if (f.events == 0 && f.data.empty()) {
    std::cerr << "gsau demo: --events 0 (the whole file) needs --data; the synthetic stream takes a count\n";
    return kExitUsage;
  }
  auto cfg = LoadConfig("demo", f.config);
  if (!cfg.ok() || !LearnerDeviceUsable("demo", *cfg)) return kExitUsage;
  const std::atomic<bool>& stop_requested = InstallStopSignals();
  const StopAfter stop_at(stop_requested, f.duration_s);  // a signal or --duration, start-up included
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

  auto events = DemoStream(f);
  if (!events.ok()) {
    std::cerr << "gsau demo: " << events.status().message() << "\n";
    return kExitFailure;
  }
  if (!f.data.empty()) WarnOfEventsIngestLeaves(*events, *cfg, "demo");  // (its times are the send times)

  // A fresh directory each run: the embedded broker starts empty, so offsets stored by an
  // earlier run would point past its end. Only what a demo leaves is deleted: a --dir that
  // holds anything else (a home directory named by mistake) is refused, and so is one without
  // the demo's marker: `gsau run`'s data directory (gsau-data/) holds the same three names, and
  // a demo pointed at it deleted a pipeline's state and checkpoints.
  if (stop_at.flag()) {  // while a large --data file was read: nothing replaced
    std::cout << "stopped before the demo started\n";
    EndByStopSignal();  // interrupted (130 for Ctrl-C), as gsau replay and train
    return kExitOk;
  }
  std::error_code ec;
  if (fs::exists(f.dir, ec) && !fs::is_directory(f.dir, ec)) {
    std::cerr << "gsau demo: --dir " << f.dir << " is not a directory\n";
    return kExitUsage;
  }
  bool marked = false, empty = true;
  for (const auto& e : fs::directory_iterator(f.dir, ec)) {
    const std::string name = e.path().filename().string();
    empty = false;
    if (name == kDemoMarker) {
      marked = true;
    } else if (name != "state" && name != "checkpoints" && name != "prequential.csv") {
      std::cerr << "gsau demo: --dir " << f.dir << " holds " << name
                << ", which no demo wrote; the demo replaces its directory, so name an empty or new one\n";
      return kExitUsage;
    }
  }
  // The default directory without a marker: a demo of a version before the marker wrote it
  // (gsau run never writes there).
  const bool default_dir = fs::path(f.dir).lexically_normal() == fs::path(DemoFlags{}.dir);
  if (!empty && !marked && !ec && !default_dir) {
    std::cerr << "gsau demo: --dir " << f.dir << " holds a state or checkpoints without the demo's marker ("
              << kDemoMarker << "): it may be `gsau run`'s data, and the demo replaces its directory; name an empty "
              << "or new one (or delete this one yourself if a demo wrote it)\n";
    return kExitUsage;
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    std::cerr << "gsau demo: cannot read --dir " << f.dir << ": " << ec.message() << "\n";
    return kExitFailure;
  }
  fs::remove_all(f.dir, ec);
  if (ec) {
    std::cerr << "gsau demo: cannot clear " << f.dir << ": " << ec.message() << "\n";
    return kExitFailure;
  }
  fs::create_directories(f.dir, ec);
  if (ec) {
    std::cerr << "gsau demo: cannot create " << f.dir << ": " << ec.message() << "\n";
    return kExitFailure;
  }
  const fs::path marker = fs::path(f.dir) / kDemoMarker;
  if (!(std::ofstream(marker) << "written by gsau demo: the next demo run replaces this directory\n")) {
    std::cerr << "gsau demo: cannot write " << marker.string() << "\n";
    return kExitFailure;
  }
  config::Config c = *cfg;
  c.state.path = (fs::path(f.dir) / "state").string();
  c.learner.checkpoint_dir = (fs::path(f.dir) / "checkpoints").string();
  c.learner.prequential_csv = (fs::path(f.dir) / "prequential.csv").string();
  c.ingest.group_id += "-demo";
  // Fields a configuration set that the demo replaces: said, not silently dropped.
  const config::Config defaults;
  const std::pair<const char*, bool> replaced[] = {
      {"state.path", cfg->state.path != defaults.state.path},
      {"learner.checkpoint_dir", cfg->learner.checkpoint_dir != defaults.learner.checkpoint_dir},
      {"learner.prequential_csv", cfg->learner.prequential_csv != defaults.learner.prequential_csv}};
  for (const auto& [key, set] : replaced) {
    if (set) std::cerr << "gsau demo: " << key << " is set, but the demo keeps everything in --dir " << f.dir << "\n";
  }

  std::unique_ptr<EmbeddedBroker> embedded;
  if (c.kafka.bootstrap_servers.empty()) {
    auto b = EmbeddedBroker::Start(c.topics.partitions, {c.topics.clicks, c.topics.dead_letter,
                                                          c.topics.user_embeddings, c.topics.item_embeddings});
    if (!b.ok()) {
      std::cerr << "gsau demo: " << b.status().ToString() << "\n";
      return kExitFailure;
    }
    embedded = std::move(b).value();
    c.kafka.bootstrap_servers = embedded->bootstrap();
    if (cfg->ingest.session_timeout_ms != defaults.ingest.session_timeout_ms) {
      std::cerr << "gsau demo: ingest.session_timeout_ms is set, but the embedded broker needs 6000\n";
    }
    c.ingest.session_timeout_ms = 6000;  // the mock cluster rejoins slowly with the default
    std::cout << "embedded broker (librdkafka mock cluster) at " << c.kafka.bootstrap_servers << "\n";
  } else {
    // A real broker: topics and a group of this run's own. The configured ones may be a
    // deployment's: synthetic clicks (malformed ones too) would go into its clicks topic and
    // synthetic users' embeddings over its users' in the compacted topics; and a second demo on
    // shared topics would read the first one's clicks again.
    const std::string run =
        "gsau-demo-" + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
    c.topics.clicks = run + ".clicks";
    c.topics.dead_letter = run + ".clicks.dlq";
    c.topics.user_embeddings = run + ".users";
    c.topics.item_embeddings = run + ".items";
    c.ingest.group_id = run;
    // The clicks topic before the first click: a broker that does not create topics on use
    // would refuse the player's records.
    if (Status s = kafka::EnsureTopics(config::ToKafkaOptions(c),
                                       {{c.topics.clicks, c.topics.partitions, c.topics.replication_factor, {}}},
                                       30000);
        !s.ok()) {
      std::cerr << "gsau demo: " << s.ToString() << "\n";
      return kExitFailure;
    }
    std::cout << "broker at " << c.kafka.bootstrap_servers << "; this run's topics are " << run
              << ".{clicks,clicks.dlq,users,items} (not the configured ones; delete them when done)\n";
  }

  metrics::Metrics metrics;
  metrics::MetricsOptions mo = config::ToMetricsOptions(c);
  mo.bind_attempts = 1;  // a busy port is not waited for: a free one serves as well here
  Status served = metrics.Serve(mo);
  std::string instead;
  if (!served.ok()) {
    // Another demo or exporter on the port (9464 by default): the zero-setup run serves /metrics
    // on a free port of the same host rather than going without, and says which. A few tries:
    // each picks a port afresh (one free on one address family may be taken on the other).
    const std::string taken = mo.listen_address;
    mo.listen_address = taken.substr(0, taken.rfind(':')) + ":0";
    mo.bind_attempts = 5;
    if (metrics.Serve(mo).ok()) {
      const std::string& why = served.message();  // "metrics endpoint on A: A: <strerror>"
      instead = " (" + taken + ": " + why.substr(why.rfind(": ") == std::string::npos ? 0 : why.rfind(": ") + 2) + ")";
      served = Status::Ok();
    }
  }
  if (!served.ok()) {
    GSAU_LOG_WARN("demo: {} (continuing without /metrics)", served.ToString());
  } else if (metrics.port() != 0) {
    std::cout << "metrics at " << MetricsUrl(mo.listen_address, metrics.port()) << instead << "\n";
  }

  pipeline::PipelineOptions po = ToPipelineOptions(c);
  po.prequential_interval_s = 5;  // the status line's online figures: a short window
  po.publisher.policy_check_timeout_ms = 0;  // the embedded mock cluster does not describe configs
  auto p = pipeline::Pipeline::Create(po, &metrics.registry(), SystemClock::Get(), &stop_at.flag());
  if (!p.ok() && p.status().code() == StatusCode::kAborted && stop_at.flag()) {
    std::cout << "stopped during start-up (" << p.status().message() << ")\n";
    EndByStopSignal();
    return kExitOk;
  }
  if (!p.ok()) {
    std::cerr << "gsau demo: " << p.status().ToString() << "\n";
    return kExitFailure;
  }
  constexpr int kMalformedEvery = 1000;  // records that are not JSON, for the dead-letter path
  std::cout << "playing " << events->size() << (f.data.empty() ? " synthetic" : "") << " clicks (and "
            << events->size() / kMalformedEvery << " malformed records, one per " << kMalformedEvery << ") ";
  if (f.rate > 0) {
    std::cout << "at " << f.rate << "/s";
  } else {
    std::cout << "as fast as possible";
  }
  std::cout << " into " << c.topics.clicks << " (state, checkpoints and prequential.csv in " << f.dir
            << "); Ctrl-C stops\n"
            << std::flush;

  std::atomic<bool> stop_pipeline{false}, stop_replay{false}, replay_done{false}, run_done{false};
  Status run_status;
  std::thread runner([&] {
    run_status = (*p)->Run(stop_pipeline);
    run_done = true;
  });
  replay::ReplayOptions ro;
  ro.topic = c.topics.clicks;
  ro.rate = f.rate;
  ro.progress = false;
  ro.malformed_every = kMalformedEvery;
  // Event times are send times, so that the freshness figures (event time to publish time) mean
  // what they would on a live stream.
  ro.stamp_send_time = true;
  Result<replay::ReplayStats> replayed = Status::Aborted("replay did not run");
  std::thread player([&] {
    replayed = replay::Replay(*events, config::ToKafkaOptions(c), ro, &stop_replay);
    replay_done = true;
  });

  const bool tty = isatty(STDOUT_FILENO) != 0;
  // Records the player sends (clicks and its malformed ones), for the progress and ETA.
  const uint64_t total = events->size() + (ro.malformed_every > 0 ? events->size() / ro.malformed_every : 0);
  double first_consumed_at = -1;
  auto prev = (*p)->status();
  double last_print = elapsed();
  double drained_at = -1;
  while (!stop_at.flag()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    // A pipeline that failed stops ingest: the clicks would never all be taken in.
    if (run_done) break;
    const auto s = (*p)->status();
    if (replay_done) {
      if (!replayed.ok()) break;
      // Everything played was taken in and the learner's queue is empty: a few seconds more
      // for the last steps and records, then stop.
      if (s.consumed >= static_cast<uint64_t>(replayed->events) && s.queued == 0) {
        if (drained_at < 0) drained_at = elapsed();
        if (elapsed() - drained_at >= 3) break;
      }
    }
    if (s.consumed > 0 && first_consumed_at < 0) first_consumed_at = elapsed();
    const double dt = elapsed() - last_print;
    if (dt < f.status_interval_s) continue;
    const std::string where =
        StreamPosition(s.consumed, total, s.consumed > 0 ? elapsed() - first_consumed_at : 0, f.rate);
    char line[640];
    std::snprintf(line, sizeof line,
                  "[%4.0fs] %s  %5.0f events/s  applied %llu  dead-lettered %llu  step %.3f s  online recall@20 "
                  "%.3f (most-popular %.3f)  published %lld user %lld item records  model_version %lld",
                  elapsed(), where.c_str(), static_cast<double>(s.consumed - prev.consumed) / dt,
                  static_cast<unsigned long long>(s.applied), static_cast<unsigned long long>(s.dead_lettered),
                  s.last_step_s, s.window_recall20, s.window_popular_recall20,
                  static_cast<long long>(s.users_published), static_cast<long long>(s.items_published),
                  static_cast<long long>(s.model_version));
    std::string text = line;
    if (s.skipped > 0) text += "  skipped " + std::to_string(s.skipped) + " (event types not accepted)";
    if (s.publish_failures > 0) text += "  publishing failures " + std::to_string(s.publish_failures);
    if (tty) {
      std::cout << "\r\033[K" << text << std::flush;
    } else {
      std::cout << text << "\n" << std::flush;
    }
    prev = s;
    last_print = elapsed();
  }
  if (tty) std::cout << "\n";
  stop_replay = true;
  player.join();
  stop_pipeline = true;
  runner.join();

  const auto s = (*p)->status();
  p->reset();  // closes the state and flushes the publisher before the broker goes
  // Events of types ingest.accepted_event_types leaves out (a dataset's views when only its
  // purchases are accepted): counted, or the summary hid most of the stream.
  const std::string skipped =
      s.skipped == 0 ? std::string()
                     : ", " + std::to_string(s.skipped) + " skipped (types ingest.accepted_event_types leaves out)";
  std::printf(
      "demo: %llu events applied, %llu dead-lettered%s, in %.1f s; %lld learner steps; %lld user and %lld item "
      "records published\n"
      "demo: online recall@20 %.4f vs most-popular %.4f over %lld clicks ranked before training on them; "
      "ndcg@20 %.4f\n",
      static_cast<unsigned long long>(s.applied), static_cast<unsigned long long>(s.dead_lettered), skipped.c_str(),
      elapsed(), static_cast<long long>(s.steps), static_cast<long long>(s.users_published),
      static_cast<long long>(s.items_published), s.recall20, s.popular_recall20,
      static_cast<long long>(s.prequential_count), s.ndcg20);
  if (f.rate == 0 && s.prequential_count > 0 && s.recall20 < s.popular_recall20) {
    // At full speed the clicks are in long before the learner has taken many steps: the figures
    // above then read as a model worse than counting clicks, which is the pace, not the model.
    std::printf("demo: at --rate 0 the clicks outran the learner (%lld steps for %llu clicks): it ranked most of "
                "them nearly untrained; at a rate it keeps up with (the default 1000/s) it learns between clicks\n",
                static_cast<long long>(s.steps), static_cast<unsigned long long>(s.applied));
  }
  std::printf("demo: state and checkpoints in %s (gsau inspect --dir %s)\n", f.dir.c_str(), f.dir.c_str());
  std::fflush(stdout);
  if (!run_status.ok()) {
    std::cerr << "gsau demo: " << run_status.ToString() << "\n";
    return kExitFailure;
  }
  if (!replayed.ok() && !stop_requested && replayed.status().code() != StatusCode::kAborted) {
    std::cerr << "gsau demo: replay: " << replayed.status().ToString() << "\n";
    return kExitFailure;
  }
  // Cut short by Ctrl-C (or SIGTERM): its summary is printed and its files are whole; the exit
  // still says "interrupted" (130 for Ctrl-C), as gsau replay and train do: `make demo` and a
  // script see a demo cut short, not a whole one.
  EndByStopSignal();
  return kExitOk;
}

}  // namespace

void AddDemoCommand(CLI::App& root, int* exit_code) {
  auto flags = std::make_shared<DemoFlags>();
  auto* cmd = root.add_subcommand("demo", "Zero-setup demo: embedded broker, a click stream, the whole loop");
  cmd->add_option("--data", flags->data, "Play this interactions file (in time order) instead of the synthetic stream");
  cmd->add_option("--events", flags->events, "Clicks to play (default 120000; 0 with --data: the whole file)")
      ->check(NonNegative());
  cmd->add_option("--users", flags->synthetic.users, "Users of the synthetic stream")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--items", flags->synthetic.items, "Items of the synthetic stream")
      ->capture_default_str()
      ->check(Positive());
  cmd->add_option("--zipf", flags->synthetic.zipf_exponent, "Item popularity exponent of the synthetic stream")
      ->capture_default_str()
      ->check(NonNegative());
  cmd->add_option("--habit", flags->synthetic.habit_probability,
                  "Chance that a synthetic click follows the user's item-to-item habit")
      ->capture_default_str()
      ->check(Share(true, true));
  cmd->add_option("--rate", flags->rate, "Clicks per second (default 1000; 0: as fast as possible, as replay's)")
      ->check(NonNegative());
  cmd->add_option("--dir", flags->dir,
                  "Directory for the state, checkpoints and CSV; replaced, so it must be new, empty or a demo's "
                  "(default gsau-demo)");
  cmd->add_option("--duration", flags->duration_s,
                  "Stop after this many seconds from the start (default: when the stream is in)")
      ->check(NonNegative());
  cmd->add_option("--status-interval", flags->status_interval_s, "Seconds between status lines (default 2)")
      ->check(Positive());
  AddConfigFlags(cmd, &flags->config);
  cmd->callback([flags, exit_code] { *exit_code = RunDemo(*flags); });
}

}  // namespace gsau::app
