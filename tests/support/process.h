// Child processes and HTTP for tests: start `gsau` subcommands, kill them, scrape /metrics.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gsau::testing {

// A child process; killed with SIGKILL on destruction if still running.
class ChildProcess {
 public:
  // Starts `argv[0]` with `argv`, stdout and stderr appended to `log_path`.
  ChildProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool Running();
  void Signal(int sig);
  // Waits up to `timeout_ms` for the exit; returns the exit code (128 + signal when killed),
  // or -1 on timeout.
  int Wait(int timeout_ms);

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

// The last `bytes` of a file (a child's log, for failure messages).
std::string Tail(const std::string& path, size_t bytes = 4000);

// The lines of the file at `path` that contain `needle`, the last `max_lines` of them.
std::string GrepLines(const std::string& path, const std::string& needle, size_t max_lines = 80);

// A TCP socket listening on 127.0.0.1 at a free port that nobody answers: the kernel completes the
// handshakes and the bytes sent are never read (a stalled broker, a port another process holds).
// port() is -1 when the socket could not be made. Closed on destruction.
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago. For a gsau process, prefer
// kAnyMetricsAddress and AnnouncedMetricsPort: a port picked here is free only until another test
// running beside this one picks it, and one kept across a restart is free while the process is
// down.
int FreePort();

// metrics.listen_address for a gsau process: the kernel picks a free port at the bind.
inline constexpr const char* kAnyMetricsAddress = "127.0.0.1:0";

// The size of the file at `path` in bytes, 0 if it does not exist: where a child started now
// begins its lines in a log it appends to.
uintmax_t FileSize(const std::string& path);

// The metrics port that a gsau process announced in its log ("metrics at http://127.0.0.1:PORT"),
// on the first such line after the log's first `from` bytes. Waits up to `timeout_ms` while
// `child` runs; -1 when it said none (it exited first, or its metrics are off).
int AnnouncedMetricsPort(const std::string& log_path, uintmax_t from, ChildProcess& child, int timeout_ms = 60000);
// What to say when a running process announced none: it logs the line at info.
inline constexpr const char* kNoMetricsPort =
    "no 'metrics at' line from a running gsau (GSAU_LOG_LEVEL=warn or error hides it)\n";

// GET http://host:port/path, host a numeric address (127.0.0.1, ::1); empty on failure.
std::string HttpGet(int port, const std::string& path, const std::string& host = "127.0.0.1");

// The value of the first sample of `name` (exact metric name, optionally with a label set such
// as `name{reason="bad_id"}`) on 127.0.0.1:port/metrics.
std::optional<double> ScrapeMetric(int port, const std::string& name);

}  // namespace gsau::testing
