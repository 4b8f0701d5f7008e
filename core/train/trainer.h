#pragma once

#include <memory>
#include <functional>
#include <string>
#include <random>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"
#include "core/train/feature_cache.h"
#include "core/train/job_spec.h"
#include "core/util/ids.h"
#include "core/zoo/state_dict.h"
#include "core/zoo/zoo.h"

namespace graft::core {

class Collective;
class HeadFusion;

struct EpochMetrics {
  int stage = 0;  // 1-based
  int epoch = 0;  // 1-based, across stages
  double train_loss = 0;
  double train_accuracy = 0;
  double val_loss = 0;
  double val_accuracy = 0;
  double val_macro_f1 = 0;  // mean F1 over the classes with val images or predictions
  double learning_rate = 0;
  // Training images per second of the epoch's wall time. With the frozen
  // part cached only the trainable part ran (the epoch that built the cache
  // counts building it): `frozen_part_cached` says so.
  double images_per_second = 0;
  double epoch_seconds = 0;
  bool frozen_part_cached = false;
  bool frozen_part_bf16 = false;  // the frozen part ran in bfloat16 (JobSpec::precision)
};

// The figure `monitor` names (early stopping's, a search's ranking metric).
inline double MonitoredValue(const EpochMetrics& m, Monitor monitor) {
  switch (monitor) {
    case Monitor::kValAccuracy:
      return m.val_accuracy;
    case Monitor::kValMacroF1:
      return m.val_macro_f1;
    case Monitor::kValLoss:
      break;
  }
  return m.val_loss;
}

nlohmann::json EpochMetricsToJson(const EpochMetrics& m);
EpochMetrics EpochMetricsFromJson(const nlohmann::json& j);

// Weights restored to a best epoch: at the end of its stage (that stage's
// best), or at the end of the job (`across_stages`: the job's best, from an
// earlier stage than the weights it replaces).
struct BestRestored {
  int epoch = 0;  // 1-based across stages
  int stage = 0;  // 1-based
  bool across_stages = false;
  double value = 0;  // the monitored figure at that epoch
};

// What a training run reports while it goes. Called on the training thread.
class TrainEvents {
 public:
  virtual ~TrainEvents() = default;
  virtual void OnEpoch(const EpochMetrics& m) {}
  virtual void OnProgress(int epoch, int batch, int batches) {}
  // The frozen backbone's pass over every image into the feature cache (in
  // epoch 1, before its batches; a search's or a range test's first step):
  // `batch` of `batches` done.
  virtual void OnFeatureProgress(const std::string& backbone, int batch, int batches) {}
  virtual void OnEarlyStop(int epoch, int best_epoch, double best_value) {}
  virtual void OnBestRestored(const BestRestored& restored) {}
  // `batch` 0: after the epoch; otherwise within it, after that many batches.
  virtual void OnCheckpoint(int epoch, int batch) {}
  // learning_rate auto: the range test's curve and the rate the first stage uses.
  virtual void OnLearningRateFound(const struct LrCurve& curve) {}
};

// The learning-rate range test (Smith 2017; fastai's lr_find): a fresh head
// trained one batch per step while the rate rises exponentially from min to
// max; it stops early once the loss has clearly diverged.
struct LrFindOptions {
  double min_lr = 1e-7;
  double max_lr = 10;
  int steps = 100;
  double diverge_factor = 4;  // stop once the smoothed loss exceeds this x its minimum
};
struct LrCurve {
  std::vector<double> learning_rates;
  std::vector<double> losses;           // per step, raw
  std::vector<double> smoothed_losses;  // exponential moving average (0.98), bias-corrected
  // A tenth of the rate at the smoothed loss's minimum (Smith's rule,
  // fastai's "minimum/10"): where the loss still falls fast and training
  // stays stable.
  double suggested = 0;
  double min_loss_lr = 0;    // rate at the smoothed loss's minimum
  bool diverged = false;     // stopped early on a diverging loss
};

struct TrainInput {
  JobSpec spec;  // normalised
  std::shared_ptr<ResidentBackbone> resident;
  std::vector<DatasetImage> images;
  int num_classes = 0;
  std::string checkpoint_path;  // saved after every epoch; resumed from when present
  // Also saved mid-epoch at the first batch boundary this many seconds after
  // the last save (0: at epoch ends only), and always at a shutdown
  // (CancellationToken::Stop) so that long epochs lose at most this much.
  double checkpoint_interval_s = 0;
  // Where cached frozen features go (memory budget, spill directory, fp16);
  // its device is the backbone's.
  FeatureCacheOptions feature_cache;
  int decode_threads = 0;  // 0: DefaultDecodeThreads()
  // Batches read, decoded and augmented ahead of the forward pass when the
  // pool decodes (CUDA; on CPU the training thread's team decodes each batch
  // just before its forward, which the forward would otherwise be preempted
  // by): what bounds the input's memory (--decode_prefetch_batches).
  int prefetch_batches = 2;
  // Where images are decoded: kAuto (the team on CPU, the pool on CUDA).
  enum class DecodeOn { kAuto, kTeam, kPool };
  DecodeOn decode_on = DecodeOn::kAuto;
  // Told the bytes of the feature cache once it is built in (device) memory
  // (not when spilled to a file): the job's charge in the device memory budget.
  std::function<void(int64_t bytes)> on_cache_in_memory;
  // CUDA only: forward passes under bfloat16 autocast (no loss scaling
  // needed); the optimiser keeps float32 weights.
  bool mixed_precision = true;
  // Makes the frozen trunk's bfloat16 copy (JobSpec::precision) on CPU;
  // null: the trunk runs fp32 unless the spec asks for bf16 (refused).
  const Zoo* zoo = nullptr;
  // Features already extracted from these images with this backbone
  // (ExtractFeatures): a head-only run trains on them and computes none.
  std::shared_ptr<const SharedFeatures> features;
  // Data-parallel (JobSpec::workers > 1): this trainer is one rank of the
  // group. It reads, decodes and caches only its own images (dataset index
  // modulo the group's size); each global batch (the same shuffled order on
  // every rank) is split by that ownership, every step's gradients are
  // all-reduced with a loss normalised over the global batch, and the
  // running sums, batch-norm statistics and validation counts too, so every
  // rank holds the same weights and makes the same early-stopping
  // decisions. A cancel or stop on any rank stops every rank at the same
  // step. Null: alone.
  Collective* collective = nullptr;
  // Rank 0 writes checkpoints; the others only resume from them.
  bool write_checkpoints = true;
  // A search's fused trials (NewHeadFusion): this run trains in lockstep
  // with the fusion's other members, all their heads in one computation per
  // batch, when it can (a head-only run on `features`, alone, without
  // checkpoints or learning_rate auto, with the members' head, seed, batch
  // size, epochs and sampling); else it trains alone. Either way it counts
  // as one of the fusion's members until it ends.
  std::shared_ptr<HeadFusion> fusion;
};

struct TrainedModel {
  // Trained backbone blocks (torchvision names) and the head ("head.<i>.*").
  StateDict weights;
  int first_trained_block = 0;  // blocks [first, n) are the model's own
  std::vector<std::string> trained_blocks;
  EpochMetrics final_metrics;  // the last epoch run
  EpochMetrics best_metrics;   // the best epoch by the monitor
  bool restored_best = false;  // the weights are the best epoch's
  // How the frozen prefix's output was served: "none" (run every batch), or
  // "memory"/"spill" with its dtype, rows and bytes.
  std::string feature_cache = "none";
  double found_learning_rate = 0;  // learning_rate auto: the rate used
  int64_t images_read = 0;         // distinct images this trainer read and decoded
  // Runs trained in one computation with this one in its first epoch
  // (TrainInput::fusion), itself included; 1: alone.
  int fused_trials = 1;
};

// Fine-tunes a head (and the blocks the stages name) on `images`. Frozen
// blocks run in eval mode; when nothing is augmented (or K augmented views
// are asked for) their outputs are computed once and cached. The images
// stream: read, decoded and augmented per batch (TrainInput::decode_on),
// never all at once, so memory does not grow with the dataset. CANCELLED when `cancel` trips (checked every
// batch); INVALID_ARGUMENT naming epoch and batch when the loss is not finite.
absl::StatusOr<TrainedModel> Train(const TrainInput& input, const CancellationToken& cancel, TrainEvents& events);

// Runs `input.images` through the whole frozen trunk once (pooled, with
// input.spec's input size, cached views and seed) into a feature cache in
// memory or spilled (TrainInput::feature_cache); RESOURCE_EXHAUSTED when it
// fits neither. `events` hears the pass's progress (OnFeatureProgress).
absl::StatusOr<std::shared_ptr<const SharedFeatures>> ExtractFeatures(const TrainInput& input,
                                                                     const CancellationToken& cancel,
                                                                     TrainEvents* events = nullptr);

// The range test on input.spec's first stage (its optimizer kind, head,
// batch size, label smoothing) over the training split.
absl::StatusOr<LrCurve> FindLearningRate(const TrainInput& input, const LrFindOptions& options,
                                         const CancellationToken& cancel);

// Lockstep training of `members` runs (each given the fusion in
// TrainInput::fusion and trained on its own thread: a member waits for the
// others at every epoch). Their heads (one HeadSpec) are stacked: one matrix
// product per layer and batch trains them all (HeadStack), while each keeps
// its own optimizer, learning rate, schedule, weight decay, label smoothing,
// early stopping and best weights; a member that stops or fails leaves and
// the rest go on. Each run's results are what it gives alone, up to float
// rounding.
std::shared_ptr<HeadFusion> NewHeadFusion(int members);
// A member that will not train after all (skipped): the others stop waiting.
void WithdrawFromFusion(HeadFusion& fusion);

// balanced_sampling's epoch order: n draws, each a uniformly drawn image of a
// uniformly drawn class (classes without images are skipped; none: empty).
std::vector<int64_t> BalancedOrder(const std::vector<std::vector<int64_t>>& by_class, size_t n, std::mt19937_64& rng);

}  // namespace graft::core
