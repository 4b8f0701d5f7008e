// Retraining on prediction feedback and promotion on evidence (issue 38,
// item 4). A weak champion (4 training images a class) serves insects@prod;
// an application's predictions are recorded, labelled through Feedback and
// made a dataset; `Retrain insects@prod --add it --promote prod --holdout H`
// trains a challenger with the champion's spec on its data plus the
// feedback, evaluates both on H and moves the alias because the challenger
// wins, while predictions through the alias keep succeeding. A challenger
// taught wrong labels on purpose loses, and the alias stays. A holdout the
// job would train on is refused by name.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "core/util/files.h"
#include "tests/integration/training_fixture.h"
#include "tests/testing/http_get.h"

namespace graft::server {
namespace {

namespace fs = std::filesystem;

// The hymenoptera files of one split and class, sorted by name.
std::vector<std::string> Files(const std::string& split, const std::string& cls) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(graft::testing::HymenopteraDir() + "/" + split + "/" + cls)) {
    files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Copies files [from, to) of split/cls to dir/folder/label.
void CopyInto(const std::string& dir, const std::string& folder, const std::string& label, const std::string& split,
              const std::string& cls, size_t from, size_t to) {
  const auto files = Files(split, cls);
  ASSERT_LE(to, files.size());
  fs::create_directories(fs::path(dir) / folder / label);
  for (size_t i = from; i < to; ++i) {
    fs::copy_file(files[i], fs::path(dir) / folder / label / fs::path(files[i]).filename());
  }
}

class PromotionTest : public TrainingTest {
 protected:
  // Waits for the job's end; its last Job message.
  v1::Job Finish(const std::string& id) {
    return WaitUntil(id, [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  }

  v1::RetrainRequest Retrain(const std::string& model, const std::string& add, const std::string& holdout) {
    v1::RetrainRequest r;
    r.set_model(model);
    r.add_add_datasets(add);
    r.mutable_promotion()->set_alias("prod");
    r.mutable_promotion()->set_holdout(holdout);
    return r;
  }
};

TEST_F(PromotionTest, FeedbackRetrainsAChallengerThatIsPromotedOnlyWhenItWinsOnTheHoldout) {
  // Base: 4 training images a class, validation 20 a class (val 20..39).
  // Feedback: val 0..19 a class, predicted and labelled. Holdout: val 40..69.
  // Wrong labels: train 4..23 a class, filed under the other class.
  Restart([](ServerOptions& o) { o.metrics_port = 0; });
  const std::string tmp = dir_.Join("sets");
  for (const std::string cls : {"ants", "bees"}) {
    const std::string other = cls == "ants" ? "bees" : "ants";
    CopyInto(tmp, "few/train", cls, "train", cls, 0, 4);
    CopyInto(tmp, "few/val", cls, "val", cls, 20, 40);
    CopyInto(tmp, "holdout", cls, "val", cls, 40, 70);
    CopyInto(tmp, "wrong", other, "train", cls, 4, 24);
  }
  for (const std::string name : {"few", "holdout", "wrong"}) {
    auto up = client_->UploadDataset(tmp + "/" + name, name, name == "few" ? 0 : 0.2f);
    ASSERT_TRUE(up.ok()) << name << ": " << up.status();
  }
  v1::JobSpec spec = Spec("few", 3);
  spec.set_model_name("insects");
  const std::string champion = TrainModel(spec);
  ASSERT_FALSE(champion.empty());
  ASSERT_TRUE(client_->SetModelAlias("insects", "prod", 1).ok());

  // An application's predictions through the alias, recorded and labelled.
  v1::RecordPolicy policy;
  policy.set_sample_rate(1);
  ASSERT_TRUE(client_->SetRecordPolicy("insects@prod", policy).ok());
  std::vector<std::pair<std::string, std::string>> labelled;  // prediction id, true class
  for (const std::string cls : {"ants", "bees"}) {
    const auto files = Files("val", cls);
    v1::PredictRequest request;
    request.add_models("insects@prod");
    for (size_t i = 0; i < 20; ++i) request.add_images()->set_encoded(core::ReadFile(files[i]).value());
    auto answered = client_->Predict(request);
    ASSERT_TRUE(answered.ok()) << answered.status();
    for (const auto& p : answered->results(0).predictions()) labelled.emplace_back(p.prediction_id(), cls);
  }
  for (const auto& [id, cls] : labelled) ASSERT_TRUE(client_->Feedback(id, cls).ok()) << id;
  v1::CreateDatasetFromPredictionsRequest make;
  make.set_model("insects@prod");
  make.set_name("feedback");
  make.set_labelled_only(true);
  auto made = client_->CreateDatasetFromPredictions(make);
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_EQ(made->dataset().train_images() + made->dataset().val_images(), 40);

  // A holdout the job trains on proves nothing: refused by name, before any job.
  for (const std::string bad : {"few", "feedback"}) {
    auto refused = client_->Retrain(Retrain("insects@prod", "feedback", bad));
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(refused.status().message().find("spec.promotion.holdout: dataset '" + bad + "' shares"),
              std::string::npos)
        << refused.status();
  }
  auto no_alias = Retrain("insects@prod", "feedback", "holdout");
  no_alias.mutable_promotion()->clear_alias();
  EXPECT_EQ(client_->Retrain(no_alias).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Retrain(Retrain("nothing@prod", "feedback", "holdout")).status().code(),
            absl::StatusCode::kNotFound);

  // The challenger: the champion's spec on its 8 images plus the 40 labelled.
  // Predictions through the alias go on while it trains and while the decision is made.
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0}, failed{0};
  std::set<std::string> served;
  std::mutex served_mu;
  const std::string probe = core::ReadFile(Files("val", "ants")[45]).value();
  std::thread app([&] {
    while (!stop) {
      v1::PredictRequest request;
      request.add_models("insects@prod");
      request.set_store(false);
      request.add_images()->set_encoded(probe);
      auto r = client_->Predict(request);
      if (!r.ok()) {
        ++failed;
        ADD_FAILURE() << r.status();
        continue;
      }
      ++answered;
      std::lock_guard<std::mutex> lock(served_mu);
      served.insert(r->results(0).model());
    }
  });
  v1::RetrainRequest better = Retrain("insects@prod", "feedback", "holdout");
  better.set_epochs(15);  // the champion's 3 were few steps on 8 images; 15 on 48 are 30
  auto created = client_->Retrain(better);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->spec().model_name(), "insects");
  EXPECT_EQ(created->spec().add_datasets_size(), 1);
  EXPECT_EQ(created->spec().stages(0).epochs(), 15);
  EXPECT_EQ(created->spec().model_name(), "insects") << "the champion's spec";
  const v1::Job won = Finish(created->id());
  stop = true;
  app.join();
  ASSERT_EQ(won.state(), v1::JOB_STATE_SUCCEEDED) << won.error();
  EXPECT_GT(answered, 5);
  EXPECT_EQ(failed, 0);
  ASSERT_TRUE(won.has_promotion());
  const v1::Promotion& p = won.promotion();
  EXPECT_TRUE(p.promoted()) << p.reason();
  EXPECT_TRUE(p.compared());
  EXPECT_EQ(p.alias(), "insects@prod");
  EXPECT_EQ(p.holdout(), "holdout");
  EXPECT_EQ(p.holdout_images(), 60);
  EXPECT_EQ(p.champion_model_id(), champion);
  EXPECT_EQ(p.champion_version(), 1);
  EXPECT_EQ(p.challenger_model_id(), won.model_id());
  EXPECT_EQ(p.challenger_version(), 2);
  EXPECT_GE(p.challenger_value(), p.champion_value() + 0.005) << p.reason();
  EXPECT_NE(p.reason().find("challenger version 2"), std::string::npos) << p.reason();
  for (const std::string& id : served) EXPECT_TRUE(id == champion || id == won.model_id()) << id;
  auto prod = client_->GetModel("insects@prod");
  ASSERT_TRUE(prod.ok()) << prod.status();
  EXPECT_EQ(prod->id(), won.model_id());
  // The decision is one of the job's events, before its end.
  std::vector<v1::JobEvent> events;
  ASSERT_TRUE(client_->WatchJob(won.id(), false, [&](const v1::JobEvent& e) {
                events.push_back(e);
                return true;
              }).ok());
  ASSERT_GE(events.size(), 2u);
  EXPECT_TRUE(events[events.size() - 2].has_promotion());
  EXPECT_NE(events.back().state().reason().find("promoted: insects@prod moved to version 2"), std::string::npos)
      << events.back().state().reason();

  // A challenger made worse on purpose: version 1's spec on its images plus
  // 40 others under the wrong class. It stays a version; the alias stays.
  auto worse = client_->Retrain(Retrain("insects:1", "wrong", "holdout"));
  ASSERT_TRUE(worse.ok()) << worse.status();
  const v1::Job lost = Finish(worse->id());
  ASSERT_EQ(lost.state(), v1::JOB_STATE_SUCCEEDED) << lost.error();
  ASSERT_TRUE(lost.has_promotion());
  const v1::Promotion& q = lost.promotion();
  EXPECT_FALSE(q.promoted()) << q.reason();
  EXPECT_TRUE(q.compared()) << "both were evaluated; the challenger lost";
  EXPECT_EQ(q.champion_version(), 2);
  EXPECT_EQ(q.challenger_version(), 3);
  EXPECT_LT(q.challenger_value(), q.champion_value() + 0.005);
  EXPECT_NE(q.reason().find("insects@prod stays on version 2: the challenger does not win by min_gain"),
            std::string::npos)
      << q.reason();
  prod = client_->GetModel("insects@prod");
  ASSERT_TRUE(prod.ok()) << prod.status();
  EXPECT_EQ(prod->id(), won.model_id());
  EXPECT_TRUE(client_->GetModel("insects:3").ok());
  const std::string metrics = graft::testing::HttpGet(server_->metrics_port(), "/metrics");
  for (const char* outcome : {"promoted", "kept"}) {
    EXPECT_NE(metrics.find(std::string("graft_promotions_total{alias=\"insects@prod\",outcome=\"") + outcome +
                           "\"} 1"),
              std::string::npos)
        << outcome;
  }

  // The decision survives a restart with the job.
  Restart([](ServerOptions& o) { o.metrics_port = 0; });
  auto again = client_->GetJob(lost.id());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->promotion().promoted());
  EXPECT_EQ(again->promotion().challenger_value(), q.challenger_value());
}

}  // namespace
}  // namespace graft::server
