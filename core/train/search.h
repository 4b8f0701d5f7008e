#pragma once

// Search jobs: many heads and hyperparameters (and backbones) tried on
// frozen features computed once per backbone; the best trial wins.

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/train/job_spec.h"
#include "core/train/trainer.h"

namespace graft::core {

inline constexpr int kMaxSearchTrials = 4096;

// One configuration of a search.
struct TrialConfig {
  int index = 0;  // 1-based, in plan order
  std::string backbone;
  OptimizerKind optimizer = OptimizerKind::kAdam;
  double learning_rate = 1e-3;
  double weight_decay = 0;
  HeadSpec head;
  double label_smoothing = 0;
};

struct TrialResult {
  TrialConfig config;
  int round = 0;          // successive halving's round (0-based); 0 otherwise
  int epochs_budget = 0;  // epochs the round gives it
  int epochs = 0;         // epochs run (fewer when it stopped early)
  EpochMetrics best;      // the best epoch by the search's metric
  double score = 0;       // the metric at that epoch
  double seconds = 0;     // a fused trial: its group's
  int fused_trials = 1;   // trials trained fused with it, itself included (TrainedModel::fused_trials)
  std::string error;  // the trial failed (e.g. diverged); never the winner
};

nlohmann::json TrialResultToJson(const TrialResult& t);
TrialResult TrialResultFromJson(const nlohmann::json& j);

// Whether `a` ranks before `b`: no error first, then the metric (higher
// accuracy or F1, lower loss), then the lower val_loss, then the lower index.
bool RanksBefore(const TrialResult& a, const TrialResult& b, Monitor metric);
// Best first; within a successive-halving search the later round of a
// configuration replaces its earlier ones.
std::vector<TrialResult> Leaderboard(std::vector<TrialResult> trials, Monitor metric);

// The configurations, in trial order (backbones grouped): the grid (every
// combination; max_trials keeps the first), or max_trials random draws
// (seeded; a learning-rate range drawn log-uniformly). Empty lists take the
// job's own value (its first stage's optimizer kind, rate and weight decay,
// its head, its label smoothing).
std::vector<TrialConfig> PlanTrials(const JobSpec& job, const std::vector<std::string>& backbones);
// The grid's size over `backbones` candidates (saturating: never overflows).
uint64_t SearchGridSize(const JobSpec& job, size_t backbones);
// INVALID_ARGUMENT when a grid or successive-halving search over `backbones`
// candidates would run more than kMaxSearchTrials trials without
// max_trials to bound it.
absl::Status CheckSearchSize(const JobSpec& job, size_t backbones);

// Successive halving's rounds: epochs per round and how many trials each
// round runs. Each round keeps the best ceil(1/eta) of the last with eta x
// its epochs, until at most eta remain; that last round runs the full epochs
// and decides. Grid and random: one round.
struct SearchRound {
  int epochs = 0;
  int trials = 0;
};
std::vector<SearchRound> PlanRounds(const SearchSpec& search, int trials, int epochs);

// Trials a search job runs in all its rounds (job.search.backbones resolved).
int PlannedTrials(const JobSpec& job);

// The job spec one trial trains: the job's, with the trial's config in its
// single head-only stage of `epochs`, monitored by the search's metric.
JobSpec TrialSpec(const JobSpec& job, const TrialConfig& config, int epochs);

class SearchEvents {
 public:
  virtual ~SearchEvents() = default;
  virtual void OnFeatures(const std::string& backbone, double seconds, const std::string& description) {}
  // While a backbone's features are computed: `batch` of `batches` done.
  virtual void OnFeatureProgress(const std::string& backbone, int batch, int batches) {}
  virtual void OnTrial(const TrialResult& trial) {}
};

struct SearchInput {
  JobSpec spec;                        // normalised, has_search
  std::vector<std::string> backbones;  // resolved names
  // The backbone resident for the search while a round uses it.
  std::function<absl::StatusOr<std::shared_ptr<ResidentBackbone>>(const std::string&)> resident;
  TrainInput base;                // images, classes, feature cache options; spec and resident are set per trial
  std::vector<TrialResult> done;  // finished before a restart: not run again
  int threads = 0;                // trials (or fused groups) at once; 0: the available cores
  // Trials of one backbone and head shape train fused (NewHeadFusion), in
  // groups sized to keep `threads` busy; false: each alone.
  bool fuse = true;
};

struct SearchOutcome {
  TrialResult winner;
  TrainedModel model;  // the winner's head
  std::vector<TrialResult> leaderboard;
  int skipped = 0;  // trials not started within budget_seconds
};

absl::StatusOr<SearchOutcome> RunSearch(const SearchInput& input, const CancellationToken& cancel,
                                        SearchEvents& events);

}  // namespace graft::core
