// The configuration flags every pipeline subcommand shares: --config FILE, --set key=value.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "gsau/common/status.h"
#include "gsau/config/config.h"

namespace gsau::app {

struct ConfigFlags {
  std::string file;
  std::vector<std::string> sets;
  bool help_config = false;
};

void AddConfigFlags(CLI::App* cmd, ConfigFlags* flags);

// Loads the configuration (file < GSAU_* environment < --set < the command's own `fields`, e.g.
// --state; those given empty are left out). On failure prints
// "gsau <command>: configuration error: <field> (<where from>): <problem>" and returns the status.
Result<config::Config> LoadConfig(const std::string& command, const ConfigFlags& flags,
                                  std::vector<config::FlagValue> fields = {});

// Handles --help-config: prints every field with type, unit and default; returns true if it did.
bool MaybePrintConfigHelp(const ConfigFlags& flags);

// The address of /metrics served on `port` for metrics.listen_address `listen` ("host:port", the
// port 0 for any free one): http://host:port/metrics with the port actually bound (the line read
// "http://127.0.0.1:0/metrics (port 41833)", and a pasted URL missed it). A host that means every
// address (empty, 0.0.0.0, [::]) is given as the loopback one, which it includes.
std::string MetricsUrl(const std::string& listen, int port);

}  // namespace gsau::app
