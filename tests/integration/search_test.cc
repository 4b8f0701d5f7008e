// Search jobs and the learning-rate finder through graftd's API: a search
// publishes its winner with the leaderboard in GetJob, the model serves and
// carries the winner's config; a restart mid-search resumes after the
// finished trials; cancel ends it; bad searches are refused naming the
// field; FindLearningRate answers a curve, and learning_rate auto uses it.

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>

#include "core/util/files.h"
#include "tests/integration/training_fixture.h"

namespace graft::server {
namespace {

v1::JobSpec SearchSpec(int epochs) {
  v1::JobSpec spec;
  spec.set_dataset("hym");
  spec.set_seed(4);
  spec.set_input_size(112);
  auto* stage = spec.add_stages();
  stage->set_epochs(epochs);
  auto* search = spec.mutable_search();
  search->add_backbones("MobileNetV2");  // an alias
  search->add_backbones("squeezenet1_1");
  search->add_learning_rates(1e-3);
  search->add_learning_rates(1e-2);
  search->add_heads();                        // linear
  search->add_heads()->add_hidden_units(64);  // one hidden layer
  return spec;
}

std::vector<v1::JobEvent> Events(client::GraftClient& c, const std::string& id) {
  std::vector<v1::JobEvent> out;
  EXPECT_TRUE(c.WatchJob(id, false, [&](const v1::JobEvent& e) {
                 out.push_back(e);
                 return true;
               }).ok());
  return out;
}

TEST_F(TrainingTest, SearchPublishesTheWinnerWithItsLeaderboard) {
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  auto job = client_->CreateJob(SearchSpec(4));
  ASSERT_TRUE(job.ok()) << job.status();
  // Stored resolved: canonical names, a restart runs the same search.
  ASSERT_EQ(job->spec().search().backbones_size(), 2);
  EXPECT_EQ(job->spec().search().backbones(0), "mobilenet_v2");
  const v1::Job done = WaitUntil(job->id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  ASSERT_TRUE(done.has_search());
  EXPECT_EQ(done.search().trials_planned(), 8);
  EXPECT_EQ(done.search().trials_done(), 8);
  ASSERT_EQ(done.search().leaderboard_size(), 8);
  ASSERT_EQ(done.search().features_size(), 2) << "one feature pass per backbone";
  EXPECT_NE(done.search().features(0).find("mobilenet_v2: memory fp16 397 rows"), std::string::npos)
      << done.search().features(0);
  // The two rates of each backbone and head shape trained fused.
  for (const v1::Trial& t : done.search().leaderboard()) EXPECT_EQ(t.fused_trials(), 2) << "trial " << t.index();
  for (int i = 1; i < done.search().leaderboard_size(); ++i) {
    const auto& a = done.search().leaderboard(i - 1).best();
    const auto& b = done.search().leaderboard(i).best();
    EXPECT_TRUE(a.val_accuracy() > b.val_accuracy() ||
                (a.val_accuracy() == b.val_accuracy() && a.val_loss() <= b.val_loss()))
        << "rank " << i << " is not best first";
  }
  const v1::Trial& winner = done.search().leaderboard(0);
  EXPECT_GE(winner.best().val_accuracy(), 0.85);
  EXPECT_EQ(winner.epochs_budget(), 4);

  // The model is the winner: its config in the model's spec, and it serves.
  auto model = client_->GetModel(done.model_id());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->backbone(), winner.backbone());
  EXPECT_EQ(model->spec().backbone(), winner.backbone());
  EXPECT_DOUBLE_EQ(model->spec().stages(0).optimizer().learning_rate(), winner.learning_rate());
  EXPECT_EQ(model->spec().head().hidden_units_size(), winner.head().hidden_units_size());
  EXPECT_FALSE(model->spec().has_search());
  EXPECT_DOUBLE_EQ(model->best_metrics().val_accuracy(), winner.best().val_accuracy());
  v1::PredictRequest predict;
  predict.add_models(done.model_id());
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(graft::testing::HymenopteraDir() + "/val/bees")) {
    if (n++ == 10) break;
    predict.add_images()->set_encoded(*core::ReadFile(e.path().string()));
  }
  auto answer = client_->Predict(predict);
  ASSERT_TRUE(answer.ok()) << answer.status();
  int bees = 0;
  for (const auto& p : answer->results(0).predictions()) bees += p.top(0).label() == "bees" ? 1 : 0;
  EXPECT_GE(bees, 8) << "of 10 bees";

