// JobRunner's side of the shared queue: starting (recovering this worker's
// jobs), the workers that claim jobs from the database, heartbeats and
// takeover, cancels across processes, and stopping.

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <new>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/jobs/job_runner.h"
#include "core/util/compute_threads.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace fs = std::filesystem;

absl::Status JobRunner::Start() {
  std::error_code ec;
  fs::create_directories(options_.checkpoint_dir, ec);
  if (!options_.train) return absl::OkStatus();  // a serving process: trainers run the queue
  // Jobs this worker ran before it stopped (with SQLite, every unfinished
  // job: the database has this one process) that cannot resume end now,
  // before anything is served: one whose model was published SUCCEEDED, one
  // with no checkpoint FAILED. The rest are released: the workers claim them
  // again (RUNNING first) and resume them.
  ASSIGN_OR_RETURN(auto before, jobs_.List());
  for (JobRecord& job : before) {
    if (job.state != JobState::kRunning) continue;
    if (options_.shared) {
      auto holder = jobs_.WorkerOf(job.id);
      if (!holder.ok() || *holder != options_.worker_id) continue;
    }
    const bool resumable = job.model_id.empty() && (fs::exists(CheckpointPath(job.id)) || job.spec.has_search);
    if (!resumable) (void)Resume(job, JobStore::Claim{job.id, "", 0});
  }
  // Held jobs at a start were never released: their last run ended
  // abnormally (a graceful stop releases), which the crash-loop guard counts.
  RETURN_IF_ERROR(options_.shared ? jobs_.Release(options_.worker_id, /*abnormal=*/true)
                                  : jobs_.ReleaseAll(/*abnormal=*/true));
  // A checkpoint is kept only while its job may resume: a kill between
  // publishing a model (or ending a job) and removing the checkpoint, or in
  // the middle of writing one, leaves files nobody will read again. In a
  // shared directory another trainer may be writing one now: only ended
  // jobs' files go.
  ASSIGN_OR_RETURN(const auto all, jobs_.List());
  std::set<std::string> unfinished;
  for (const JobRecord& job : all) {
    if (!IsTerminal(job.state)) unfinished.insert(job.id);
  }
  std::error_code walk;
  for (auto it = fs::directory_iterator(options_.checkpoint_dir, walk); !walk && it != fs::directory_iterator();
       it.increment(walk)) {
    const std::string name = it->path().filename().string();
    const std::string job = name.substr(0, name.find('.'));
    if (unfinished.count(job) > 0 && (options_.shared || name == job + ".ckpt")) continue;
    std::error_code rm;
    fs::remove_all(it->path(), rm);
    if (rm) ABSL_LOG(WARNING) << "removing stale checkpoint " << it->path().string() << ": " << rm.message();
  }
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
  }
  for (int i = 0; i < std::max(1, options_.max_concurrent_jobs); ++i) workers_.emplace_back([this]() { Worker(); });
  heartbeat_ = std::thread([this]() { HeartbeatLoop(); });
  return absl::OkStatus();
}

// A job claimed in state RUNNING ran before, here or in a trainer that
// stopped: it resumes from its checkpoint, ends SUCCEEDED if its model was
// published, or fails when nothing of it was kept. False: nothing to run.
void JobRunner::FailAfterException(const std::string& id, const std::exception& e) {
  const bool memory = dynamic_cast<const std::bad_alloc*>(&e) != nullptr;
  const std::string why = memory ? std::string("the job ran out of memory (an allocation failed); use a smaller "
                                               "batch, input size or head, or fewer classes")
                                 : absl::StrCat("the job ended with an unexpected error: ", FirstLine(e.what()));
  ABSL_LOG(ERROR) << "job " << id << ": " << why;
  auto job = jobs_.Get(id);
  if (!job.ok() || IsTerminal(job->state)) return;
  std::error_code ec;
  fs::remove(CheckpointPath(id), ec);
  if (auto s = SetState(*job, JobState::kFailed, why); !s.ok()) ABSL_LOG(ERROR) << "job " << id << ": " << s.message();
}

