#include "core/train/feature_cache.h"

#include <torch/torch.h>

#include <atomic>
#include <filesystem>
#include <numeric>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "core/util/torch_status.h"

namespace graft::core {

namespace fs = std::filesystem;

CachePlacement PlaceCache(int64_t bytes, const FeatureCacheOptions& options) {
  if (bytes <= options.memory_bytes) return CachePlacement::kMemory;
  if (options.spill_dir.empty()) return CachePlacement::kNone;
  std::error_code ec;
  fs::create_directories(options.spill_dir, ec);
  const auto space = fs::space(options.spill_dir, ec);
  // Leave at least half the free disk to everything else.
  if (ec || static_cast<uintmax_t>(bytes) > space.available / 2) return CachePlacement::kNone;
  return CachePlacement::kSpill;
}

absl::StatusOr<std::unique_ptr<FeatureCache>> FeatureCache::Create(const std::vector<int64_t>& row_shape, int64_t rows,
                                                                   const FeatureCacheOptions& options) {
  const torch::ScalarType dtype = options.half ? torch::kHalf : torch::kFloat32;
  std::vector<int64_t> shape{rows};
  shape.insert(shape.end(), row_shape.begin(), row_shape.end());
  const int64_t numel = std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
  const int64_t bytes = numel * static_cast<int64_t>(c10::elementSize(dtype));
  switch (PlaceCache(bytes, options)) {
    case CachePlacement::kMemory:
      return GuardInternal("allocating the feature cache", [&]() -> absl::StatusOr<std::unique_ptr<FeatureCache>> {
        return std::unique_ptr<FeatureCache>(
            new FeatureCache(torch::empty(shape, torch::TensorOptions().dtype(dtype).device(options.device)), false));
      });
    case CachePlacement::kSpill: {
      static std::atomic<int> counter{0};
      const fs::path path = fs::path(options.spill_dir) /
                            absl::StrCat("features-", ::getpid(), "-", counter.fetch_add(1), ".spill");
      std::error_code ec;
      { std::FILE* f = std::fopen(path.c_str(), "wb"); if (f != nullptr) std::fclose(f); }
      fs::resize_file(path, static_cast<uintmax_t>(bytes), ec);
      if (ec) {
        fs::remove(path, ec);
        return absl::ResourceExhaustedError(absl::StrCat("cannot size the feature spill file ", path.string(), ": ",
                                                         ec.message()));
      }
      auto mapped = GuardInternal("mapping the feature spill file", [&]() -> absl::StatusOr<torch::Tensor> {
        return torch::from_file(path.string(), /*shared=*/true, numel, torch::TensorOptions().dtype(dtype)).view(shape);
      });
      fs::remove(path, ec);  // the mapping keeps the pages; the name goes now
      if (!mapped.ok()) return mapped.status();
      return std::unique_ptr<FeatureCache>(new FeatureCache(*mapped, true));
    }
    case CachePlacement::kNone:
      break;
  }
  return absl::ResourceExhaustedError(absl::StrCat("a feature cache of ", bytes, " bytes fits neither the memory budget (",
                                                   options.memory_bytes, ") nor a spill directory"));
}

void FeatureCache::Write(int64_t first, const torch::Tensor& batch) {
  data_.slice(0, first, first + batch.size(0)).copy_(batch.detach().contiguous());
}

torch::Tensor FeatureCache::Gather(const std::vector<int64_t>& rows, const torch::Device& device) const {
  const torch::Tensor index = torch::tensor(rows, torch::kInt64).to(data_.device());
  return data_.index_select(0, index).to(device).to(torch::kFloat32);
}

}  // namespace graft::core
