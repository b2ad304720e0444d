#include "gsau/metrics/metrics.h"

#include <prometheus/exposer.h>

#include <chrono>
#include <exception>
#include <thread>

namespace gsau::metrics {

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {}

Metrics::~Metrics() = default;

Status Metrics::Serve(const MetricsOptions& options) {
  if (options.listen_address.empty()) return Status::Ok();
  // A process restarted on the same port (after a crash, say) can find it busy for a moment:
  // retry for a few seconds before calling it a configuration problem.
  std::string error;
  for (int attempt = 0; attempt < options.bind_attempts; ++attempt) {
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(options.listen_address);
      exposer_->RegisterCollectable(registry_);
      return Status::Ok();
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(options.bind_retry_ms));
  }
  return Status::Unavailable("metrics endpoint on " + options.listen_address + ": " + error);
}

int Metrics::port() const {
  if (!exposer_) return 0;
  const auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

prometheus::Counter& ErrorCounter(prometheus::Registry& registry, const std::string& stage, const std::string& kind) {
  return prometheus::BuildCounter()
      .Name("gsau_errors_total")
      .Help("Errors by pipeline stage and kind")
      .Register(registry)
      .Add({{"stage", stage}, {"kind", kind}});
}

std::vector<double> LatencyBucketsSeconds() {
  std::vector<double> b;
  for (double v = 1e-4; v < 120; v *= 2.5) b.push_back(v);
  return b;
}

}  // namespace gsau::metrics
