// gsau run: the pipeline. Ingest (Kafka -> state), the continual learner and the embedding
// publisher together, until SIGINT/SIGTERM or --duration; see gsau/pipeline/pipeline.h.
#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include "cli_checks.h"
#include "commands.h"
#include "config_flags.h"
#include "gsau/common/log.h"
#include "gsau/common/stop_signal.h"
#include "gsau/config/config.h"
#include "gsau/metrics/metrics.h"
#include "gsau/pipeline/pipeline.h"
#include "pipeline_config.h"

namespace gsau::app {
namespace {

struct RunFlags {
  ConfigFlags config;
  std::string bootstrap;
  std::string state_path;
  std::string checkpoint_dir;
  std::string rollback;
  std::string init_offline, init_data, init_times;
  double duration_s = 0;
  double status_interval_s = 10;
};

int RunPipeline(const RunFlags& f) {
  if (MaybePrintConfigHelp(f.config)) return kExitOk;
  auto cfg = LoadConfig("run", f.config,
                        {{"kafka.bootstrap_servers", f.bootstrap, "--bootstrap"},
                         {"state.path", f.state_path, "--state"},
                         {"learner.checkpoint_dir", f.checkpoint_dir, "--checkpoints"}});
  if (!cfg.ok() || !LearnerDeviceUsable("run", *cfg)) return kExitUsage;
  if (cfg->kafka.bootstrap_servers.empty()) {
    std::cerr << "gsau run: no Kafka broker: pass --bootstrap HOST:PORT or set kafka.bootstrap_servers "
                 "(`gsau demo` runs everything with an embedded broker)\n";
    return kExitUsage;
  }
  // Before the metrics port is taken and the signals are installed: a usage error ends here.
  if (!f.init_offline.empty() && f.init_data.empty()) {
    std::cerr << "gsau run: --init-offline needs --init-data (the dataset file the offline run was trained on)\n";
    return kExitUsage;
  }
  if (f.init_offline.empty() && !(f.init_data.empty() && f.init_times.empty())) {
    std::cerr << "gsau run: --init-data and --init-times go with --init-offline (they were ignored without it)\n";
    return kExitUsage;
  }
  if (!f.init_times.empty() && f.init_data.empty()) {
    std::cerr << "gsau run: --init-times needs --init-data (the per-user lines the times belong to)\n";
    return kExitUsage;
  }
  // Before the start-up (a rollback's copy, a catch-up: minutes): a signal during it stops the
  // run as it begins, with its last checkpoint, rather than killing it (exit 143).
  const std::atomic<bool>& stop_requested = InstallStopSignals();
  const StopAfter stop_at(stop_requested, f.duration_s);  // a signal or --duration, from here on
  GSAU_LOG_INFO("run: configuration\n{}", cfg->Redacted());
  metrics::Metrics metrics;
  if (Status s = metrics.Serve(config::ToMetricsOptions(*cfg)); !s.ok()) {
    std::cerr << "gsau run: " << s.ToString() << "\n";
    return kExitFailure;
  }
  if (metrics.port() != 0) GSAU_LOG_INFO("run: metrics at {}", MetricsUrl(cfg->metrics.listen_address, metrics.port()));
  auto opt = ToPipelineOptions(*cfg);
  opt.rollback_from = f.rollback;
  opt.init_offline = f.init_offline;
  opt.init_data = f.init_data;
  opt.init_times = f.init_times;
  ExitIfTeardownHangs teardown;  // outlives the pipeline, whose Kafka consumer's destruction can block
  auto p = pipeline::Pipeline::Create(opt, &metrics.registry(), SystemClock::Get(), &stop_at.flag());
  if (!p.ok() && p.status().code() == StatusCode::kAborted && stop_at.flag()) {
    // Stopped while the brokers did not answer: without them there is no run to end; a catch-up
    // or warm start done before is done again at the next start. Asked for by a signal, that is
    // a clean end; at --duration's end, a run that never reached its brokers failed.
    if (stop_at.timed_out()) {
      std::cerr << "gsau run: --duration reached during start-up: the brokers did not answer ("
                << p.status().message() << ")\n";
      return kExitFailure;
    }
    GSAU_LOG_INFO("run: stop requested during start-up: stopping ({})", p.status().message());
    return kExitOk;
  }
  if (!p.ok()) {
    std::cerr << "gsau run: " << p.status().ToString() << "\n";
    return kExitFailure;
  }
  if (stop_at.flag()) {
    GSAU_LOG_INFO("run: {} during start-up: stopping", stop_at.timed_out() ? "--duration reached" : "stop requested");
  }
  std::atomic<bool> stop{stop_at.flag().load()};
  std::thread watcher([&] {
    auto last = std::chrono::steady_clock::now();
    auto prev = (*p)->status();
    while (!stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const auto now = std::chrono::steady_clock::now();
      if (stop_at.flag()) {
        stop = true;
        break;
      }
      const double dt = std::chrono::duration<double>(now - last).count();
      if (dt < f.status_interval_s) continue;
      const auto s = (*p)->status();
      // Publishing's failures, once there are any: without them the line only froze while the
      // brokers refused every record.
      const std::string skipped = s.skipped == 0 ? std::string() : " skipped " + std::to_string(s.skipped);
      const std::string failures =
          s.publish_failures == 0
              ? std::string()
              : "; publishing failures " + std::to_string(s.publish_failures) + " (+" +
                    std::to_string(s.publish_failures - prev.publish_failures) + ")";
      // Online recall: the last window's first (since the start, it moved ever more slowly and
      // began again at a restart, which read as a jump on the same traffic).
      GSAU_LOG_INFO(
          "run: {:.0f} events/s; applied {} dead-lettered {}{} queued {}; learner: {} steps ({:.3f} s, loss {:.4f}), "
          "{} users {} items {} edges; online recall@20 {:.4f} (most-popular {:.4f}) over the last window, "
          "recall@20 {:.4f} ndcg@20 {:.4f} over {} since the start; published {} user {} item records, "
          "model_version {}{}",
          static_cast<double>(s.applied - prev.applied) / dt, s.applied, s.dead_lettered, skipped, s.queued, s.steps,
          s.last_step_s, s.last_loss, s.users, s.items, s.edges, s.window_recall20, s.window_popular_recall20,
          s.recall20, s.ndcg20, s.prequential_count, s.users_published, s.items_published, s.model_version, failures);
      prev = s;
      last = now;
    }
  });
  // Joined on every way out: an exception past a joinable thread would abort, not report.
  struct JoinWatcher {
    std::atomic<bool>& stop;
    std::thread& watcher;
    ~JoinWatcher() {
      stop = true;
      watcher.join();
    }
  };
  Status s;
  {
    const JoinWatcher join{stop, watcher};
    s = (*p)->Run(stop);
  }
  // Run has written its last checkpoint, and every applied batch is in the state's log: what is
  // left (closing the clients and the state) loses nothing if it is cut short.
  teardown.Arm(s.ok() ? kExitOk : kExitFailure, std::chrono::seconds(60), "closing the pipeline");
  if (!s.ok()) {
    std::cerr << "gsau run: " << s.ToString() << "\n";
    return kExitFailure;
  }
  const auto fin = (*p)->status();
  GSAU_LOG_INFO("run: stopped: applied {}, {} steps, published {} user {} item records, model_version {}",
                fin.applied, fin.steps, fin.users_published, fin.items_published, fin.model_version);
  return kExitOk;
}

}  // namespace

void AddRunCommand(CLI::App& root, int* exit_code) {
  auto flags = std::make_shared<RunFlags>();
  auto* cmd = root.add_subcommand("run", "Run the pipeline: ingest, learn continually, publish embeddings");
  cmd->add_option("--bootstrap", flags->bootstrap, "Kafka bootstrap servers (default: kafka.bootstrap_servers)");
  cmd->add_option("--state", flags->state_path, "State store directory (default: state.path)");
  cmd->add_option("--checkpoints", flags->checkpoint_dir, "Checkpoint directory (default: learner.checkpoint_dir)");
  cmd->add_option("--rollback", flags->rollback,
                  "Start from this checkpoint directory (ckpt-*): its model and its state; the current state and "
                  "the newer checkpoints are moved aside and Kafka is re-read from the checkpoint's offsets. "
                  "Give it once: later restarts resume from the rolled-back line");
  cmd->add_option("--init-offline", flags->init_offline,
                  "On a cold start (no checkpoint yet), initialise the model from this offline run (gsau train's "
                  "best.pt): weights, and the rows of the state's users and items matched by id to --init-data");
  cmd->add_option("--init-data", flags->init_data, "The dataset file the --init-offline run was trained on");
  cmd->add_option("--init-times", flags->init_times, "Its aligned times file, if it has one");
  cmd->add_option("--duration", flags->duration_s,
                  "Stop after this many seconds from the start, start-up included (0: run until SIGINT/SIGTERM)")
      ->check(NonNegative());
  cmd->add_option("--status-interval", flags->status_interval_s, "Seconds between status lines (default 10)")
      ->check(Positive());
  AddConfigFlags(cmd, &flags->config);
  cmd->callback([flags, exit_code] { *exit_code = RunPipeline(*flags); });
}

}  // namespace gsau::app