bool JobRunner::Resume(JobRecord& job, const JobStore::Claim& claim) {
  if (claim.abnormal_ends > options_.max_job_restarts) {
    std::error_code ec;
    fs::remove(CheckpointPath(job.id), ec);
    const absl::Status s = SetState(
        job, JobState::kFailed,
        absl::StrCat("the trainer running this job ended abnormally ", claim.abnormal_ends,
                     " times (a crash, an out-of-memory kill or a lost node); it is not resumed again "
                     "(--max_job_restarts is ",
                     options_.max_job_restarts, ")"));
    if (!s.ok()) ABSL_LOG(ERROR) << "job " << job.id << ": " << s.message();
    return false;
  }
  const std::string who =
      claim.previous_worker.empty()
          ? std::string("graftd restarted")
          : absl::StrCat("trainer ", claim.previous_worker, " stopped heartbeating (last ",
                         absl::StrFormat("%.0f", std::max(0.0, NowSeconds() - claim.previous_heartbeat)), " s ago)");
  absl::Status s;
  if (!job.model_id.empty()) {
    std::string reason = "model " + job.model_id + " published before " + who;
    // A promotion the restart cut short is decided now.
    bool decided = false;
    if (auto events = jobs_.Events(job.id, 0); events.ok()) {
      for (const JobEvent& ev : *events) decided = decided || ev.type == JobEventType::kPromotion;
    }
    if (job.spec.has_promotion && !decided) {
      if (auto model = models_.Get(job.model_id); model.ok()) reason += Promote(job, (*model)->info(), Caller());
    }
    s = SetState(job, JobState::kSucceeded, reason);
  } else if (fs::exists(CheckpointPath(job.id)) || job.spec.has_search) {
    JobEvent e;
    e.type = JobEventType::kState;
    e.state = JobState::kRunning;
    // Where the checkpoint is: its event says (a mid-epoch one names the batch).
    JobEvent last;
    if (auto events = jobs_.Events(job.id, 0); events.ok()) {
      for (const JobEvent& ev : *events) {
        if (ev.type == JobEventType::kCheckpoint) last = ev;
      }
    }
    e.reason = job.spec.has_search && !fs::exists(CheckpointPath(job.id))
                   ? who + "; the search resumes after its finished trials"
               : last.batch > 0 ? absl::StrCat(who, "; resuming epoch ", last.epoch_number, " after batch ", last.batch)
                                : absl::StrCat(who, "; resuming after epoch ", job.epochs_done);
    auto recorded = Record(job, e);
    if (recorded.ok()) return true;
    s = recorded.status();
  } else {
    s = SetState(job, JobState::kFailed,
                 claim.previous_worker.empty() ? std::string("interrupted before the first checkpoint")
                                               : "interrupted before the first checkpoint (" + who + ")");
  }
  if (!s.ok()) ABSL_LOG(ERROR) << "job " << job.id << ": " << s.message();
  return false;
}

void JobRunner::HeartbeatLoop() {
  // Every second: cancels asked through other processes; every
  // --job_heartbeat_s: the heartbeat, and a check that each running job is
  // still this worker's (another trainer that took it over after a stall
  // owns it now: this one stops without writing).
  double last_beat = 0;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    const double now = NowSeconds();
    if (now - last_beat >= options_.heartbeat_s) {
      if (auto s = jobs_.Heartbeat(options_.worker_id, now); !s.ok()) {
        ABSL_LOG(WARNING) << "job heartbeat: " << s.message();
      }
      last_beat = now;
    }
    std::vector<std::string> cancel;
    if (auto asked = jobs_.CancelRequested(options_.worker_id); asked.ok()) cancel = std::move(*asked);
    std::vector<std::string> running;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, token] : running_) running.push_back(id);
    }
    std::vector<std::string> lost;
    for (const std::string& id : running) {
      auto worker = jobs_.WorkerOf(id);
      if (worker.ok() && *worker != options_.worker_id) lost.push_back(id);
    }
    absl::MutexLock lock(&mu_);
    for (const std::string& id : cancel) {
      if (auto it = running_.find(id); it != running_.end() && user_cancelled_.insert(id).second) it->second->Cancel();
    }
    for (const std::string& id : lost) {
      if (auto it = running_.find(id); it != running_.end() && lost_.insert(id).second) {
        // Cancelled, not stopped: a stop would write a checkpoint over the
        // new holder's. LeftRunningLocked keeps the run from recording an end.
        ABSL_LOG(WARNING) << "job " << id << " was taken over by another trainer; stopping here";
        it->second->Cancel();
      }
    }
    const absl::Time next = absl::Now() + absl::Seconds(1);
    while (!stopping_ && !work_cv_.WaitWithDeadline(&mu_, next)) {
    }
  }
}

bool JobRunner::LeftRunningLocked(const std::string& id) const {
  return (stopping_ || lost_.count(id) > 0) && user_cancelled_.count(id) == 0;
}

void JobRunner::RequestStop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // A user's cancel stays a cancel; every other running job checkpoints at
    // its next batch boundary and stays RUNNING.
    for (auto& [id, token] : running_) {
      if (user_cancelled_.count(id) == 0) token->Stop();
    }
    for (auto& [id, token] : ranks_) token->Stop();
  }
  work_cv_.SignalAll();
  Notify();
}

