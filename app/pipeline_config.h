// The pipeline's and the online learner's options from the configuration, for the commands
// that run them (run, demo, inspect). Here rather than in config/, which stays free of
// LibTorch so that the pipeline's other stages build without it.
#pragma once

#include <string>

#include "gsau/config/config.h"
#include "gsau/learner/online.h"
#include "gsau/pipeline/pipeline.h"

namespace gsau::app {

learner::OnlineOptions ToOnlineOptions(const config::Config& c);
pipeline::PipelineOptions ToPipelineOptions(const config::Config& c);

// For the commands that run a learner on learner.device (run, demo, evaluate): whether it is
// usable on this machine ("cuda" needs a device LibTorch sees); if not, prints "gsau <command>:
// configuration error: learner.device: ..." and returns false (the command exits kExitUsage, as
// for any configuration error).
bool LearnerDeviceUsable(const std::string& command, const config::Config& c);

}  // namespace gsau::app
