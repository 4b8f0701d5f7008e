// Prediction records and feedback through gRPC (issue 38, items 1 and 2).
// The owner sets a record policy on a model name; an application's
// predictions then carry prediction ids and the chosen ones are kept with
// their image, answer and principal. The application labels its own
// records through Feedback; another tenant can neither list, read nor label
// them; store: false keeps nothing; records survive a restart and go with
// their model.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include <grpcpp/grpcpp.h>

#include "core/util/files.h"
#include "inference/grpc_predict_v2.grpc.pb.h"
#include "tests/integration/training_fixture.h"
#include "tests/testing/http_get.h"

namespace graft::server {
namespace {

namespace fs = std::filesystem;

int FilesUnder(const std::string& dir) {
  int n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    n += it->is_regular_file() ? 1 : 0;
  }
  return n;
}

// The first `per_class` validation images of each hymenoptera class, in
// name order: (class, bytes).
std::vector<std::pair<std::string, std::string>> ValImages(size_t per_class) {
  std::vector<std::pair<std::string, std::string>> images;
  for (const char* cls : {"ants", "bees"}) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(graft::testing::HymenopteraDir() + "/val/" + cls)) {
      files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    for (size_t i = 0; i < per_class; ++i) images.emplace_back(cls, core::ReadFile(files[i]).value());
  }
  return images;
}

