#include "core/train/input_feed.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "core/data/augment.h"
#include "core/data/image_codec.h"
#include "core/data/resize.h"
#include "core/data/transforms.h"
#include "core/util/compute_threads.h"
#include "core/util/files.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {

InputFeed::InputFeed(const std::vector<DatasetImage>& images, Options options)
    : images_(images),
      options_(std::move(options)),
      read_(std::make_unique<std::atomic<bool>[]>(images.size())),
      pool_(std::make_unique<ThreadPool>(options_.decode_threads > 0 ? options_.decode_threads
                                                                     : DefaultDecodeThreads())) {}

absl::StatusOr<cv::Mat> InputFeed::Load(size_t i) const {
  if (!read_[i].exchange(true)) images_read_.fetch_add(1);
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(images_[i].blob_path));
  auto image = DecodeImage(bytes, DecodeLimits{});
  if (!image.ok()) return absl::DataLossError(absl::StrCat(images_[i].path, ": ", image.status().message()));
  // Keep what Resize(resize_size) makes of it (smaller, and the exact input
  // PreprocessImage would crop); augmentation crops from it too.
  const Preprocessing& pre = options_.preprocessing;
  if (std::min(image->cols, image->rows) <= pre.resize_size) return *image;
  return ResizeLikePil(*image, ResizeTarget(image->cols, image->rows, pre.resize_size));
}

torch::Tensor InputFeed::Prepare(int64_t item, const cv::Mat& image, bool augment, uint64_t seed, int views) const {
  const Preprocessing& pre = options_.preprocessing;
  std::vector<torch::Tensor> rows;
  for (int v = 0; v < (augment ? views : 1); ++v) {
    std::mt19937_64 rng(MixSeed(seed, static_cast<uint64_t>(item), static_cast<uint64_t>(v)));
    auto t = augment && options_.augmentation.any() ? AugmentImage(image, options_.augmentation, pre, rng)
                                                    : PreprocessImage(image, pre);
    rows.push_back(t.ok() ? *t : torch::zeros({3, pre.height, pre.width}));
  }
  return rows.size() == 1 ? rows[0].unsqueeze(0) : torch::stack(rows);
}

absl::StatusOr<torch::Tensor> InputFeed::MakeRows(const std::vector<int64_t>& items, const AugmentFn& augment,
                                                  uint64_t seed, int views, bool in_team) const {
  std::vector<absl::StatusOr<torch::Tensor>> made(items.size(), absl::UnknownError("not made"));
  const auto make = [&](int64_t j) {
    const int64_t item = items[static_cast<size_t>(j)];
    made[static_cast<size_t>(j)] = [&]() -> absl::StatusOr<torch::Tensor> {
      ASSIGN_OR_RETURN(const cv::Mat image, Load(static_cast<size_t>(item)));
      return GuardInternal("preparing " + images_[static_cast<size_t>(item)].path, [&]() -> absl::StatusOr<torch::Tensor> {
        return Prepare(item, image, augment(item), seed, views);
      });
    }();
  };
  if (in_team) {
    ParallelForEach(static_cast<int64_t>(items.size()), make);
  } else {
    for (size_t j = 0; j < items.size(); ++j) make(static_cast<int64_t>(j));
  }
  std::vector<torch::Tensor> rows;
  rows.reserve(items.size());
  for (auto& m : made) {
    if (!m.ok()) return m.status();
    rows.push_back(std::move(*m));
  }
  return torch::cat(rows, 0);
}

absl::StatusOr<torch::Tensor> InputFeed::Rows(const std::vector<int64_t>& items, const AugmentFn& augment,
                                              uint64_t seed, int views) const {
  return MakeRows(items, augment, seed, views, options_.decode_in_team);
}

InputFeed::Pass InputFeed::Start(std::vector<std::vector<int64_t>> batches, AugmentFn augment, SeedFn seed,
                                 int views) const {
  return Pass(*this, std::move(batches), std::move(augment), std::move(seed), views);
}

InputFeed::Pass::~Pass() {
  for (auto& f : ahead_) {
    if (f.valid()) f.wait();
  }
}

absl::StatusOr<torch::Tensor> InputFeed::Pass::Next() {
  if (next_ >= batches_.size()) return absl::OutOfRangeError("the pass has no more batches");
  const size_t b = next_++;
  if (feed_->options_.decode_in_team) {
    return feed_->MakeRows(batches_[b], augment_, seed_(b), views_, /*in_team=*/true);
  }
  const size_t limit = b + static_cast<size_t>(std::max(feed_->options_.prefetch_batches, 0));
  while (submitted_ < batches_.size() && submitted_ <= limit) {
    const size_t s = submitted_++;
    ahead_.push_back(feed_->pool_->Submit([feed = feed_, items = batches_[s], augment = augment_, seed = seed_(s),
                                           views = views_] {
      return feed->MakeRows(items, augment, seed, views, /*in_team=*/false);
    }));
  }
  auto rows = ahead_.front().get();
  ahead_.pop_front();
  return rows;
}

}  // namespace graft::core
