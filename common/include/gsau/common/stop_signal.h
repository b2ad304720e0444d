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

// For a command that ends early when stopped (gsau train): once it has cleaned up, ends the
// process by the signal that asked for the stop, with that signal's default action, so that a
// calling shell sees an interrupted command (a script's loop of runs stops: bash goes on after
// a child that caught SIGINT and exited 0). Returns when no signal asked for a stop.
void EndByStopSignal();

}  // namespace gsau
