#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/status.h"
#include "core/data/augmentation_spec.h"
#include "core/zoo/precision.h"

namespace graft::core {

struct HeadSpec {
  std::vector<int> hidden_units;  // Dense layers before the classifier
  double dropout = 0;
  std::string activation = "relu";  // relu | gelu
  bool operator==(const HeadSpec& o) const {
    return hidden_units == o.hidden_units && dropout == o.dropout && activation == o.activation;
  }
};

enum class OptimizerKind { kSgd = 1, kAdam = 2, kAdamW = 3, kRmsprop = 4 };
enum class ScheduleKind { kConstant = 1, kStep = 2, kCosine = 3, kOneCycle = 4 };

struct OptimizerSpec {
  OptimizerKind kind = OptimizerKind::kAdam;
  double learning_rate = 1e-3;
  double momentum = 0;
  bool nesterov = false;
  double weight_decay = 0;
  double beta1 = 0.9;
  double beta2 = 0.999;
};

struct ScheduleSpec {
  ScheduleKind kind = ScheduleKind::kConstant;
  int step_epochs = 0;  // STEP; 0 = never
  double gamma = 0.1;
  int warmup_epochs = 0;
  double min_lr = 0;
};

// Batch normalization in the blocks a stage trains: frozen (inference mode,
// statistics and scale/shift as pretrained; Keras' advice for fine-tuning)
// or trained (PyTorch's model.train()).
enum class BatchNormMode { kFrozen = 1, kTrain = 2 };

struct StageSpec {
  int epochs = 10;
  std::string train = "head";  // head | top:N | all
  OptimizerSpec optimizer;
  ScheduleSpec schedule;
  BatchNormMode batch_norm = BatchNormMode::kFrozen;
};

inline constexpr int kMaxCachedViews = 64;
// A data-parallel job's trainers at most (JobSpec::workers).
inline constexpr int kMaxJobWorkers = 64;


enum class Monitor { kValLoss = 1, kValAccuracy = 2, kValMacroF1 = 3 };
enum class MonitorMode { kAuto = 0, kMin = 1, kMax = 2 };

struct EarlyStoppingSpec {
  bool enabled = false;  // stop early; the best epoch is tracked either way
  Monitor monitor = Monitor::kValLoss;
  MonitorMode mode = MonitorMode::kAuto;
  int patience = 5;
  double min_delta = 0;
  bool restore_best = true;
  // With restore_best: each stage's best is restored at its end, and the
  // job's best across stages is what the job publishes; per stage: the last
  // stage's best is.
  bool restore_per_stage = false;
};

enum class SearchStrategy { kGrid = 1, kRandom = 2, kSuccessiveHalving = 3 };

// A search over heads and hyperparameters (and backbones) on cached frozen
// features: every trial trains the first stage (head only) of the job's spec
// with one configuration; the best trial becomes the job's model.
struct SearchSpec {
  std::vector<std::string> backbones;  // names or aliases; empty: every backbone with weights
  std::vector<double> learning_rates;  // or a log range: lr_min..lr_max in lr_count steps
  double lr_min = 0, lr_max = 0;
  int lr_count = 0;
  std::vector<OptimizerKind> optimizers;
  std::vector<double> weight_decays;
  std::vector<HeadSpec> heads;
  std::vector<double> label_smoothings;
  Monitor metric = Monitor::kValAccuracy;
  SearchStrategy strategy = SearchStrategy::kGrid;
  int eta = 3;               // successive halving: keep 1/eta, eta x the epochs
  int max_trials = 0;        // 0: the whole grid (random: 16)
  double budget_seconds = 0; // 0: none; trials not started by then are skipped
  uint64_t seed = 0;
};

// Promotion on evidence (graft retrain): when the job's model is published,
// it (the challenger) and the version `alias` serves (the champion) are both
// evaluated on every image of the holdout dataset, which the job never
// trains on; the alias moves only when the challenger wins by min_gain.
struct PromotionSpec {
  std::string alias;    // of the job's model_name
  std::string holdout;  // dataset id (a name until admission resolves it)
  Monitor metric = Monitor::kValAccuracy;  // on the holdout: accuracy, macro F1 or log loss
  double min_gain = 0.005;  // the challenger's lead needed (loss: how much lower)
  // > 0: a win makes the challenger a canary of the alias at this share
  // instead of moving the alias.
  double canary_percent = 0;
};
inline constexpr int kMaxAddedDatasets = 16;

struct JobSpec {
  std::string name;
  // Publishes the model as the owner's next version of this name (see
  // ModelStore::Resolve); empty: the model has only its id.
  std::string model_name;
  std::string backbone;
  std::string dataset;
  double validation_fraction = 0;  // > 0: re-split a FLAT dataset for this job
  int input_size = 0;  // 0: the backbone's
  HeadSpec head;
  std::vector<StageSpec> stages;
  int batch_size = 32;
  AugmentationSpec augmentation;
  double label_smoothing = 0;
  bool class_weighting = false;
  // Each epoch draws as many training images as there are, every class with
  // the same chance (with replacement; PyTorch's WeightedRandomSampler with
  // 1/class-count weights).
  bool balanced_sampling = false;
  EarlyStoppingSpec early_stopping;
  uint64_t seed = 0;
  // The first stage's learning rate is found by a range test (FindLearningRate)
  // on the job's own data before it trains.
  bool auto_learning_rate = false;
  // Trainer processes that share every batch (data-parallel); 1: one.
  int workers = 1;
  bool has_search = false;
  SearchSpec search;
  // Every image of these datasets (ids after admission) joins the training
  // split; their classes map onto the dataset's by name, and classes the
  // dataset lacks are added after its own (graft retrain --add).
  std::vector<std::string> add_datasets;
  bool has_promotion = false;
  PromotionSpec promotion;
  // The frozen trunk's number format while training (its forward only: the
  // cached features and everything trained stay float32 or the cache's
  // fp16). Unset (auto): bf16 on a CPU with native bfloat16 when the frozen
  // features are cached (no augmentation, or cached views), else fp32; on
  // CUDA the --mixed_precision path. Jobs stored before it read fp32.
  std::optional<Precision> precision;

  int TotalEpochs() const;
};

// Fills defaults (one head-only stage of 10 epochs with Adam 1e-3 when none
// is given) and checks every field; INVALID_ARGUMENT names the field and what
// is allowed. `num_blocks` bounds top:N.
absl::Status NormalizeJobSpec(JobSpec& spec, int num_blocks);

// "head" -> 0, "top:N" -> N, "all" -> num_blocks; -1 when malformed.
int TrainableBlocks(const std::string& train, int num_blocks);

// The search's fields: INVALID_ARGUMENT names the field ("spec.search.…").
absl::Status NormalizeSearchSpec(SearchSpec& s);
const char* MonitorName(Monitor m);

void to_json(nlohmann::json& j, const JobSpec& s);
void from_json(const nlohmann::json& j, JobSpec& s);

}  // namespace graft::core
