// The frozen-feature cache changes speed, not results: cached and uncached
// training with the same seed reach the same accuracy, fp16 storage does not
// move it, a spilled cache trains exactly like an in-memory one and leaves no
// file behind, and K cached augmented views train a usable model.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "core/train/trainer.h"
#include "core/util/files.h"
#include "core/zoo/zoo.h"
#include "tests/testing/hymenoptera.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/paths.h"

namespace graft::core {
namespace {

namespace fs = std::filesystem;

std::vector<DatasetImage> Hymenoptera(int train_per_class, int val_per_class) {
  return graft::testing::HymenopteraImages(train_per_class, val_per_class);
}

class FeatureCacheTrainingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ZooOptions options;
    options.zoo_dir = fs::path(GRAFT_SHARED_DIR) / "weights";
    options.device = "cpu";
    auto zoo = Zoo::Create(options);
    ASSERT_TRUE(zoo.ok()) << zoo.status();
    zoo_ = zoo->release();
  }
  static void TearDownTestSuite() {
    delete zoo_;
    zoo_ = nullptr;
  }

  TrainInput Input(int epochs) {
    TrainInput in;
    in.spec.backbone = "mobilenet_v2";
    in.spec.dataset = "hymenoptera";
    in.spec.input_size = 128;  // keeps the uncached runs short on two cores
    in.spec.batch_size = 16;
    in.spec.seed = 11;
    in.spec.stages.push_back({});
    in.spec.stages[0].epochs = epochs;
    auto resident = zoo_->Resident("mobilenet_v2");
    EXPECT_TRUE(resident.ok()) << resident.status();
    in.resident = *resident;
    EXPECT_TRUE(NormalizeJobSpec(in.spec, static_cast<int>(in.resident->module->blocks().size())).ok());
    in.images = images_;
    in.num_classes = 2;
    in.checkpoint_path = (fs::path(dir_.path()) / "ckpt").string();
    in.feature_cache.memory_bytes = 1LL << 30;
    in.feature_cache.half = true;
    return in;
  }

  TrainedModel Run(const TrainInput& in) {
    fs::remove(in.checkpoint_path);
    CancellationToken cancel;
    TrainEvents events;
    auto trained = Train(in, cancel, events);
    EXPECT_TRUE(trained.ok()) << trained.status();
    return trained.ok() ? *trained : TrainedModel{};
  }

  static Zoo* zoo_;
  std::vector<DatasetImage> images_ = Hymenoptera(40, 30);
  graft::testing::TempDir dir_;
};

Zoo* FeatureCacheTrainingTest::zoo_ = nullptr;

constexpr double kOneImage = 1.0 / 60 + 1e-9;  // 60 validation images

TEST_F(FeatureCacheTrainingTest, CachedFp16Fp32AndUncachedReachTheSameAccuracy) {
  TrainInput in = Input(3);
  in.feature_cache.half = false;
  const TrainedModel fp32 = Run(in);
  EXPECT_EQ(fp32.feature_cache.rfind("memory fp32 140 rows", 0), 0u) << fp32.feature_cache;

  in.feature_cache.memory_bytes = 0;  // nowhere to cache: the frozen part runs every batch
  const TrainedModel uncached = Run(in);
  EXPECT_EQ(uncached.feature_cache, "none");

  in = Input(3);
  const TrainedModel fp16 = Run(in);
  EXPECT_EQ(fp16.feature_cache.rfind("memory fp16 140 rows", 0), 0u) << fp16.feature_cache;

  // A real model, not a coin flip, and the same one three ways.
  EXPECT_GE(fp32.final_metrics.val_accuracy, 0.85);
  std::cout << "val accuracy: fp32 cache " << fp32.final_metrics.val_accuracy << ", uncached "
            << uncached.final_metrics.val_accuracy << ", fp16 cache " << fp16.final_metrics.val_accuracy << "\n";
  EXPECT_NEAR(uncached.final_metrics.val_accuracy, fp32.final_metrics.val_accuracy, kOneImage);
  EXPECT_NEAR(uncached.final_metrics.val_loss, fp32.final_metrics.val_loss, 1e-3);
  EXPECT_NEAR(fp16.final_metrics.val_accuracy, fp32.final_metrics.val_accuracy, kOneImage);
  EXPECT_NEAR(fp16.final_metrics.val_loss, fp32.final_metrics.val_loss, 1e-2);
}

TEST_F(FeatureCacheTrainingTest, SpilledCacheTrainsLikeMemoryAndLeavesNoFile) {
  TrainInput in = Input(2);
  const TrainedModel memory = Run(in);
  ASSERT_EQ(memory.feature_cache.rfind("memory", 0), 0u) << memory.feature_cache;

  const std::string spill = (fs::path(dir_.path()) / "spill").string();
  in.feature_cache.memory_bytes = 1;
  in.feature_cache.spill_dir = spill;
  const TrainedModel spilled = Run(in);
  EXPECT_EQ(spilled.feature_cache.rfind("spill fp16 140 rows", 0), 0u) << spilled.feature_cache;
  EXPECT_DOUBLE_EQ(spilled.final_metrics.val_accuracy, memory.final_metrics.val_accuracy);
  EXPECT_NEAR(spilled.final_metrics.val_loss, memory.final_metrics.val_loss, 1e-6);
  EXPECT_TRUE(fs::is_empty(spill)) << "a spill file was left behind";
}

TEST_F(FeatureCacheTrainingTest, CachedAugmentedViewsTrainAUsableModel) {
  TrainInput in = Input(3);
  in.spec.augmentation.horizontal_flip = true;
  in.spec.augmentation.random_resized_crop = true;
  in.spec.augmentation.crop_scale_min = 0.5;
  in.spec.augmentation.cached_views = 3;
  ASSERT_TRUE(NormalizeJobSpec(in.spec, static_cast<int>(in.resident->module->blocks().size())).ok());
  const TrainedModel views = Run(in);
  // 80 training images x 3 views + 60 validation images.
  EXPECT_EQ(views.feature_cache.rfind("memory fp16 300 rows", 0), 0u) << views.feature_cache;
  EXPECT_GE(views.final_metrics.val_accuracy, 0.8);

  // Without cached views the augmentations are fresh every epoch: no cache.
  in.spec.augmentation.cached_views = 0;
  const TrainedModel live = Run(in);
  EXPECT_EQ(live.feature_cache, "none");
  EXPECT_GE(live.final_metrics.val_accuracy, 0.8);
}

TEST_F(FeatureCacheTrainingTest, UnfrozenTopBlocksCacheTheBlockBelowThem) {
  TrainInput in = Input(3);
  in.spec.stages[0].train = "top:1";
  const TrainedModel top = Run(in);
  EXPECT_EQ(top.first_trained_block, static_cast<int>(in.resident->module->blocks().size()) - 1);
  // The cache holds the block below the trained one (a feature map, not the
  // pooled vector): far more than 1280 values per row.
  ASSERT_EQ(top.feature_cache.rfind("memory fp16 140 rows", 0), 0u) << top.feature_cache;
  const int64_t bytes = std::stoll(top.feature_cache.substr(top.feature_cache.find("rows ") + 5));
  EXPECT_GT(bytes, 140 * 1280 * 2);
  EXPECT_GE(top.final_metrics.val_accuracy, 0.8);
}

}  // namespace
}  // namespace graft::core
