#pragma once

#include <torch/optim/optimizer.h>

#include <string>

#include "absl/status/statusor.h"
#include "core/train/early_stopping.h"
#include "core/train/trainer.h"

namespace graft::core {

// The job's best epoch across its stages so far (restore_best by job).
struct JobBest {
  int epoch = 0;  // 0: none yet
  int stage = 0;  // 1-based
  double value = 0;
  EpochMetrics metrics;
  StateDict weights;
};

// Everything a training run needs to continue after a restart, saved after
// every epoch and within long ones (atomically: a temporary file, then rename).
struct TrainerCheckpoint {
  size_t stage = 0;  // 0-based stage of the last finished epoch
  int epoch = 0;     // last finished epoch, 1-based across stages
  bool stopped = false;  // the stage stopped early at that epoch
  StateDict weights;       // trained blocks + head after that epoch
  StateDict best_weights;  // at the stage's best epoch so far
  EarlyStopping::State stopper;
  EpochMetrics best_metrics;
  EpochMetrics last_metrics;
  JobBest job_best;  // as of the last finished epoch
  // A mid-epoch checkpoint (at shutdown, or every --checkpoint_interval_s):
  // `epoch` is the epoch in progress, `weights` hold its first
  // `batches_done` batches, and the running sums of its metrics come along;
  // the stopper, best and last metrics are as of the epoch before it. 0: the
  // checkpoint is of a finished epoch.
  int batches_done = 0;
  double partial_loss_sum = 0;
  double partial_correct = 0;
  double partial_seen = 0;
};

absl::Status SaveTrainerCheckpoint(const std::string& path, const TrainerCheckpoint& checkpoint,
                                   torch::optim::Optimizer& optimizer);
// Everything but the optimizer state, which the trainer reads itself from the
// "optimizer" archive once it has built the stage's optimizer.
absl::StatusOr<TrainerCheckpoint> LoadTrainerCheckpoint(const std::string& path);

}  // namespace graft::core
