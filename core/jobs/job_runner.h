#pragma once

#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/auth/token_store.h"
#include "core/data/dataset_store.h"
#include "core/jobs/admission.h"
#include "core/jobs/job_store.h"
#include "core/jobs/promotion.h"
#include "core/jobs/publisher.h"
#include "core/util/shared_slots.h"
#include "core/serve/model_store.h"
#include "core/zoo/zoo.h"

namespace graft::core {

class Predictor;

// Hooks for metrics; called on runner threads.
class JobObserver {
 public:
  virtual ~JobObserver() = default;
  // `from` is empty for a job just created.
  virtual void OnJobState(std::optional<JobState> from, JobState to) {}
  virtual void OnEpoch(const JobRecord& job, const EpochMetrics& m, int64_t train_images) {}
  virtual void OnModelsChanged(size_t count) {}
  // A user cancelled a job this process runs: its trainer stops at the next
  // batch boundary (called on the cancelling thread, after the token tripped).
  virtual void OnCancelRequested(const std::string& job_id) {}
  // Data-parallel: one all-reduce of this process's rank (any rank).
  virtual void OnAllReduce(double seconds, int64_t bytes) {}
  // A group this process led (rank 0) ended: "done", "failed" (a rank died,
  // stalled or stopped: reopened or given up), "too_few_trainers",
  // "cancelled", "stopped" (this process shut down) or "job_error" (the
  // training itself failed: a diverged loss, an unreadable image).
  virtual void OnGroupEnded(const std::string& outcome) {}
  // A job's promotion was decided (spec.promotion).
  virtual void OnPromotion(const PromotionResult& result) {}
};

struct RunnerOptions {
  int max_concurrent_jobs = 1;
  int max_queued_jobs = 16;
  int max_queued_jobs_per_principal = 4;  // QUEUED jobs one principal may hold
  // Learning-rate range tests at once (max_concurrent_jobs of them) that one
  // principal may hold (--max_lr_finds_per_principal).
  int max_lr_finds_per_principal = 1;
  // When a trainer picks its next queued job it takes the oldest of the
  // principal with the fewest running jobs, and never one of a principal
  // already running this many (--max_running_jobs_per_principal; 0: no cap).
  int max_running_jobs_per_principal = 0;
  int64_t max_job_memory_bytes = 8LL << 30;  // a job's estimated cost (EstimateJobCost) at Submit
  // A RUNNING job whose trainer ended without releasing it (a crash, an
  // out-of-memory kill, a lost node) more often than this is failed with the
  // reason instead of resumed again (the crash-loop guard).
  int max_job_restarts = 2;
  std::string checkpoint_dir;
  double checkpoint_interval_s = 300;  // mid-epoch checkpoints (TrainInput::checkpoint_interval_s)
  int64_t feature_cache_bytes = 2LL << 30;  // per job, in memory
  std::string feature_spill_dir;             // beyond it; empty: recompute instead
  bool feature_cache_fp16 = true;
  int decode_prefetch_batches = 2;  // TrainInput::prefetch_batches
  int search_trials_at_once = 0;    // SearchInput::threads
  bool search_fuse_trials = true;   // SearchInput::fuse
  bool mixed_precision = true;  // CUDA only (TrainInput::mixed_precision)
  // The shared queue. `train`: this process runs jobs (--train); a serving
  // process only queues them. `shared`: other processes use the database
  // (PostgreSQL): a start releases only this worker's jobs and checkpoints
  // of others' jobs are kept. `worker_id` names this trainer in the
  // database (--worker_id); heartbeats every `heartbeat_s`; a job whose
  // worker has not heartbeaten for `takeover_s` is claimed by another;
  // idle workers look for work every `poll_s`.
  bool train = true;
  bool shared = false;
  std::string worker_id = "local";
  double heartbeat_s = 2;
  double takeover_s = 15;
  double poll_s = 1;
  // Data-parallel jobs (JobSpec::workers > 1): the address this trainer's
  // rendezvous and Gloo connections listen on (--dist_host), the
  // rendezvous port (--dist_port, 0: any free one), and how long joining a
  // group and each collective may take (--dist_timeout_s).
  std::string dist_host = "127.0.0.1";
  int dist_port = 0;
  double dist_timeout_s = 300;
  // Evaluates each trained model on its job's validation split through the
  // serving path before publishing it (the report stored with the model).
  // Null: no report.
  const Predictor* predictor = nullptr;
};

// Runs fine-tuning jobs: a bounded queue kept in the database and shared by
// every trainer process on it, `max_concurrent_jobs` workers per process,
// cooperative cancellation (also of jobs another process runs), events
// appended to the job store (WatchJob replays them, then follows live), and
// recovery: a job that was RUNNING when its trainer restarted, or stopped
// heartbeating, resumes from its last checkpoint or fails.
class JobRunner {
 public:
  JobRunner(JobStore& jobs, DatasetStore& datasets, ModelStore& models, const Zoo& zoo, RunnerOptions options,
            JobObserver* observer);
  ~JobRunner();

  // Recovers jobs left by a previous process and starts the workers.
  absl::Status Start();
  // Starts stopping without waiting: running jobs checkpoint at their next
  // batch boundary, watchers end with UNAVAILABLE, nothing new starts.
  void RequestStop();
  // RequestStop, then waits for the workers; running jobs stay RUNNING with
  // their checkpoints and resume on the next Start.
  void Stop();

  // A job owned by `by`, on a dataset `by` owns (any dataset for an admin).
  absl::StatusOr<JobRecord> Submit(JobSpec spec, const Principal& by);
  // A job with a model's own spec on its data plus more (core/jobs/promotion.h).
  absl::StatusOr<JobRecord> Retrain(const RetrainRequest& request, const Principal& by);
  absl::StatusOr<JobRecord> Cancel(const std::string& id);
  absl::StatusOr<JobRecord> Get(const std::string& id) { return jobs_.Get(id); }
  absl::StatusOr<std::vector<JobRecord>> List(std::optional<JobState> state) { return jobs_.List(state); }

