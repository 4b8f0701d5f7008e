#pragma once

// JobRunner::Run, shared by job_runner.cc and job_runner_search.cc: a
// training run's callbacks as stored job events and job updates.

#include "core/jobs/job_runner.h"
#include "core/train/early_stopping.h"
#include "core/util/log.h"

namespace graft::core {

// A live progress event of a feature pass (not stored; JobRunner::SetProgress).
inline JobEvent FeatureProgressEvent(const std::string& job_id, int epoch, const std::string& backbone, int batch,
                                     int batches) {
  JobEvent e;
  e.job_id = job_id;
  e.type = JobEventType::kProgress;
  e.epoch_number = epoch;
  e.batch = batch;
  e.batches = batches;
  e.backbone = backbone;
  return e;
}

// Turns a training run's callbacks into stored events and job updates.
class JobRunner::Run : public TrainEvents {
 public:
  Run(JobRunner& runner, JobRecord& job, int64_t train_images)
      : runner_(runner), job_(job), train_images_(train_images), best_(job.spec.early_stopping) {
    if (job.best) best_.Update(job.best->epoch, Monitored(*job.best));
  }

  void OnEpoch(const EpochMetrics& m) override {
    job_.epochs_done = m.epoch;
    job_.last = m;
    if (best_.Update(m.epoch, Monitored(m)).improved) job_.best = m;
    JobEvent e;
    e.type = JobEventType::kEpoch;
    e.epoch = m;
    e.epoch_number = m.epoch;
    Log(runner_.Record(job_, e));
    if (runner_.observer_) runner_.observer_->OnEpoch(job_, m, train_images_);
  }
  void OnProgress(int epoch, int batch, int batches) override {
    JobEvent e;
    e.job_id = job_.id;
    e.type = JobEventType::kProgress;
    e.epoch_number = epoch;
    e.batch = batch;
    e.batches = batches;
    runner_.SetProgress(e);
  }
  void OnFeatureProgress(const std::string& backbone, int batch, int batches) override {
    runner_.SetProgress(FeatureProgressEvent(job_.id, job_.epochs_done + 1, backbone, batch, batches));
  }
  void OnEarlyStop(int epoch, int best_epoch, double best_value) override {
    JobEvent e;
    e.type = JobEventType::kEarlyStop;
    e.epoch_number = epoch;
    e.best_epoch = best_epoch;
    e.best_value = best_value;
    Log(runner_.Record(job_, e));
  }
  void OnBestRestored(const BestRestored& restored) override {
    JobEvent e;
    e.type = JobEventType::kBestRestored;
    e.epoch_number = restored.epoch;
    e.stage = restored.stage;
    e.across_stages = restored.across_stages;
    e.best_value = restored.value;
    Log(runner_.Record(job_, e));
  }
  void OnLearningRateFound(const LrCurve& curve) override {
    JobEvent e;
    e.type = JobEventType::kLearningRate;
    e.lr_curve = curve;
    Log(runner_.Record(job_, e));
  }
  void OnCheckpoint(int epoch, int batch) override {
    JobEvent e;
    e.type = JobEventType::kCheckpoint;
    e.epoch_number = epoch;
    e.batch = batch;
    Log(runner_.Record(job_, e));
  }

 private:
  // Before this was MonitoredValue, a val_macro_f1 monitor read val_loss
  // here: the job's best epoch was the one of highest loss.
  double Monitored(const EpochMetrics& m) const { return MonitoredValue(m, job_.spec.early_stopping.monitor); }
  static void Log(const absl::StatusOr<JobEvent>& e) {
    if (!e.ok()) ABSL_LOG(ERROR) << "cannot record job event: " << e.status().message();
  }

  JobRunner& runner_;
  JobRecord& job_;
  int64_t train_images_;
  EarlyStopping best_;
};

}  // namespace graft::core
