#include "core/jobs/job_runner.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/auth/policy.h"
#include "core/data/augment.h"
#include "core/data/split.h"
#include "core/eval/evaluator.h"
#include "core/jobs/job_runner_run.h"
#include "core/jobs/training_data.h"
#include "core/train/early_stopping.h"
#include "core/train/job_cost.h"
#include "core/util/limit_error.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace fs = std::filesystem;


JobRunner::JobRunner(JobStore& jobs, DatasetStore& datasets, ModelStore& models, const Zoo& zoo,
                     RunnerOptions options, JobObserver* observer)
    : jobs_(jobs),
      datasets_(datasets),
      models_(models),
      zoo_(zoo),
      options_(std::move(options)),
      observer_(observer),
      admission_(zoo, datasets, {options_.max_job_memory_bytes, options_.shared}),
      publisher_(zoo, models, options_.predictor),
      promoter_(models, datasets, options_.predictor),
      lr_finds_({"learning-rate range tests", options_.max_concurrent_jobs, "--max_concurrent_jobs",
                 options_.max_lr_finds_per_principal, "--max_lr_finds_per_principal"}) {}

JobRunner::~JobRunner() { Stop(); }

void JobRunner::SetRunnerInputs(TrainInput& input) const {
  input.feature_cache.memory_bytes = options_.feature_cache_bytes;
  input.feature_cache.spill_dir = options_.feature_spill_dir;
  input.feature_cache.half = options_.feature_cache_fp16;
  input.prefetch_batches = options_.decode_prefetch_batches;
  input.mixed_precision = options_.mixed_precision;
  input.zoo = &zoo_;
}

std::string JobRunner::CheckpointPath(const std::string& id) const {
  return (fs::path(options_.checkpoint_dir) / (id + ".ckpt")).string();
}

void JobRunner::Notify() { event_cv_.SignalAll(); }

void JobRunner::SetProgress(const JobEvent& e) {
  {
    absl::MutexLock lock(&mu_);
    progress_[e.job_id] = e;
  }
  Notify();
}

absl::StatusOr<JobEvent> JobRunner::Record(JobRecord& job, JobEvent event) {
  {
    // The live progress so far is older than this event: a watcher that sees
    // the event must not see that progress after it (a feature pass's last
    // batch after the pass's own event). Dropped before the event is stored.
    absl::MutexLock lock(&mu_);
    progress_.erase(job.id);
  }
  event.job_id = job.id;
  event.time = NowSeconds();
  ASSIGN_OR_RETURN(JobEvent stored, jobs_.Append(event));
  RETURN_IF_ERROR(jobs_.Update(job));
  Notify();
  return stored;
}

absl::Status JobRunner::SetState(JobRecord& job, JobState state, const std::string& reason, bool created) {
  const JobState from = job.state;
  job.state = state;
  if (state == JobState::kRunning && job.started_at == 0) job.started_at = NowSeconds();
  if (IsTerminal(state)) job.finished_at = NowSeconds();
  if (state == JobState::kFailed || state == JobState::kCancelled) job.error = reason;
  JobEvent e;
  e.type = JobEventType::kState;
  e.state = state;
  e.reason = reason;
  // The event is stored before the record says the job ended, so that a
  // watcher that sees the end has every event.
  e.job_id = job.id;
  e.time = NowSeconds();
  ASSIGN_OR_RETURN(const JobEvent stored, jobs_.Append(e));
  (void)stored;
  RETURN_IF_ERROR(jobs_.Update(job));
  Notify();
  if (observer_ && (created || from != state)) {
    observer_->OnJobState(created ? std::nullopt : std::optional<JobState>(from), state);
  }
  return absl::OkStatus();
}

