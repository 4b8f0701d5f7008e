#pragma once

// The stage and epoch loop of a training run, apart from what an epoch does:
// each stage's epochs in turn, early stopping on the monitored figure, the
// stage's best weights restored at its end, the job's best across stages
// restored at the end (restore_best by job), a checkpoint after every epoch,
// and a resume from a checkpoint (after a finished epoch, or within one).
// The model and its epochs are an EpochRunner: the trainer in production, a
// script of figures in tests.

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/train/job_spec.h"
#include "core/train/trainer.h"
#include "core/train/trainer_checkpoint.h"
#include "core/zoo/state_dict.h"

namespace graft::core {

// Where an epoch starts: at its first batch, or after the batches a
// mid-epoch checkpoint holds, with their running sums.
struct EpochResume {
  int batches_done = 0;
  double loss_sum = 0, correct = 0, seen = 0;
};

class EpochRunner {
 public:
  virtual ~EpochRunner() = default;
  // Makes stage `stage`'s trainable set and optimizer; `restore_optimizer`:
  // the optimizer's state as the checkpoint being resumed holds it.
  virtual absl::Status BeginStage(size_t stage, bool restore_optimizer) = 0;
  // A checkpoint within the epoch running, after `done` batches (the loop
  // fills in the stage's state as of the epoch before).
  using SaveWithin = std::function<absl::Status(const EpochResume& done)>;
  // Trains epoch `epoch` (1-based across stages; `epoch_in_stage` 0-based)
  // from `resume` and validates it.
  virtual absl::StatusOr<EpochMetrics> RunEpoch(size_t stage, int epoch_in_stage, int epoch,
                                                const EpochResume& resume, const SaveWithin& save_within) = 0;
  // The trained weights now, and setting them.
  virtual StateDict State() = 0;
  virtual absl::Status LoadState(const StateDict& state) = 0;
  // Writes `checkpoint` with the stage's optimizer state.
  virtual absl::Status SaveCheckpoint(const TrainerCheckpoint& checkpoint) = 0;
};

struct StagesResult {
  EpochMetrics final_metrics;  // the last epoch run
  EpochMetrics best_metrics;   // the best by the monitor (the job's, restore_best by job)
  bool restored_best = false;  // the runner holds the best epoch's weights
};

// The epoch whose weights must be loaded at the end of a stage: the best epoch
// when restoring is on and it is not the last epoch run; 0 otherwise.
int EpochToRestore(bool restore_best, int best_epoch, int last_epoch);

// Runs `spec`'s stages on `runner`. `resume` (may be null): a checkpoint
// whose weights the runner already holds; the stages and epochs it finished
// are not run again. `save_checkpoints`: a checkpoint after every epoch (a
// search's trials and a data-parallel group's ranks but the first save none).
absl::StatusOr<StagesResult> RunStages(const JobSpec& spec, EpochRunner& runner, TrainEvents& events,
                                       const TrainerCheckpoint* resume, bool save_checkpoints);

}  // namespace graft::core
