#include "core/train/prefix_cache.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/util/device.h"
#include "core/util/log.h"

namespace graft::core {
namespace {

constexpr int64_t kMaxForwardRows = 64;  // rows per frozen-prefix forward while caching

std::atomic<int64_t> prefix_images{0};

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point from, Clock::time_point to) { return std::chrono::duration<double>(to - from).count(); }

}  // namespace

int64_t FrozenPrefixImages() { return prefix_images.load(std::memory_order_relaxed); }

PrefixCache::PrefixCache(ResidentBackbone& resident, const std::vector<DatasetImage>& images,
                         const InputFeed& input, Options options)
    : resident_(resident),
      images_(images),
      input_(input),
      options_(std::move(options)),
      trunk_end_(options_.k >= resident.module->blocks().size()) {}

torch::Tensor PrefixCache::Forward(const torch::Tensor& images) const {
  torch::NoGradGuard no_grad;
  absl::MutexLock lock(&resident_.compute_mu);
  const AutocastScope autocast(resident_.device, options_.mixed_precision, torch::kBFloat16);
  torch::Tensor y = options_.bf16_trunk != nullptr
                        ? options_.bf16_trunk->ForwardTrunk(ToDevice(images, resident_.device).to(torch::kBFloat16), 0,
                                                            options_.k)
                        : resident_.inference->ForwardTrunk(ToDevice(images, resident_.device), 0, options_.k);
  if (trunk_end_) y = BackboneImpl::Pool(y);
  return y.to(torch::kFloat32).contiguous();
}

bool PrefixCache::Augments(int64_t item) const {
  return options_.augmentation.any() && images_[static_cast<size_t>(item)].split == Split::kTrain;
}

void PrefixCache::Adopt(std::shared_ptr<const SharedFeatures> features) {
  features_ = std::move(features);
  cache_ = features_->cache.get();
  views_ = features_->views;
  description_ = features_->description;
}

