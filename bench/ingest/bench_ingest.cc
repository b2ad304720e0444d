// make bench-ingest: end-to-end ingest (Kafka -> decode -> state store, offsets included)
// against a bare librdkafka consumer that only counts, on the same topic of 1,000,000 events
// in one real local broker. Both rates are measured the same way: from the first record
// counted to the last, so group joins do not count. Also the state store alone on the same
// events (no Kafka), the ceiling that ingest can reach since it applies every event through it.
// Each side runs three times (the store alone and ingest alternating); medians are reported.
// Last line: BENCH ingest events_per_s=<n> bare_events_per_s=<n> ratio_vs_bare=<r>
//            state_events_per_s=<n> ratio_vs_state=<r>
// A side that cannot be measured (ingest's Run fails, or no events are counted in the window
// before the timeout) ends the run with exit 1 and no BENCH line.
#include <librdkafka/rdkafkacpp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gsau/common/log.h"
#include "gsau/ingest/ingestor.h"
#include "gsau/kafka/admin.h"
#include "gsau/kafka/producer.h"
#include "gsau/replay/replay.h"
#include "gsau/state/state_store.h"

namespace {

using Clock = std::chrono::steady_clock;

std::string Run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 256> buf;
  while (p != nullptr && fgets(buf.data(), buf.size(), p) != nullptr) out += buf.data();
  if (p != nullptr) pclose(p);
  return out;
}

// A rate, or why there is none: a rate that could not be measured must not be reported as 0.
struct Rate {
  double per_s = 0;
  std::string error;  // empty when per_s was measured
};

