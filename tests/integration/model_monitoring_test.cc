// Model monitoring as an operator sees it. A model trained on ants and bees
// is profiled at the end of its job on its validation split; what it then
// serves is compared with that profile in GetModel, on /metrics and in
// `graft models monitor`: its own kind of photos keep the drift score below
// 1, generated textures push it above within the window, and sending only
// ants moves the class shares away from the validation split's. The profile
// survives a restart, and Evaluate with set_profile makes it anew.

#include <sstream>

#include "client/cli_commands.h"
#include "core/util/files.h"
#include "tests/integration/training_fixture.h"
#include "tests/testing/http_get.h"
#include "tests/testing/textures.h"

namespace graft::server {
namespace {

class ModelMonitoringTest : public TrainingTest {
 protected:
  // Predicts `images` (encoded) with the model, 16 to a request, `total` images in all (cycling).
  void Serve(const std::string& model, const std::vector<std::string>& images, int total) {
    for (int done = 0; done < total;) {
      v1::PredictRequest request;
      request.add_models(model);
      for (int i = 0; i < 16 && done < total; ++i, ++done) {
        request.add_images()->set_encoded(images[static_cast<size_t>(done) % images.size()]);
      }
      auto r = client_->Predict(request);
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }

  static std::vector<std::string> Val(const std::string& only_class = "") {
    std::vector<std::string> out;
    for (const core::DatasetImage& image : graft::testing::HymenopteraImages(1000, 1000)) {
      if (image.split != core::Split::kVal || (!only_class.empty() && image.label != (only_class == "ants" ? 0 : 1))) {
        continue;
      }
      out.push_back(core::ReadFile(image.blob_path).value());
    }
    return out;
  }

  v1::ModelMonitoring Monitoring(const std::string& model) {
    auto m = client_->GetModel(model);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? m->monitoring() : v1::ModelMonitoring();
  }
};

TEST_F(ModelMonitoringTest, PhotosStayInDistributionTexturesDriftAndOneClassShiftsTheShares) {
  Restart([](ServerOptions& o) {
    o.monitor_window = 300;
    o.metrics_port = 0;
  });
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::JobSpec spec = Spec("hym", 2);
  spec.set_input_size(112);  // a quarter of the forward cost of 224 for the 1,600 images this test serves
  spec.set_model_name("insects");
  const std::string id = TrainModel(spec);
  ASSERT_FALSE(id.empty());

  // Profiled at the job's end, nothing served yet.
  v1::ModelMonitoring m = Monitoring(id);
  const std::vector<std::string> val = Val();
  ASSERT_TRUE(m.has_reference());
  EXPECT_EQ(m.reference_images(), static_cast<int64_t>(val.size()));
  EXPECT_EQ(m.window_predictions(), 0);
  EXPECT_EQ(m.window(), 300);
  EXPECT_EQ(m.class_shares_size(), 2);
  EXPECT_NEAR(m.class_shares(0).reference_share() + m.class_shares(1).reference_share(), 1, 1e-9);
  EXPECT_LT(m.drift_score(), 0) << "a drift score without predictions";

  // Its own kind of photos: in distribution.
  Serve(id, val, 300);
  m = Monitoring(id);
  EXPECT_EQ(m.window_predictions(), 300);
  EXPECT_EQ(m.predictions(), 300);
  ASSERT_GE(m.drift_score(), 0);
  EXPECT_LT(m.drift_score(), 1) << "the validation photos themselves drift";
  EXPECT_FALSE(m.drifting());
  EXPECT_LT(m.class_share_divergence(), 0.02);
  EXPECT_NEAR(m.mean_confidence(), m.reference_mean_confidence(), 0.05);
  const double photos_divergence = m.class_share_divergence();
  const double photos_drift = m.drift_score();
  std::string page = testing::HttpGet(server_->metrics_port(), "/metrics");
  const std::string labels = "{model=\"admin/insects\",version=\"1\"}";
  EXPECT_NEAR(testing::MetricValue(page, "graft_model_drift_score" + labels), photos_drift, 0.05) << page.substr(page.find("graft_model"), 3000);
  EXPECT_EQ(testing::MetricValue(page, "graft_model_predictions_total" + labels), 300) << page;
  EXPECT_GE(testing::MetricValue(page, "graft_model_class_share{model=\"admin/insects\",version=\"1\",class=\"ants\"}"), 0) << page;

  // An application that may predict with the model does not see everyone's traffic to it.
  {
    auto app = client_->CreateToken("app", v1::ROLE_INFERENCE);
    ASSERT_TRUE(app.ok()) << app.status();
    client::ClientOptions as_app;
    as_app.token = app->token();
    client::GraftClient app_client("127.0.0.1:" + std::to_string(server_->port()), as_app);
    auto seen = app_client.GetModel(id);
    ASSERT_TRUE(seen.ok()) << seen.status();
    EXPECT_FALSE(seen->has_monitoring()) << "an inference token sees the model's monitoring";
  }

  // Textures: the window fills with them and the score rises above 1.
  Serve(id, graft::testing::Textures(300), 300);
  m = Monitoring(id);
  EXPECT_GT(m.drift_score(), 1) << "textures did not drift";
  EXPECT_TRUE(m.drifting());
  const double textures_drift = m.drift_score();
  page = testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_GT(testing::MetricValue(page, "graft_model_drift_score" + labels), 1) << page;
  {
    auto model = client_->GetModel(id);
    ASSERT_TRUE(model.ok());
    std::ostringstream out;
    client::PrintMonitoring(*model, out);
    EXPECT_NE(out.str().find("DRIFTING"), std::string::npos) << out.str();
    EXPECT_NE(out.str().find("window:      300 predictions"), std::string::npos) << out.str();
  }

  // Only ants: the class shares move away from the validation split's.
  Serve(id, Val("ants"), 300);
  m = Monitoring(id);
  EXPECT_GT(m.class_share_divergence(), photos_divergence + 0.1) << "only ants, yet the shares look as before";
  std::cout << "drift score: photos " << photos_drift << ", textures " << textures_drift
            << "; class-share divergence: photos "
            << photos_divergence << ", only ants " << m.class_share_divergence() << "\n";

  // The profile is stored with the model: a restart serves it with the same
  // reference and a fresh window.
  Restart([](ServerOptions& o) {
    o.monitor_window = 300;
    o.metrics_port = 0;
  });
  m = Monitoring(id);
  ASSERT_TRUE(m.has_reference());
  EXPECT_EQ(m.reference_images(), static_cast<int64_t>(val.size()));
  EXPECT_EQ(m.predictions(), 0);
  const double threshold = m.drift_threshold();
  EXPECT_GT(threshold, 0);

  // Profiled again on the training images: a new reference, the window afresh.
  Serve(id, val, 20);
  v1::EvaluateRequest request;
  request.set_model(id);
  request.set_dataset("hym");
  request.set_split(v1::DATASET_SPLIT_TRAIN);
  request.set_set_profile(true);
  auto report = client_->Evaluate(request, [](const v1::EvaluateProgress&) {});
  ASSERT_TRUE(report.ok()) << report.status();
  m = Monitoring(id);
  EXPECT_EQ(m.reference_images(), report->images());
  EXPECT_NE(m.reference_images(), static_cast<int64_t>(val.size()));
  EXPECT_EQ(m.window_predictions(), 0);
}

}  // namespace
}  // namespace graft::server
