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

namespace gsau {

// Installs the handlers (again: harmless) and returns the flag they set.
const std::atomic<bool>& InstallStopSignals();

}  // namespace gsau