// Samples `count` every ms: rate = (n - c0) / (t(n) - t0), t0 = first sample with count > 0.
// Gives up at the deadline, or once `ended()` says the counting side has stopped (a failed
// Run would otherwise keep us waiting for the whole timeout).
template <typename Count, typename Ended>
Rate MeasureRate(int64_t n, Count count, Ended ended, double timeout_s) {
  Clock::time_point t0{};
  int64_t c0 = 0;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (true) {
    // Read `ended` before the count so that the count seen is final when it says so.
    const bool was_ended = ended();
    const bool late = Clock::now() >= deadline;
    const int64_t c = count();
    if (c > 0 && c0 == 0) {
      t0 = Clock::now();
      c0 = c;
    }
    if (c >= n) {
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      if (c0 >= n || s <= 0) {
        return {0, "all " + std::to_string(n) + " events were counted in the first sample: no window to time"};
      }
      return {static_cast<double>(n - c0) / s, {}};
    }
    const std::string seen = std::to_string(c) + " of " + std::to_string(n) + " events counted";
    if (was_ended) return {0, "stopped with " + seen};
    if (late) return {0, "timed out after " + std::to_string(static_cast<int>(timeout_s)) + " s with " + seen};
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

[[noreturn]] void Usage(const std::string& problem) {
  std::cerr << "bench_ingest: " << problem << "\n"
            << "usage: bench_ingest [EVENTS]   (EVENTS: a positive integer, default 1000000)\n";
  std::exit(2);
}

// A store with default options at `path`, or null (the reason printed).
std::unique_ptr<gsau::state::StateStore> OpenFreshStore(const std::string& path) {
  gsau::state::StateOptions options;
  options.path = path;
  auto store = gsau::state::StateStore::Open(options);
  if (!store.ok()) {
    std::cerr << "bench_ingest: " << store.status() << "\n";
    return nullptr;
  }
  return std::move(*store);
}

}  // namespace

int main(int argc, char** argv) {
  gsau::log::Init();
  if (argc > 2) Usage("too many arguments");
  int64_t n = 1000000;
  if (argc == 2) {
    const std::string arg = argv[1];
    const auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), n);
    if (ec != std::errc() || end != arg.data() + arg.size() || n <= 0) {
      Usage("EVENTS must be a positive integer, got '" + arg + "'");
    }
  }
  const std::string dir = std::filesystem::temp_directory_path() / ("gsau-bench-ingest-" + std::to_string(getpid()));
  const std::string script = std::string(GSAU_SOURCE_DIR) + "/scripts/kafka_broker.sh";
  std::string bootstrap = Run(script + " start --dir " + dir + "/broker --max-lifetime 1800");
  bootstrap = bootstrap.substr(0, bootstrap.find('\n'));
  if (bootstrap.empty()) {
    std::cerr << "bench_ingest: could not start the broker\n";
    return 1;
  }
  struct Cleanup {
    std::string cmd, dir;
    ~Cleanup() {
      Run(cmd);
      std::filesystem::remove_all(dir);
    }
  } cleanup{script + " stop --dir " + dir + "/broker", dir};

  gsau::kafka::KafkaOptions kafka;
  kafka.bootstrap_servers = bootstrap;
  const std::string topic = "bench-clicks";
  if (auto s = gsau::kafka::EnsureTopics(kafka, {{topic, 4, 1, {}}}, 20000); !s.ok()) {
    std::cerr << s << "\n";
    return 1;
  }
  gsau::replay::SyntheticOptions so;
  so.events = n;
  so.users = 50000;
  so.items = 20000;
  const auto events = gsau::replay::SyntheticStream(so);
  gsau::replay::ReplayOptions ro;
  ro.topic = topic;
  ro.progress = false;
  auto produced = gsau::replay::Replay(events, kafka, ro);
  if (!produced.ok()) {
    std::cerr << produced.status() << "\n";
    return 1;
  }
  std::cout << "topic " << topic << ": " << produced->events << " events, 4 partitions\n";

  // Bare consumer: counts messages, nothing else. Its rate differs ~2-4x between runs of the
  // broker (cause not established): the median of three passes, each in a group of its own,
  // is the peer.
  std::vector<double> bare_rates;
  for (int pass = 0; pass < 3; ++pass) {
    std::string err;
    std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
    conf->set("bootstrap.servers", bootstrap, err);
    conf->set("group.id", "bench-bare-" + std::to_string(pass), err);
    conf->set("auto.offset.reset", "earliest", err);
    conf->set("enable.auto.commit", "false", err);
    std::unique_ptr<RdKafka::KafkaConsumer> c(RdKafka::KafkaConsumer::create(conf.get(), err));
    if (c == nullptr) {
      std::cerr << "bench_ingest: bare consumer: " << err << "\n";
      return 1;
    }
    c->subscribe({topic});
    std::atomic<int64_t> count{0};
    std::atomic<bool> done{false};
    std::thread t([&] {
      while (!done) {
        std::unique_ptr<RdKafka::Message> m(c->consume(100));
        if (m->err() == RdKafka::ERR_NO_ERROR) count.fetch_add(1, std::memory_order_relaxed);
      }
    });
    const Rate rate = MeasureRate(
        n, [&] { return count.load(std::memory_order_relaxed); }, [] { return false; }, 300);
    done = true;
    t.join();
    c->close();
    if (!rate.error.empty()) {
      std::cerr << "bench_ingest: bare consumer, pass " << pass + 1 << ": no rate: " << rate.error << "\n";
      return 1;
    }
    bare_rates.push_back(rate.per_s);
  }
  std::cout << "bare librdkafka consumer, 3 passes:";
  for (const double r : bare_rates) std::cout << " " << std::llround(r);
  std::sort(bare_rates.begin(), bare_rates.end());
  const double bare_rate = bare_rates[1];
  std::cout << " events/s (median " << std::llround(bare_rate) << ")\n";

  // The state store alone, on the same events in batches of 1,000 (ingest's batch size), with
  // no Kafka: the ceiling of end-to-end ingest, which applies every event through it. Returns
  // 0 (the reason printed) when it could not measure.
  auto state_alone = [&](int pass) -> double {
    auto store = OpenFreshStore(dir + "/state-only-" + std::to_string(pass));
    if (store == nullptr) return 0;
    std::vector<gsau::ClickEvent> batch;
    const auto t0 = Clock::now();
    for (size_t i = 0; i < events.size(); i += 1000) {
      batch.clear();
      for (size_t j = i; j < std::min(events.size(), i + 1000); ++j) {
        batch.push_back({events[j].user_id, events[j].item_id, events[j].ts_ms, "click"});
      }
      const gsau::PartitionOffset offset{{topic, 0}, static_cast<int64_t>(i + batch.size())};
      if (auto r = store->ApplyBatch(batch, {&offset, 1}); !r.ok()) {
        std::cerr << "bench_ingest: state store alone: " << r.status() << "\n";
        return 0;
      }
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (events.empty() || s <= 0) {
      std::cerr << "bench_ingest: state store alone: no rate: " << events.size() << " events in " << s << " s\n";
      return 0;
    }
    return static_cast<double>(events.size()) / s;
  };

  // End-to-end ingest into a fresh state store, in a consumer group of its own.
  uint64_t disk = 0;
  auto ingest = [&](int pass) -> double {
    auto store = OpenFreshStore(dir + "/state-" + std::to_string(pass));
    if (store == nullptr) return 0;
    gsau::ingest::IngestOptions io;
    io.kafka = kafka;
    io.topic = topic;
    io.dead_letter_topic = topic + ".dlq";
    io.group_id = "bench-ingest-" + std::to_string(pass);
    gsau::ingest::Ingestor ingestor(io, store.get(), nullptr, nullptr);
    std::atomic<bool> stop{false};
    std::atomic<bool> ended{false};
    gsau::Status run_status;
    std::thread t([&] {
      run_status = ingestor.Run(stop);
      ended = true;
    });
    const Rate rate = MeasureRate(
        n, [&] { return ingestor.counters().consumed; }, [&] { return ended.load(); }, 600);
    stop = true;
    t.join();
    if (!run_status.ok()) {
      std::cerr << "bench_ingest: ingest: Run failed: " << run_status << "\n";
      return 0;
    }
    if (!rate.error.empty()) {
      std::cerr << "bench_ingest: ingest: no rate: " << rate.error << "\n";
      return 0;
    }
    if (pass == 0) {
      const auto c = store->Counts();
      std::cout << "state: " << c.users << " users, " << c.items << " items, " << c.edges << " edges, " << c.events
                << " events in " << c.batch_seq << " batches\n";
      disk = store->DiskBytes().ok() ? *store->DiskBytes() : 0;
    }
    return rate.per_s;
  };

  // The two alternate, three passes each, so that a slow moment of the shared machine or the
  // broker does not fall on one side only; medians are compared.
  std::vector<double> state_rates, ingest_rates;
  for (int pass = 0; pass < 3; ++pass) {
    const double st = state_alone(pass);
    if (st <= 0) return 1;  // returns (not exit) so that the broker is stopped
    state_rates.push_back(st);
    const double in = ingest(pass);
    if (in <= 0) return 1;
    ingest_rates.push_back(in);
    std::filesystem::remove_all(dir + "/state-only-" + std::to_string(pass));
    std::filesystem::remove_all(dir + "/state-" + std::to_string(pass));
  }
  auto report = [](const char* what, std::vector<double>* rates) {
    std::cout << what << ", 3 passes:";
    for (const double r : *rates) std::cout << " " << std::llround(r);
    std::sort(rates->begin(), rates->end());
    std::cout << " events/s (median " << std::llround((*rates)[1]) << ")\n";
    return (*rates)[1];
  };
  const double state_rate = report("state store alone (same events, batches of 1000, no Kafka)", &state_rates);
  const double ingest_rate = report("ingest (Kafka -> decode -> state batch + offsets)", &ingest_rates);
  std::cout << "state on disk after ingest: " << disk / (1 << 20) << " MiB\n";
  // Every rate is > 0 here: each side that could not measure has returned 1 above.
  std::printf("ingest / state store alone: %.2f; state store alone / bare consumer: %.2f\n", ingest_rate / state_rate,
              state_rate / bare_rate);
  std::printf("BENCH ingest events_per_s=%.0f bare_events_per_s=%.0f ratio_vs_bare=%.2f state_events_per_s=%.0f "
              "ratio_vs_state=%.2f\n",
              ingest_rate, bare_rate, ingest_rate / bare_rate, state_rate, ingest_rate / state_rate);
  return 0;
}
