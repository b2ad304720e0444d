// The pipeline's and the online learner's options from the configuration, for the commands
// that run them (run, demo, inspect). Here rather than in config/, which stays free of
// LibTorch so that the pipeline's other stages build without it.
#pragma once

#include "gsau/config/config.h"
#include "gsau/learner/online.h"
#include "gsau/pipeline/pipeline.h"

namespace gsau::app {

learner::OnlineOptions ToOnlineOptions(const config::Config& c);
pipeline::PipelineOptions ToPipelineOptions(const config::Config& c);

}  // namespace gsau::app
