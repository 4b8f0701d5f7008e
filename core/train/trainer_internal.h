#pragma once

// The trainer behind Train() (core/train/trainer.h), shared by its
// translation units: trainer.cc (setup, epochs, evaluation, state),
// trainer_inputs.cc (decoding, the frozen prefix, the feature cache, feeds)
// and trainer_group.cc (the data-parallel step).

#include <torch/optim.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <random>

#include <opencv2/core.hpp>

#include "core/train/feature_cache.h"
#include "core/train/early_stopping.h"
#include "core/train/head.h"
#include "core/train/input_feed.h"
#include "core/train/trainer.h"
#include "core/train/trainer_checkpoint.h"
#include "core/util/thread_pool.h"

namespace graft::core::trainer_internal {

using Clock = std::chrono::steady_clock;

constexpr int64_t kMaxForwardRows = 64;  // rows per frozen-prefix forward while caching

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerSpec& o, std::vector<torch::Tensor> params);

class Trainer {
 public:
  Trainer(const TrainInput& in, const CancellationToken& cancel, TrainEvents& events)
      : in_(in), spec_(in.spec), cancel_(cancel), events_(events), device_(in.resident->device) {}
  // Features() and FindLearningRate() report nothing.
  Trainer(const TrainInput& in, const CancellationToken& cancel) : Trainer(in, cancel, silent_) {}

  absl::StatusOr<TrainedModel> Run();
  // Setup for a head-only use, then the features alone.
  absl::StatusOr<std::shared_ptr<const SharedFeatures>> Features();
  absl::StatusOr<LrCurve> FindLearningRate(const LrFindOptions& options);

 private:
  // Batches of one pass over the data at block k: from the feature cache,
  // or streamed from the images (InputFeed::Pass, made at the first batch).
  struct Feed {
    std::vector<std::vector<int64_t>> batches;
    // Each batch's place in its epoch (empty: its index here): what its
    // random draws follow, so that a resumed epoch (whose feed starts later)
    // or a rank of a group (whose feed skips batches it has no share of)
    // draws what the uninterrupted one-trainer epoch draws for that batch.
    std::vector<size_t> positions;
    bool train = false;
    uint64_t seed = 0;
    size_t Position(size_t b) const { return positions.empty() ? b : positions[b]; }
    std::unique_ptr<InputFeed::Pass> pass;
  };

  // Where an epoch starts: at its first batch, or after the batches a
  // mid-epoch checkpoint holds, with their running sums.
  struct Resume {
    int batches_done = 0;
    double loss_sum = 0, correct = 0, seen = 0;
  };
  // The state of the stage as of the last finished epoch, which a mid-epoch
  // checkpoint stores beside the weights of the epoch in progress.
  struct StageProgress {
    size_t stage = 0;
    EarlyStopping::State stopper;
    StateDict best_weights;
    EpochMetrics best_metrics, last_metrics;
  };

  absl::Status Setup();
  absl::StatusOr<LrCurve> RangeTest(const LrFindOptions& options);
  absl::Status BuildCache();
  // Whether images are decoded by the training thread's team (CPU) rather
  // than ahead on the pool (CUDA).
  bool DecodeInTeam() const;
  Feed StartFeed(std::vector<std::vector<int64_t>> batches, bool train, uint64_t seed,
                 std::vector<size_t> positions = {});
  // Batch b (in order) at block k: gathered from the cache (one random view
  // per training image, drawn from the batch's own stream), or streamed
  // (Feed) and run through the prefix.
  absl::StatusOr<torch::Tensor> AtK(Feed& feed, size_t b);
  torch::Tensor Prefix(const torch::Tensor& images);
  torch::Tensor Tail(const torch::Tensor& at_k);
  void SetStageTrainable(const StageSpec& stage);
  // The head and every parameter SetStageTrainable left trainable.
  std::vector<torch::Tensor> StageParameters();
  absl::StatusOr<EpochMetrics> RunEpoch(size_t stage, int epoch_in_stage, int epoch, torch::optim::Optimizer& opt,
                                        const Resume& resume);
  // Saves a checkpoint within `epoch` after `batches_done` batches.
  absl::Status SaveMidEpoch(int epoch, const Resume& done, torch::optim::Optimizer& opt);
  struct ValMetrics {
    double loss = 0, accuracy = 0, macro_f1 = 0;
  };
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
  std::shared_ptr<const SharedFeatures> features_;  // activations at block k, when cached
  const FeatureCache* cache_ = nullptr;             // features_->cache
  int views_ = 1;                                   // cached rows per training image
  torch::Tensor class_weights_;
  double setup_seconds_ = 0;  // decoding and caching, charged to the first epoch run
  StageProgress progress_;
  JobBest job_best_;  // restore_best by job: the best epoch across stages so far
  Clock::time_point last_save_;
  std::string cache_desc_ = "none";
  Collective* group_ = nullptr;  // in_.collective
  int rank_ = 0, world_ = 1;
  std::unique_ptr<InputFeed> input_;  // the images, decoded as batches need them
};

}  // namespace graft::core::trainer_internal
