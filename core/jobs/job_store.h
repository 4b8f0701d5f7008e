#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/train/job_spec.h"
#include "core/train/search.h"
#include "core/train/trainer.h"
#include "core/util/database.h"

namespace graft::core {

enum class JobState { kQueued = 1, kRunning = 2, kSucceeded = 3, kFailed = 4, kCancelled = 5 };

bool IsTerminal(JobState s);
const char* JobStateName(JobState s);

struct JobRecord {
  std::string id;
  std::string owner;  // the principal that submitted it
  JobSpec spec;
  JobState state = JobState::kQueued;
  double created_at = 0;
  double started_at = 0;
  double finished_at = 0;
  std::string error;
  std::string model_id;
  int epochs_done = 0;
  int epochs_total = 0;
  std::optional<EpochMetrics> last;
  std::optional<EpochMetrics> best;
  // The trainer (--worker_id) that holds it, or last held it; read from the
  // queue's columns, never written by Insert or Update.
  std::string worker;
};

enum class JobEventType {
  kState = 1,
  kEpoch = 2,
  kEarlyStop = 3,
  kBestRestored = 4,
  kCheckpoint = 5,
  kProgress = 6,
  kTrial = 7,         // a search's trial ended
  kFeatures = 8,      // a search computed a backbone's features (reason says which, how big, how long)
  kLearningRate = 9,  // learning_rate auto: the range test's curve
  kPromotion = 10,    // spec.promotion: the champion/challenger decision
};

// How a job's model fared against the version its alias served
// (spec.promotion), both evaluated on every image of the holdout.
struct PromotionResult {
  std::string alias;                // NAME@ALIAS
  std::string holdout;              // the holdout dataset's name
  int64_t holdout_images = 0;
  Monitor metric = Monitor::kValAccuracy;
  double min_gain = 0;
  std::string champion;             // model id; empty: the alias served nothing
  int64_t champion_version = 0;
  double champion_value = 0;
  std::string challenger;           // the job's model
  int64_t challenger_version = 0;
  double challenger_value = 0;
  bool promoted = false;
  // Both versions were evaluated (or the alias served nothing): the
  // decision is the comparison's. False: it could not be made (reason).
  bool compared = false;
  double canary_percent = 0;        // > 0: promoted as a canary at this share
  std::string reason;               // one line, both figures
};
nlohmann::json PromotionResultToJson(const PromotionResult& p);
PromotionResult PromotionResultFromJson(const nlohmann::json& j);

struct JobEvent {
  std::string job_id;
  int64_t seq = 0;  // 1-based, gapless per job; 0 for live-only progress
  double time = 0;
  JobEventType type = JobEventType::kState;
  JobState state = JobState::kQueued;  // kState
  std::string reason;                  // kState
  EpochMetrics epoch;                  // kEpoch
  int epoch_number = 0;                // kEarlyStop, kBestRestored, kCheckpoint, kProgress
  int best_epoch = 0;                  // kEarlyStop
  double best_value = 0;               // kEarlyStop, kBestRestored
  int stage = 0;                       // kBestRestored: 1-based
  bool across_stages = false;          // kBestRestored: the job's best, from an earlier stage
  int batch = 0, batches = 0;          // kProgress; batch also for a mid-epoch kCheckpoint
  std::string backbone;                // kProgress: of this backbone's feature pass (empty: the epoch's batches)
  TrialResult trial;                   // kTrial
  LrCurve lr_curve;                    // kLearningRate
  PromotionResult promotion;           // kPromotion
};

// Jobs and their events in SQLite; every change is durable when it returns.
class JobStore {
 public:
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(Database& db);

  absl::Status Insert(const JobRecord& job);
  absl::Status Update(const JobRecord& job);
  absl::StatusOr<JobRecord> Get(const std::string& id);
  // All jobs, newest first; `state` filters when set.
  absl::StatusOr<std::vector<JobRecord>> List(std::optional<JobState> state = std::nullopt);
  // Assigns the next seq and stores the event.
  absl::StatusOr<JobEvent> Append(JobEvent event);
  absl::StatusOr<std::vector<JobEvent>> Events(const std::string& job_id, int64_t after_seq);

