// Metrics: the process's one Prometheus registry and its /metrics HTTP endpoint.
//
// Every stage registers its families into registry() once at start-up (BuildCounter()
// ...Register(registry())), keeps the returned Counter&/Gauge&/Histogram& references and only
// increments them in hot loops. Names follow Prometheus conventions: prefix gsau_, base units,
// _total/_seconds/_bytes suffixes, and never a user or item id as a label.
//
// Thread safety: registry() and the metrics in it are thread-safe (prometheus-cpp).
// Lifetime: the Metrics object must outlive every stage that registered into it.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "gsau/common/status.h"

namespace prometheus {
class Exposer;
}

namespace gsau::metrics {

struct MetricsOptions {
  // host:port the /metrics endpoint listens on; port 0 picks a free port. Empty = no endpoint.
  std::string listen_address = "127.0.0.1:9464";
  int bind_attempts = 20;    // tries to bind before giving up
  int bind_retry_ms = 250;   // pause between tries, ms
};

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

  // Starts serving GET /metrics. Unavailable when the address cannot be bound.
  Status Serve(const MetricsOptions& options);
  // The port /metrics listens on, 0 when not serving.
  int port() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

// gsau_errors_total{stage, kind}: the one family of errors by stage, shared by every module
// (the registry merges same-named families). `kind` must come from a small fixed set.
prometheus::Counter& ErrorCounter(prometheus::Registry& registry, const std::string& stage, const std::string& kind);

// Buckets for latencies in seconds, 100 us .. ~100 s, x2.5 per step.
std::vector<double> LatencyBucketsSeconds();

}  // namespace gsau::metrics
