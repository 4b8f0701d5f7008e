#pragma once

// The trainer behind Train() (core/train/trainer.h), shared by its
// translation units: trainer.cc (setup, epochs, state), trainer_validate.cc
// (the validation pass), trainer_search.cc (shared features, the range
// test) and trainer_group.cc (the data-parallel step). Its inputs come from
// an InputFeed (decoding, augmentation) through a PrefixCache (the frozen
// blocks and their cached output).

#include <torch/optim.h>

#include <chrono>
#include <random>

#include "core/train/feature_cache.h"
#include "core/train/early_stopping.h"
#include "core/train/head.h"
#include "core/train/input_feed.h"
#include "core/train/one_pass_adam.h"
#include "core/train/prefix_cache.h"
#include "core/train/stage_loop.h"
#include "core/train/trainer.h"
#include "core/train/trainer_checkpoint.h"

namespace graft::core::trainer_internal {

using Clock = std::chrono::steady_clock;

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerSpec& o, std::vector<torch::Tensor> params);

// A validation pass's running counts, and the figures they make.
struct ValMetrics {
  double loss = 0, accuracy = 0, macro_f1 = 0;
};
class ValTally {
 public:
  explicit ValTally(int64_t classes);
  // One batch: its logits [B, classes], labels [B] and mean loss.
  void Add(const torch::Tensor& logits, const torch::Tensor& labels, double mean_loss);
  // Every rank's counts summed (a data-parallel group).
  absl::Status AllReduce(Collective& group);
  ValMetrics Finish(double images) const;

 private:
  int64_t classes_;
  double loss_sum_ = 0, correct_ = 0;
  // Per class: true positives, images predicted as it, images of it.
  torch::Tensor tp_, predicted_, support_;
};

class Trainer final : public EpochRunner {
 public:
  Trainer(const TrainInput& in, const CancellationToken& cancel, TrainEvents& events)
      : in_(in), spec_(in.spec), cancel_(cancel), events_(events), device_(in.resident->device) {}
  // Features() and FindLearningRate() report nothing.
  Trainer(const TrainInput& in, const CancellationToken& cancel) : Trainer(in, cancel, silent_) {}
  ~Trainer() override { LeaveFusion(); }

  absl::StatusOr<TrainedModel> Run();
  // Setup for a head-only use, then the features alone.
  absl::StatusOr<std::shared_ptr<const SharedFeatures>> Features();
  absl::StatusOr<LrCurve> FindLearningRate(const LrFindOptions& options);

 private:
  using Feed = PrefixCache::Feed;

  // EpochRunner: what RunStages drives.
  absl::Status BeginStage(size_t stage, bool restore_optimizer) override;
  absl::StatusOr<EpochMetrics> RunEpoch(size_t stage, int epoch_in_stage, int epoch, const EpochResume& resume,
                                        const SaveWithin& save_within) override;
  StateDict State() override { return TrainedState(); }
  absl::Status LoadState(const StateDict& state) override { return LoadTrainedState(state); }
  absl::Status SaveCheckpoint(const TrainerCheckpoint& checkpoint) override;

  friend class ::graft::core::HeadFusion;