  // The shared queue (trainer processes on one database). A job is claimed
  // by one worker (a trainer process's --worker_id) at a time; the claim
  // lives in columns that Insert and Update never touch.
  struct Claim {
    std::string id;
    std::string previous_worker;  // who held it before: "" for a job never started or released
    double previous_heartbeat = 0;
    // How often a trainer ended without releasing this RUNNING job (a crash,
    // an out-of-memory kill, a lost node), counting this claim's takeover.
    int abnormal_ends = 0;
  };
  // Claims the next job for `worker`: a RUNNING job released (resumes
  // first), then the oldest unclaimed QUEUED one, or one whose worker has
  // not heartbeaten since `stale_before` (taken over). Atomic across
  // processes: SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL, SQLite's
  // write lock. nullopt when there is nothing to claim.
  // Released RUNNING jobs come first; then queued jobs of the owner holding
  // the fewest claimed jobs, oldest first, so one principal's backlog never
  // holds every trainer while another's job waits. `max_held_per_owner` > 0
  // also skips queued jobs of owners already holding that many (across
  // trainers on PostgreSQL the count is read without a lock: two trainers
  // claiming at the same instant may pass it by one).
  absl::StatusOr<std::optional<Claim>> ClaimNext(const std::string& worker, double now, double stale_before,
                                                 int max_held_per_owner = 0);
  // Claims `id` only if it is unfinished and nobody holds it (QUEUED, or
  // RUNNING and released to resume): to cancel it. False when someone holds it.
  absl::StatusOr<bool> ClaimUnheld(const std::string& id, const std::string& worker, double now);
  // Refreshes the heartbeat of every unfinished job `worker` holds.
  absl::Status Heartbeat(const std::string& worker, double now);
  // Gives up `worker`'s unfinished jobs (a stopping trainer, or one that
  // restarts): another worker, or itself, claims them next. `abnormal`: the
  // worker is starting and finds jobs it never released (it crashed): each
  // RUNNING one counts an abnormal end.
  absl::Status Release(const std::string& worker, bool abnormal = false);
  // Every unfinished job, whoever holds it: released to be claimed again
  // (SQLite: the database has one process, so whatever ran was its own).
  absl::Status ReleaseAll(bool abnormal = false);
  // Who holds `id` now ("" when nobody).
  absl::StatusOr<std::string> WorkerOf(const std::string& id);
  // A cancel asked of a job another process runs: that process's heartbeat
  // sees it.
  absl::Status RequestCancel(const std::string& id);
  absl::StatusOr<std::vector<std::string>> CancelRequested(const std::string& worker);
  // How many jobs are in each state (graft_jobs).
  absl::StatusOr<std::map<JobState, int64_t>> CountByState();
  // QUEUED jobs, all and `owner`'s.
  absl::StatusOr<std::pair<int, int>> CountQueued(const std::string& owner);

  // Data-parallel groups (job_store_groups.cc). The job's holder is rank 0:
  // it opens a group (the next generation, its rendezvous address) that
  // other trainers join by claiming ranks 1..size-1, and closes it when the
  // attempt ends. A group whose rank 0 stopped heartbeating takes no ranks.
  struct RankClaim {
    std::string job_id;
    int64_t generation = 0;
    int rank = 0;
    int size = 0;
    std::string address;  // host:port of rank 0's rendezvous
  };
  absl::StatusOr<int64_t> OpenGroup(const std::string& id, const std::string& worker, const std::string& address,
                                    int size);
  absl::Status CloseGroup(const std::string& id);
  // The workers that claimed ranks of the generation, by rank (1..).
  absl::StatusOr<std::vector<std::string>> GroupMembers(const std::string& id, int64_t generation);
  // A free rank of an open group whose rank 0 heartbeat since `stale_before`
  // and is not `worker`, oldest job first; nullopt when there is none.
  absl::StatusOr<std::optional<RankClaim>> ClaimRank(const std::string& worker, double stale_before);

 private:
  explicit JobStore(Database& db) : db_(db) {}
  Database& db_;
};

// A job's learning curves from its events: every epoch once, in order (a job
// resumed after a restart may have an epoch twice: the last one counts), and
// the epochs whose weights were restored, each once.
struct LearningCurves {
  std::vector<EpochMetrics> epochs;
  std::vector<int> restored_epochs;
};
LearningCurves LearningCurvesOf(const std::vector<JobEvent>& events);

}  // namespace graft::core
