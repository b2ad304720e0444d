#include "gsau/metrics/metrics.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "gsau/common/log.h"
#include "gsau/common/memory.h"

namespace gsau::metrics {
namespace {

prometheus::MetricFamily Gauge(const std::string& name, const std::string& help, double value,
                               const prometheus::Labels& labels = {}) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric m;
  for (const auto& [k, v] : labels) m.label.push_back({k, v});
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
  return f;
}

// The process's memory, read at each scrape (see gsau/common/memory.h).
std::vector<prometheus::MetricFamily> ProcessMemoryFamilies() {
  const ProcessMemory m = ReadProcessMemory();
  std::vector<prometheus::MetricFamily> out;
  if (m.resident_bytes >= 0) {
    out.push_back(Gauge("gsau_process_resident_memory_bytes", "Resident memory of the process (VmRSS)",
                        static_cast<double>(m.resident_bytes)));
  }
  if (m.heap_allocated_bytes >= 0) {
    out.push_back(Gauge("gsau_process_heap_allocated_bytes", "Heap bytes the program holds (allocated, not freed)",
                        static_cast<double>(m.heap_allocated_bytes), {{"allocator", m.allocator}}));
    out.push_back(Gauge("gsau_process_heap_free_bytes", "Heap bytes the allocator keeps mapped but unused",
                        static_cast<double>(m.heap_free_bytes), {{"allocator", m.allocator}}));
  }
  return out;
}

}  // namespace

class Metrics::Server {
 public:
  // Takes ownership of the listening sockets, all on `port`.
  Server(std::vector<int> fds, int port, std::shared_ptr<prometheus::Registry> registry)
      : fds_(std::move(fds)), port_(port), registry_(std::move(registry)), thread_([this] { Loop(); }) {}
  ~Server() {
    stop_ = true;
    thread_.join();
    for (int fd : fds_) close(fd);
  }
  int port() const { return port_; }

 private:
  void Loop() {
    std::vector<pollfd> polled;
    for (int fd : fds_) polled.push_back({fd, POLLIN, 0});
    while (!stop_) {
      if (poll(polled.data(), polled.size(), 200) <= 0) continue;
      for (pollfd& p : polled) {
        if ((p.revents & POLLIN) == 0) continue;
        const int c = accept(p.fd, nullptr, nullptr);
        if (c < 0) {
          // Out of descriptors (or memory), the connection stays pending and poll() answers at
          // once: without a pause this thread spun a core beside the learner until they freed.
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          }
          continue;
        }
        Handle(c);
        close(c);
      }
    }
  }

  // One connection at a time: a client must not hold the server. The request must be in within
  // kRequestMs in all and the response out within kResponseMs (a per-read timeout let a client
  // sending a byte a second hold every later scrape for hours); a stop ends either wait.
  static constexpr int kRequestMs = 1000;
  static constexpr int kResponseMs = 5000;

  // Waits for `events` on c until `deadline`, in slices that hear a stop. False: time is up.
  bool WaitFor(int c, short events, std::chrono::steady_clock::time_point deadline) {
    while (!stop_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{c, events, 0};
      const int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 200)));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return false;
    }
    return false;
  }

  void Handle(int c) {
    const int flags = fcntl(c, F_GETFL, 0);
    fcntl(c, F_SETFL, flags | O_NONBLOCK);
    const auto request_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kRequestMs);
    std::string req;
    char buf[2048];
    while (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos && req.size() < 16384) {
      if (!WaitFor(c, POLLIN, request_deadline)) break;
      const ssize_t n = read(c, buf, sizeof(buf));
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
      if (n > 0) req.append(buf, static_cast<size_t>(n));
    }
    const auto line_end = req.find_first_of("\r\n");
    const std::string line = req.substr(0, line_end);
    std::string path;
    if (line.rfind("GET ", 0) == 0) {
      path = line.substr(4, line.find(' ', 4) - 4);
      if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
    }
    std::string status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8", body;
    if (path == "/metrics") {
      auto families = registry_->Collect();
      for (auto& f : ProcessMemoryFamilies()) families.push_back(std::move(f));
      body = prometheus::TextSerializer().Serialize(families);
    } else if (path.empty()) {
      status = "405 Method Not Allowed";
      body = "GET /metrics\n";
    } else {
      status = "404 Not Found";
      body = "gsau serves /metrics\n";
    }
    const std::string head = "HTTP/1.1 " + status + "\r\nContent-Type: " + type +
                             "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    const auto response_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kResponseMs);
    if (WriteAll(c, head, response_deadline)) WriteAll(c, body, response_deadline);
    shutdown(c, SHUT_WR);
  }

  bool WriteAll(int c, const std::string& s, std::chrono::steady_clock::time_point deadline) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = send(c, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (!WaitFor(c, POLLOUT, deadline)) return false;
      } else {
        return false;
      }
    }
    return true;
  }

  const std::vector<int> fds_;
  const int port_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {}

Metrics::~Metrics() = default;

