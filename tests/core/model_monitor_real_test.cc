// The drift score on real embeddings: mobilenet_v2's pooled features (from
// ../shared/weights) of the ants-and-bees validation images make the
// reference; the training images (other photos of the same kind) stay below
// the threshold, generated textures rise far above it, and a mix rises once
// the textures are most of what the score compares.

#include <gtest/gtest.h>
#include <torch/torch.h>


#include "core/serve/model_monitor.h"
#include "core/serve/predictor.h"
#include "core/util/files.h"
#include "tests/testing/hymenoptera.h"
#include "tests/testing/textures.h"
#include "tests/testing/weights_zoo.h"

namespace graft::core {
namespace {

class ModelMonitorRealTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { zoo_ = testing::NewWeightsZoo(); }
  static void TearDownTestSuite() {
    delete zoo_;
    zoo_ = nullptr;
  }

  // mobilenet_v2's pooled embeddings of encoded images, [N, 1280].
  static torch::Tensor Embeddings(const std::vector<std::string>& encoded) {
    Predictor predictor(*zoo_, nullptr, {});
    std::vector<torch::Tensor> parts;
    for (size_t first = 0; first < encoded.size(); first += 32) {
      std::vector<ImageInput> inputs;
      for (size_t i = first; i < std::min(encoded.size(), first + 32); ++i) inputs.push_back({encoded[i], {}});
      auto r = predictor.Embed("mobilenet_v2", inputs, "");
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) return {};
      parts.push_back(r->embeddings);
    }
    return torch::cat(parts, 0);
  }

  static std::vector<std::string> Hymenoptera(Split split) {
    std::vector<std::string> out;
    for (const DatasetImage& image : testing::HymenopteraImages(1000, 1000)) {
      if (image.split != split) continue;
      auto bytes = ReadFile(image.blob_path);
      EXPECT_TRUE(bytes.ok()) << bytes.status();
      out.push_back(*bytes);
    }
    return out;
  }

  static std::vector<std::string> Textures(int n) { return testing::Textures(n); }

  static Zoo* zoo_;
};

Zoo* ModelMonitorRealTest::zoo_ = nullptr;

TEST_F(ModelMonitorRealTest, TrainingPhotosStayBelowTheThresholdAndTexturesRiseAboveIt) {
  ASSERT_NE(zoo_, nullptr);
  const torch::Tensor reference = Embeddings(Hymenoptera(Split::kVal));
  ASSERT_EQ(reference.size(0), 153);
  const torch::Tensor two_classes = torch::full({reference.size(0), 2}, 0.5);
  auto profile = MakeReferenceProfile(reference, two_classes, 1);
  ASSERT_TRUE(profile.ok()) << profile.status();
  const auto shared = std::make_shared<const ReferenceProfile>(*profile);

  const torch::Tensor train = Embeddings(Hymenoptera(Split::kTrain));
  ASSERT_EQ(train.size(0), 244);  // the JPEGs: the set's one GIF is left out
  ModelMonitor same(shared, 2, MonitorOptions{});
  same.ObserveBatch(train, torch::full({train.size(0), 2}, 0.5), 1);
  const MonitorSnapshot photos = same.Read(1);
  ASSERT_NE(photos.drift_score, -1);
  EXPECT_LT(photos.drift_score, 1) << "other ants and bees read as drift: MMD² " << photos.drift_mmd2
                                   << " against a threshold of " << photos.drift_threshold;

  const torch::Tensor textures = Embeddings(Textures(100));
  ModelMonitor shifted(shared, 2, MonitorOptions{});
  shifted.ObserveBatch(textures, torch::full({textures.size(0), 2}, 0.5), 1);
  const MonitorSnapshot away = shifted.Read(1);
  EXPECT_GT(away.drift_score, 5) << "textures barely moved the score";
  EXPECT_TRUE(away.drifting);
  // Photos first, then textures: the score follows the latest predictions.
  ModelMonitor mixed(shared, 2, MonitorOptions{});
  mixed.ObserveBatch(train, torch::full({train.size(0), 2}, 0.5), 1);
  EXPECT_FALSE(mixed.Read(1).drifting);
  mixed.ObserveBatch(textures, torch::full({textures.size(0), 2}, 0.5), 2);
  EXPECT_TRUE(mixed.Read(2).drifting) << "score " << mixed.Read(2).drift_score;
  std::cout << "drift score: training photos " << photos.drift_score << ", textures " << away.drift_score
            << ", photos then textures " << mixed.Read(2).drift_score << "\n";
}

}  // namespace
}  // namespace graft::core
