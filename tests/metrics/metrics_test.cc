#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
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

// A client that sends its request a byte at a time (or nothing at all) holds the one-connection
// server: without a deadline for the whole request, every later scrape waited for hours, and
// the process's exit (which joins the server) with it.
class DripClient {
 public:
  explicit DripClient(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    thread_ = std::thread([this] {
      const std::string start = "GET /metrics HTTP/1.1\r\n";
      if (!connected_ || send(fd_, start.data(), start.size(), MSG_NOSIGNAL) < 0) return;
      for (int k = 0; k < 100 && !done_; ++k) {  // a byte every 200 ms, for up to 20 s
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        if (send(fd_, "X", 1, MSG_NOSIGNAL) < 0) return;
      }
    });
  }
  ~DripClient() {
    done_ = true;
    thread_.join();
    close(fd_);
  }
  bool connected() const { return connected_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

TEST(MetricsTest, ASlowClientDoesNotHoldTheScrapesOrTheExit) {
  auto m = std::make_unique<Metrics>();
  MetricsOptions o;
  o.listen_address = "127.0.0.1:0";
  ASSERT_TRUE(m->Serve(o).ok());
  DripClient drip(m->port());
  ASSERT_TRUE(drip.connected());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the server is reading it now
  auto t = std::chrono::steady_clock::now();
  const std::string body = HttpGet(m->port(), "/metrics");
  EXPECT_NE(body.find("200 OK"), std::string::npos) << "after " << SecondsSince(t) << " s: " << body;
  EXPECT_LT(SecondsSince(t), 3.0);
  DripClient second(m->port());  // and the exit, while one is being read
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  t = std::chrono::steady_clock::now();
  m.reset();
  EXPECT_LT(SecondsSince(t), 1.0) << "the exit waited for the client";
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

// Whether this host can bind the IPv6 loopback (containers may have IPv6 disabled).
bool HasIpv6Loopback() {
  const int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// ":port" resolves to 0.0.0.0 and :: (in that order here): binding the first alone left IPv6
// scrapers refused.
TEST(MetricsTest, AnEmptyHostListensOnIpv4AndIpv6) {
  if (!HasIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback on this host";
  Metrics m;
  prometheus::BuildCounter().Name("gsau_test_total").Help("t").Register(m.registry()).Add({}).Increment();
  MetricsOptions o;
  o.listen_address = ":0";
  ASSERT_TRUE(m.Serve(o).ok());
  ASSERT_GT(m.port(), 0);
  EXPECT_NE(HttpGet(m.port(), "/metrics", "127.0.0.1").find("gsau_test_total 1"), std::string::npos);
  EXPECT_NE(HttpGet(m.port(), "/metrics", "::1").find("gsau_test_total 1"), std::string::npos);
}

// A port taken on IPv6 alone is taken: another process answers scrapers there, so serving the
// IPv4 half would be an error unnoticed.
TEST(MetricsTest, APortBusyInOneFamilyIsAnError) {
  if (!HasIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback on this host";
  struct Socket {
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    ~Socket() { close(fd); }
  } other;
  const int one = 1;
  setsockopt(other.fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_any;
  ASSERT_EQ(bind(other.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(other.fd, 4), 0);
  socklen_t len = sizeof(addr);
  getsockname(other.fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string port = std::to_string(ntohs(addr.sin6_port));
  Metrics m;
  MetricsOptions o;
  o.listen_address = ":" + port;
  o.bind_attempts = 2;
  o.bind_retry_ms = 10;
  const Status s = m.Serve(o);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("[::]:" + port + ": Address already in use"), std::string::npos)
      << "the message names the busy address: " << s;
}

TEST(MetricsTest, LatencyBucketsAscend) {
  const auto b = LatencyBucketsSeconds();
  ASSERT_GT(b.size(), 10u);
  for (size_t i = 1; i < b.size(); ++i) EXPECT_GT(b[i], b[i - 1]);
}

}  // namespace
}  // namespace gsau::metrics
