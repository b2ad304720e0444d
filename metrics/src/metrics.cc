#include "gsau/metrics/metrics.h"

#include <prometheus/exposer.h>

#include <exception>

namespace gsau::metrics {

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {}

Metrics::~Metrics() = default;

Status Metrics::Serve(const MetricsOptions& options) {
  if (options.listen_address.empty()) return Status::Ok();
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(options.listen_address);
  } catch (const std::exception& e) {
    return Status::Unavailable("metrics endpoint on " + options.listen_address + ": " + e.what());
  }
  exposer_->RegisterCollectable(registry_);
  return Status::Ok();
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
