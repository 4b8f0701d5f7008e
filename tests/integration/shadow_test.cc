// Shadow versions through gRPC. `prod` serves version 1 and mirrors every
// prediction to a shadow version off the request path; GetModel of the
// shadow says how its answers compared. A version shadowing itself agrees
// everywhere; a different model (another head on the same trunk, whose
// activations come from the request's own pass, or another backbone, run
// whole in the background) agrees exactly as Predict on each says image by
// image. A full shadow queue drops and counts (GetModel, /metrics) and fails
// no prediction; the shadow survives a restart, protects its version from
// deletion, and ends when the alias is set without it. Open Inference's
// ModelInfer through the alias is mirrored as Predict is.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "core/util/files.h"
#include "inference/grpc_predict_v2.grpc.pb.h"
#include "tests/integration/training_fixture.h"
#include "tests/testing/http_get.h"

namespace graft::server {
namespace {

class ShadowTest : public TrainingTest {
 protected:
  std::string Train(const std::string& backbone, int seed) {
    v1::JobSpec spec = Spec("hym", 1);
    spec.set_backbone(backbone);
    spec.set_seed(seed);
    spec.set_input_size(64);  // the smallest graft takes: what is checked does not depend on it
    spec.set_model_name("insects");
    return TrainModel(spec);
  }

  absl::StatusOr<v1::PredictResponse> Predict(const std::string& model, const std::vector<std::string>& images) {
    v1::PredictRequest r;
    r.add_models(model);
    for (const std::string& image : images) r.add_images()->set_encoded(image);
    r.set_top_k(2);
    return client_->Predict(r);
  }

  // The shadow's agreement with version 1, once `images` images are accounted for.
  v1::ShadowAgreement AwaitAgreement(const std::string& shadow_id, int64_t images) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    v1::ShadowAgreement last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto m = client_->GetModel(shadow_id);
      EXPECT_TRUE(m.ok()) << m.status();
      for (const auto& a : m->shadow_agreements()) {
        if (a.served_version() == 1) last = a;
      }
      if (last.images() + last.dropped_images() + last.failed_images() >= images) return last;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "the shadow accounted for " << last.images() << " + " << last.dropped_images() << " of "
                  << images << " images";
    return last;
  }

  // Sends every image through prod and checks the shadow's agreement
  // against Predict on version 1 and on the shadow, image by image.
  void ExpectAgreementAsPredictSays(const std::string& shadow_id, int64_t shadow_version) {
    int agree = 0;
    double abs_diff = 0;
    std::map<std::string, int> flips;
    for (const std::string& image : images_) {
      auto served = Predict("insects@prod", {image});
      ASSERT_TRUE(served.ok()) << served.status();
      auto v1 = Predict("insects:1", {image});
      auto shadow = Predict("insects:" + std::to_string(shadow_version), {image});
      ASSERT_TRUE(v1.ok() && shadow.ok());
      const auto& a = v1->results(0).predictions(0);
      const auto& b = shadow->results(0).predictions(0);
      const std::string& label = a.top(0).label();
      double p_shadow = 0;
      for (const auto& s : b.top()) p_shadow += s.label() == label ? s.probability() : 0;
      if (b.top(0).label() == label) {
        ++agree;
      } else {
        ++flips[label];
      }
      abs_diff += std::abs(p_shadow - a.top(0).probability());
    }
    const auto n = static_cast<int64_t>(images_.size());
    const v1::ShadowAgreement got = AwaitAgreement(shadow_id, n);
    EXPECT_EQ(got.images(), n);
    EXPECT_EQ(got.dropped_images(), 0);
    EXPECT_EQ(got.failed_images(), 0);
    EXPECT_DOUBLE_EQ(got.top1_agreement(), static_cast<double>(agree) / static_cast<double>(n));
    EXPECT_NEAR(got.mean_abs_diff(), abs_diff / static_cast<double>(n), 1e-4);
    for (const auto& c : got.classes()) EXPECT_EQ(c.flips(), flips[c.label()]) << c.label();
    std::cout << "version " << shadow_version << " shadowing version 1: top-1 agreement " << got.top1_agreement()
              << ", mean |dp| " << got.mean_abs_diff() << " over " << got.images() << " images\n";
  }

