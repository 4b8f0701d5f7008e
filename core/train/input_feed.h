#pragma once

// A training run's images as tensors, streamed: each batch read, decoded and
// preprocessed (or augmented) when it is needed, never the whole dataset at
// once; on the CPU by the calling thread's intra-op team just before its
// forward pass, on CUDA a bounded number of batches ahead on a pool while the
// GPU computes. Every random draw follows (seed, image, view), so what a
// batch holds does not depend on which thread made it or when.

#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <vector>

#include <opencv2/core.hpp>

#include "absl/status/statusor.h"
#include "core/data/augmentation_spec.h"
#include "core/data/dataset.h"
#include "core/data/preprocessing.h"
#include "core/util/thread_pool.h"

namespace graft::core {

// The deterministic stream of (seed, a, b): augmentations do not depend on
// which thread prepares a batch or in which order.
inline uint64_t MixSeed(uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL ^ (a + 0x632BE59BD9B4E019ULL) * 0xBF58476D1CE4E5B9ULL;
  x ^= (b + 1) * 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

class InputFeed {
 public:
  struct Options {
    Preprocessing preprocessing;  // the run's, for its input size
    AugmentationSpec augmentation;
    // Decode on the calling thread's intra-op team (CPU), else on the pool,
    // `prefetch_batches` batches ahead (CUDA).
    bool decode_in_team = true;
    int prefetch_batches = 2;
    int decode_threads = 0;  // the pool's; 0: DefaultDecodeThreads()
  };
  // Which images a batch augments (the others are preprocessed only).
  using AugmentFn = std::function<bool(int64_t item)>;
  // The seed of batch b of a pass.
  using SeedFn = std::function<uint64_t(size_t b)>;

  // `images` outlives the feed.
  InputFeed(const std::vector<DatasetImage>& images, Options options);
  InputFeed(const InputFeed&) = delete;
  InputFeed& operator=(const InputFeed&) = delete;

  // [rows, 3, H, W] for `items`, read and decoded now: preprocessed, or, for
  // the items `augment` names, augmented with `views` rows each (view v of
  // item i drawn from MixSeed(seed, i, v)). DATA_LOSS naming the image that
  // does not decode.
  absl::StatusOr<torch::Tensor> Rows(const std::vector<int64_t>& items, const AugmentFn& augment, uint64_t seed,
                                     int views) const;

  // One pass over `batches`, taken in order with Next().
  class Pass {
   public:
    Pass(Pass&&) = default;
    ~Pass();  // waits for the batches being made ahead (they read the feed)
    // The next batch's rows (batch b with SeedFn(b)).
    absl::StatusOr<torch::Tensor> Next();
    size_t taken() const { return next_; }

   private:
    friend class InputFeed;
    Pass(const InputFeed& feed, std::vector<std::vector<int64_t>> batches, AugmentFn augment, SeedFn seed, int views)
        : feed_(&feed), batches_(std::move(batches)), augment_(std::move(augment)), seed_(std::move(seed)),
          views_(views) {}
    const InputFeed* feed_;
    std::vector<std::vector<int64_t>> batches_;
    AugmentFn augment_;
    SeedFn seed_;
    int views_ = 1;
    size_t next_ = 0, submitted_ = 0;
    std::deque<std::future<absl::StatusOr<torch::Tensor>>> ahead_;
  };
  Pass Start(std::vector<std::vector<int64_t>> batches, AugmentFn augment, SeedFn seed, int views = 1) const;

  bool decodes_in_team() const { return options_.decode_in_team; }
  const Preprocessing& preprocessing() const { return options_.preprocessing; }
  // Distinct images read so far.
  int64_t images_read() const { return images_read_.load(); }

 private:
  absl::StatusOr<cv::Mat> Load(size_t i) const;
  torch::Tensor Prepare(int64_t item, const cv::Mat& image, bool augment, uint64_t seed, int views) const;
  // Rows() one item after another (a pool task) or on the team.
  absl::StatusOr<torch::Tensor> MakeRows(const std::vector<int64_t>& items, const AugmentFn& augment, uint64_t seed,
                                         int views, bool in_team) const;

  const std::vector<DatasetImage>& images_;
  const Options options_;
  std::unique_ptr<std::atomic<bool>[]> read_;  // per image: read once at least
  mutable std::atomic<int64_t> images_read_{0};
  std::unique_ptr<ThreadPool> pool_;  // last: its tasks finish before the rest goes
};

}  // namespace graft::core
