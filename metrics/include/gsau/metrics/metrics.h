// Metrics: the process's one Prometheus registry and its /metrics HTTP endpoint.
//
// Every stage registers its families into registry() once at start-up (BuildCounter()
// ...Register(registry())), keeps the returned Counter&/Gauge&/Histogram& references and only
// increments them in hot loops. Names follow Prometheus conventions: prefix gsau_, base units,
// _total/_seconds/_bytes suffixes, and never a user or item id as a label.
//
// The endpoint is a small HTTP/1.1 server of our own (one thread, one connection at a time,
// Connection: close), serialising the registry with prometheus-cpp's text format: prometheus-cpp's
// civetweb exposer failed to start inside the LibTorch-linked binary (mg_start returned null
// after binding, leaking the bound socket, so every retry found the port busy).
//
// Besides the registry, every scrape reads the process's memory: gsau_process_resident_memory_bytes
// and gsau_process_heap_{allocated,free}_bytes{allocator} (gsau/common/memory.h).
//
// Thread safety: registry() and the metrics in it are thread-safe (prometheus-cpp).
// Lifetime: the Metrics object must outlive every stage that registered into it.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "gsau/common/status.h"

namespace gsau::metrics {

struct MetricsOptions {
  // host:port the /metrics endpoint listens on, on every address the host resolves to (an empty
  // host, ":9464": every IPv4 and IPv6 address); port 0 picks a free port, the same for all of
  // them. Empty = no endpoint.
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

  // Starts serving GET /metrics (any other path: 404). Unavailable when the address cannot be
  // bound; InvalidArgument when it is not host:port.
  Status Serve(const MetricsOptions& options);
  // The port /metrics listens on, 0 when not serving.
  int port() const;

 private:
  class Server;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Server> server_;
};

// gsau_errors_total{stage, kind}: the one family of errors by stage, shared by every module
// (the registry merges same-named families). `kind` must come from a small fixed set.
prometheus::Counter& ErrorCounter(prometheus::Registry& registry, const std::string& stage, const std::string& kind);

// Buckets for latencies in seconds, 100 us .. ~100 s, x2.5 per step.
std::vector<double> LatencyBucketsSeconds();

}  // namespace gsau::metrics