absl::StatusOr<JobRecord> JobRunner::Submit(JobSpec spec, const Principal& by) {
  if (spec.has_search) {
    // What every candidate shares is checked once, before any candidate: the
    // dataset's error is the dataset's, not the first backbone's.
    if (!spec.dataset.empty()) RETURN_IF_ERROR(admission_.DatasetFor(spec, by).status());
    // Every candidate is checked as if the job were on it alone; the list is
    // stored resolved (canonical names, no repeats), so a restart runs the same.
    std::vector<std::string>& names = spec.search.backbones;
    if (names.size() > 64) return absl::InvalidArgumentError("spec.search.backbones: at most 64 values");
    if (names.empty()) {
      for (const BackboneStatus& b : zoo_.List()) {
        if (b.weights_present) names.push_back(b.spec->name);
      }
      if (names.empty()) {
        return absl::FailedPreconditionError("spec.search.backbones: empty, and no backbone has weights to search over");
      }
    }
    std::vector<std::string> resolved;
    JobSpec checked;
    for (size_t i = 0; i < names.size(); ++i) {
      JobSpec one = spec;
      one.backbone = names[i];
      one.search.backbones = {names[i]};
      if (auto s = admission_.Admit(one, by); !s.ok()) {
        return Rephrased(s.code(), absl::StrCat("spec.search.backbones[", i, "] ('", names[i], "'): ", s.message()), s);
      }
      if (std::find(resolved.begin(), resolved.end(), one.backbone) == resolved.end()) resolved.push_back(one.backbone);
      if (i == 0) checked = std::move(one);
    }
    checked.search.backbones = resolved;
    checked.backbone.clear();
    RETURN_IF_ERROR(CheckSearchSize(checked, resolved.size()));
    spec = std::move(checked);
  } else {
    RETURN_IF_ERROR(admission_.Admit(spec, by));
  }

  JobRecord job;
  job.id = NewId("job");
  job.owner = by.name;
  job.spec = spec;
  job.created_at = NowSeconds();
  job.epochs_total = spec.TotalEpochs();
  {
    absl::MutexLock lock(&mu_);
    // The queue is the database's: every process counts the same jobs.
    ASSIGN_OR_RETURN(const auto queued, jobs_.CountQueued(by.name));
    if (queued.first >= options_.max_queued_jobs) {
      return LimitError(absl::StatusCode::kResourceExhausted,
                        absl::StrCat("the job queue is full (", queued.first,
                                     " jobs waiting, --max_queued_jobs); try again when one has started"),
                        "max_queued_jobs");
    }
    if (queued.second >= options_.max_queued_jobs_per_principal) {
      return LimitError(absl::StatusCode::kResourceExhausted,
                        absl::StrCat("principal '", by.name, "' already has ", queued.second,
                                     " queued jobs (--max_queued_jobs_per_principal); try again when one has started"),
                        "max_queued_jobs_per_principal");
    }
    RETURN_IF_ERROR(jobs_.Insert(job));
    RETURN_IF_ERROR(SetState(job, JobState::kQueued, "submitted", /*created=*/true));
    wake_ = true;
  }
  work_cv_.SignalAll();
  return job;
}

std::string JobRunner::Promote(JobRecord& job, const ModelInfo& model, const Caller& caller) {
  if (!job.spec.has_promotion) return "";
  JobEvent e;
  e.type = JobEventType::kPromotion;
  e.promotion = promoter_.Decide(job.spec, model, caller);
  ABSL_LOG(INFO) << "job " << job.id << ": " << e.promotion.reason;
  if (observer_) observer_->OnPromotion(e.promotion);
  if (auto s = Record(job, e); !s.ok()) ABSL_LOG(ERROR) << "job " << job.id << ": " << s.status().message();
  return absl::StrCat("; ", e.promotion.promoted ? "promoted: " : "not promoted: ", e.promotion.reason);
}

absl::StatusOr<JobRecord> JobRunner::Retrain(const RetrainRequest& request, const Principal& by) {
  ASSIGN_OR_RETURN(JobSpec spec, RetrainSpec(models_, request, by));
  return Submit(std::move(spec), by);
}

bool JobRunner::DatasetInUse(const std::string& dataset_id) {
  for (JobState s : {JobState::kQueued, JobState::kRunning}) {
    auto jobs = jobs_.List(s);
    if (!jobs.ok()) return true;
    for (const auto& j : *jobs) {
      if (j.spec.dataset == dataset_id) return true;
      const auto& added = j.spec.add_datasets;
      if (std::find(added.begin(), added.end(), dataset_id) != added.end()) return true;
      if (j.spec.has_promotion && j.spec.promotion.holdout == dataset_id) return true;
    }
  }
  return false;
}