  // Each trial once as an event, in the replay too.
  std::set<int> seen;
  for (const auto& e : Events(*client_, job->id())) {
    if (e.has_trial()) {
      EXPECT_TRUE(seen.insert(e.trial().index()).second) << "trial " << e.trial().index() << " twice";
    }
  }
  EXPECT_EQ(seen.size(), 8u);
}

// A watcher asking for progress sees each backbone's feature pass as it goes
// (the long, silent part of a search before its first trial), then its
// features event; a plain job's first epoch shows its feature pass too.
TEST_F(TrainingTest, FeaturePassesShowTheirProgressToWatchers) {
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::JobSpec spec = SearchSpec(1);
  spec.mutable_search()->clear_learning_rates();
  spec.mutable_search()->mutable_heads()->RemoveLast();
  auto job = client_->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  std::map<std::string, std::set<int>> batches_seen;  // backbone -> batch numbers
  std::map<std::string, int> batches_of;
  std::set<std::string> features_done;
  bool progress_after_features = false;
  ASSERT_TRUE(client_->WatchJob(job->id(), /*progress=*/true, [&](const v1::JobEvent& e) {
                       if (e.has_progress() && !e.progress().features_backbone().empty()) {
                         const std::string& b = e.progress().features_backbone();
                         batches_seen[b].insert(e.progress().batch());
                         batches_of[b] = e.progress().batches();
                         EXPECT_EQ(e.progress().epoch(), 0);
                         if (features_done.count(b)) progress_after_features = true;
                       }
                       if (e.has_features()) features_done.insert(e.features().substr(0, e.features().find(':')));
                       return true;
                     }).ok());
  for (const std::string b : {"mobilenet_v2", "squeezenet1_1"}) {
    ASSERT_FALSE(batches_seen[b].empty()) << "no progress of " << b << "'s feature pass";
    EXPECT_EQ(batches_of[b], 13) << "397 images in batches of 32";
    EXPECT_GE(*batches_seen[b].begin(), 1);
    EXPECT_LE(*batches_seen[b].rbegin(), 13);
    EXPECT_EQ(features_done.count(b), 1u);
  }
  EXPECT_FALSE(progress_after_features) << "a feature pass's progress came after its features event";

  v1::JobSpec plain = Spec("hym", 1);
  plain.set_backbone("squeezenet1_1");
  plain.set_input_size(112);
  auto single = client_->CreateJob(plain);
  ASSERT_TRUE(single.ok()) << single.status();
  int feature_batches = 0;
  ASSERT_TRUE(client_->WatchJob(single->id(), true, [&](const v1::JobEvent& e) {
                       if (e.has_progress() && e.progress().features_backbone() == "squeezenet1_1") {
                         EXPECT_EQ(e.progress().epoch(), 1);
                         feature_batches = std::max(feature_batches, e.progress().batch());
                       }
                       return true;
                     }).ok());
  EXPECT_GE(feature_batches, 1) << "epoch 1's feature pass showed no progress";
}

TEST_F(TrainingTest, SearchRestartedMidwayResumesAfterItsFinishedTrials) {
  Restart([](ServerOptions& o) { o.search_trials_at_once = 1; });
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::JobSpec spec = SearchSpec(25);
  spec.mutable_search()->clear_backbones();
  spec.mutable_search()->add_backbones("squeezenet1_1");
  spec.mutable_search()->add_learning_rates(3e-3);
  spec.mutable_search()->mutable_heads(1)->add_hidden_units(256);  // 64-256: each trial takes a while
  auto job = client_->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::Job partway = WaitUntil(job->id(), [](const v1::Job& j) {
    return j.state() >= v1::JOB_STATE_SUCCEEDED || j.search().trials_done() >= 2;
  });
  ASSERT_EQ(partway.state(), v1::JOB_STATE_RUNNING) << "the search ended before the restart";
  Restart([](ServerOptions& o) { o.search_trials_at_once = 1; });  // a shutdown: the job stays RUNNING
  const v1::Job done = WaitUntil(job->id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.search().trials_done(), 6);
  std::map<int, int> runs;
  bool resumed = false;
  for (const auto& e : Events(*client_, job->id())) {
    if (e.has_trial()) ++runs[e.trial().index()];
    if (e.has_state() && e.state().reason().find("the search resumes after its finished trials") != std::string::npos) {
      resumed = true;
    }
  }
  EXPECT_TRUE(resumed);
  ASSERT_EQ(runs.size(), 6u);
  for (const auto& [index, n] : runs) EXPECT_EQ(n, 1) << "trial " << index << " ran again after the restart";
  EXPECT_FALSE(done.model_id().empty());
}

TEST_F(TrainingTest, CancelEndsASearch) {
  Restart([](ServerOptions& o) { o.search_trials_at_once = 1; });
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::JobSpec spec = SearchSpec(200);
  auto job = client_->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  WaitUntil(job->id(),
            [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED || j.search().features_size() > 0; });
  auto cancelled = client_->CancelJob(job->id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED) << cancelled->error();
  EXPECT_TRUE(cancelled->model_id().empty());
}

TEST_F(TrainingTest, BadSearchesAreRefusedNamingTheField) {
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  auto expect = [&](const v1::JobSpec& spec, const std::string& fragment,
                    absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
    const auto r = client_->CreateJob(spec);
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
  };
  v1::JobSpec s = SearchSpec(2);
  s.mutable_search()->set_backbones(1, "vgg99");
  expect(s, "spec.search.backbones[1] ('vgg99'): spec.backbone: unknown backbone 'vgg99'", absl::StatusCode::kNotFound);
  s = SearchSpec(2);
  s.mutable_search()->set_strategy(static_cast<v1::SearchStrategy>(9));
  expect(s, "spec.search.strategy: unknown value 9");
  s = SearchSpec(2);
  s.mutable_stages(0)->set_train("top:1");
  expect(s, "spec.stages[0].train: a search trains heads");
  s = SearchSpec(2);
  s.mutable_search()->add_learning_rates(50);
  expect(s, "spec.search.learning_rates[2]: must be in (0, 10]");
  s = SearchSpec(2);
  s.mutable_search()->set_max_trials(100000);
  expect(s, "spec.search.max_trials: must be 0..4096");
  s = SearchSpec(2);
  s.mutable_search()->add_heads()->set_dropout(2);
  expect(s, "spec.search.heads[2].dropout");
  s = SearchSpec(2);
  s.mutable_search()->set_lr_min(1e-4);
  expect(s, "give learning_rates or lr_min/lr_max/lr_count, not both");
  s = SearchSpec(2);  // 2 backbones x 64 x 64 x 2 heads: more than 4096 trials
  s.mutable_search()->clear_learning_rates();
  for (int i = 1; i <= 64; ++i) {
    s.mutable_search()->add_learning_rates(i * 1e-4);
    s.mutable_search()->add_weight_decays(i * 1e-5);
  }
  expect(s, "spec.search: the grid has 16384 combinations over 2 backbone(s), more than 4096; set max_trials");
  s = Spec("hym", 1);
  s.add_stages()->mutable_optimizer()->set_auto_learning_rate(true);
  expect(s, "spec.stages[1].optimizer.auto_learning_rate: only the first stage");
  // A dataset that does not exist is the dataset's error, not the first backbone's.
  s = SearchSpec(2);
  s.set_dataset("hymenoptera");
  const auto missing = client_->CreateJob(s);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message().rfind("spec.dataset: no dataset 'hymenoptera'", 0), 0u) << missing.status();
  auto jobs = client_->ListJobs();
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(jobs->jobs_size(), 0) << "nothing was queued";
}

