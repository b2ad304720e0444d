// Stopping a command on SIGINT or SIGTERM.
//
// The first signal asks for a graceful stop: it sets the flag the command's loops poll (the
// pipeline then applies what it holds, checkpoints and flushes). A second one, a second or more
// after the first, ends the process at once, as the signal's default action would (exit 128 +
// signal): for a stop that takes too long (a flush waiting on brokers that are away), Ctrl-C
// twice. One sooner is the first delivered twice (Ctrl-C reaches the whole process group; a
// wrapper may forward it as SIGTERM as well) and is ignored.
//
// Install early, before long start-up work: a signal during it is then a graceful stop too (the
// command starts its run already stopped), not the default action's exit 143.
// Thread safety: InstallStopSignals from one thread, once or more; the flag from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace gsau {

// Installs the handlers (again: harmless) and returns the flag they set.
const std::atomic<bool>& InstallStopSignals();

// For a command that ends early when stopped (gsau train): once it has cleaned up, ends the
// process by the signal that asked for the stop, with that signal's default action, so that a
// calling shell sees an interrupted command (a script's loop of runs stops: bash goes on after
// a child that caught SIGINT and exited 0). Returns when no signal asked for a stop.
void EndByStopSignal();

// A command's stop flag with a time limit (--duration): set once `stop` is set or once `seconds`
// have passed since construction (0 or less: no limit), whichever comes first. One flag for the
// whole command, start-up included: Pipeline::Create's wait for brokers that do not answer polls
// it, so that a limit is kept there too.
// Thread safety: flag() and timed_out() from any thread. A watcher thread looks at `stop` every
// 50 ms (a signal handler sets it: nothing to wait on) until the object is destroyed; `stop` must
// outlive the object.
class StopAfter {
 public:
  StopAfter(const std::atomic<bool>& stop, double seconds);
  ~StopAfter();
  StopAfter(const StopAfter&) = delete;
  StopAfter& operator=(const StopAfter&) = delete;

  const std::atomic<bool>& flag() const { return flag_; }
  // Whether the time limit set the flag (rather than `stop`).
  bool timed_out() const { return timed_out_; }

 private:
  const std::atomic<bool>& stop_;
  std::atomic<bool> flag_{false};
  std::atomic<bool> timed_out_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool closing_ = false;  // guarded by mu_
  std::thread watcher_;
};

// Bounds a command's teardown. Declared before the objects whose destruction may block (a
// Kafka client: librdkafka 2.0's rd_kafka_destroy can wait for ever after its topic was deleted,
// librdkafka #3007) and armed once what matters is durable (the state closed, the last
// checkpoint written): if the object still exists `limit` after Arm, the process says so on
// stderr and ends with _exit(code), the exit status the command had decided on. A process that
// hung there stayed "up" for its supervisor and ignored SIGTERM.
// Thread safety: Arm from one thread; a watcher thread lives from Arm to destruction.
class ExitIfTeardownHangs {
 public:
  ExitIfTeardownHangs() = default;
  ~ExitIfTeardownHangs();
  ExitIfTeardownHangs(const ExitIfTeardownHangs&) = delete;
  ExitIfTeardownHangs& operator=(const ExitIfTeardownHangs&) = delete;

  void Arm(int code, std::chrono::milliseconds limit, std::string what);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  // guarded by mu_
  std::thread watcher_;
};

}  // namespace gsau