absl::StatusOr<std::shared_ptr<ResidentBackbone>> JobRunner::AwaitWeights(JobRecord& job, const std::string& name,
                                                                           const CancellationToken& token) {
  // A backbone whose weights are fetched on first use: the job stays QUEUED,
  // saying how far the fetch is (every 10%), until they are resident.
  const auto cancelled = [&] { return token.cancelled(); };
  auto resident = zoo_.Resident(name, cancelled);
  for (int said = -1; absl::IsUnavailable(resident.status());) {
    if (token.cancelled()) return absl::CancelledError("cancelled while its backbone's weights were fetched");
    const FetchProgress p = zoo_.Fetching(name);
    if (p.running && p.percent() / 10 != said) {
      said = p.percent() / 10;
      (void)SetState(job, JobState::kQueued, absl::StrCat("fetching weights (", p.percent(), "%)"));
    }
    zoo_.WaitForFetch(name, cancelled, std::chrono::milliseconds(200));
    resident = zoo_.Resident(name, cancelled);
  }
  return resident;
}

void JobRunner::Execute(const JobStore::Claim& claim) {
  const std::string& id = claim.id;
  auto loaded = jobs_.Get(id);
  if (!loaded.ok()) {
    ABSL_LOG(ERROR) << "job " << id << ": " << loaded.status().message();
    return;
  }
  JobRecord job = *loaded;
  std::shared_ptr<CancellationToken> token;
  {
    absl::MutexLock lock(&mu_);
    token = running_[id];
  }
  if (job.state == JobState::kRunning && !Resume(job, claim)) return;
  // The checkpoint goes before the end is announced: an ended job has none.
  auto fail = [&](JobState state, const std::string& why) {
    std::error_code ec;
    fs::remove(CheckpointPath(id), ec);
    if (auto s = SetState(job, state, why); !s.ok()) ABSL_LOG(ERROR) << "job " << id << ": " << s.message();
  };
  if (job.spec.has_search) return ExecuteSearch(job, *token, fail);
  auto resident = AwaitWeights(job, job.spec.backbone, *token);
  if (absl::IsCancelled(resident.status())) {
    {
      absl::MutexLock lock(&mu_);
      if (LeftRunningLocked(id)) return;  // still QUEUED: fetched again by whoever runs it next
    }
    return fail(JobState::kCancelled, "cancelled while its backbone's weights were fetched");
  }
  if (job.state != JobState::kRunning) {
    if (auto s = SetState(job, JobState::kRunning, "started"); !s.ok()) return fail(JobState::kFailed, std::string(s.message()));
  }
  if (!resident.ok()) return fail(JobState::kFailed, std::string(resident.status().message()));
  TrainInput input;
  input.resident = *resident;
  DatasetInfo dataset;
  if (auto s = FillInput(job, input, dataset); !s.ok()) return fail(JobState::kFailed, std::string(s.message()));
  // The job's estimate is held in the device memory budget while it trains.
  const auto cost = EstimateJobCost(job.spec, **resident, input.num_classes);
  auto charge = zoo_.Charge(DeviceLedger::Kind::kJob, cost.ok() ? cost->total_bytes : 0);
  std::shared_ptr<DeviceLedger::Charge> cache_charge;  // its feature cache, when held in memory
  input.on_cache_in_memory = [&](int64_t bytes) { cache_charge = zoo_.Charge(DeviceLedger::Kind::kJob, bytes); };
  Run run(*this, job, dataset.train_images);
  ABSL_LOG(INFO) << "job " << id << " running: " << job.spec.backbone << " on " << dataset.name;
  auto trained = job.spec.workers > 1 ? TrainInGroup(job, input, *token, run) : Train(input, *token, run);
  charge.reset();  // training is over: before the job is seen to end
  cache_charge.reset();
  if (!trained.ok()) {
    {
      absl::MutexLock lock(&mu_);
      if (LeftRunningLocked(id)) return;  // stays RUNNING; resumes from its checkpoint
    }
    const bool cancelled = trained.status().code() == absl::StatusCode::kCancelled;
    return fail(cancelled ? JobState::kCancelled : JobState::kFailed, std::string(trained.status().message()));
  }
  Publish(job, *trained, job.spec, dataset, input.images, *token, fail);
}

absl::Status JobRunner::FillInput(const JobRecord& job, TrainInput& input, DatasetInfo& dataset) {
  input.spec = job.spec;
  input.checkpoint_path = CheckpointPath(job.id);
  input.checkpoint_interval_s = options_.checkpoint_interval_s;
  SetRunnerInputs(input);
  ASSIGN_OR_RETURN(JobData data, LoadJobData(datasets_, job.spec));
  dataset = std::move(data.dataset);
  input.images = std::move(data.images);
  input.num_classes = static_cast<int>(dataset.classes.size());
  return absl::OkStatus();
}

