// gsau: the streaming GSAU trainer. `gsau --help` lists the subcommands.
#include <algorithm>
#include <csignal>
#include <iostream>
#include <string>

#include "commands.h"
#include "gsau/common/log.h"
#include "gsau/common/memory.h"

namespace gsau::app {

void AddUnavailableCommand(CLI::App& root, const std::string& name, const std::string& description,
                           const std::string& why, int* exit_code) {
  auto* cmd = root.add_subcommand(name, description + " [not available: " + why + "]");
  cmd->allow_extras();
  cmd->callback([name, why, exit_code] {
    std::cerr << "gsau " << name << ": not available: " << why << "\n";
    *exit_code = kExitNotAvailable;
  });
}

}  // namespace gsau::app

int main(int argc, char** argv) {
  using namespace gsau::app;
  // A closed stderr or stdout (`gsau run 2>&1 | tee log` and a Ctrl-C, which ends tee too) makes
  // writes fail with EPIPE instead of killing the process mid-stop (exit 141, its last checkpoint
  // never written).
  std::signal(SIGPIPE, SIG_IGN);
  gsau::log::Init();
  CLI::App root{"gsau: continual GSAU training on live click streams (LightGCN + SASRec, one item table)", "gsau"};
  root.require_subcommand(1);
  root.set_version_flag("--version", "gsau 0.1.0");
  int exit_code = kExitOk;

#if defined(GSAU_HAVE_PIPELINE)
#if defined(GSAU_HAVE_RUN)
  AddRunCommand(root, &exit_code);
  AddDemoCommand(root, &exit_code);
  AddInspectCommand(root, &exit_code);
  AddEvaluateCommand(root, &exit_code);
#else
  for (const char* name : {"run", "demo", "inspect", "evaluate"}) {
    AddUnavailableCommand(root, name, std::string("gsau ") + name,
                          "this build has no LibTorch, which the learner needs", &exit_code);
  }
#endif
  AddReplayCommand(root, &exit_code);
  AddIngestCommand(root, &exit_code);
#else
  for (const char* name : {"run", "demo", "replay", "ingest", "inspect", "evaluate"}) {
    AddUnavailableCommand(root, name, std::string("gsau ") + name,
                          "this is a learner-only build (LibTorch without the pipeline libraries)", &exit_code);
  }
#endif
#if defined(GSAU_HAVE_TORCH)
  AddTrainCommand(root, &exit_code);
  AddSplitCommand(root, &exit_code);
#else
  AddUnavailableCommand(root, "train", "Train GSAU offline on a dataset and evaluate it",
                        "this build has no LibTorch (learner issue 5 not built)", &exit_code);
  AddUnavailableCommand(root, "split", "Split a dataset into an offline part and replay streams",
                        "this build has no LibTorch (learner issue 5 not built)", &exit_code);
#endif

  // Whatever the command, the allocator's free pages go back to the OS every 10 s (jemalloc's
  // decay is off, see MemoryReleaser): run, train, ingest and demo would otherwise keep every page
  // they ever freed. The cost is faulting a step's working set in again once per 10 s.
  const gsau::MemoryReleaser releaser;
  // A mistyped command reached CLI11 as an extra argument, and it answered "A subcommand is
  // required" to someone who had typed one.
  const auto commands = root.get_subcommands([](CLI::App*) { return true; });
  if (argc == 1) {
    // A bare `gsau` is a new user's first try: say what to run rather than CLI11's "A subcommand
    // is required". The demo is the embedded default; run needs a broker configured, as an
    // embedded one standing in for a production broker left out of the configuration would be
    // worse than an error.
    std::cerr << root.help();
#if defined(GSAU_HAVE_RUN)
    std::cerr << "\nWith nothing configured, `gsau demo` runs the whole loop on one machine (an embedded broker and a "
                 "synthetic click stream); `gsau run --config FILE` runs the pipeline.\n";
#endif
    return kExitUsage;
  }
  if (argc > 1 && argv[1][0] != '-' &&
      std::none_of(commands.begin(), commands.end(), [&](CLI::App* c) { return c->check_name(argv[1]); })) {
    std::string known;
    for (const auto* c : commands) known += (known.empty() ? "" : ", ") + c->get_name();
    std::cerr << "gsau: unknown command '" << argv[1] << "'; the commands are " << known
              << " (gsau --help says what each does)\n";
    return kExitUsage;
  }
  try {
    root.parse(argc, argv);
  } catch (const CLI::RequiredError& e) {
    // CLI11 checks required flags before it reports arguments it did not know, so a mistyped
    // flag read "--data is required" (`gsau train --dat x`), and a flag that this command lacks
    // (`gsau train --help-config`) the same: the unknown one is what to say.
    // The root's own first (`gsau --foo train`), else the command's; a `--` separator is no
    // argument (CLI11 lists it all the same).
    const auto parsed = root.get_subcommands();
    auto unknown_of = [](const CLI::App& app) {
      std::vector<std::string> out = app.remaining();
      out.erase(std::remove(out.begin(), out.end(), "--"), out.end());
      return out;
    };
    std::vector<std::string> unknown = unknown_of(root);
    std::string name = "gsau";
    if (unknown.empty() && !parsed.empty()) {
      unknown = unknown_of(*parsed.front());
      name += " " + parsed.front()->get_name();
    }
    if (unknown.empty()) return root.exit(e) == 0 ? kExitOk : kExitUsage;
    std::string list;
    for (const auto& arg : unknown) list += (list.empty() ? "" : " ") + arg;
    std::cerr << name << ": unknown argument" << (unknown.size() > 1 ? "s " : " ") << list << " (" << name
              << " --help lists its flags)\n";
    return kExitUsage;
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the message (or the help); a bad flag exits kExitUsage like a bad
    // configuration, not with CLI11's own code (105 and up).
    const int rc = root.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  } catch (const std::exception& e) {
    // Commands report expected failures as a Status; what escapes them to here (a filesystem
    // call that throws, a broken invariant) ends with its message and kExitFailure rather than
    // an abort (one thrown on a thread of theirs, or past a joinable thread, still aborts).
    std::cerr << "gsau: " << e.what() << "\n";
    return kExitFailure;
  }
  return exit_code;
}
