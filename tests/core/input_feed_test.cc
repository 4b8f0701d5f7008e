// core::InputFeed on images written here: what a batch holds does not depend
// on which threads made it, augmented items get their views, a broken image
// names itself, and the pool never runs more than the prefetch ahead.

#include "core/train/input_feed.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "core/util/files.h"
#include "tests/testing/archive_writer.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {

class InputFeedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 6; ++i) {
      DatasetImage image;
      image.label = i % 2;
      image.path = absl::StrCat("class", i % 2, "/", i, ".png");
      image.blob_path = dir_.Join(absl::StrCat(i, ".png"));
      // One colour each: colour jitter is what makes views differ.
      ASSERT_TRUE(WriteFileAtomic(image.blob_path, testing::EncodeImage("png", 20 + i, 24, 30 * i, 200, 10)).ok());
      images_.push_back(image);
    }
    options_.preprocessing.height = options_.preprocessing.width = 16;
    options_.preprocessing.resize_size = 18;
    options_.augmentation.horizontal_flip = true;
    options_.augmentation.random_resized_crop = true;
    options_.augmentation.color_jitter = 0.4;
    options_.decode_threads = 2;
  }

  testing::TempDir dir_;
  std::vector<DatasetImage> images_;
  InputFeed::Options options_;
};

const std::vector<std::vector<int64_t>> kBatches = {{0, 1}, {2, 3}, {4, 5}};

TEST_F(InputFeedTest, ABatchHoldsTheSameRowsWhicheverThreadsMakeIt) {
  InputFeed::Options team = options_, pool = options_;
  team.decode_in_team = true;
  pool.decode_in_team = false;
  pool.prefetch_batches = 2;
  const InputFeed a(images_, team), b(images_, pool);
  const auto all = [](int64_t) { return true; };
  const auto seed = [](size_t batch) { return MixSeed(11, batch, 0); };
  InputFeed::Pass pa = a.Start(kBatches, all, seed), pb = b.Start(kBatches, all, seed);
  for (size_t i = 0; i < kBatches.size(); ++i) {
    auto ra = pa.Next(), rb = pb.Next();
    ASSERT_TRUE(ra.ok() && rb.ok());
    ASSERT_EQ(ra->sizes(), (std::vector<int64_t>{2, 3, 16, 16}));
    EXPECT_TRUE(torch::equal(*ra, *rb)) << "batch " << i;
  }
  EXPECT_EQ(pa.Next().status().code(), absl::StatusCode::kOutOfRange);
  // Another seed draws other augmentations; no augmentation is the plain preprocessing.
  auto other = a.Rows({0}, all, 12, 1);
  auto same = a.Rows({0}, all, seed(0), 1);
  auto first = a.Start(kBatches, all, seed).Next();
  ASSERT_TRUE(other.ok() && same.ok() && first.ok());
  EXPECT_TRUE(torch::equal(*same, first->slice(0, 0, 1)));
  EXPECT_FALSE(torch::equal(*other, *same));
  EXPECT_EQ(a.images_read(), 6);
}

TEST_F(InputFeedTest, AugmentedItemsGetTheirViewsAndOthersOneRow) {
  const InputFeed feed(images_, options_);
  auto rows = feed.Rows({0, 1, 2}, [](int64_t item) { return item != 1; }, 5, 3);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->size(0), 3 + 1 + 3);
  EXPECT_FALSE(torch::equal((*rows)[0], (*rows)[1])) << "two views of one image drew the same";
}

TEST_F(InputFeedTest, AnImageThatDoesNotDecodeNamesItself) {
  ASSERT_TRUE(WriteFileAtomic(images_[3].blob_path, "not an image").ok());
  const InputFeed feed(images_, options_);
  auto rows = feed.Rows({2, 3}, [](int64_t) { return false; }, 0, 1);
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(rows.status().message().find("class1/3.png"), std::string::npos) << rows.status();
}

TEST_F(InputFeedTest, ThePoolRunsAtMostThePrefetchAhead) {
  InputFeed::Options pool = options_;
  pool.decode_in_team = false;
  pool.prefetch_batches = 1;
  const InputFeed feed(images_, pool);
  {
    InputFeed::Pass pass = feed.Start(kBatches, [](int64_t) { return false; }, [](size_t) { return 0; });
    ASSERT_TRUE(pass.Next().ok());
    // Batch 0 taken, batch 1 made ahead (or being made); batch 2 not started.
  }  // the pass waits for batch 1 before it goes
  EXPECT_EQ(feed.images_read(), 4);
}

}  // namespace
}  // namespace graft::core
