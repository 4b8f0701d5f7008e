#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/status.h"

namespace graft::core {

struct HeadSpec {
  std::vector<int> hidden_units;  // Dense layers before the classifier
  double dropout = 0;
  std::string activation = "relu";  // relu | gelu
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

struct StageSpec {
  int epochs = 10;
  std::string train = "head";  // head | top:N | all
  OptimizerSpec optimizer;
  ScheduleSpec schedule;
};

inline constexpr int kMaxCachedViews = 64;

struct AugmentationSpec {
  bool horizontal_flip = false;
  bool random_resized_crop = false;
  double crop_scale_min = 0.08;
  double color_jitter = 0;
  // > 0: K augmented views of every training image go through the frozen
  // prefix once and are cached; each epoch draws one view per image.
  int cached_views = 0;
  bool any() const { return horizontal_flip || random_resized_crop || color_jitter > 0; }
};

enum class Monitor { kValLoss = 1, kValAccuracy = 2, kValMacroF1 = 3 };
enum class MonitorMode { kAuto = 0, kMin = 1, kMax = 2 };

struct EarlyStoppingSpec {
  bool enabled = false;  // stop early; the best epoch is tracked either way
  Monitor monitor = Monitor::kValLoss;
  MonitorMode mode = MonitorMode::kAuto;
  int patience = 5;
  double min_delta = 0;
  bool restore_best = true;
};

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

  int TotalEpochs() const;
};

// Fills defaults (one head-only stage of 10 epochs with Adam 1e-3 when none
// is given) and checks every field; INVALID_ARGUMENT names the field and what
// is allowed. `num_blocks` bounds top:N.
absl::Status NormalizeJobSpec(JobSpec& spec, int num_blocks);

// "head" -> 0, "top:N" -> N, "all" -> num_blocks; -1 when malformed.
int TrainableBlocks(const std::string& train, int num_blocks);

void to_json(nlohmann::json& j, const JobSpec& s);
void from_json(const nlohmann::json& j, JobSpec& s);

}  // namespace graft::core
