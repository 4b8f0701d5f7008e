#include "core/train/stage_loop.h"

#include <cmath>

#include "core/train/early_stopping.h"
#include "core/util/status_macros.h"

namespace graft::core {

int EpochToRestore(bool restore_best, int best_epoch, int last_epoch) {
  return (restore_best && best_epoch > 0 && best_epoch != last_epoch) ? best_epoch : 0;
}

absl::StatusOr<StagesResult> RunStages(const JobSpec& spec, EpochRunner& runner, TrainEvents& events,
                                       const TrainerCheckpoint* resume, bool save_checkpoints) {
  StagesResult out;
  // The job's best across stages is published unless restore-best is off or
  // per stage; each stage still starts from its predecessor's best.
  const bool by_job = spec.early_stopping.restore_best && !spec.early_stopping.restore_per_stage;
  JobBest job_best = resume != nullptr ? resume->job_best : JobBest{};
  int loaded_epoch = 0;  // whose weights the runner holds after the last stage
  int epoch = 0;
  for (size_t stage = 0; stage < spec.stages.size(); ++stage) {
    const StageSpec& st = spec.stages[stage];
    const int first_epoch_of_stage = epoch + 1;
    epoch += st.epochs;
    if (resume != nullptr && stage < resume->stage) continue;  // finished before the restart
    const bool resumed_here = resume != nullptr && stage == resume->stage;
    RETURN_IF_ERROR(runner.BeginStage(stage, resumed_here));
    EarlyStopping stopper(spec.early_stopping);
    StateDict best_state;
    EpochMetrics best_metrics, last_metrics;
    int start_in_stage = 0;
    EpochResume within;
    if (resumed_here) {
      stopper.Restore(resume->stopper);
      best_state = resume->best_weights;
      best_metrics = resume->best_metrics;
      last_metrics = resume->last_metrics;
      start_in_stage = resume->stopped ? st.epochs : resume->epoch - first_epoch_of_stage + 1;
      if (resume->batches_done > 0) {  // within resume->epoch: run the rest of it
        start_in_stage = resume->epoch - first_epoch_of_stage;
        within = EpochResume{resume->batches_done, resume->partial_loss_sum, resume->partial_correct,
                             resume->partial_seen};
      }
      out.final_metrics = resume->last_metrics;
      resume = nullptr;
    }
    int last_epoch = first_epoch_of_stage - 1 + start_in_stage;
    bool stopped = false;
    // The stage's state as of the last finished epoch: a checkpoint within
    // the next one stores it beside that epoch's weights so far.
    const auto checkpoint = [&](int at_epoch) {
      TrainerCheckpoint save;
      save.stage = stage;
      save.epoch = at_epoch;
      save.weights = runner.State();
      save.best_weights = best_state;
      save.stopper = stopper.state();
      save.best_metrics = best_metrics;
      save.last_metrics = last_metrics;
      save.job_best = job_best;
      return save;
    };
    for (int e = start_in_stage; e < st.epochs && !stopped; ++e) {
      const int global = first_epoch_of_stage + e;
      const EpochRunner::SaveWithin save_within = [&](const EpochResume& done) -> absl::Status {
        TrainerCheckpoint save = checkpoint(global);
        save.batches_done = done.batches_done;
        save.partial_loss_sum = done.loss_sum;
        save.partial_correct = done.correct;
        save.partial_seen = done.seen;
        RETURN_IF_ERROR(runner.SaveCheckpoint(save));
        events.OnCheckpoint(global, done.batches_done);
        return absl::OkStatus();
      };
      ASSIGN_OR_RETURN(EpochMetrics metrics, runner.RunEpoch(stage, e, global, within, save_within));
      last_metrics = metrics;
      within = EpochResume{};
      last_epoch = global;
      events.OnEpoch(last_metrics);
      const double value = MonitoredValue(last_metrics, spec.early_stopping.monitor);
      const auto decision = stopper.Update(global, value);
      if (decision.improved) {
        best_state = runner.State();
        best_metrics = last_metrics;
      }
      if (by_job && std::isfinite(value) && (job_best.epoch == 0 || stopper.Improves(value, job_best.value))) {
        job_best = JobBest{global, static_cast<int>(stage) + 1, value, last_metrics,
                           decision.improved ? best_state : runner.State()};
      }
      if (decision.stop) {
        events.OnEarlyStop(global, stopper.state().best_epoch, stopper.state().best);
        stopped = true;
      }
      if (!save_checkpoints) continue;
      TrainerCheckpoint save = checkpoint(global);
      save.stopped = stopped;
      RETURN_IF_ERROR(runner.SaveCheckpoint(save));
      events.OnCheckpoint(global, 0);
    }
    out.final_metrics = last_metrics;
    out.best_metrics = best_metrics;
    const int restore = EpochToRestore(spec.early_stopping.restore_best, stopper.state().best_epoch, last_epoch);
    out.restored_best = spec.early_stopping.restore_best;
    if (restore > 0) {
      RETURN_IF_ERROR(runner.LoadState(best_state));
      events.OnBestRestored(BestRestored{restore, static_cast<int>(stage) + 1, false, stopper.state().best});
    }
    loaded_epoch = restore > 0 ? restore : last_epoch;
  }
  // A later stage that never beat an earlier one's best leaves that best.
  if (by_job && job_best.epoch > 0) {
    if (job_best.epoch != loaded_epoch) {
      RETURN_IF_ERROR(runner.LoadState(job_best.weights));
      events.OnBestRestored(BestRestored{job_best.epoch, job_best.stage, true, job_best.value});
    }
    out.best_metrics = job_best.metrics;
    out.restored_best = true;
  }
  return out;
}

}  // namespace graft::core