void JobRunner::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && workers_.empty()) return;
  }
  RequestStop();
  for (auto& w : workers_) w.join();
  workers_.clear();
  if (heartbeat_.joinable()) heartbeat_.join();
  // What stays unfinished is handed to the other trainers at once (with
  // SQLite, to this process's next start): released, so that a start that
  // finds a job still held knows its run ended abnormally.
  if (options_.train) {
    if (auto s = jobs_.Release(options_.worker_id); !s.ok()) ABSL_LOG(WARNING) << "releasing jobs: " << s.message();
  }
}

absl::StatusOr<JobRecord> JobRunner::Cancel(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(JobRecord job, jobs_.Get(id));
    if (IsTerminal(job.state)) {
      return absl::FailedPreconditionError(absl::StrCat("job ", id, " has already ended: ", JobStateName(job.state)));
    }
    // Held by no trainer (not started, or waiting to resume): claimed here to
    // end it, so that none starts it.
    ASSIGN_OR_RETURN(const bool mine, jobs_.ClaimUnheld(id, options_.worker_id, NowSeconds()));
    if (mine) {
      ASSIGN_OR_RETURN(job, jobs_.Get(id));
      std::error_code ec;
      fs::remove(CheckpointPath(id), ec);
      RETURN_IF_ERROR(SetState(
          job, JobState::kCancelled,
          job.state == JobState::kQueued ? "cancelled before it started" : "cancelled while waiting to resume"));
      return job;
    }
    if (auto it = running_.find(id); it != running_.end()) {
      user_cancelled_.insert(id);
      it->second->Cancel();
      if (observer_ != nullptr) observer_->OnCancelRequested(id);
    } else {
      // Another process runs it (or is about to): its heartbeat sees this.
      RETURN_IF_ERROR(jobs_.RequestCancel(id));
    }
  }
  // The trainer checks between batches; wait for it to wind down.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    bool runs_here = false;
    {
      absl::MutexLock lock(&mu_);
      runs_here = running_.count(id) > 0;
    }
    if (!runs_here) {
      auto job = jobs_.Get(id);
      if (!job.ok() || IsTerminal(job->state)) return job;
    }
    absl::MutexLock lock(&mu_);
    event_cv_.WaitWithTimeout(&mu_, absl::Milliseconds(200));
  }
  return jobs_.Get(id);
}

void JobRunner::Worker() {
  while (true) {
    std::optional<JobStore::Claim> claim;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    // The queue is in the database, shared by every trainer: a claim is
    // atomic there. A submit here wakes the workers at once; other
    // processes' submits and stalled trainers' jobs are seen by polling.
    const double now = NowSeconds();
    // A free rank of another trainer's data-parallel job comes first: that
    // group is waiting, and a job claimed here might wait for this worker.
    auto rank = jobs_.ClaimRank(options_.worker_id, now - options_.takeover_s);
    if (!rank.ok()) ABSL_LOG(WARNING) << "claiming a rank: " << rank.status().message();
    if (rank.ok() && rank->has_value()) {
      const std::string id = (*rank)->job_id;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
        ranks_[id] = std::make_shared<CancellationToken>();
      }
      try {
        const ComputeTeam team;
        ExecuteRank(**rank);
      } catch (const std::exception& e) {
        ABSL_LOG(ERROR) << "job " << id << ": a data-parallel rank ended with an exception: " << e.what();
      }
      absl::MutexLock lock(&mu_);
      ranks_.erase(id);
      continue;
    }
    auto claimed =
        jobs_.ClaimNext(options_.worker_id, now, now - options_.takeover_s, options_.max_running_jobs_per_principal);
    if (!claimed.ok()) ABSL_LOG(WARNING) << "claiming a job: " << claimed.status().message();
    if (!claimed.ok() || !claimed->has_value()) {
      absl::MutexLock lock(&mu_);
      const absl::Time next = absl::Now() + absl::Seconds(options_.poll_s);
      while (!stopping_ && !wake_ && !work_cv_.WaitWithDeadline(&mu_, next)) {
      }
      wake_ = false;
      continue;
    }
    claim = std::move(**claimed);
    const std::string id = claim->id;
    {
      absl::MutexLock lock(&mu_);
      running_[id] = std::make_shared<CancellationToken>();
    }
    // An exception that escapes a run (an allocation that failed, say)
    // fails its job, never the process. The job computes with a team; the
    // team goes with the job (compute_threads.h).
    try {
      const ComputeTeam team;
      Execute(*claim);
    } catch (const std::exception& e) {
      FailAfterException(id, e);
    }
    {
      absl::MutexLock lock(&mu_);
      running_.erase(id);
      progress_.erase(id);
      user_cancelled_.erase(id);
      lost_.erase(id);
    }
    Notify();
  }
}

}  // namespace graft::core
