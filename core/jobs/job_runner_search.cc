// JobRunner's search jobs and learning-rate range tests (the rest of the
// runner is in job_runner.cc).

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/jobs/job_runner.h"
#include "core/jobs/job_runner_run.h"
#include "core/jobs/training_data.h"
#include "core/train/job_cost.h"
#include "core/train/search.h"
#include "core/util/compute_threads.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"

namespace graft::core {


absl::StatusOr<LrCurve> JobRunner::FindLearningRate(JobSpec spec, const LrFindOptions& options, const Principal& by,
                                                    const std::function<bool()>& cancelled) {
  if (spec.has_search)
    return absl::InvalidArgumentError("spec.search: a range test tries one configuration; drop the search");
  spec.auto_learning_rate = false;
  RETURN_IF_ERROR(admission_.Admit(spec, by));
  ASSIGN_OR_RETURN(const SharedSlots::Slot slot, lr_finds_.Acquire(by.name));
  ASSIGN_OR_RETURN(JobData data, LoadJobData(datasets_, spec));
  CancellationToken token;
  const auto gone = [&] {
    absl::MutexLock lock(&mu_);
    return stopping_ || cancelled();
  };
  auto resident = zoo_.Resident(spec.backbone, gone);
  if (absl::IsUnavailable(resident.status())) {
    return absl::UnavailableError(absl::StrCat("backbone '", spec.backbone, "': ", resident.status().message(),
                                               "; try again once its weights are fetched"));
  }
  if (!resident.ok()) return resident.status();
  TrainInput input;
  input.spec = spec;
  input.resident = *resident;
  input.images = std::move(data.images);
  input.num_classes = static_cast<int>(data.dataset.classes.size());
  SetRunnerInputs(input);
  // The caller's cancel (or deadline) and a shutdown stop the test between batches.
  std::atomic<bool> finished{false};
  std::thread watcher([&] {
    while (!finished) {
      if (gone()) token.Cancel();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  absl::StatusOr<LrCurve> curve = absl::UnknownError("not run");
  {
    const ComputeTeam team;  // on this RPC thread, for the test's length
    curve = core::FindLearningRate(input, options, token);
  }
  finished = true;
  watcher.join();
  if (!curve.ok() && token.cancelled()) return absl::CancelledError("the range test was cancelled (the call ended)");
  return curve;
}

// A search's trials and feature passes as job events, from the trials' threads.
class JobRunner::SearchRun : public SearchEvents {
 public:
  SearchRun(JobRunner& runner, JobRecord& job) : runner_(runner), job_(job) {}
  void OnFeatures(const std::string& backbone, double seconds, const std::string& description) override {
    JobEvent e;
    e.type = JobEventType::kFeatures;
    e.reason = absl::StrCat(backbone, ": ", description, " in ", absl::SixDigits(seconds), " s");
    absl::MutexLock lock(&mu_);
    Log(runner_.Record(job_, e));
  }
  void OnFeatureProgress(const std::string& backbone, int batch, int batches) override {
    runner_.SetProgress(FeatureProgressEvent(job_.id, /*epoch=*/0, backbone, batch, batches));
  }
  void OnTrial(const TrialResult& trial) override {
    JobEvent e;
    e.type = JobEventType::kTrial;
    e.trial = trial;
    absl::MutexLock lock(&mu_);
    Log(runner_.Record(job_, e));
  }

 private:
  static void Log(const absl::StatusOr<JobEvent>& e) {
    if (!e.ok()) ABSL_LOG(ERROR) << "cannot record job event: " << e.status().message();
  }
  JobRunner& runner_;
  JobRecord& job_;
  absl::Mutex mu_;  // one event written at a time
};

void JobRunner::ExecuteSearch(JobRecord& job, const CancellationToken& token,
                              const std::function<void(JobState, const std::string&)>& fail) {
  const std::string id = job.id;
  if (job.state != JobState::kRunning) {
    if (auto s = SetState(job, JobState::kRunning, "started"); !s.ok())
      return fail(JobState::kFailed, std::string(s.message()));
  }
  auto data = LoadJobData(datasets_, job.spec);
  if (!data.ok()) return fail(JobState::kFailed, std::string(data.status().message()));
  const DatasetInfo* const dataset = &data->dataset;
  const std::vector<DatasetImage>* const images = &data->images;
  // Ends the job as a failed training does: a shutdown leaves it RUNNING to resume.
  const auto ended = [&](const absl::Status& s) {
    {
      absl::MutexLock lock(&mu_);
      if (LeftRunningLocked(id)) return;
    }
    fail(absl::IsCancelled(s) ? JobState::kCancelled : JobState::kFailed, std::string(s.message()));
  };
  // A candidate's weights may still be fetched: the search waits for them (RUNNING).
  const auto resident = [&](const std::string& name) -> absl::StatusOr<std::shared_ptr<ResidentBackbone>> {
    const auto cancelled = [&] { return token.cancelled(); };
    auto r = zoo_.Resident(name, cancelled);
    while (absl::IsUnavailable(r.status()) && !token.cancelled()) {
      zoo_.WaitForFetch(name, cancelled, std::chrono::milliseconds(200));
      r = zoo_.Resident(name, cancelled);
    }
    if (token.cancelled()) return absl::CancelledError("cancelled while a backbone's weights were fetched");
    return r;
  };
  TrainInput base;
  base.images = *images;
  base.num_classes = static_cast<int>(dataset->classes.size());
  SetRunnerInputs(base);
  // Each backbone's features held in memory count against the device memory
  // budget until the search ends.
  absl::Mutex charges_mu;
  std::vector<std::shared_ptr<DeviceLedger::Charge>> feature_charges;
  base.on_cache_in_memory = [&](int64_t bytes) {
    auto charge = zoo_.Charge(DeviceLedger::Kind::kJob, bytes);
    absl::MutexLock lock(&charges_mu);
    feature_charges.push_back(std::move(charge));
  };
  SearchInput search;
  search.spec = job.spec;
  search.backbones = job.spec.search.backbones;
  search.resident = resident;
  search.base = base;
  search.threads = options_.search_trials_at_once;
  search.fuse = options_.search_fuse_trials;
  if (auto events = jobs_.Events(id, 0); events.ok()) {
    for (const JobEvent& e : *events) {
      if (e.type == JobEventType::kTrial) search.done.push_back(e.trial);
    }
  }
  ABSL_LOG(INFO) << "job " << id << " searching " << search.backbones.size() << " backbone(s) on " << dataset->name
                 << (search.done.empty() ? "" : absl::StrCat("; ", search.done.size(), " trials done before"));
  SearchRun events(*this, job);
  auto outcome = RunSearch(search, token, events);
  feature_charges.clear();
  if (!outcome.ok()) return ended(outcome.status());
  // The winner's spec: its config in the first stage, the job's other stages after.
  JobSpec winner = TrialSpec(job.spec, outcome->winner.config, job.spec.stages[0].epochs);
  const StageSpec first = winner.stages[0];
  winner.stages = job.spec.stages;
  winner.stages[0] = first;
  winner.early_stopping.monitor = job.spec.early_stopping.monitor;
  winner.early_stopping.mode = job.spec.early_stopping.mode;
  TrainedModel trained = std::move(outcome->model);
  if (job.spec.stages.size() > 1) {  // fine-tuning on the winner, as any job trains
    auto backbone = resident(winner.backbone);
    if (!backbone.ok()) return ended(backbone.status());
    TrainInput input = base;
    input.spec = winner;
    input.resident = *backbone;
    input.checkpoint_path = CheckpointPath(id);
    input.checkpoint_interval_s = options_.checkpoint_interval_s;
    const auto cost = EstimateJobCost(winner, **backbone, base.num_classes);
    auto charge = zoo_.Charge(DeviceLedger::Kind::kJob, cost.ok() ? cost->total_bytes : 0);
    Run run(*this, job, dataset->train_images);
    auto tuned = Train(input, token, run);
    charge.reset();
    if (!tuned.ok()) return ended(tuned.status());
    trained = std::move(*tuned);
  }
  Publish(job, trained, winner, *dataset, *images, token, fail);
}

}  // namespace graft::core
