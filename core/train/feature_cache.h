#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace graft::core {

struct FeatureCacheOptions {
  int64_t memory_bytes = 2LL << 30;  // held in (device) memory up to this
  std::string spill_dir;             // beyond it: a file here, mapped; empty: no spill
  bool half = true;                  // store fp16 (gathered back as fp32)
  torch::Device device{torch::kCPU};
};

// Where a cache of `bytes` goes.
enum class CachePlacement { kMemory, kSpill, kNone };
CachePlacement PlaceCache(int64_t bytes, const FeatureCacheOptions& options);

// Frozen-prefix activations, one row per (image, view), written once and
// gathered every epoch. In memory when it fits the budget, else in a spill
// file under spill_dir that is mapped back and unlinked at once (nothing is
// left behind, even after a crash).
class FeatureCache {
 public:
  // `row_shape`: one image's activation shape. kNone placements are refused.
  static absl::StatusOr<std::unique_ptr<FeatureCache>> Create(const std::vector<int64_t>& row_shape, int64_t rows,
                                                              const FeatureCacheOptions& options);

  // Rows [first, first + batch.size(0)) from a float batch on any device.
  void Write(int64_t first, const torch::Tensor& batch);
  // The given rows as float32 on `device`.
  torch::Tensor Gather(const std::vector<int64_t>& rows, const torch::Device& device) const;

  bool spilled() const { return spilled_; }
  int64_t bytes() const { return data_.numel() * data_.element_size(); }
  torch::ScalarType dtype() const { return data_.scalar_type(); }

 private:
  FeatureCache(torch::Tensor data, bool spilled) : data_(std::move(data)), spilled_(spilled) {}

  torch::Tensor data_;
  bool spilled_;
};

// Frozen features of a dataset (TrainInput::images) at the end of the
// backbone's trunk, pooled: computed once and shared by every head trained
// on them (a search's trials, the learning-rate finder). Read-only once made.
struct SharedFeatures {
  std::unique_ptr<FeatureCache> cache;
  std::vector<int64_t> first_row;  // per image: its first row (-1: not cached here)
  int views = 1;                   // rows per training image (cached_views)
  std::string description;         // as TrainedModel::feature_cache
};

}  // namespace graft::core
