// A served model's monitor on the tiny fake backbone (no ../shared): the
// profile published with a model survives reopening the store and a damaged
// one costs monitoring, not serving; Predict feeds the monitor and an
// evaluation does not; and the model metrics stay bounded with 100 models of
// 1,000 classes (--monitor_max_classes).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/serve/model_store.h"
#include "core/serve/predictor.h"
#include "core/train/head.h"
#include "core/util/database.h"
#include "core/util/files.h"
#include "core/util/ids.h"
#include "core/zoo/state_dict.h"
#include "server/model_monitoring.h"
#include "tests/fakes/tiny_backbone.h"
#include "tests/testing/temp_dir.h"

namespace graft::server {
namespace {

using core::ModelInfo;
using core::ModelStore;

class ModelMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = core::Database::Open(dir_.Join("graft.db"));
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    auto zoo_options = fakes::TinyZooAt(dir_.Join("zoo"));
    ASSERT_TRUE(zoo_options.ok()) << zoo_options.status();
    auto zoo = core::Zoo::Create(*zoo_options);
    ASSERT_TRUE(zoo.ok()) << zoo.status();
    zoo_ = std::move(*zoo);
    Reopen();
  }

  void Reopen(core::MonitorOptions options = {}) {
    store_.reset();
    auto store = ModelStore::Open(*db_, dir_.Join("models"), *zoo_, options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  // A head-only model of the tiny backbone (8-dimensional features) with `classes` classes.
  ModelInfo Publish(const std::string& name, int classes, std::shared_ptr<const core::ReferenceProfile> profile) {
    ModelInfo info;
    info.id = "model-" + name;
    info.owner = "alice";
    info.name = name;
    info.backbone = "tiny";
    for (int c = 0; c < classes; ++c) info.class_names.push_back(absl::StrCat("class", c));
    info.preprocessing = fakes::TinySpec().preprocessing;
    info.first_trained_block = 2;
    info.profile = std::move(profile);
    core::ClassifierHead head(8, info.spec.head, classes, 1);
    core::StateDict weights;
    for (auto& [n, t] : core::ModuleStateDict(*head)) weights.emplace_back("head." + n, t);
    auto published = store_->Publish(info, weights);
    EXPECT_TRUE(published.ok()) << published.status();
    return published.value_or(info);
  }

  static std::shared_ptr<const core::ReferenceProfile> Profile(int classes) {
    torch::manual_seed(3);
    const torch::Tensor embeddings = torch::randn({60, 8});
    const torch::Tensor probabilities = torch::softmax(torch::randn({60, classes}), 1);
    auto p = core::MakeReferenceProfile(embeddings, probabilities, 7);
    EXPECT_TRUE(p.ok()) << p.status();
    return std::make_shared<const core::ReferenceProfile>(p.value());
  }

  graft::testing::TempDir dir_;
  std::unique_ptr<core::Database> db_;
  std::unique_ptr<core::Zoo> zoo_;
  std::unique_ptr<ModelStore> store_;
};

TEST_F(ModelMetricsTest, TheProfileSurvivesReopeningAndADamagedOneCostsOnlyMonitoring) {
  const auto profile = Profile(3);
  const ModelInfo info = Publish("shapes", 3, profile);
  Reopen();
  auto model = store_->Get(info.id);
  ASSERT_TRUE(model.ok()) << model.status();
  const auto monitor = (*model)->monitor();
  const auto& reference = monitor->reference();
  ASSERT_NE(reference, nullptr) << "the profile did not survive reopening the store";
  EXPECT_EQ(reference->images, 60);
  EXPECT_DOUBLE_EQ(reference->drift_threshold, profile->drift_threshold);
  EXPECT_EQ(reference->rows, profile->rows);
  EXPECT_EQ(reference->class_shares, profile->class_shares);

  // A damaged profile: the model still serves, without a reference.
  ASSERT_TRUE(core::WriteFileAtomic(dir_.Join("models/" + info.id + "/profile.json"), "{\"rows\": [1, 2").ok());
  Reopen();
  model = store_->Get(info.id);
  ASSERT_TRUE(model.ok()) << "a damaged profile stopped the model being served: " << model.status();
  EXPECT_EQ((*model)->monitor()->reference(), nullptr);

  // SetProfile writes a new one and starts the window afresh.
  (*model)->monitor()->Observe(nullptr, 0, std::vector<float>{0.2f, 0.5f, 0.3f}.data(), 3, 1);
  ASSERT_TRUE(store_->SetProfile(info.id, profile).ok());
  EXPECT_NE((*model)->monitor()->reference(), nullptr);
  EXPECT_EQ((*model)->monitor()->Read(2).observed, 0);
  Reopen();
  EXPECT_NE(store_->Get(info.id).value()->monitor()->reference(), nullptr);
}

TEST_F(ModelMetricsTest, PredictFeedsTheMonitorAndAnEvaluationDoesNot) {
  const ModelInfo info = Publish("shapes", 3, Profile(3));
  core::Predictor predictor(*zoo_, store_.get(), {});
  std::vector<core::ImageInput> inputs(1);
  torch::manual_seed(1);
  inputs[0].tensor = torch::rand({5, 3, 32, 32});
  auto r = predictor.PredictModels({info.id}, inputs, 1);
  ASSERT_TRUE(r.ok()) << r.status();
  auto model = store_->Get(info.id).value();
  core::MonitorSnapshot s = model->monitor()->Read(core::NowSeconds());
  EXPECT_EQ(s.observed, 5);
  // The window's top-1 shares are what Predict answered.
  std::map<int, double> answered;
  for (const auto& image : r->models[0].images) answered[image[0].index] += 0.2;
  for (const auto& [c, share] : answered) EXPECT_NEAR(s.class_shares.at(static_cast<size_t>(c)), share, 1e-9);
  ASSERT_TRUE(predictor.Probabilities(model, inputs).ok());
  EXPECT_EQ(model->monitor()->Read(core::NowSeconds()).observed, 5) << "an evaluation counted as served traffic";
}

TEST_F(ModelMetricsTest, SeriesStayBoundedWithAHundredModelsOfAThousandClasses) {
  constexpr int kModels = 100, kClasses = 1000, kCap = 20;
  std::vector<float> probabilities(kClasses, 0);
  for (int m = 0; m < kModels; ++m) {
    const ModelInfo info = Publish(absl::StrCat("many", m), kClasses, m == 0 ? Profile(kClasses) : nullptr);
    auto model = store_->Get(info.id).value();
    // Predictions spread over every class.
    for (int c = 0; c < kClasses; c += 7) {
      std::fill(probabilities.begin(), probabilities.end(), 0.0f);
      probabilities[static_cast<size_t>(c)] = 1;
      model->monitor()->Observe(nullptr, 0, probabilities.data(), kClasses, core::NowSeconds());
    }
  }
  const auto families = CollectModelMetrics(*store_, kCap, core::NowSeconds());
  size_t series = 0;
  std::map<std::string, size_t> per_family;
  for (const auto& f : families) {
    per_family[f.name] = f.metric.size();
    series += f.metric.size();
  }
  EXPECT_EQ(per_family["graft_model_class_share"], static_cast<size_t>(kModels * (kCap + 1)));
  EXPECT_EQ(per_family["graft_model_predictions_total"], static_cast<size_t>(kModels));
  EXPECT_EQ(per_family["graft_model_confidence_share"], static_cast<size_t>(kModels * core::kConfidenceBins));
  EXPECT_LE(series, static_cast<size_t>(kModels * (kCap + 1 + core::kConfidenceBins + 7)));
  // The classes past the cap are summed in "_other".
  for (const auto& f : families) {
    if (f.name != "graft_model_class_share") continue;
    std::map<std::string, double> total;
    for (const auto& metric : f.metric) {
      ASSERT_EQ(metric.label.size(), 3u);
      total[metric.label[0].value] += metric.gauge.value;
    }
    for (const auto& [model, sum] : total) EXPECT_NEAR(sum, 1, 1e-9) << model;
  }
  std::cout << kModels << " models of " << kClasses << " classes: " << series << " series\n";
}

}  // namespace
}  // namespace graft::server
