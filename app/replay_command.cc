// gsau replay: a dataset file (or the synthetic stream) -> click events on Kafka.
#include <cmath>
#include <iostream>
#include <memory>

#include "cli_checks.h"
#include "commands.h"
#include "config_flags.h"
#include "dataset_checks.h"
#include "gsau/common/log.h"
#include "gsau/common/stop_signal.h"
#include "gsau/data/interactions.h"
#include "gsau/replay/replay.h"

namespace gsau::app {
namespace {

struct ReplayFlags {
  ConfigFlags config;
  std::string data;
  std::string times;
  std::string format = "auto";
  std::string ts_unit = "auto";
  int64_t synthetic = 0;
  int users = 0, items = 0;  // the synthetic stream's (0: its defaults)
  double rate = 0;
  int64_t limit = 0;
  std::string topic;
  std::string bootstrap;
  bool no_progress = false;
  bool from_now = false;  // times = send times
};

int RunReplay(const ReplayFlags& f) {
  if (MaybePrintConfigHelp(f.config)) return kExitOk;
  auto cfg = LoadConfig("replay", f.config, {{"kafka.bootstrap_servers", f.bootstrap, "--bootstrap"}});
  if (!cfg.ok()) return kExitUsage;
  kafka::KafkaOptions kafka = config::ToKafkaOptions(*cfg);
  if (kafka.bootstrap_servers.empty()) {
    std::cerr << "gsau replay: no Kafka broker: pass --bootstrap HOST:PORT or set kafka.bootstrap_servers\n";
    return kExitUsage;
  }
  if (f.data.empty() == (f.synthetic == 0)) {
    std::cerr << "gsau replay: give exactly one of --data FILE or --synthetic N\n";
    return kExitUsage;
  }
  if (f.synthetic > 0 && (!f.times.empty() || f.format != "auto" || f.ts_unit != "auto")) {
    std::cerr << "gsau replay: --times, --format and --ts-unit describe a --data file, not --synthetic\n";
    return kExitUsage;
  }
  if (f.synthetic == 0 && (f.users > 0 || f.items > 0)) {
    std::cerr << "gsau replay: --users and --items shape the --synthetic stream, not a --data file\n";
    return kExitUsage;
  }

  std::vector<data::Interaction> events;
  if (f.synthetic > 0) {
    replay::SyntheticOptions so;
    so.events = f.synthetic;
    if (f.users > 0) so.users = f.users;
    if (f.items > 0) so.items = f.items;
    events = replay::SyntheticStream(so);
  } else {
    data::ReadOptions ro;
    ro.times_path = f.times;
    ro.format = f.format == "tsv" ? data::Format::kTsv : f.format == "lines" ? data::Format::kUserLines
                                                                              : data::Format::kAuto;
    ro.time_unit = f.ts_unit == "s" ? data::TimeUnit::kSeconds : f.ts_unit == "ms" ? data::TimeUnit::kMilliseconds
                                                                                    : data::TimeUnit::kAuto;
    auto read = data::ReadInteractions(f.data, ro);
    if (!read.ok()) {
      std::cerr << "gsau replay: " << read.status().message() << "\n";
      return kExitFailure;
    }
    events = std::move(read).value();
    data::SortByTime(events);
  }
  // What is sent, the first --limit in time order: the log line and the warning counted the
  // whole file.
  if (f.limit > 0 && static_cast<size_t>(f.limit) < events.size()) events.resize(static_cast<size_t>(f.limit));
  if (f.synthetic == 0 && !f.from_now) WarnOfTimesIngestRefuses(events, *cfg, "replay");
  if (f.synthetic == 0) WarnOfEventsIngestLeaves(events, *cfg, "replay");

  replay::ReplayOptions opt;
  opt.topic = f.topic.empty() ? cfg->topics.clicks : f.topic;
  opt.rate = f.rate;
  opt.limit = f.limit;
  opt.progress = !f.no_progress;
  opt.stamp_send_time = f.from_now;
  GSAU_LOG_INFO("replay: {} events to topic {} at {} ({})", events.size(), opt.topic, kafka.bootstrap_servers,
                f.rate > 0 ? std::to_string(f.rate) + " events/s" : std::string("full speed"));
  const std::atomic<bool>& stop_requested = InstallStopSignals();
  auto stats = replay::Replay(events, kafka, opt, &stop_requested);
  if (!stats.ok() && stats.status().code() == StatusCode::kAborted && stop_requested) {
    std::cout << "gsau replay: stopped: " << stats.status().message() << std::endl;  // asked for: a clean end
    // What was sent is delivered; the exit still says "interrupted" (130 for Ctrl-C), as for gsau
    // train: a script cannot tell a replay cut short from a whole one by an exit 0.
    EndByStopSignal();
    return kExitOk;
  }
  if (!stats.ok()) {
    std::cerr << "gsau replay: " << stats.status().ToString() << "\n";
    return kExitFailure;
  }
  std::cout << "replayed " << stats->events << " events in " << stats->seconds << " s ("
            << std::llround(stats->events_per_s()) << " events/s) to " << opt.topic << "\n";
  return kExitOk;
}

}  // namespace

void AddReplayCommand(CLI::App& root, int* exit_code) {
  auto flags = std::make_shared<ReplayFlags>();
  auto* cmd = root.add_subcommand(
      "replay", "Replay a dataset (or a synthetic stream) as click events on Kafka, in event-time order");
  cmd->add_option("--data", flags->data,
                  "Interactions: a table of user_id, item_id, timestamp (a header may name them among other "
                  "columns), separated by tabs, commas, semicolons or '|' (.gz ok), or per-user lines 'uid i1 i2 ...'");
  cmd->add_option("--times", flags->times,
                  "Aligned times file for per-user lines ('uid t1 t2 ...'; unit as --ts-unit, auto: told apart "
                  "by the magnitude, one unit per file)");
  cmd->add_option("--format", flags->format, "auto | tsv | lines")->check(CLI::IsMember({"auto", "tsv", "lines"}));
  cmd->add_option("--ts-unit", flags->ts_unit,
                  "Timestamp unit of numeric times in the file (ISO 8601 date-times need none): auto (s, ms, us or ns, "
                  "told apart by the magnitude of the file's largest) | s | ms")
      ->check(CLI::IsMember({"auto", "s", "ms"}));
  cmd->add_option("--synthetic", flags->synthetic, "Instead of --data: N events of the synthetic stream")
      ->check(Positive());
  const replay::SyntheticOptions shape;
  cmd->add_option("--users", flags->users,
                  "Users of the synthetic stream (default " + std::to_string(shape.users) +
                      "; each user's clicks follow a habit of its own)")
      ->check(Positive());
  cmd->add_option("--items", flags->items, "Items of the synthetic stream (default " + std::to_string(shape.items) + ")")
      ->check(Positive());
  cmd->add_option("--rate", flags->rate, "Events per second (default 0: as fast as possible)")->check(NonNegative());
  cmd->add_option("--limit", flags->limit, "Stop after N events (0 = all)")->check(NonNegative());
  cmd->add_option("--topic", flags->topic, "Target topic (default: topics.clicks)");
  cmd->add_option("--bootstrap", flags->bootstrap, "Kafka bootstrap servers (default: kafka.bootstrap_servers)");
  cmd->add_flag("--from-now", flags->from_now,
                "Each event's time = the moment it is sent, as on live traffic: freshness (event time to publish "
                "time) then measures the pipeline, not the data's age");
  cmd->add_flag("--no-progress", flags->no_progress, "No progress bar");
  AddConfigFlags(cmd, &flags->config);
  cmd->callback([flags, exit_code] { *exit_code = RunReplay(*flags); });
}

}  // namespace gsau::app