TEST_F(TrainingTest, PredictionsAreRecordedByPolicyLabelledByTheirCallerAndHiddenFromOtherTenants) {
  Restart([](ServerOptions& o) { o.metrics_port = 0; });
  const auto images = ValImages(3);
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::JobSpec spec = Spec("hym", 1);
  spec.set_input_size(112);
  spec.set_model_name("insects");
  const std::string model_id = TrainModel(spec);
  ASSERT_FALSE(model_id.empty());

  auto app_token = client_->CreateToken("app", v1::ROLE_INFERENCE);
  auto bob_token = client_->CreateToken("bob", v1::ROLE_TRAIN);
  ASSERT_TRUE(app_token.ok() && bob_token.ok());
  client::ClientOptions as_app, as_bob;
  as_app.token = app_token->token();
  as_bob.token = bob_token->token();
  const std::string target = "127.0.0.1:" + std::to_string(server_->port());
  client::GraftClient app(target, as_app);
  client::GraftClient bob(target, as_bob);

  // Nothing is kept before the owner asks; answers carry ids all the same.
  v1::PredictRequest request;
  request.add_models("insects");
  for (const auto& [cls, bytes] : images) request.add_images()->set_encoded(bytes);
  auto before = app.Predict(request);
  ASSERT_TRUE(before.ok()) << before.status();
  for (const auto& p : before->results(0).predictions()) {
    EXPECT_TRUE(p.prediction_id().rfind("pred-", 0) == 0) << p.prediction_id();
    EXPECT_FALSE(p.recorded());
  }

  // Only the owner sets the policy.
  v1::RecordPolicy policy;
  policy.set_sample_rate(1);
  EXPECT_EQ(bob.SetRecordPolicy("admin/insects", policy).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(app.SetRecordPolicy("insects", policy).status().code(), absl::StatusCode::kPermissionDenied);
  policy.set_sample_rate(1.5);
  auto bad = client_->SetRecordPolicy("insects", policy);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  policy.set_sample_rate(1);
  auto set = client_->SetRecordPolicy("insects", policy);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->model(), "admin/insects");

  auto answered = app.Predict(request);
  ASSERT_TRUE(answered.ok()) << answered.status();
  std::set<std::string> ids;
  for (const auto& p : answered->results(0).predictions()) {
    EXPECT_TRUE(p.recorded());
    ids.insert(p.prediction_id());
  }
  EXPECT_EQ(ids.size(), images.size());
  v1::PredictRequest no_store = request;
  no_store.set_store(false);
  auto unrecorded = app.Predict(no_store);
  ASSERT_TRUE(unrecorded.ok());
  EXPECT_FALSE(unrecorded->results(0).predictions(0).recorded());
  const std::string unrecorded_id = unrecorded->results(0).predictions(0).prediction_id();
  EXPECT_EQ(client_->GetPrediction(unrecorded_id, false).status().code(), absl::StatusCode::kNotFound);

  v1::ListPredictionsRequest list;
  list.set_model("insects");
  auto listed = client_->ListPredictions(list);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->records_size(), static_cast<int>(images.size()));
  int64_t image_bytes = 0;
  for (const auto& [cls, bytes] : images) image_bytes += static_cast<int64_t>(bytes.size());
  EXPECT_EQ(listed->used_bytes(), image_bytes);
  for (const v1::PredictionRecord& r : listed->records()) {
    EXPECT_EQ(r.principal(), "app");
    EXPECT_EQ(r.model(), model_id);
    EXPECT_EQ(r.version(), 1);
    EXPECT_EQ(r.reason(), "sampled");
    EXPECT_TRUE(ids.count(r.prediction_id()));
  }

  // The caller reads its record, image as sent, and labels it; other tenants see nothing.
  size_t disagreements = 0;
  for (int i = 0; i < answered->results(0).predictions_size(); ++i) {
    const auto& p = answered->results(0).predictions(i);
    auto got = app.GetPrediction(p.prediction_id(), true);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->image(), images[i].second);
    EXPECT_EQ(got->top(0).label(), p.top(0).label());
    EXPECT_EQ(bob.GetPrediction(p.prediction_id(), false).status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(bob.Feedback(p.prediction_id(), images[i].first).status().code(), absl::StatusCode::kNotFound);
    auto labelled = app.Feedback(p.prediction_id(), images[i].first);
    ASSERT_TRUE(labelled.ok()) << labelled.status();
    EXPECT_EQ(labelled->feedback_label(), images[i].first);
    EXPECT_EQ(labelled->feedback_author(), "app");
    EXPECT_EQ(labelled->disagrees(), p.top(0).label() != images[i].first);
    disagreements += labelled->disagrees();
  }
  EXPECT_EQ(bob.ListPredictions(list).status().code(), absl::StatusCode::kNotFound)
      << "bob has no model named insects";
  list.set_model("admin/insects");
  EXPECT_EQ(bob.ListPredictions(list).status().code(), absl::StatusCode::kPermissionDenied);
  auto wasp = app.Feedback(*ids.begin(), "wasps");
  EXPECT_EQ(wasp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wasp.status().message().find("allow_new_classes"), std::string::npos) << wasp.status();

  const std::string metrics = graft::testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(metrics.find("graft_prediction_records_total{model=\"admin/insects\",outcome=\"sampled\"} " +
                         std::to_string(images.size())),
            std::string::npos);
  for (const bool agrees : {true, false}) {
    const size_t n = agrees ? images.size() - disagreements : disagreements;
    if (n == 0) continue;
    EXPECT_NE(metrics.find(std::string("graft_prediction_feedback_total{agrees=\"") + (agrees ? "true" : "false") +
                           "\",model=\"admin/insects\"} " + std::to_string(n)),
              std::string::npos)
        << agrees;
  }

  // Open Inference's ModelInfer names its answers too (response parameters);
  // the request parameter store = false keeps nothing.
  {
    auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
    auto oip = inference::GRPCInferenceService::NewStub(channel);
    for (const bool store : {true, false}) {
      inference::ModelInferRequest infer;
      infer.set_model_name("insects");
      if (!store) (*infer.mutable_parameters())["store"].set_bool_param(false);
      auto* input = infer.add_inputs();
      input->set_name("image");
      input->set_datatype("BYTES");
      input->add_shape(2);
      for (int i = 0; i < 2; ++i) input->mutable_contents()->add_bytes_contents(images[static_cast<size_t>(i)].second);
      grpc::ClientContext context;
      context.AddMetadata("authorization", "Bearer " + app_token->token());
      inference::ModelInferResponse out;
      const grpc::Status status = oip->ModelInfer(&context, infer, &out);
      ASSERT_TRUE(status.ok()) << status.error_message();
      EXPECT_EQ(out.parameters().at("recorded").string_param(), store ? "1,1" : "0,0");
      const std::string oip_ids = out.parameters().at("prediction_ids").string_param();
      const std::string first = oip_ids.substr(0, oip_ids.find(','));
      ASSERT_EQ(std::count(oip_ids.begin(), oip_ids.end(), ','), 1) << oip_ids;
      auto record = app.GetPrediction(first, true);
      EXPECT_EQ(record.ok(), store) << record.status();
      if (store && record.ok()) {
        EXPECT_EQ(record->image(), images[0].second);
      }
    }
  }

  // Records and their labels survive a restart; deleting the model deletes them.
  Restart([](ServerOptions&) {});
  list.set_feedback(v1::ListPredictionsRequest::WITH_FEEDBACK);
  auto after = client_->ListPredictions(list);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->records_size(), static_cast<int>(images.size()));
  size_t disagree_after = 0;
  for (const auto& r : after->records()) disagree_after += r.disagrees();
  EXPECT_EQ(disagree_after, disagreements);
  EXPECT_EQ(FilesUnder(dir_.Join("data/predictions")), static_cast<int>(images.size()));
  ASSERT_TRUE(client_->DeleteModel(model_id).ok());
  EXPECT_EQ(client_->GetPrediction(*ids.begin(), false).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FilesUnder(dir_.Join("data/predictions")), 0);
}