  // Sends every stored event after `after_seq`, then new ones as they come,
  // until the job ends (returns OK), `emit` returns false or `alive` turns
  // false (CANCELLED). With `progress`, live per-batch progress is sent too
  // (never stored; it carries the seq of the last stored event sent).
  absl::Status Watch(const std::string& id, bool progress, const std::function<bool(const JobEvent&)>& emit,
                     const std::function<bool()>& alive, int64_t after_seq = 0);

  // Every stored event of the job (GetJob's leaderboard).
  absl::StatusOr<std::vector<JobEvent>> Events(const std::string& id) { return jobs_.Events(id, 0); }

  // The learning-rate range test for `spec` (checked as Submit checks a job:
  // backbone, dataset ownership, limits), run now on the caller's thread
  // until it ends or `cancelled` turns true; at most --max_concurrent_jobs
  // at once (RESOURCE_EXHAUSTED beyond).
  absl::StatusOr<LrCurve> FindLearningRate(JobSpec spec, const LrFindOptions& options, const Principal& by,
                                           const std::function<bool()>& cancelled);

  // A job queued or running uses the dataset.
  bool DatasetInUse(const std::string& dataset_id);

 private:
  class Run;
  class SearchRun;
  void Worker();
  void Execute(const JobStore::Claim& claim);
  // Data-parallel (job_runner_group.cc). The job's holder is rank 0: it
  // opens a group, waits for workers-1 trainers to join and trains with
  // them; a group that fails (a rank died or stopped) is opened again and
  // resumes from rank 0's checkpoint, up to kGroupAttempts times.
  absl::StatusOr<TrainedModel> TrainInGroup(JobRecord& job, TrainInput& input, const CancellationToken& token,
                                            TrainEvents& events);
  // Another trainer's rank: the job's inputs, silent, no checkpoints.
  void ExecuteRank(const JobStore::RankClaim& claim);
  // GroupOptions::on_all_reduce for the observer (null without one).
  std::function<void(double, int64_t)> AllReduceObserver() const;
  // The job's training input from its dataset (FAILED_PRECONDITION and the
  // like when the dataset went away); `classes` gets its class count.
  absl::Status FillInput(const JobRecord& job, TrainInput& input, DatasetInfo& dataset);
  bool Resume(JobRecord& job, const JobStore::Claim& claim);
  // Fails job `id` with what escaped its run.
  void FailAfterException(const std::string& id, const std::exception& e);
  void HeartbeatLoop();
  // A run that ends now leaves its job RUNNING (a shutdown, or another
  // trainer took it over) unless the user cancelled it. Holds mu_.
  bool LeftRunningLocked(const std::string& id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A search job: the trials, then the winner's fine-tuning stages, if any.
  void ExecuteSearch(JobRecord& job, const CancellationToken& token,
                     const std::function<void(JobState, const std::string&)>& fail);
  // Evaluates and publishes a trained model (`model_spec`: what trained it).
  void Publish(JobRecord& job, const TrainedModel& trained, const JobSpec& model_spec, const DatasetInfo& dataset,
               const std::vector<DatasetImage>& images, const CancellationToken& token,
               const std::function<void(JobState, const std::string&)>& fail);
  // The job's backbone, waiting QUEUED (with progress events) while its
  // weights are fetched and for memory under the budget; CANCELLED when the
  // token trips meanwhile.
  absl::StatusOr<std::shared_ptr<ResidentBackbone>> AwaitWeights(JobRecord& job, const std::string& name,
                                                                  const CancellationToken& token);
  absl::StatusOr<JobEvent> Record(JobRecord& job, JobEvent event);
  // spec.promotion's decision on the job's published model, recorded as an
  // event; "; promoted: ..." or "; not promoted: ..." for the end state's
  // reason ("" without a promotion).
  std::string Promote(JobRecord& job, const ModelInfo& model, const Caller& caller);
  absl::Status SetState(JobRecord& job, JobState state, const std::string& reason, bool created = false);
  void Notify();
  // Live progress (not stored): what watchers asking for progress see next.
  void SetProgress(const JobEvent& e);
  std::string CheckpointPath(const std::string& id) const;
  // What the runner's options say of every training input: the feature
  // cache, decode prefetch, mixed precision.
  void SetRunnerInputs(TrainInput& input) const;

  JobStore& jobs_;
  DatasetStore& datasets_;
  ModelStore& models_;
  const Zoo& zoo_;
  RunnerOptions options_;
  JobObserver* observer_;
  const JobAdmission admission_;
  const ModelPublisher publisher_;
  const Promoter promoter_;

  absl::Mutex mu_;
  absl::CondVar work_cv_;   // queue changes
  absl::CondVar event_cv_;  // any job event
  bool wake_ ABSL_GUARDED_BY(mu_) = false;  // a job was submitted here
  std::map<std::string, std::shared_ptr<CancellationToken>> running_ ABSL_GUARDED_BY(mu_);
  // Job id -> this trainer's rank > 0 in it.
  std::map<std::string, std::shared_ptr<CancellationToken>> ranks_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> lost_ ABSL_GUARDED_BY(mu_);  // running here, but another trainer holds them now
  std::map<std::string, JobEvent> progress_ ABSL_GUARDED_BY(mu_);  // latest live progress per job
  std::set<std::string> user_cancelled_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  SharedSlots lr_finds_;  // range tests running
  std::vector<std::thread> workers_;
  std::thread heartbeat_;
};

}  // namespace graft::core
