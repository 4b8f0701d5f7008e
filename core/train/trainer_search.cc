// The trainer's shared-feature and learning-rate range test entry points
// (searches, FindLearningRate, learning_rate auto).

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/train/trainer.h"
#include "core/train/trainer_internal.h"
#include "core/util/device.h"
#include "core/util/limit_error.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace trainer_internal {

absl::StatusOr<std::shared_ptr<const SharedFeatures>> Trainer::Features() {
  RETURN_IF_ERROR(Setup());
  if (!prefix_->cached()) {
    return LimitError(absl::StatusCode::kResourceExhausted,
                      "the frozen features fit neither the feature cache (--feature_cache_bytes) nor a spill file "
                      "(--feature_cache_spill, under <data_dir>/cache)",
                      "feature_cache_bytes");
  }
  return prefix_->features();
}

absl::StatusOr<LrCurve> Trainer::FindLearningRate(const LrFindOptions& options) {
  RETURN_IF_ERROR(Setup());
  return RangeTest(options);
}

absl::StatusOr<LrCurve> Trainer::RangeTest(const LrFindOptions& options) {
  if (!(options.min_lr > 0 && options.min_lr < options.max_lr && options.max_lr <= 100)) {
    return absl::InvalidArgumentError("lr-find: needs 0 < min_lr < max_lr <= 100");
  }
  if (options.steps < 5 || options.steps > 10000) return absl::InvalidArgumentError("lr-find: steps must be 5..10000");
  const auto& resident = *in_.resident;
  ClassifierHead probe(resident.spec->feature_dim, spec_.head, in_.num_classes, MixSeed(spec_.seed, 23, 0));
  probe->to(device_);
  probe->train();
  probe->Seed(MixSeed(spec_.seed, 23, 1));
  OptimizerSpec o = spec_.stages[0].optimizer;
  o.learning_rate = options.min_lr;
  auto opt = MakeOptimizer(o, probe->parameters());
  std::mt19937_64 rng(MixSeed(spec_.seed, 23, 2));
  std::vector<int64_t> order;
  size_t at = 0;
  Feed feed;
  size_t fed = 0;
  LrCurve curve;
  const double ratio = options.max_lr / options.min_lr;
  double average = 0, best = std::numeric_limits<double>::infinity();
  const size_t bs = static_cast<size_t>(spec_.batch_size);
  for (int step = 0; step < options.steps; ++step) {
    if (cancel_.cancelled()) return absl::CancelledError(absl::StrCat("cancelled at lr-find step ", step + 1));
    if (at >= order.size() || fed >= feed.batches.size()) {  // a new pass over the training split
      order = train_items_;
      std::shuffle(order.begin(), order.end(), rng);
      std::vector<std::vector<int64_t>> batches;
      for (size_t first = 0; first < order.size(); first += bs) {
        batches.emplace_back(order.begin() + static_cast<long>(first),
                             order.begin() + static_cast<long>(std::min(order.size(), first + bs)));
      }
      feed = PrefixCache::Start(std::move(batches), /*train=*/true, MixSeed(spec_.seed, 23, static_cast<uint64_t>(step)));
      fed = 0;
      at = 0;
    }
    const std::vector<int64_t>& items = feed.batches[fed];
    const double lr = options.min_lr * std::pow(ratio, static_cast<double>(step) / (options.steps - 1));
    for (auto& group : opt->param_groups()) group.options().set_lr(lr);
    const torch::Tensor labels = labels_.index_select(0, torch::tensor(items)).to(device_);
    ASSIGN_OR_RETURN(const torch::Tensor at_k, prefix_->AtK(feed, fed));
    ++fed;
    at += items.size();
    const torch::Tensor logits = probe->forward(ToDevice(at_k, device_));
    const torch::Tensor loss = Loss(logits, labels, true);
    const double value = loss.item<double>();
    curve.learning_rates.push_back(lr);
    curve.losses.push_back(value);
    if (!std::isfinite(value)) {
      curve.smoothed_losses.push_back(value);
      curve.diverged = true;
      break;
    }
    average = 0.98 * average + 0.02 * value;
    const double smoothed = average / (1 - std::pow(0.98, step + 1));
    curve.smoothed_losses.push_back(smoothed);
    best = std::min(best, smoothed);
    if (step > 0 && smoothed > options.diverge_factor * best) {
      curve.diverged = true;
      break;
    }
    opt->zero_grad();
    loss.backward();
    opt->step();
  }
  // The minimum of the smoothed loss (the diverged step aside).
  const std::vector<double>& smooth = curve.smoothed_losses;
  const size_t n = curve.diverged && smooth.size() > 1 ? smooth.size() - 1 : smooth.size();  // not the diverged step
  size_t min_at = 0;
  for (size_t i = 0; i < n; ++i) {
    if (smooth[i] < smooth[min_at]) min_at = i;
  }
  curve.min_loss_lr = curve.learning_rates[min_at];
  // Smith's rule (fastai's "minimum/10"): an order of magnitude below where
  // the loss stopped falling, where it still falls fast and training is stable.
  curve.suggested = std::max(options.min_lr, curve.min_loss_lr / 10);
  return curve;
}

}  // namespace trainer_internal

absl::StatusOr<std::shared_ptr<const SharedFeatures>> ExtractFeatures(const TrainInput& input,
                                                                      const CancellationToken& cancel,
                                                                      TrainEvents* events) {
  return GuardInternal("extracting features", [&]() -> absl::StatusOr<std::shared_ptr<const SharedFeatures>> {
    TrainInput head_only = input;
    head_only.spec.stages.resize(1);
    head_only.spec.stages[0].train = "head";
    head_only.features = nullptr;
    TrainEvents silent;
    trainer_internal::Trainer trainer(head_only, cancel, events != nullptr ? *events : silent);
    return trainer.Features();
  });
}

absl::StatusOr<LrCurve> FindLearningRate(const TrainInput& input, const LrFindOptions& options,
                                         const CancellationToken& cancel) {
  return GuardInternal("finding a learning rate", [&]() -> absl::StatusOr<LrCurve> {
    TrainInput head_only = input;
    head_only.spec.stages.resize(1);
    head_only.spec.stages[0].train = "head";
    trainer_internal::Trainer trainer(head_only, cancel);
    return trainer.FindLearningRate(options);
  });
}

}  // namespace graft::core
