#include "config_flags.h"

#include <iostream>

namespace gsau::app {

void AddConfigFlags(CLI::App* cmd, ConfigFlags* flags) {
  cmd->add_option("--config", flags->file, "YAML configuration file (see docs/CONFIG.md)")
      ->check([](const std::string& file) {
        // `--config "$CFG"` with CFG unset ran on the defaults without a word.
        return file.empty() ? std::string("must name a file, got an empty value") : std::string();
      });
  cmd->add_option("--set", flags->sets, "Override one field: --set ingest.batch_max_events=500 (repeatable)")
      ->type_name("KEY=VALUE");
  cmd->add_flag("--help-config", flags->help_config, "Print every configuration field with its unit and default");
}

Result<config::Config> LoadConfig(const std::string& command, const ConfigFlags& flags,
                                  std::vector<config::FlagValue> fields) {
  config::LoadInput in;
  in.config_file = flags.file;
  for (auto& f : fields) {
    if (!f.value.empty()) in.flags.push_back(std::move(f));
  }
  in.overrides = flags.sets;
  in.env = config::Environment();
  // Only the commands that create and write the state, checkpoint and CSV paths check them, each
  // those it writes: a file named like the default state directory stopped `gsau replay`, which
  // never opens it (demo and inspect put their own --dir in their place).
  using Checks = config::LoadInput::DirectoryChecks;
  in.directory_checks = command == "run" ? Checks::kAll : command == "ingest" ? Checks::kState : Checks::kNone;
  auto cfg = config::Load(in);
  if (!cfg.ok()) {
    std::cerr << "gsau " << command << ": configuration error: " << cfg.status().message() << "\n";
    return cfg;
  }
  for (const auto& name : config::UnknownEnvironment(in)) {
    std::cerr << "gsau " << command << ": warning: environment variable " << name
              << " matches no configuration field and is not used\n";
  }
  return cfg;
}

std::string MetricsUrl(const std::string& listen, int port) {
  const auto colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  // "http://:9464/metrics" is no address a browser or curl takes.
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "[::]") host = "[::1]";
  return "http://" + host + ":" + std::to_string(port) + "/metrics";
}

bool MaybePrintConfigHelp(const ConfigFlags& flags) {
  if (!flags.help_config) return false;
  std::cout << config::FieldsMarkdown();
  return true;
}

}  // namespace gsau::app
