#pragma once

// The frozen part of a training run: blocks [0, k) of the resident backbone
// (the whole trunk, pooled, when only the head trains), run in eval mode
// under the backbone's compute lock. When the run's augmentation allows it
// (none, or a fixed number of cached views) its output is computed once per
// image and view into a FeatureCache and gathered every epoch after;
// otherwise every batch is decoded and run through it. Either way a pass's
// batch b at block k is what AtK() returns, and what it holds follows only
// (seed, the batch's place in its epoch): not whether it was cached, nor on
// which rank of a data-parallel group, nor whether the epoch was resumed.

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/data/augmentation_spec.h"
#include "core/data/dataset.h"
#include "core/train/feature_cache.h"
#include "core/train/input_feed.h"
#include "core/util/ids.h"
#include "core/zoo/zoo.h"

namespace graft::core {

class PrefixCache {
 public:
  struct Options {
    // Blocks [0, k) are frozen; k equal to the backbone's block count: the
    // whole trunk, pooled (a head-only run).
    size_t k = 0;
    bool mixed_precision = true;  // CUDA: forward under bfloat16 autocast
    // CPU: the trunk's bfloat16 copy (Zoo::Trunk) the frozen forward runs
    // instead, fed bfloat16; its output is read back as float32. Null: fp32.
    BackbonePtr bf16_trunk;
    // Budget, spill directory, fp16; its device is ignored (the backbone's).
    FeatureCacheOptions cache;
    // Decides whether a cache is made (augmentation without cached views:
    // fresh draws every epoch, none) and how many views each training image
    // gets.
    AugmentationSpec augmentation;
    int64_t batch_size = 32;  // images per batch of the caching pass
    uint64_t seed = 0;        // the caching pass's augmentation draws
    // Told the cache's bytes once it is made in (device) memory (not when
    // spilled): what a job is charged in the device memory budget.
    std::function<void(int64_t bytes)> on_cache_in_memory;
  };

  // `resident`, `images` and `input` (a feed over `images`) outlive this.
  PrefixCache(ResidentBackbone& resident, const std::vector<DatasetImage>& images, const InputFeed& input,
              Options options);
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // The frozen forward of preprocessed images: activations at block k
  // (pooled at the trunk's end), float32 and contiguous.
  torch::Tensor Forward(const torch::Tensor& images) const;

  // Uses features extracted before for these images (ExtractFeatures): only
  // for k at the trunk's end.
  void Adopt(std::shared_ptr<const SharedFeatures> features);

  // The caching pass over `items` (a data-parallel rank's own images), unless
  // the augmentation draws afresh every epoch or the features fit neither
  // the budget nor a spill file (then every batch runs the prefix and
  // cached() stays false). `progress(batch, batches)` after each batch;
  // CANCELLED when `cancel` trips; DATA_LOSS naming an image that does not
  // decode.
  absl::Status Build(const std::vector<int64_t>& items, const CancellationToken& cancel,
                     const std::function<void(int batch, int batches)>& progress);

  bool bf16() const { return options_.bf16_trunk != nullptr; }

  // One pass's batches at block k, taken in order.
  struct Feed {
    std::vector<std::vector<int64_t>> batches;
    // Each batch's place in its epoch (empty: its index here): what its
    // random draws follow, so that a resumed epoch (whose feed starts later)
    // or a rank of a group (whose feed skips batches it has no share of)
    // draws what the uninterrupted one-trainer epoch draws for that batch.
    std::vector<size_t> positions;
    bool train = false;  // training images get their augmentation or one of their cached views
    uint64_t seed = 0;
    size_t Position(size_t b) const { return positions.empty() ? b : positions[b]; }
    std::unique_ptr<InputFeed::Pass> pass;  // streamed: made at the first batch
  };
  static Feed Start(std::vector<std::vector<int64_t>> batches, bool train, uint64_t seed,
                    std::vector<size_t> positions = {});
  // Batch b of `feed` at block k: gathered from the cache (one view per
  // training image, drawn from the batch's own stream), or decoded and run
  // through the prefix (then b must be the feed's next batch).
  absl::StatusOr<torch::Tensor> AtK(Feed& feed, size_t b) const;

  bool cached() const { return cache_ != nullptr; }
  int views() const { return views_; }  // cached rows per training image
  // "none", or where the cache lives, its dtype, rows and bytes.
  const std::string& description() const { return description_; }
  std::shared_ptr<const SharedFeatures> features() const { return features_; }

 private:
  bool Augments(int64_t item) const;

  ResidentBackbone& resident_;  // its compute lock is taken per forward
  const std::vector<DatasetImage>& images_;
  const InputFeed& input_;
  const Options options_;
  const bool trunk_end_;  // k is the block count: pool the output
  std::shared_ptr<const SharedFeatures> features_;
  const FeatureCache* cache_ = nullptr;  // features_->cache, when cached
  int views_ = 1;
  std::string description_ = "none";
};

// Images run through a frozen prefix by any trainer since the start: how a
// test sees that features are computed once.
int64_t FrozenPrefixImages();

}  // namespace graft::core