absl::Status PrefixCache::Build(const std::vector<int64_t>& items, const CancellationToken& cancel,
                                const std::function<void(int, int)>& progress) {
  const AugmentationSpec& aug = options_.augmentation;
  if (aug.any() && aug.cached_views == 0) return absl::OkStatus();  // fresh augmentations every epoch
  if (items.empty()) return absl::OkStatus();
  const int views = aug.any() ? aug.cached_views : 1;
  auto built = std::make_shared<SharedFeatures>();
  built->views = views;
  built->first_row.assign(images_.size(), -1);
  int64_t rows = 0;
  for (int64_t i : items) {
    built->first_row[static_cast<size_t>(i)] = rows;
    rows += images_[static_cast<size_t>(i)].split == Split::kTrain ? views : 1;
  }
  const Preprocessing& pre = input_.preprocessing();
  const torch::Tensor probe = Forward(torch::zeros({1, 3, pre.height, pre.width}));
  const std::vector<int64_t> row_shape(probe.sizes().begin() + 1, probe.sizes().end());
  FeatureCacheOptions options = options_.cache;
  options.device = resident_.device;
  const int64_t bytes = rows * (probe.numel() * (options.half ? 2 : 4));
  if (PlaceCache(bytes, options) == CachePlacement::kNone) {
    ABSL_LOG(INFO) << "frozen features (" << bytes << " bytes) fit neither the cache budget nor a spill file; "
                   << "running the frozen part every batch";
    return absl::OkStatus();
  }
  auto created = FeatureCache::Create(row_shape, rows, options);
  if (!created.ok()) {  // e.g. the spill file could not be sized: train without a cache
    ABSL_LOG(WARNING) << "no feature cache: " << created.status().message();
    return absl::OkStatus();
  }
  built->cache = std::move(*created);
  FeatureCache& cache = *built->cache;
  std::vector<std::vector<int64_t>> batches;
  const size_t bs = static_cast<size_t>(std::max<int64_t>(options_.batch_size, 1));
  for (size_t b = 0; b < items.size(); b += bs) {
    batches.emplace_back(items.begin() + static_cast<long>(b),
                         items.begin() + static_cast<long>(std::min(items.size(), b + bs)));
  }
  // Each batch decoded by this thread's team just before its forward (CPU),
  // or ahead on the pool while the prefix runs here (CUDA).
  InputFeed::Pass pass = input_.Start(
      batches, [this](int64_t i) { return Augments(i); }, [seed = options_.seed](size_t) { return seed; }, views);
  const auto pass_start = Clock::now();
  double prepare_s = 0, forward_s = 0;
  for (size_t b = 0; b < batches.size(); ++b) {
    const auto batch_start = Clock::now();
    if (cancel.cancelled()) return absl::CancelledError("cancelled while caching features");
    absl::StatusOr<torch::Tensor> prepared = pass.Next();
    if (!prepared.ok()) return prepared.status();
    const torch::Tensor& images = *prepared;
    const auto forward_start = Clock::now();
    prepare_s += Seconds(batch_start, forward_start);
    const int64_t first = built->first_row[static_cast<size_t>(batches[b].front())];
    prefix_images.fetch_add(static_cast<int64_t>(batches[b].size()), std::memory_order_relaxed);
    for (int64_t r = 0; r < images.size(0); r += kMaxForwardRows) {
      cache.Write(first + r, Forward(images.slice(0, r, r + kMaxForwardRows)));
    }
    forward_s += Seconds(forward_start, Clock::now());
    if (progress) progress(static_cast<int>(b + 1), static_cast<int>(batches.size()));
  }
  const double pass_s = Seconds(pass_start, Clock::now());
  ABSL_LOG(INFO) << "feature pass: " << items.size() << " images in " << pass_s << " s ("
                 << static_cast<double>(items.size()) / std::max(pass_s, 1e-9) << " img/s): preparing " << prepare_s
                 << " s, frozen forward and store " << forward_s << " s";
  built->description = absl::StrCat(cache.spilled() ? "spill" : "memory", " ",
                                    cache.dtype() == torch::kHalf ? "fp16" : "fp32", " ", rows, " rows ",
                                    cache.bytes(), " bytes", options_.bf16_trunk != nullptr ? ", bf16 trunk" : "");
  ABSL_LOG(INFO) << "cached frozen features at block " << options_.k << ": " << built->description;
  if (!cache.spilled() && options_.on_cache_in_memory) options_.on_cache_in_memory(cache.bytes());
  Adopt(std::move(built));
  return absl::OkStatus();
}

PrefixCache::Feed PrefixCache::Start(std::vector<std::vector<int64_t>> batches, bool train, uint64_t seed,
                                     std::vector<size_t> positions) {
  Feed feed;
  feed.batches = std::move(batches);
  feed.positions = std::move(positions);
  feed.train = train;
  feed.seed = seed;
  return feed;
}

absl::StatusOr<torch::Tensor> PrefixCache::AtK(Feed& feed, size_t b) const {
  if (b >= feed.batches.size()) {
    return absl::OutOfRangeError(absl::StrCat("batch ", b, " asked of a pass of ", feed.batches.size()));
  }
  const std::vector<int64_t>& items = feed.batches[b];
  if (cache_ != nullptr) {
    std::mt19937_64 rng(MixSeed(feed.seed, feed.Position(b), 3));
    std::vector<int64_t> rows;
    rows.reserve(items.size());
    for (int64_t i : items) {
      const int64_t first = features_->first_row[static_cast<size_t>(i)];
      if (first < 0) return absl::InternalError(absl::StrCat("image ", i, " is not in the feature cache"));
      const bool many = feed.train && views_ > 1 && images_[static_cast<size_t>(i)].split == Split::kTrain;
      rows.push_back(first + (many ? static_cast<int64_t>(rng() % static_cast<uint64_t>(views_)) : 0));
    }
    return cache_->Gather(rows, resident_.device);
  }
  if (feed.pass == nullptr) {
    const bool train = feed.train;
    feed.pass = std::make_unique<InputFeed::Pass>(input_.Start(
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
  return Forward(*images);
}

}  // namespace graft::core
