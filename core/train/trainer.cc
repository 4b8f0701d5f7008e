// Training: setup, the stages and epochs, trained state. Inputs come from
// InputFeed (decoding) through PrefixCache (the frozen blocks, the feature
// cache); the validation pass is in trainer_validate.cc, the data-parallel
// step in trainer_group.cc.

#include "core/train/trainer.h"

#include <torch/nn/functional/loss.h>
#include <torch/optim.h>
#include <torch/serialize.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/data/augment.h"
#include "core/train/schedule.h"
#include "core/train/trainer_checkpoint.h"
#include "core/train/trainer_internal.h"
#include "core/util/collective.h"
#include "core/util/device.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace trainer_internal {
namespace {

namespace F = torch::nn::functional;

}  // namespace

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerSpec& o, std::vector<torch::Tensor> params) {
  switch (o.kind) {
    case OptimizerKind::kSgd:
      return std::make_unique<torch::optim::SGD>(
          params, torch::optim::SGDOptions(o.learning_rate).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
    case OptimizerKind::kAdamW:
      return std::make_unique<torch::optim::AdamW>(
          params, torch::optim::AdamWOptions(o.learning_rate).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
    case OptimizerKind::kRmsprop:
      return std::make_unique<torch::optim::RMSprop>(
          params, torch::optim::RMSpropOptions(o.learning_rate).momentum(o.momentum).weight_decay(o.weight_decay));
    case OptimizerKind::kAdam:
      break;
  }
  return std::make_unique<torch::optim::Adam>(
      params, torch::optim::AdamOptions(o.learning_rate).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
}

bool Trainer::DecodeInTeam() const {
  switch (in_.decode_on) {
    case TrainInput::DecodeOn::kTeam:
      return true;
    case TrainInput::DecodeOn::kPool:
      return false;
    case TrainInput::DecodeOn::kAuto:
      break;
  }
  return device_.is_cpu();
}

torch::Tensor Trainer::Tail(const torch::Tensor& at_k) {
  const AutocastScope autocast(device_, in_.mixed_precision, torch::kBFloat16);
  torch::Tensor y = ToDevice(at_k, device_);
  if (k_ < n_) y = BackboneImpl::Pool(own_->ForwardTrunk(y, static_cast<size_t>(k_), static_cast<size_t>(n_)));
  const torch::Tensor logits = head_->forward(y);
  return autocast.active() ? logits.to(torch::kFloat32) : logits;  // the loss in float32
}

torch::Tensor Trainer::Loss(const torch::Tensor& logits, const torch::Tensor& labels, bool weighted) {
  auto options = F::CrossEntropyFuncOptions().label_smoothing(spec_.label_smoothing);
  if (weighted && class_weights_.defined()) options.weight(class_weights_);
  return F::cross_entropy(logits, labels, options);
}

void Trainer::SetStageTrainable(const StageSpec& stage) {
  if (own_ != nullptr) own_->SetTrainableBlocks(TrainableBlocks(stage.train, n_), stage.batch_norm == BatchNormMode::kTrain);
}

std::vector<torch::Tensor> Trainer::StageParameters() {
  std::vector<torch::Tensor> params = head_->parameters();
  if (own_ == nullptr) return params;
  for (auto& p : own_->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  return params;
}

StateDict Trainer::TrainedState() {
  StateDict out;
  for (const auto& [name, t] : ModuleStateDict(*head_)) out.emplace_back("head." + name, t.detach().clone());
  if (own_ == nullptr) return out;
  const auto& blocks = own_->blocks();
  for (const auto& [name, t] : ModuleStateDict(*own_)) {
    for (size_t b = static_cast<size_t>(k_); b < blocks.size(); ++b) {
      bool match = false;
      for (const auto& prefix : blocks[b].param_prefixes) match = match || name.rfind(prefix, 0) == 0;
      if (match) {
        out.emplace_back(name, t.detach().clone());
        break;
      }
    }
  }
  return out;
}

absl::Status Trainer::LoadTrainedState(const StateDict& state) {
  std::map<std::string, torch::Tensor> by_name(state.begin(), state.end());
  torch::NoGradGuard no_grad;
  const StateDict current = TrainedState();  // the names that must be present
  auto targets = ModuleStateDict(*head_);
  std::map<std::string, torch::Tensor> live;
  for (auto& [n, t] : targets) live["head." + n] = t;
  if (own_) {
    for (auto& [n, t] : ModuleStateDict(*own_)) live[n] = t;
  }
  for (const auto& [name, unused] : current) {
    const auto it = by_name.find(name);
    if (it == by_name.end()) return absl::DataLossError(absl::StrCat("checkpoint lacks '", name, "'"));
    live[name].copy_(it->second);
  }
  return absl::OkStatus();
}

absl::StatusOr<BackbonePtr> Trainer::FrozenTrunk() const {
  if (!device_.is_cpu()) return BackbonePtr();
  const bool cached = !spec_.augmentation.any() || spec_.augmentation.cached_views > 0;
  Precision p = Precision::kFp32;
  if (spec_.precision) {
    p = *spec_.precision;
    if (p != Precision::kFp32) {
      if (auto s = PrecisionSupported(p, device_); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("spec.precision: ", s.message()));
      }
    }
  } else if (cached && in_.zoo != nullptr && PrecisionSupported(Precision::kBf16, device_).ok()) {
    // auto: a backbone that cannot run in bfloat16 (a TorchScript one with
    // float32 constants) trains in float32.
    auto trunk = in_.zoo->Trunk(*in_.resident, Precision::kBf16);
    if (trunk.ok()) return trunk;
    ABSL_LOG(INFO) << "the frozen trunk trains in fp32: " << trunk.status().message();
    return BackbonePtr();
  }
  if (p == Precision::kFp32) return BackbonePtr();
  if (in_.zoo == nullptr) return absl::FailedPreconditionError("spec.precision: no zoo to make the bf16 trunk from");
  auto trunk = in_.zoo->Trunk(*in_.resident, p);
  if (!trunk.ok()) return absl::Status(trunk.status().code(), absl::StrCat("spec.precision: ", trunk.status().message()));
  return trunk;
}

absl::Status Trainer::Setup() {
  const auto& resident = *in_.resident;
  group_ = in_.collective;
  if (group_ != nullptr) {
    rank_ = group_->rank();
    world_ = group_->size();
  }
  pre_ = ForInputSize(resident.spec->preprocessing, spec_.input_size);
  n_ = static_cast<int>(resident.module->blocks().size());
  int max_trainable = 0;
  for (const auto& st : spec_.stages) max_trainable = std::max(max_trainable, TrainableBlocks(st.train, n_));
  k_ = n_ - max_trainable;
  torch::manual_seed(spec_.seed);
  if (k_ < n_) {
    own_ = resident.spec->make();
    RETURN_IF_ERROR(LoadStateDict(*own_, ModuleStateDict(*resident.module)));
    own_->to(device_);
    for (auto& p : own_->parameters()) p.set_data(p.contiguous());
  }
  head_ = ClassifierHead(resident.spec->feature_dim, spec_.head, in_.num_classes, MixSeed(spec_.seed, 17, 0));
  head_->to(device_);

  std::vector<int64_t> labels;
  std::vector<double> counts(static_cast<size_t>(in_.num_classes), 0);
  if (spec_.balanced_sampling) train_by_class_.resize(static_cast<size_t>(in_.num_classes));
  for (size_t i = 0; i < in_.images.size(); ++i) {
    labels.push_back(in_.images[i].label);
    if (in_.images[i].split == Split::kTrain) {
      train_items_.push_back(static_cast<int64_t>(i));
      counts[static_cast<size_t>(in_.images[i].label)] += 1;
      if (spec_.balanced_sampling) {
        train_by_class_[static_cast<size_t>(in_.images[i].label)].push_back(static_cast<int64_t>(i));
      }
    } else {
      val_items_.push_back(static_cast<int64_t>(i));
    }
  }
  if (train_items_.empty()) return absl::FailedPreconditionError("the dataset has no training images");
  if (val_items_.empty()) return absl::FailedPreconditionError("the dataset has no validation images");
  labels_ = torch::tensor(labels, torch::kInt64);
  if (spec_.class_weighting) {
    std::vector<float> w;
    for (double c : counts) w.push_back(static_cast<float>(c > 0 ? train_items_.size() / (in_.num_classes * c) : 0));
    class_weights_ = torch::tensor(w).to(device_);
  }
  InputFeed::Options feed;
  feed.preprocessing = pre_;
  feed.augmentation = spec_.augmentation;
  feed.decode_in_team = DecodeInTeam();
  feed.prefetch_batches = in_.prefetch_batches;
  feed.decode_threads = in_.decode_threads;
  input_ = std::make_unique<InputFeed>(in_.images, feed);
  PrefixCache::Options prefix;
  prefix.k = static_cast<size_t>(k_);
  prefix.mixed_precision = in_.mixed_precision;
  ASSIGN_OR_RETURN(prefix.bf16_trunk, FrozenTrunk());
  prefix.cache = in_.feature_cache;
  prefix.augmentation = spec_.augmentation;
  prefix.batch_size = spec_.batch_size;
  prefix.seed = spec_.seed;
  prefix.on_cache_in_memory = in_.on_cache_in_memory;
  prefix_ = std::make_unique<PrefixCache>(*in_.resident, in_.images, *input_, std::move(prefix));
  if (in_.features != nullptr && k_ == n_) {  // extracted before, for this head-only run
    prefix_->Adopt(in_.features);
    return absl::OkStatus();
  }
  std::vector<int64_t> mine;  // in a data-parallel group: this rank's images only
  for (size_t i = 0; i < in_.images.size(); ++i) {
    if (Owns(static_cast<int64_t>(i))) mine.push_back(static_cast<int64_t>(i));
  }
  return prefix_->Build(mine, cancel_, [this](int batch, int batches) {
    events_.OnFeatureProgress(in_.resident->spec->name, batch, batches);
  });
}

absl::Status Trainer::BeginStage(size_t stage, bool restore_optimizer) {
  const StageSpec& st = spec_.stages[stage];
  SetStageTrainable(st);
  opt_ = MakeOptimizer(st.optimizer, StageParameters());
  if (!restore_optimizer) return absl::OkStatus();
  return GuardInternal("restoring optimizer", [&]() -> absl::Status {
    torch::serialize::InputArchive archive;
    archive.load_from(in_.checkpoint_path);
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    opt_->load(optimizer_archive);
    return absl::OkStatus();
  });
}

absl::Status Trainer::SaveCheckpoint(const TrainerCheckpoint& checkpoint) {
  RETURN_IF_ERROR(SaveTrainerCheckpoint(in_.checkpoint_path, checkpoint, *opt_));
  last_save_ = Clock::now();
  return absl::OkStatus();
}

absl::Status Trainer::Diverged(double loss, int epoch, int batch) {
  return absl::InvalidArgumentError(absl::StrCat("training diverged: the loss is ", loss, " at epoch ", epoch,
                                                 ", batch ", batch + 1, "; try a lower learning rate"));
}

std::vector<std::vector<int64_t>> Trainer::EpochBatches(int epoch, bool drop_lone_last) const {
  std::mt19937_64 rng(spec_.seed * 104729 + static_cast<uint64_t>(epoch));
  std::vector<int64_t> order =
      spec_.balanced_sampling ? BalancedOrder(train_by_class_, train_items_.size(), rng) : train_items_;
  if (!spec_.balanced_sampling) std::shuffle(order.begin(), order.end(), rng);
  const size_t bs = static_cast<size_t>(spec_.batch_size);
  std::vector<std::vector<int64_t>> batches;
  for (size_t first = 0; first < order.size(); first += bs) {
    batches.emplace_back(order.begin() + static_cast<long>(first),
                         order.begin() + static_cast<long>(std::min(order.size(), first + bs)));
  }
  if (drop_lone_last && !batches.empty() && batches.back().size() == 1) batches.pop_back();
  return batches;
}

absl::StatusOr<EpochMetrics> Trainer::RunEpoch(size_t stage, int epoch_in_stage, int epoch,
                                              const EpochResume& resume, const SaveWithin& save_within) {
  if (fused_) return FusedRunEpoch(stage, epoch_in_stage, epoch);
  torch::optim::Optimizer& opt = *opt_;
  const StageSpec& st = spec_.stages[stage];
  const auto start = Clock::now();
  torch::manual_seed(EpochSeed(epoch));
  const int trainable = TrainableBlocks(st.train, n_);
  SetStageTrainable(st);
  head_->train();
  head_->Seed(MixSeed(spec_.seed, static_cast<uint64_t>(epoch), 2));
  const bool bn_trains = own_ != nullptr && trainable > 0 && st.batch_norm == BatchNormMode::kTrain;
  // Batch norm cannot train on one image: a lone last image sits this epoch out.
  std::vector<std::vector<int64_t>> all_batches = EpochBatches(epoch, /*drop_lone_last=*/bn_trains);
  const int batches = static_cast<int>(all_batches.size());
  // The order is the epoch's own (seeded), so a resumed epoch skips exactly
  // the batches its checkpoint holds.
  const int first = std::min(resume.batches_done, batches);
  // In a group the feed holds this rank's non-empty shares of the batches.
  std::vector<std::vector<int64_t>> fed;
  std::vector<size_t> positions;
  for (int b = first; b < batches; ++b) {
    std::vector<int64_t> share = group_ == nullptr ? all_batches[static_cast<size_t>(b)] : Owned(all_batches[static_cast<size_t>(b)]);
    if (share.empty()) continue;
    fed.push_back(std::move(share));
    positions.push_back(static_cast<size_t>(b));
  }
  Feed feed = PrefixCache::Start(std::move(fed), /*train=*/true, FeedSeed(epoch),
                        std::move(positions));
  size_t next_feed = 0;
  double loss_sum = resume.loss_sum, correct = resume.correct, seen = resume.seen, lr = st.optimizer.learning_rate;
  int saved_at = first;
  const auto running = [&](int b) { return EpochResume{b, loss_sum, correct, seen}; };
  for (int b = first; b < batches; ++b) {
    if (group_ == nullptr && cancel_.cancelled()) {  // in a group: agreed on in the step
      if (cancel_.stop_requested()) {
        if (b > saved_at && !in_.checkpoint_path.empty()) RETURN_IF_ERROR(save_within(running(b)));
        return absl::UnavailableError(absl::StrCat("stopped for a shutdown at epoch ", epoch, ", batch ", b + 1,
                                                   "; the job resumes there after the restart"));
      }
      return absl::CancelledError(absl::StrCat("cancelled at epoch ", epoch, ", batch ", b + 1));
    }
    if (in_.checkpoint_interval_s > 0 && b > saved_at && !in_.checkpoint_path.empty() && in_.write_checkpoints &&
        std::chrono::duration<double>(Clock::now() - last_save_).count() >= in_.checkpoint_interval_s) {
      RETURN_IF_ERROR(save_within(running(b)));
      saved_at = b;
    }
    const std::vector<int64_t>& items = all_batches[static_cast<size_t>(b)];
    // Dropout and any other draw of this step follow (seed, epoch, batch)
    // alone: a resumed epoch repeats the uninterrupted one exactly.
    head_->Seed(DropoutSeed(epoch, b));
    torch::manual_seed(StepSeed(epoch, b));
    lr = LearningRate(st, epoch_in_stage, static_cast<double>(b) / batches);
    for (auto& group : opt.param_groups()) group.options().set_lr(lr);
    if (group_ != nullptr) {
      ASSIGN_OR_RETURN(const GroupStep step, StepInGroup(items, feed, next_feed, opt));
      if (step.outcome == GroupStep::kCancelled) {
        return absl::CancelledError(absl::StrCat("cancelled at epoch ", epoch, ", batch ", b + 1));
      }
      if (step.outcome != GroupStep::kStepped) {
        // The weights are still those before this batch: rank 0 keeps them.
        if (in_.write_checkpoints && b > saved_at && !in_.checkpoint_path.empty()) {
          RETURN_IF_ERROR(save_within(running(b)));
        }
        const std::string where = absl::StrCat("epoch ", epoch, ", batch ", b + 1);
        if (step.outcome == GroupStep::kStopped) {
          return absl::UnavailableError(
              absl::StrCat("stopped for a shutdown at ", where, "; the job resumes there after the restart"));
        }
        return absl::UnavailableError(step.outcome == GroupStep::kPeerStopped
                                          ? absl::StrCat("a trainer of the data-parallel group stopped at ", where)
                                          : absl::StrCat("the data-parallel step failed at ", where, ": ", step.failure));
      }
      if (!std::isfinite(step.loss)) return Diverged(step.loss, epoch, b);
      loss_sum += step.loss * static_cast<double>(items.size());
      correct += step.correct;
      seen += static_cast<double>(items.size());
      events_.OnProgress(epoch, b + 1, batches);
      continue;
    }
    const torch::Tensor labels = labels_.index_select(0, torch::tensor(items)).to(device_);
    ASSIGN_OR_RETURN(const torch::Tensor at_k, prefix_->AtK(feed, next_feed++));
    const torch::Tensor logits = Tail(at_k);
    const torch::Tensor loss = Loss(logits, labels, true);
    const double value = loss.item<double>();
    if (!std::isfinite(value)) return Diverged(value, epoch, b);
    opt.zero_grad();
    loss.backward();
    opt.step();
    loss_sum += value * static_cast<double>(items.size());
    correct += logits.argmax(1).eq(labels).sum().item<double>();
    seen += static_cast<double>(items.size());
    events_.OnProgress(epoch, b + 1, batches);
  }
  const double train_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (group_ != nullptr && bn_trains) RETURN_IF_ERROR(AverageBuffers());
  ASSIGN_OR_RETURN(const ValMetrics val, Evaluate());
  EpochMetrics m;
  m.stage = static_cast<int>(stage) + 1;
  m.epoch = epoch;
  m.train_loss = seen > 0 ? loss_sum / seen : 0;
  m.train_accuracy = seen > 0 ? correct / seen : 0;
  m.val_loss = val.loss;
  m.val_accuracy = val.accuracy;
  m.val_macro_f1 = val.macro_f1;
  m.learning_rate = lr;
  m.images_per_second = (seen - resume.seen) / std::max(train_seconds + setup_seconds_, 1e-9);
  m.epoch_seconds = std::chrono::duration<double>(Clock::now() - start).count() + setup_seconds_;
  m.frozen_part_cached = prefix_->cached();
  m.frozen_part_bf16 = prefix_->bf16();
  setup_seconds_ = 0;
  return m;
}

absl::StatusOr<TrainedModel> Trainer::Run() {
  const auto setup_start = Clock::now();
  RETURN_IF_ERROR(Setup());
  setup_seconds_ = std::chrono::duration<double>(Clock::now() - setup_start).count();
  TrainedModel out;
  out.first_trained_block = k_;
  for (int b = k_; b < n_; ++b) out.trained_blocks.push_back(in_.resident->module->blocks()[static_cast<size_t>(b)].name);

  TrainerCheckpoint ckpt;
  const bool resuming = !in_.checkpoint_path.empty() && std::filesystem::exists(in_.checkpoint_path);
  if (resuming) {
    ASSIGN_OR_RETURN(ckpt, LoadTrainerCheckpoint(in_.checkpoint_path));
    RETURN_IF_ERROR(LoadTrainedState(ckpt.weights));
    if (ckpt.batches_done > 0) {
      ABSL_LOG(INFO) << "resuming epoch " << ckpt.epoch << " after batch " << ckpt.batches_done << " from "
                     << in_.checkpoint_path;
    } else {
      ABSL_LOG(INFO) << "resuming after epoch " << ckpt.epoch << " from " << in_.checkpoint_path;
    }
  }
  if (spec_.auto_learning_rate) {
    ASSIGN_OR_RETURN(const LrCurve curve, RangeTest(LrFindOptions{}));
    spec_.stages[0].optimizer.learning_rate = curve.suggested;
    out.found_learning_rate = curve.suggested;
    events_.OnLearningRateFound(curve);
  }
  last_save_ = Clock::now();
  JoinFusion();
  // A search's trial is restarted, never resumed; in a group rank 0 writes.
  const bool save = !in_.checkpoint_path.empty() && in_.write_checkpoints;
  absl::StatusOr<StagesResult> ran = RunStages(spec_, *this, events_, resuming ? &ckpt : nullptr, save);
  LeaveFusion();  // the other members go on without waiting for this one
  ASSIGN_OR_RETURN(const StagesResult stages, std::move(ran));
  out.final_metrics = stages.final_metrics;
  out.best_metrics = stages.best_metrics;
  out.restored_best = stages.restored_best;
  out.weights = TrainedState();
  out.feature_cache = prefix_->description();
  out.images_read = input_ != nullptr ? input_->images_read() : 0;
  out.fused_trials = fused_trials_;
  return out;
}

}  // namespace trainer_internal

std::vector<int64_t> BalancedOrder(const std::vector<std::vector<int64_t>>& by_class, size_t n, std::mt19937_64& rng) {
  std::vector<const std::vector<int64_t>*> classes;
  for (const auto& c : by_class) {
    if (!c.empty()) classes.push_back(&c);
  }
  std::vector<int64_t> order;
  if (classes.empty()) return order;
  order.reserve(n);
  std::uniform_int_distribution<size_t> pick_class(0, classes.size() - 1);
  for (size_t i = 0; i < n; ++i) {
    const std::vector<int64_t>& c = *classes[pick_class(rng)];
    order.push_back(c[std::uniform_int_distribution<size_t>(0, c.size() - 1)(rng)]);
  }
  return order;
}

absl::StatusOr<TrainedModel> Train(const TrainInput& input, const CancellationToken& cancel, TrainEvents& events) {
  return GuardInternal("training", [&]() -> absl::StatusOr<TrainedModel> {
    trainer_internal::Trainer trainer(input, cancel, events);
    return trainer.Run();
  });
}

}  // namespace graft::core