void JobRunner::Publish(JobRecord& job, const TrainedModel& trained, const JobSpec& model_spec,
                        const DatasetInfo& dataset, const std::vector<DatasetImage>& images,
                        const CancellationToken& token, const std::function<void(JobState, const std::string&)>& fail) {
  const std::string id = job.id;
  auto events = jobs_.Events(id, 0);
  if (!events.ok()) {
    ABSL_LOG(ERROR) << "job " << id << ": the model is published without its learning curves: "
                    << events.status().message();
  }
  auto prepared = publisher_.Prepare(job, trained, model_spec, dataset, images,
                                     events.ok() ? *events : std::vector<JobEvent>{},
                                     Caller([&token]() { return token.cancelled(); }, job.owner));
  if (!prepared.ok()) return fail(JobState::kFailed, std::string(prepared.status().message()));
  if (prepared->evaluation_cancelled) {
    {
      absl::MutexLock lock(&mu_);
      if (LeftRunningLocked(id)) return;  // resumes after the last epoch and evaluates then
    }
    return fail(JobState::kCancelled, "cancelled while evaluating the model");
  }
  // A trainer that stalled past --job_takeover_s has lost the job to another:
  // only the holder publishes.
  if (auto holder = jobs_.WorkerOf(id); holder.ok() && *holder != options_.worker_id) {
    ABSL_LOG(WARNING) << "job " << id << " is now held by " << *holder << "; not publishing it here";
    return;
  }
  auto published = publisher_.Publish(*prepared, trained);
  if (!published.ok()) return fail(JobState::kFailed, std::string(published.status().message()));
  if (observer_) observer_->OnModelsChanged(models_.size());
  // Recorded before the checkpoint goes: a restart in between finds the model
  // and ends the job SUCCEEDED instead of resuming it.
  job.model_id = published->id;
  if (auto s = jobs_.Update(job); !s.ok()) ABSL_LOG(ERROR) << "job " << id << ": " << s.message();
  std::error_code ec;
  fs::remove(CheckpointPath(id), ec);
  std::string reason = "model " + published->id + " published";
  // After the model is stored (a failed decision leaves it a version) and
  // before the job ends (a watcher that sees the end has the decision).
  reason += Promote(job, *published, Caller([&token]() { return token.cancelled(); }, job.owner));
  if (auto s = SetState(job, JobState::kSucceeded, reason); !s.ok()) {
    ABSL_LOG(ERROR) << "job " << id << ": " << s.message();
  }
}

absl::Status JobRunner::Watch(const std::string& id, bool progress, const std::function<bool(const JobEvent&)>& emit,
                              const std::function<bool()>& alive, int64_t after_seq) {
  RETURN_IF_ERROR(jobs_.Get(id).status());
  if (after_seq < 0) return absl::InvalidArgumentError(absl::StrCat("from_seq must be >= 0, got ", after_seq));
  int64_t last_seq = after_seq;
  JobEvent last_progress;
  while (true) {
    ASSIGN_OR_RETURN(const JobRecord job, jobs_.Get(id));
    ASSIGN_OR_RETURN(const auto events, jobs_.Events(id, last_seq));
    for (const JobEvent& e : events) {
      if (!emit(e)) return absl::OkStatus();
      last_seq = e.seq;
    }
    if (IsTerminal(job.state)) return absl::OkStatus();
    std::optional<JobEvent> live;
    if (progress) {
      absl::MutexLock lock(&mu_);
      const auto it = progress_.find(id);
      if (it != progress_.end() && (it->second.epoch_number != last_progress.epoch_number ||
                                    it->second.batch != last_progress.batch ||
                                    it->second.backbone != last_progress.backbone)) {
        last_progress = it->second;
        live = last_progress;
        live->seq = last_seq;
      }
    }
    if (live && !emit(*live)) return absl::OkStatus();  // emitted without the lock
    if (!alive()) return absl::CancelledError("the watcher went away");
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return absl::UnavailableError(
          "graftd is shutting down; watch again once it is back (from_seq = the last seq seen resumes there)");
    }
    event_cv_.WaitWithTimeout(&mu_, absl::Milliseconds(250));
  }
}

}  // namespace graft::core