// Issue 38's loop up to the dataset: 40 validation images are predicted,
// labelled through Feedback, and become an ordinary dataset (one image sent
// twice is kept once) that a job then trains on.
TEST_F(TrainingTest, LabelledRecordsBecomeADatasetAJobTrainsOn) {
  const auto images = ValImages(20);
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::JobSpec spec = Spec("hym", 1);
  spec.set_input_size(112);
  spec.set_model_name("insects");
  ASSERT_FALSE(TrainModel(spec).empty());
  v1::RecordPolicy policy;
  policy.set_sample_rate(1);
  ASSERT_TRUE(client_->SetRecordPolicy("insects", policy).ok());

  std::vector<std::string> ids;
  for (size_t i = 0; i < images.size(); i += 10) {
    v1::PredictRequest request;
    request.add_models("insects");
    for (size_t j = i; j < i + 10; ++j) request.add_images()->set_encoded(images[j].second);
    auto answered = client_->Predict(request);
    ASSERT_TRUE(answered.ok()) << answered.status();
    for (const auto& p : answered->results(0).predictions()) ids.push_back(p.prediction_id());
  }
  // The first image again, and one more left without feedback.
  v1::PredictRequest again;
  again.add_models("insects");
  again.add_images()->set_encoded(images[0].second);
  ASSERT_TRUE(client_->Predict(again).ok());

  v1::CreateDatasetFromPredictionsRequest make;
  make.set_model("insects");
  make.set_name("insects-feedback");
  make.set_labelled_only(true);
  auto none = client_->CreateDatasetFromPredictions(make);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(none.status().message().find("no labelled prediction records"), std::string::npos) << none.status();

  for (size_t i = 0; i < ids.size(); ++i) ASSERT_TRUE(client_->Feedback(ids[i], images[i].first).ok()) << i;
  auto made = client_->CreateDatasetFromPredictions(make);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(made->records(), 40);
  EXPECT_EQ(made->unlabelled(), 1);
  EXPECT_EQ(made->rejected_size(), 0);
  const v1::Dataset& d = made->dataset();
  EXPECT_EQ(d.train_images() + d.val_images(), 40);
  ASSERT_EQ(d.classes_size(), 2);
  for (const auto& c : d.classes()) EXPECT_EQ(c.train() + c.val(), 20) << c.name();

  // Without labelled_only, the unlabelled repeat of image 0 is the same
  // image: its feedback label wins over the model's answer.
  make.set_labelled_only(false);
  make.set_name("insects-all");
  auto all = client_->CreateDatasetFromPredictions(make);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->records(), 41);
  EXPECT_EQ(all->duplicates(), 1);
  EXPECT_EQ(all->dataset().train_images() + all->dataset().val_images(), 40);
  make.set_name("insects-all");
  EXPECT_EQ(client_->CreateDatasetFromPredictions(make).status().code(), absl::StatusCode::kAlreadyExists);

  v1::JobSpec on_feedback = Spec("insects-feedback", 1);
  on_feedback.set_input_size(112);
  EXPECT_FALSE(TrainModel(on_feedback).empty());
}

}  // namespace
}  // namespace graft::server