  std::vector<std::string> images_;
};

TEST_F(ShadowTest, AgreementIsWhatPredictSaysAndAFullQueueDropsAndCounts) {
  for (const char* cls : {"ants", "bees"}) {
    std::vector<std::string> files;
    for (const auto& e : std::filesystem::directory_iterator(graft::testing::HymenopteraDir() + "/val/" + cls)) {
      files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    for (size_t i = 0; i < 12 && i < files.size(); ++i) images_.push_back(core::ReadFile(files[i]).value());
  }
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  const std::string v1_id = Train("mobilenet_v2", 1);
  const std::string v2_id = Train("squeezenet1_1", 1);
  const std::string v3_id = Train("mobilenet_v2", 7);

  auto refused = client_->SetModelAlias("insects", "prod", 1, {}, 9);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(refused.status().message().find("no version 9 (shadow)"), std::string::npos) << refused.status();
  refused = client_->SetModelAlias("insects", "prod", 1, {}, -1);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound) << "a negative shadow version was taken";

  // A version shadowing itself: every answer the same.
  ASSERT_TRUE(client_->SetModelAlias("insects", "prod", 1, {}, 1).ok());
  for (const std::string& image : images_) ASSERT_TRUE(Predict("insects@prod", {image}).ok());
  // Open Inference's ModelInfer through the alias is mirrored too: 4 images more.
  {
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                       grpc::InsecureChannelCredentials());
    auto oip = inference::GRPCInferenceService::NewStub(channel);
    inference::ModelInferRequest request;
    request.set_model_name("insects@prod");
    auto* input = request.add_inputs();
    input->set_name("image");
    input->set_datatype("BYTES");
    input->add_shape(4);
    for (int i = 0; i < 4; ++i) input->mutable_contents()->add_bytes_contents(images_[static_cast<size_t>(i)]);
    grpc::ClientContext context;
    context.AddMetadata("authorization",
                        "Bearer " + graft::testing::ReadToken(GraftServer::AdminTokenPath(dir_.Join("data"))));
    inference::ModelInferResponse response;
    const grpc::Status status = oip->ModelInfer(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.model_version(), "1");
  }
  const auto n = static_cast<int64_t>(images_.size()) + 4;
  v1::ShadowAgreement self = AwaitAgreement(v1_id, n);
  EXPECT_EQ(self.images(), n);
  EXPECT_DOUBLE_EQ(self.top1_agreement(), 1.0);
  EXPECT_LT(self.mean_abs_diff(), 1e-6);

  // Another head on the same trunk (from the request's own pass), then another backbone.
  ASSERT_TRUE(client_->SetModelAlias("insects", "prod", 1, {}, 3).ok());
  auto shadow = client_->GetModel(v3_id);
  ASSERT_TRUE(shadow.ok());
  ASSERT_EQ(shadow->shadow_of_size(), 1);
  EXPECT_EQ(shadow->shadow_of(0), "prod");
  ExpectAgreementAsPredictSays(v3_id, 3);
  ASSERT_TRUE(client_->SetModelAlias("insects", "prod", 1, {}, 2).ok());
  ExpectAgreementAsPredictSays(v2_id, 2);
  auto del = client_->DeleteModel(v2_id);
  EXPECT_EQ(del.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(del.message().find("shadow"), std::string::npos) << del;

  // A queue with room for one request of two images: 8 clients overflow it.
  // Nothing fails, and every image is compared or counted as dropped.
  Restart([](ServerOptions& o) {
    o.shadow_queue_images = 2;
    o.metrics_port = 0;
  });
  shadow = client_->GetModel(v2_id);
  ASSERT_TRUE(shadow.ok());
  ASSERT_EQ(shadow->shadow_of_size(), 1) << "the restart lost the shadow";
  std::atomic<int> failed{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < 8; ++i) {
        const size_t at = static_cast<size_t>(c * 8 + i) % (images_.size() - 1);
        if (!Predict("insects@prod", {images_[at], images_[at + 1]}).ok()) ++failed;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed.load(), 0);
  const v1::ShadowAgreement full = AwaitAgreement(v2_id, 128);
  EXPECT_EQ(full.images() + full.dropped_images(), 128);
  EXPECT_GT(full.dropped_images(), 0) << "8 clients never filled a queue of 2 images";
  EXPECT_EQ(full.failed_images(), 0);
  const std::string page = testing::HttpGet(server_->metrics_port(), "/metrics");
  const std::string labels = "{model=\"admin/insects\",version=\"2\",served_version=\"1\"}";
  EXPECT_NE(page.find("graft_shadow_dropped_images_total" + labels + " " + std::to_string(full.dropped_images())),
            std::string::npos)
      << page.substr(page.find("graft_shadow"), 2000);
  EXPECT_NE(page.find("graft_shadow_images_total" + labels + " " + std::to_string(full.images())), std::string::npos);
  std::cout << full.dropped_images() << " of 128 images dropped by a full shadow queue\n";

  // Set without the shadow: it ends, and the version may go.
  ASSERT_TRUE(client_->SetModelAlias("insects", "prod", 1).ok());
  EXPECT_EQ(client_->GetModel(v2_id).value().shadow_of_size(), 0);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Predict("insects@prod", {images_[0]}).ok());
  const auto after = client_->GetModel(v2_id).value().shadow_agreements(0);
  EXPECT_EQ(after.images() + after.dropped_images(), 128) << "an alias without a shadow still mirrors";
  EXPECT_TRUE(client_->DeleteModel(v2_id).ok());
}

}  // namespace
}  // namespace graft::server
