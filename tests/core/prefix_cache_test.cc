// core::PrefixCache on a tiny backbone (tests/fakes, random weights: no
// ../shared) and images written here: a cached batch is the frozen forward
// of its images, a run without room for the cache streams the same
// activations, cached views follow each batch's place in its epoch (what a
// resumed epoch relies on), fresh augmentations are never cached, and a
// cancel or a broken image stops the caching pass with its reason.

#include "core/train/prefix_cache.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "core/util/files.h"
#include "tests/fakes/tiny_backbone.h"
#include "tests/testing/archive_writer.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {

class PrefixCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 6; ++i) {
      DatasetImage image;
      image.label = i % 2;
      image.split = i < 4 ? Split::kTrain : Split::kVal;
      image.path = absl::StrCat("class", i % 2, "/", i, ".png");
      image.blob_path = dir_.Join(absl::StrCat(i, ".png"));
      ASSERT_TRUE(WriteFileAtomic(image.blob_path, testing::EncodeImage("png", 20 + i, 24, 30 * i, 200, 10)).ok());
      images_.push_back(image);
    }
    torch::manual_seed(3);
    resident_.spec = &spec_;
    resident_.module = spec_.make();
    resident_.module->eval();
    resident_.inference = resident_.module;
    feed_options_.preprocessing.height = feed_options_.preprocessing.width = 16;
    feed_options_.preprocessing.resize_size = 18;
    options_.k = 1;  // features.0 frozen, features.1 trains
    options_.cache.half = false;
    options_.batch_size = 4;
    options_.seed = 5;
  }

  void Augment(int cached_views) {
    feed_options_.augmentation.horizontal_flip = true;
    feed_options_.augmentation.color_jitter = 0.4;
    feed_options_.augmentation.cached_views = cached_views;
    options_.augmentation = feed_options_.augmentation;
  }

  std::vector<int64_t> All() const { return {0, 1, 2, 3, 4, 5}; }

  testing::TempDir dir_;
  std::vector<DatasetImage> images_;
  const BackboneSpec spec_ = fakes::TinySpec("tiny", 4);
  ResidentBackbone resident_;
  InputFeed::Options feed_options_;
  PrefixCache::Options options_;
  CancellationToken cancel_;
};

const auto kNone = [](int64_t) { return false; };
const auto kQuiet = [](int, int) {};

TEST_F(PrefixCacheTest, ACachedBatchIsTheFrozenForwardOfItsImages) {
  const InputFeed input(images_, feed_options_);
  PrefixCache prefix(resident_, images_, input, options_);
  std::vector<std::pair<int, int>> progress;
  const int64_t before = FrozenPrefixImages();
  ASSERT_TRUE(prefix.Build(All(), cancel_, [&](int b, int n) { progress.emplace_back(b, n); }).ok());
  EXPECT_EQ(FrozenPrefixImages() - before, 6);
  EXPECT_EQ(progress, (std::vector<std::pair<int, int>>{{1, 2}, {2, 2}}));
  ASSERT_TRUE(prefix.cached());
  EXPECT_EQ(prefix.description().rfind("memory fp32 6 rows ", 0), 0u) << prefix.description();

  auto rows = input.Rows({4, 5}, kNone, 0, 1);
  ASSERT_TRUE(rows.ok()) << rows.status();
  const torch::Tensor expected = prefix.Forward(*rows);
  EXPECT_EQ(expected.sizes(), (std::vector<int64_t>{2, 4, 8, 8})) << "block 0's output: 4 channels at 8x8";
  PrefixCache::Feed val = PrefixCache::Start({{4, 5}}, /*train=*/false, 0);
  auto at_k = prefix.AtK(val, 0);
  ASSERT_TRUE(at_k.ok()) << at_k.status();
  EXPECT_TRUE(torch::allclose(*at_k, expected, 1e-5, 1e-6));

  // Every later pass is gathered: no image runs through the prefix again.
  PrefixCache::Feed train = PrefixCache::Start({{0, 1}, {2, 3}}, /*train=*/true, 7);
  ASSERT_TRUE(prefix.AtK(train, 1).ok());
  ASSERT_TRUE(prefix.AtK(train, 0).ok());
  EXPECT_EQ(FrozenPrefixImages() - before, 6);
}

