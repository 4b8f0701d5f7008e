// The trainer's inputs: the frozen prefix, the feature cache, and the feeds
// that hand each batch at block k to the training loop (decoding,
// preprocessing and augmentation: core/train/input_feed.h).

#include <atomic>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/data/augment.h"
#include "core/train/trainer_internal.h"
#include "core/util/device.h"
#include "core/util/log.h"

namespace graft::core::trainer_internal {

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

namespace {
std::atomic<int64_t> prefix_images{0};
}  // namespace

torch::Tensor Trainer::Prefix(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(in_.resident->compute_mu);
  const AutocastScope autocast(device_, in_.mixed_precision, torch::kBFloat16);
  torch::Tensor y = in_.resident->inference->ForwardTrunk(ToDevice(images, device_), 0, static_cast<size_t>(k_));
  if (k_ == n_) y = BackboneImpl::Pool(y);
  return y.to(torch::kFloat32).contiguous();
}

absl::Status Trainer::BuildCache() {
  if (in_.features != nullptr && k_ == n_) {  // extracted before, for this head-only run
    features_ = in_.features;
    cache_ = features_->cache.get();
    views_ = features_->views;
    cache_desc_ = features_->description;
    return absl::OkStatus();
  }
  const AugmentationSpec& aug = spec_.augmentation;
  if (aug.any() && aug.cached_views == 0) return absl::OkStatus();  // fresh augmentations every epoch
  views_ = aug.any() ? aug.cached_views : 1;
  auto built = std::make_shared<SharedFeatures>();
  built->views = views_;
  std::vector<int64_t>& first_row = built->first_row;
  first_row.assign(in_.images.size(), -1);
  // In a data-parallel group: this rank's images only.
  std::vector<int64_t> cached;
  int64_t rows = 0;
  for (size_t i = 0; i < in_.images.size(); ++i) {
    if (!Owns(static_cast<int64_t>(i))) continue;
    cached.push_back(static_cast<int64_t>(i));
    first_row[i] = rows;
    rows += in_.images[i].split == Split::kTrain ? views_ : 1;
  }
  if (cached.empty()) return absl::OkStatus();
  const torch::Tensor probe = Prefix(torch::zeros({1, 3, pre_.height, pre_.width}));
  const std::vector<int64_t> row_shape(probe.sizes().begin() + 1, probe.sizes().end());
  FeatureCacheOptions options = in_.feature_cache;
  options.device = device_;
  const int64_t bytes = rows * (probe.numel() * (options.half ? 2 : 4));
  if (PlaceCache(bytes, options) == CachePlacement::kNone) {
    ABSL_LOG(INFO) << "frozen features (" << bytes << " bytes) fit neither the cache budget nor a spill file; "
                   << "running the frozen part every batch";
    views_ = 1;
    return absl::OkStatus();
  }
  auto created = FeatureCache::Create(row_shape, rows, options);
  if (!created.ok()) {  // e.g. the spill file could not be sized: train without a cache
    ABSL_LOG(WARNING) << "no feature cache: " << created.status().message();
    views_ = 1;
    return absl::OkStatus();
  }
  built->cache = std::move(*created);
  FeatureCache& cache = *built->cache;
  // Decode and augment on the pool, batches ahead, while the prefix runs here.
  std::vector<std::vector<int64_t>> batches;
  for (size_t b = 0; b < cached.size(); b += static_cast<size_t>(spec_.batch_size)) {
    batches.emplace_back(cached.begin() + static_cast<long>(b),
                         cached.begin() + static_cast<long>(std::min(cached.size(), b + spec_.batch_size)));
  }
  // Epoch 1's feature extraction: each batch decoded by this thread's team
  // just before its forward (CPU), or ahead on the pool (CUDA).
  const auto augment = [this](int64_t i) {
    return spec_.augmentation.any() && in_.images[static_cast<size_t>(i)].split == Split::kTrain;
  };
  InputFeed::Pass pass = input_->Start(batches, augment, [seed = spec_.seed](size_t) { return seed; }, views_);
  using Clock = std::chrono::steady_clock;
  const auto pass_start = Clock::now();
  double prepare_s = 0, forward_s = 0;
  for (size_t b = 0; b < batches.size(); ++b) {
    const auto batch_start = Clock::now();
    if (cancel_.cancelled()) return absl::CancelledError("cancelled while caching features");
    absl::StatusOr<torch::Tensor> prepared = pass.Next();
    if (!prepared.ok()) return prepared.status();
    const torch::Tensor& images = *prepared;
    const auto forward_start = Clock::now();
    prepare_s += std::chrono::duration<double>(forward_start - batch_start).count();
    const int64_t first = first_row[static_cast<size_t>(batches[b].front())];
    prefix_images.fetch_add(static_cast<int64_t>(batches[b].size()), std::memory_order_relaxed);
    for (int64_t r = 0; r < images.size(0); r += kMaxForwardRows) {
      cache.Write(first + r, Prefix(images.slice(0, r, r + kMaxForwardRows)));
    }
    forward_s += std::chrono::duration<double>(Clock::now() - forward_start).count();
    events_.OnFeatureProgress(in_.resident->spec->name, static_cast<int>(b + 1), static_cast<int>(batches.size()));
  }
  const double pass_s = std::chrono::duration<double>(Clock::now() - pass_start).count();
  ABSL_LOG(INFO) << "feature pass: " << cached.size() << " images in " << pass_s << " s ("
                 << static_cast<double>(cached.size()) / std::max(pass_s, 1e-9) << " img/s): preparing " << prepare_s
                 << " s, frozen forward and store " << forward_s << " s";
  cache_desc_ = absl::StrCat(cache.spilled() ? "spill" : "memory", " ", cache.dtype() == torch::kHalf ? "fp16" : "fp32",
                             " ", rows, " rows ", cache.bytes(), " bytes");
  built->description = cache_desc_;
  ABSL_LOG(INFO) << "cached frozen features at block " << k_ << ": " << cache_desc_;
  if (!cache.spilled() && in_.on_cache_in_memory) in_.on_cache_in_memory(cache.bytes());
  cache_ = &cache;
  features_ = std::move(built);
  return absl::OkStatus();
}

Trainer::Feed Trainer::StartFeed(std::vector<std::vector<int64_t>> batches, bool train, uint64_t seed,
                                 std::vector<size_t> positions) {
  Feed feed;
  feed.batches = std::move(batches);
  feed.positions = std::move(positions);
  feed.train = train;
  feed.seed = seed;
  return feed;
}

absl::StatusOr<torch::Tensor> Trainer::AtK(Feed& feed, size_t b) {
  const std::vector<int64_t>& items = feed.batches[b];
  if (cache_ != nullptr) {
    std::mt19937_64 rng(MixSeed(feed.seed, feed.Position(b), 3));
    std::vector<int64_t> rows;
    for (int64_t i : items) {
      const bool many = feed.train && views_ > 1 && in_.images[static_cast<size_t>(i)].split == Split::kTrain;
      rows.push_back(features_->first_row[static_cast<size_t>(i)] +
                     (many ? static_cast<int64_t>(rng() % static_cast<uint64_t>(views_)) : 0));
    }
    return cache_->Gather(rows, device_);
  }
  if (feed.pass == nullptr) {
    const bool train = feed.train;
    feed.pass = std::make_unique<InputFeed::Pass>(input_->Start(
        feed.batches, [train](int64_t) { return train; },
        [seed = feed.seed, positions = feed.positions](size_t next) {
          return MixSeed(seed, positions.empty() ? next : positions[next], 0);
        }));
  }
  if (feed.pass->taken() != b) {
    return absl::InternalError(absl::StrCat("batch ", b, " asked for out of order (next is ", feed.pass->taken(), ")"));
  }
  const absl::StatusOr<torch::Tensor> images = feed.pass->Next();
  if (!images.ok()) return images.status();
  prefix_images.fetch_add(static_cast<int64_t>(items.size()), std::memory_order_relaxed);
  return Prefix(*images);
}

}  // namespace graft::core::trainer_internal

namespace graft::core {

int64_t FrozenPrefixImages() { return trainer_internal::prefix_images.load(std::memory_order_relaxed); }

}  // namespace graft::core
