// gsau ingest: the ingest stage alone (Kafka -> state store), for running or scaling it on
// its own; `gsau run` runs it together with the learner and the publisher.
#include <chrono>
#include <iostream>
#include <thread>

#include "cli_checks.h"
#include "commands.h"
#include "config_flags.h"
#include "gsau/common/log.h"
#include "gsau/common/stop_signal.h"
#include "gsau/config/config.h"
#include "gsau/ingest/ingestor.h"
#include "gsau/metrics/metrics.h"
#include "gsau/state/state_store.h"

namespace gsau::app {
namespace {

struct IngestFlags {
  ConfigFlags config;
  std::string bootstrap;
  std::string state_path;
  double status_interval_s = 10;
};

int RunIngest(const IngestFlags& f) {
  if (MaybePrintConfigHelp(f.config)) return kExitOk;
  auto cfg = LoadConfig("ingest", f.config,
                        {{"kafka.bootstrap_servers", f.bootstrap, "--bootstrap"},
                         {"state.path", f.state_path, "--state"}});
  if (!cfg.ok()) return kExitUsage;
  if (cfg->kafka.bootstrap_servers.empty()) {
    std::cerr << "gsau ingest: no Kafka broker: pass --bootstrap HOST:PORT or set kafka.bootstrap_servers\n";
    return kExitUsage;
  }
  const std::atomic<bool>& stop_requested = InstallStopSignals();  // before the store's open: a stop then ends at once
  GSAU_LOG_INFO("ingest: configuration\n{}", cfg->Redacted());
  auto store = state::StateStore::Open(config::ToStateOptions(*cfg));
  if (!store.ok()) {
    std::cerr << "gsau ingest: opening the state store: " << store.status().ToString() << "\n";
    return kExitFailure;
  }
  metrics::Metrics metrics;
  if (Status s = metrics.Serve(config::ToMetricsOptions(*cfg)); !s.ok()) {
    std::cerr << "gsau ingest: " << s.ToString() << "\n";
    return kExitFailure;
  }
  if (metrics.port() != 0) GSAU_LOG_INFO("ingest: metrics at {}", MetricsUrl(cfg->metrics.listen_address, metrics.port()));

  ExitIfTeardownHangs teardown;  // outlives the ingestor, whose consumer's destruction can block
  ingest::Ingestor ingestor(config::ToIngestOptions(*cfg), store->get(), nullptr, &metrics.registry());
  std::atomic<bool> done{false};
  std::thread status([&] {
    auto last = ingestor.counters();
    auto t = std::chrono::steady_clock::now();
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const auto now = std::chrono::steady_clock::now();
      if (std::chrono::duration<double>(now - t).count() < f.status_interval_s) continue;
      const auto c = ingestor.counters();
      const double dt = std::chrono::duration<double>(now - t).count();
      const auto counts = (*store)->Counts();
      GSAU_LOG_INFO("ingest: {:.0f} records/s; consumed {} applied {} dead-lettered {} skipped {}; state: {} users, "
                    "{} items, {} edges",
                    static_cast<double>(c.consumed - last.consumed) / dt, c.consumed, c.applied, c.dead_lettered,
                    c.skipped, counts.users, counts.items, counts.edges);
      last = c;
      t = now;
    }
  });
  const Status s = ingestor.Run(stop_requested);
  done = true;
  status.join();
  const Status closed = (*store)->Close();
  // The state is closed: what ingest applied is on disk, whatever the consumer's teardown does.
  const int code = s.ok() && closed.ok() ? kExitOk : kExitFailure;
  teardown.Arm(code, std::chrono::seconds(30), "closing ingest's Kafka consumer");
  if (!s.ok() || !closed.ok()) {
    // A failed close (RocksDB closing its write-ahead log; gsau always runs with one) fails the run too.
    std::cerr << "gsau ingest: " << (s.ok() ? "closing the state store: " + closed.ToString() : s.ToString()) << "\n";
    if (!s.ok() && !closed.ok()) GSAU_LOG_ERROR("ingest: closing the state store: {}", closed.ToString());
  }
  return code;
}

}  // namespace

void AddIngestCommand(CLI::App& root, int* exit_code) {
  auto flags = std::make_shared<IngestFlags>();
  auto* cmd = root.add_subcommand("ingest", "Run the ingest stage alone: Kafka clicks -> the state store, exactly once");
  cmd->add_option("--bootstrap", flags->bootstrap, "Kafka bootstrap servers (default: kafka.bootstrap_servers)");
  cmd->add_option("--state", flags->state_path, "State store directory (default: state.path)");
  cmd->add_option("--status-interval", flags->status_interval_s, "Seconds between status lines (default 10)")
      ->check(Positive());
  AddConfigFlags(cmd, &flags->config);
  cmd->callback([flags, exit_code] { *exit_code = RunIngest(*flags); });
}

}  // namespace gsau::app
