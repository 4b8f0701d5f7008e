#pragma once

#include "core/train/job_spec.h"

namespace graft::core {

// Learning rate at a point of a stage: `epoch` is 0-based within the stage and
// `progress` in [0, 1) within that epoch. Linear warmup from ~0 over
// warmup_epochs, then the schedule over the remaining epochs.
double LearningRate(const StageSpec& stage, int epoch, double progress);

}  // namespace graft::core