namespace {

int BoundPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

// "[::1]:9464", "127.0.0.1:9464": an address as messages name it.
std::string AddressName(const sockaddr_storage& addr, socklen_t len) {
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host, sizeof host, serv, sizeof serv,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  return addr.ss_family == AF_INET6 ? "[" + std::string(host) + "]:" + serv : std::string(host) + ":" + serv;
}

void SetPort(sockaddr_storage& addr, int port) {
  if (addr.ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(static_cast<uint16_t>(port));
  if (addr.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(static_cast<uint16_t>(port));
  }
}

struct Listening {
  std::vector<int> fds;
  int port = 0;
};

// Listening sockets on every address host:port resolves to (an empty host: every IPv4 and IPv6
// address, where binding the first alone left 0.0.0.0 and no IPv6 scraper could connect), all on
// one port (port 0: the one the first bind picked). InvalidArgument: an address that will never
// resolve; Unavailable otherwise (worth a retry). An address of a family the host lacks is
// skipped as long as another is bound; a busy one fails the whole set, as it means another
// process answers there.
Result<Listening> Listen(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    // A resolver not answering yet (a container's DNS at start-up) is worth the retries; a name
    // that does not exist or a bad port is not.
    return rc == EAI_AGAIN ? Status::Unavailable(gai_strerror(rc)) : Status::InvalidArgument(gai_strerror(rc));
  }
  bool has_v4 = false;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) has_v4 = has_v4 || a->ai_family == AF_INET;
  std::vector<int> fds;
  std::vector<sockaddr_storage> bound;  // a name listed twice (/etc/hosts) would find its own port busy
  int bound_port = 0;
  int err = 0;
  std::string failed;  // the address err is about
  std::string skipped;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    sockaddr_storage addr{};
    std::memcpy(&addr, a->ai_addr, a->ai_addrlen);
    if (bound_port != 0) SetPort(addr, bound_port);
    const auto same = [&](const sockaddr_storage& b) { return std::memcmp(&b, &addr, sizeof(addr)) == 0; };
    if (std::any_of(bound.begin(), bound.end(), same)) continue;
    const std::string name = AddressName(addr, a->ai_addrlen);
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    const int one = 1;
    // Beside an IPv4 address the IPv6 socket takes IPv6 only: a dual-stack one would claim the
    // IPv4 port too, and one of the two binds would find it busy.
    const bool v6only_needed = a->ai_family == AF_INET6 && has_v4;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd >= 0 && (!v6only_needed || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0) &&
        bind(fd, reinterpret_cast<sockaddr*>(&addr), a->ai_addrlen) == 0 && listen(fd, 64) == 0) {
      if (bound_port == 0) {
        bound_port = BoundPort(fd);
        SetPort(addr, bound_port);
      }
      fds.push_back(fd);
      bound.push_back(addr);
      continue;
    }
    const int e = errno;
    if (fd >= 0) close(fd);
    if (e == EADDRINUSE) {
      // Another process answers there: half an endpoint would be an error nobody sees.
      err = e;
      failed = name;
      for (int f : fds) close(f);
      fds.clear();
      break;
    }
    // A family the host lacks (no IPv6: EAFNOSUPPORT, EADDRNOTAVAIL): fine while another binds.
    skipped += (skipped.empty() ? "" : ", ") + name + " (" + std::strerror(e) + ")";
    if (err == 0) {
      err = e;
      failed = name;
    }
  }
  freeaddrinfo(res);
  if (!fds.empty()) {
    if (!skipped.empty()) GSAU_LOG_WARN("metrics: not listening on {}", skipped);
    return Listening{std::move(fds), bound_port};
  }
  return Status::Unavailable((failed.empty() ? "" : failed + ": ") + std::strerror(err == 0 ? EADDRNOTAVAIL : err));
}

}  // namespace

Status Metrics::Serve(const MetricsOptions& options) {
  if (options.listen_address.empty()) return Status::Ok();
  const auto colon = options.listen_address.rfind(':');
  if (colon == std::string::npos) {
    return Status::InvalidArgument("metrics endpoint '" + options.listen_address + "': expected host:port");
  }
  std::string host = options.listen_address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = options.listen_address.substr(colon + 1);
  // A process restarted on the same port (after a crash, say) can find it busy for a moment:
  // retry for a few seconds before calling it a configuration problem.
  Status error;
  for (int attempt = 0; attempt < options.bind_attempts; ++attempt) {
    auto listening = Listen(host, port);
    if (listening.ok()) {
      server_ = std::make_unique<Server>(std::move(listening->fds), listening->port, registry_);
      return Status::Ok();
    }
    error = listening.status();
    if (error.code() == StatusCode::kInvalidArgument || attempt + 1 == options.bind_attempts) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(options.bind_retry_ms));
  }
  return Status::Unavailable("metrics endpoint on " + options.listen_address + ": " + error.message());
}

int Metrics::port() const { return server_ ? server_->port() : 0; }

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