TEST_F(TrainingTest, FindLearningRateAndAutoLearningRate) {
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::FindLearningRateRequest request;
  *request.mutable_spec() = Spec("hym", 5);
  request.mutable_spec()->set_input_size(112);
  auto curve = client_->FindLearningRate(request);
  ASSERT_TRUE(curve.ok()) << curve.status();
  EXPECT_GE(curve->learning_rates_size(), 20);
  EXPECT_EQ(curve->losses_size(), curve->learning_rates_size());
  EXPECT_GT(curve->suggested(), 1e-7);
  EXPECT_LT(curve->suggested(), 10);

  request.set_steps(3);
  EXPECT_EQ(client_->FindLearningRate(request).status().code(), absl::StatusCode::kInvalidArgument);
  request.set_steps(0);
  request.mutable_spec()->set_dataset("nope");
  EXPECT_EQ(client_->FindLearningRate(request).status().code(), absl::StatusCode::kNotFound);

  // A job whose first stage says auto: the same test, then training at the rate found.
  v1::JobSpec spec = Spec("hym", 3);
  spec.set_input_size(112);
  spec.mutable_stages(0)->mutable_optimizer()->set_auto_learning_rate(true);
  auto job = client_->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::Job done = WaitUntil(job->id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_DOUBLE_EQ(done.found_learning_rate(), curve->suggested());
  EXPECT_DOUBLE_EQ(done.last().learning_rate(), curve->suggested());
  std::cout << "suggested " << curve->suggested() << " (lowest loss at " << curve->min_loss_learning_rate()
            << "): val accuracy after 3 epochs " << done.best().val_accuracy() << "\n";
  EXPECT_GE(done.best().val_accuracy(), 0.85);
}

}  // namespace
}  // namespace graft::server
