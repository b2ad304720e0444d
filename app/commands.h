// The gsau subcommands. Each Add*Command registers one subcommand on the root CLI11 app;
// its callback runs the command and stores the process exit code in *exit_code.
#pragma once

#include <CLI/CLI.hpp>

namespace gsau::app {

// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;          // bad flags or configuration
inline constexpr int kExitNotAvailable = 3;   // not built in this configuration, or not landed yet

void AddTrainCommand(CLI::App& root, int* exit_code);     // train_command.cc (needs LibTorch)
void AddSplitCommand(CLI::App& root, int* exit_code);     // split_command.cc (needs LibTorch)
void AddReplayCommand(CLI::App& root, int* exit_code);    // replay_command.cc (pipeline build)
void AddIngestCommand(CLI::App& root, int* exit_code);    // ingest_command.cc (pipeline build)
void AddRunCommand(CLI::App& root, int* exit_code);       // run_command.cc (pipeline + LibTorch)
void AddDemoCommand(CLI::App& root, int* exit_code);      // demo_command.cc (pipeline + LibTorch)
void AddInspectCommand(CLI::App& root, int* exit_code);   // inspect_command.cc (pipeline + LibTorch)
void AddEvaluateCommand(CLI::App& root, int* exit_code);  // evaluate_command.cc (pipeline + LibTorch)

// Registers a subcommand that says it is not available and exits kExitNotAvailable.
void AddUnavailableCommand(CLI::App& root, const std::string& name, const std::string& description,
                           const std::string& why, int* exit_code);

}  // namespace gsau::app