  absl::Status Setup();
  // Joins in_.fusion when this run can train in it (a head-only run on
  // adopted features, alone, without checkpoints or a range test); else
  // leaves it and trains alone.
  void JoinFusion();
  void LeaveFusion();
  // RunEpoch of a fused member: waits for the round that trains it.
  absl::StatusOr<EpochMetrics> FusedRunEpoch(size_t stage, int epoch_in_stage, int epoch);
  // Epoch `epoch`'s training batches (its seeded order); `drop_lone_last`:
  // without a last batch of one image.
  std::vector<std::vector<int64_t>> EpochBatches(int epoch, bool drop_lone_last) const;
  // The validation split's batches (in a data-parallel group, this rank's share).
  std::vector<std::vector<int64_t>> ValBatches() const;
  // What an epoch's random draws follow: (seed, epoch, batch) alone, so that
  // a resumed epoch, a rank of a group and a fused member draw what the
  // uninterrupted run alone draws.
  uint64_t EpochSeed(int epoch) const { return spec_.seed * 7919 + static_cast<uint64_t>(epoch); }  // torch's
  uint64_t FeedSeed(int epoch) const { return MixSeed(spec_.seed, static_cast<uint64_t>(epoch), 1); }
  uint64_t DropoutSeed(int epoch, int batch) const {
    return MixSeed(MixSeed(spec_.seed, static_cast<uint64_t>(epoch), 2), static_cast<uint64_t>(batch), 0);
  }
  uint64_t StepSeed(int epoch, int batch) const {  // torch's, for the step
    return MixSeed(MixSeed(spec_.seed, static_cast<uint64_t>(epoch), 4), static_cast<uint64_t>(batch), 0);
  }
  // INVALID_ARGUMENT: the loss at (epoch, 0-based batch) is not finite.
  static absl::Status Diverged(double loss, int epoch, int batch);
  // The fused trials' epoch: every member of `stack` (all at this epoch)
  // trained one batch at a time in one computation and validated; each
  // member's metrics or error (a diverged loss, a cancel).
  static std::vector<absl::StatusOr<EpochMetrics>> FusedEpoch(const std::vector<Trainer*>& members,
                                                              HeadStack& stack, size_t stage, int epoch_in_stage,
                                                              int epoch);
  static std::vector<ValMetrics> FusedEvaluate(const std::vector<Trainer*>& members, HeadStack& stack);
  // The bfloat16 trunk the frozen part runs in (JobSpec::precision), or null
  // for fp32 (and on CUDA, where --mixed_precision decides).
  absl::StatusOr<BackbonePtr> FrozenTrunk() const;
  absl::StatusOr<LrCurve> RangeTest(const LrFindOptions& options);
  // Whether images are decoded by the training thread's team (CPU) rather
  // than ahead on the pool (CUDA).
  bool DecodeInTeam() const;
  torch::Tensor Tail(const torch::Tensor& at_k);
  void SetStageTrainable(const StageSpec& stage);
  // The head and every parameter SetStageTrainable left trainable.
  std::vector<torch::Tensor> StageParameters();
  absl::StatusOr<ValMetrics> Evaluate();
  // Data-parallel: whether this rank reads `item`.
  bool Owns(int64_t item) const { return group_ == nullptr || item % world_ == rank_; }
  std::vector<int64_t> Owned(const std::vector<int64_t>& items) const;
  // One step of a global batch on this rank's share of it (`feed`'s next
  // batch when the share is not empty): gradients, the batch's loss and
  // hits and every rank's cancel and stop flags all-reduced in one buffer.
  struct GroupStep {
    enum Outcome { kStepped, kCancelled, kStopped, kPeerStopped, kFailed } outcome = kStepped;
    double loss = 0;     // the global batch's mean loss
    double correct = 0;  // its hits
    std::string failure;
  };
  absl::StatusOr<GroupStep> StepInGroup(const std::vector<int64_t>& items, Feed& feed, size_t& next_feed,
                                        torch::optim::Optimizer& opt);
  // Batch-norm running statistics averaged over the ranks.
  absl::Status AverageBuffers();
  torch::Tensor Loss(const torch::Tensor& logits, const torch::Tensor& labels, bool weighted);
  StateDict TrainedState();
  absl::Status LoadTrainedState(const StateDict& state);

  TrainEvents silent_;
  const TrainInput& in_;
  JobSpec spec_;  // in_.spec, with a found learning rate
  const CancellationToken& cancel_;
  TrainEvents& events_;
  torch::Device device_;

  Preprocessing pre_;
  int n_ = 0;      // blocks
  int k_ = 0;      // first block the model owns
  BackbonePtr own_;  // trainable copy (blocks >= k_), null when only the head trains
  ClassifierHead head_{nullptr};
  std::vector<int64_t> train_items_, val_items_;
  std::vector<std::vector<int64_t>> train_by_class_;  // balanced_sampling: training images per class
  torch::Tensor labels_;         // [N] all images
  torch::Tensor class_weights_;
  double setup_seconds_ = 0;  // decoding and caching, charged to the first epoch run
  std::unique_ptr<torch::optim::Optimizer> opt_;  // the stage's (BeginStage)
  Clock::time_point last_save_;
  Collective* group_ = nullptr;  // in_.collective
  int rank_ = 0, world_ = 1;
  std::unique_ptr<InputFeed> input_;     // the images, decoded as batches need them
  std::unique_ptr<PrefixCache> prefix_;  // over input_: every batch at block k
  bool fused_ = false;      // epochs run in in_.fusion
  bool left_fusion_ = false;
  int fused_trials_ = 1;    // members in its first fused epoch
  // A fused member's Adam or AdamW (instead of opt_; null for the other
  // optimizers), chosen at the first fused step of stage one_pass_stage_.
  std::unique_ptr<OnePassAdam> one_pass_;
  int one_pass_stage_ = -1;
};

}  // namespace graft::core::trainer_internal
