#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gsau/metrics/metrics.h"

namespace gsau::metrics {
namespace {

// A plain HTTP/1.0 GET against 127.0.0.1:port, returning the whole response.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return "";
  }
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

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