TEST_F(PrefixCacheTest, WithoutRoomEveryBatchRunsThePrefixAndGetsTheSame) {
  const InputFeed input(images_, feed_options_);
  PrefixCache cached(resident_, images_, input, options_);
  ASSERT_TRUE(cached.Build(All(), cancel_, kQuiet).ok());
  options_.cache.memory_bytes = 0;  // and no spill directory
  PrefixCache streamed(resident_, images_, input, options_);
  ASSERT_TRUE(streamed.Build(All(), cancel_, kQuiet).ok());
  EXPECT_FALSE(streamed.cached());
  EXPECT_EQ(streamed.description(), "none");
  EXPECT_EQ(streamed.features(), nullptr);

  PrefixCache::Feed a = PrefixCache::Start({{2, 4}, {5}}, false, 0), b = PrefixCache::Start({{2, 4}, {5}}, false, 0);
  const int64_t before = FrozenPrefixImages();
  for (size_t i = 0; i < 2; ++i) {
    auto from_cache = cached.AtK(a, i), from_images = streamed.AtK(b, i);
    ASSERT_TRUE(from_cache.ok() && from_images.ok());
    EXPECT_TRUE(torch::allclose(*from_cache, *from_images, 1e-5, 1e-6)) << "batch " << i;
  }
  EXPECT_EQ(FrozenPrefixImages() - before, 3);
  PrefixCache::Feed c = PrefixCache::Start({{0}, {1}}, false, 0);
  auto skipped = streamed.AtK(c, 1);
  EXPECT_EQ(skipped.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(skipped.status().message().find("out of order"), std::string::npos) << skipped.status();
}

TEST_F(PrefixCacheTest, CachedViewsFollowEachBatchsPlaceInItsEpoch) {
  Augment(/*cached_views=*/3);
  const InputFeed input(images_, feed_options_);
  PrefixCache prefix(resident_, images_, input, options_);
  ASSERT_TRUE(prefix.Build(All(), cancel_, kQuiet).ok());
  ASSERT_TRUE(prefix.cached());
  EXPECT_EQ(prefix.views(), 3);
  // Four training images with three views each, two val images with one.
  EXPECT_NE(prefix.description().find(" 14 rows "), std::string::npos) << prefix.description();
  const SharedFeatures& features = *prefix.features();

  std::set<int64_t> views_drawn;
  for (uint64_t seed = 0; seed < 12; ++seed) {
    PrefixCache::Feed whole = PrefixCache::Start({{0, 1}, {2, 3}}, true, seed);
    // A resumed epoch's feed starts at batch 1 but knows its place.
    PrefixCache::Feed resumed = PrefixCache::Start({{2, 3}}, true, seed, {1});
    auto a = prefix.AtK(whole, 1), b = prefix.AtK(resumed, 0);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_TRUE(torch::equal(*a, *b)) << "seed " << seed;
    // Each row is one of its image's cached views.
    for (int64_t r = 0; r < 2; ++r) {
      const int64_t item = 2 + r;
      int64_t match = -1;
      for (int64_t v = 0; v < 3; ++v) {
        const torch::Tensor view = features.cache->Gather({features.first_row[item] + v}, torch::kCPU);
        if (torch::equal(view[0], (*a)[r])) match = v;
      }
      ASSERT_GE(match, 0) << "seed " << seed << ", image " << item << ": not one of its cached views";
      views_drawn.insert(match);
    }
  }
  EXPECT_GT(views_drawn.size(), 1u) << "every epoch drew the same view";
  // Validation images have one row, whatever the seed.
  PrefixCache::Feed v1 = PrefixCache::Start({{4}}, false, 1), v2 = PrefixCache::Start({{4}}, false, 2);
  EXPECT_TRUE(torch::equal(*prefix.AtK(v1, 0), *prefix.AtK(v2, 0)));
}

TEST_F(PrefixCacheTest, FreshAugmentationsEveryEpochAreNeverCached) {
  Augment(/*cached_views=*/0);
  const InputFeed input(images_, feed_options_);
  PrefixCache prefix(resident_, images_, input, options_);
  const int64_t before = FrozenPrefixImages();
  ASSERT_TRUE(prefix.Build(All(), cancel_, kQuiet).ok());
  EXPECT_FALSE(prefix.cached());
  EXPECT_EQ(FrozenPrefixImages(), before) << "no caching pass";
  PrefixCache::Feed one = PrefixCache::Start({{0, 1}}, true, 1), other = PrefixCache::Start({{0, 1}}, true, 2);
  auto a = prefix.AtK(one, 0), b = prefix.AtK(other, 0);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE(torch::equal(*a, *b)) << "two epochs' draws were the same";
}

TEST_F(PrefixCacheTest, ACancelOrABrokenImageStopsTheCachingPass) {
  const InputFeed input(images_, feed_options_);
  CancellationToken cancelled;
  cancelled.Cancel();
  PrefixCache prefix(resident_, images_, input, options_);
  const absl::Status stopped = prefix.Build(All(), cancelled, kQuiet);
  EXPECT_EQ(stopped.code(), absl::StatusCode::kCancelled) << stopped;
  EXPECT_FALSE(prefix.cached());

  ASSERT_TRUE(WriteFileAtomic(images_[5].blob_path, "not an image").ok());
  const InputFeed broken(images_, feed_options_);
  PrefixCache second(resident_, images_, broken, options_);
  const absl::Status lost = second.Build(All(), cancel_, kQuiet);
  EXPECT_EQ(lost.code(), absl::StatusCode::kDataLoss) << lost;
  EXPECT_NE(lost.message().find("class1/5.png"), std::string::npos) << lost;
  EXPECT_FALSE(second.cached());
}

}  // namespace
}  // namespace graft::core
