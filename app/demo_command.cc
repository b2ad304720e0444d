// gsau demo: the zero-setup run. Until the learner and publisher land it runs what exists end to
// end: an embedded Kafka broker (librdkafka's in-process mock cluster), `replay` of the synthetic
// stream (or --data) into it, and ingest (consumer group -> state store, exactly once) into a
// temporary state, with a status line and /metrics served.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <librdkafka/rdkafkacpp.h>

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>

#include <prometheus/counter.h>

#include "commands.h"
#include "config_flags.h"
#include "gsau/common/log.h"
#include "gsau/ingest/ingestor.h"
#include "gsau/state/state_store.h"
#include "gsau/metrics/metrics.h"
#include "gsau/replay/replay.h"

namespace gsau::app {
namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

struct DemoFlags {
  ConfigFlags config;
  std::string data;
  int64_t events = 20000;
  double duration_s = 120;
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

int RunDemo(const DemoFlags& f) {
  if (MaybePrintConfigHelp(f.config)) return kExitOk;
  auto cfg = LoadConfig("demo", f.config);
  if (!cfg.ok()) return kExitUsage;
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

  std::cout << "gsau demo: the continual learner and publisher have not landed yet (issue 6); this demo runs\n"
               "what exists end to end: replay -> Kafka -> ingest -> RocksDB state, /metrics served.\n";
  kafka::KafkaOptions kafka = config::ToKafkaOptions(*cfg);
  std::unique_ptr<EmbeddedBroker> embedded;
  if (kafka.bootstrap_servers.empty()) {
    auto b = EmbeddedBroker::Start(cfg->topics.partitions, {cfg->topics.clicks});
    if (!b.ok()) {
      std::cerr << "gsau demo: " << b.status().ToString() << "\n";
      return kExitFailure;
    }
    embedded = std::move(b).value();
    kafka.bootstrap_servers = embedded->bootstrap();
    std::cout << "embedded broker (librdkafka mock cluster) at " << kafka.bootstrap_servers << "\n";
  }

  metrics::Metrics metrics;
  auto& replayed = prometheus::BuildCounter()
                       .Name("gsau_replay_events_total")
                       .Help("Click events produced by replay")
                       .Register(metrics.registry())
                       .Add({});
  if (Status s = metrics.Serve(config::ToMetricsOptions(*cfg)); !s.ok()) {
    GSAU_LOG_WARN("demo: {} (continuing without /metrics)", s.ToString());
  } else if (metrics.port() != 0) {
    std::cout << "metrics at http://127.0.0.1:" << metrics.port() << "/metrics\n";
  }

  std::vector<data::Interaction> events;
  if (!f.data.empty()) {
    auto read = data::ReadInteractions(f.data);
    if (!read.ok()) {
      std::cerr << "gsau demo: " << read.status().message() << "\n";
      return kExitFailure;
    }
    events = std::move(read).value();
    data::SortByTime(events);
    if (f.events > 0 && static_cast<int64_t>(events.size()) > f.events) events.resize(static_cast<size_t>(f.events));
  } else {
    replay::SyntheticOptions so;
    so.events = f.events;
    events = replay::SyntheticStream(so);
  }
  replay::ReplayOptions ro;
  ro.topic = cfg->topics.clicks;
  auto stats = replay::Replay(events, kafka, ro, &g_stop);
  if (!stats.ok()) {
    std::cerr << "gsau demo: " << stats.status().ToString() << "\n";
    return kExitFailure;
  }
  replayed.Increment(static_cast<double>(stats->events));
  std::cout << "replayed " << stats->events << " events (" << static_cast<int64_t>(stats->events_per_s())
            << " events/s)\n";

  // Ingest into a fresh state store: the real consumer group, decoder and exactly-once apply.
  const std::filesystem::path state_dir =
      std::filesystem::temp_directory_path() / ("gsau-demo-state-" + std::to_string(getpid()));
  config::Config demo_cfg = *cfg;
  demo_cfg.state.path = state_dir.string();
  auto store = state::StateStore::Open(config::ToStateOptions(demo_cfg));
  if (!store.ok()) {
    std::cerr << "gsau demo: " << store.status().ToString() << "\n";
    return kExitFailure;
  }
  ingest::IngestOptions io = config::ToIngestOptions(demo_cfg);
  io.kafka = kafka;
  io.group_id = cfg->ingest.group_id + "-demo";
  io.session_timeout_ms = 6000;  // the mock cluster rejoins slowly with the default
  ingest::Ingestor ingestor(io, store->get(), nullptr, &metrics.registry());
  std::atomic<bool> stop_ingest{false};
  Status ingest_status;
  std::thread ingest_thread([&] { ingest_status = ingestor.Run(stop_ingest); });
  auto last_print = elapsed();
  int64_t last_consumed = 0;
  while (ingestor.counters().consumed < stats->events && !g_stop && elapsed() < f.duration_s) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (elapsed() - last_print >= 2) {
      const auto c = ingestor.counters();
      const auto counts = (*store)->Counts();
      std::cout << "ingest: " << c.consumed << "/" << stats->events << " events, "
                << static_cast<int64_t>(static_cast<double>(c.consumed - last_consumed) / (elapsed() - last_print))
                << " events/s, dead-lettered " << c.dead_lettered << "; state: " << counts.users << " users, "
                << counts.items << " items, " << counts.edges << " edges\n"
                << std::flush;
      last_print = elapsed();
      last_consumed = c.consumed;
    }
  }
  stop_ingest = true;
  ingest_thread.join();
  const auto c = ingestor.counters();
  const auto counts = (*store)->Counts();
  std::cout << "demo: ingested " << c.applied << " of " << stats->events << " replayed events exactly once in "
            << elapsed() << " s (dead-lettered " << c.dead_lettered << "); state: " << counts.users << " users, "
            << counts.items << " items, " << counts.edges << " edges, " << counts.batch_seq << " batches\n";
  store->reset();
  std::error_code ec;
  std::filesystem::remove_all(state_dir, ec);
  if (!ingest_status.ok()) {
    std::cerr << "gsau demo: ingest: " << ingest_status.ToString() << "\n";
    return kExitFailure;
  }
  if (c.consumed != stats->events && !g_stop) {
    std::cerr << "gsau demo: not every event was ingested within --duration\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

void AddDemoCommand(CLI::App& root, int* exit_code) {
  auto flags = std::make_shared<DemoFlags>();
  auto* cmd = root.add_subcommand("demo", "Zero-setup demo: embedded broker, synthetic stream, the whole loop");
  cmd->add_option("--data", flags->data, "Replay this interactions file instead of the synthetic stream");
  cmd->add_option("--events", flags->events, "Events to replay (default 20000)")->check(CLI::PositiveNumber);
  cmd->add_option("--duration", flags->duration_s, "Stop after this many seconds (default 120)")
      ->check(CLI::PositiveNumber);
  AddConfigFlags(cmd, &flags->config);
  cmd->callback([flags, exit_code] { *exit_code = RunDemo(*flags); });
}

}  // namespace gsau::app
