#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include <string>
#include <utility>

#include "gsau/metrics/metrics.h"
#include "process.h"

namespace gsau::metrics {
namespace {

using gsau::testing::HttpGet;

TEST(MetricsTest, RegisteredMetricIsServedOverHttp) {
  Metrics m;
  auto& family = prometheus::BuildCounter()
                     .Name("gsau_test_events_total")
                     .Help("Events seen by the test")
                     .Register(m.registry());
  family.Add({{"stage", "test"}}).Increment(3);
  MetricsOptions o;
  o.listen_address = "127.0.0.1:0";
  ASSERT_TRUE(m.Serve(o).ok());
  ASSERT_GT(m.port(), 0);
  const std::string body = HttpGet(m.port(), "/metrics");
  EXPECT_NE(body.find("200 OK"), std::string::npos) << body;
  EXPECT_NE(body.find("# TYPE gsau_test_events_total counter"), std::string::npos) << body;
  EXPECT_NE(body.find("gsau_test_events_total{stage=\"test\"} 3"), std::string::npos) << body;
}

TEST(MetricsTest, ScrapeCarriesTheProcessMemory) {
  Metrics m;
  MetricsOptions o;
  o.listen_address = "127.0.0.1:0";
  ASSERT_TRUE(m.Serve(o).ok());
  const std::string body = HttpGet(m.port(), "/metrics");
  // Resident: at least a megabyte; the heap figures: present and not negative.
  for (const auto& [name, least] : {std::pair<std::string, double>{"gsau_process_resident_memory_bytes ", 1e6},
                                    {"gsau_process_heap_allocated_bytes{allocator=", 0.0},
                                    {"gsau_process_heap_free_bytes{allocator=", 0.0}}) {
    const auto at = body.find("\n" + name);
    ASSERT_NE(at, std::string::npos) << name << "\n" << body;
    const auto line = body.substr(at + 1, body.find('\n', at + 1) - at - 1);
    EXPECT_GE(std::stod(line.substr(line.rfind(' ') + 1)), least) << line;
  }
}

TEST(MetricsTest, BusyAddressIsAnErrorNotACrash) {
  Metrics a;
  MetricsOptions any;
  any.listen_address = "127.0.0.1:0";
  ASSERT_TRUE(a.Serve(any).ok());
  Metrics b;
  MetricsOptions o;
  o.listen_address = "127.0.0.1:" + std::to_string(a.port());
  o.bind_attempts = 2;
  o.bind_retry_ms = 10;
  const Status s = b.Serve(o);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
}

TEST(MetricsTest, LatencyBucketsAscend) {
  const auto b = LatencyBucketsSeconds();
  ASSERT_GT(b.size(), 10u);
  for (size_t i = 1; i < b.size(); ++i) EXPECT_GT(b[i], b[i - 1]);
}

}  // namespace
}  // namespace gsau::metrics
