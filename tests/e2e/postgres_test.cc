// graftd on PostgreSQL (--database=postgresql://...): every store (datasets,
// jobs and their events, models, names and aliases, tokens) keeps its state
// in a real PostgreSQL server the test starts, across a restart of graftd.

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "client/client.h"
#include "core/util/files.h"
#include "tests/testing/graftd_process.h"
#include "tests/testing/paths.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/temp_dir.h"

namespace graft {
namespace {

namespace fs = std::filesystem;

client::ClientOptions WithToken(const std::string& token) {
  client::ClientOptions options;
  options.token = token;
  return options;
}

int CountEvents(client::GraftClient& c, const std::string& job) {
  int n = 0;
  (void)c.WatchJob(job, false, [&](const v1::JobEvent&) {
    ++n;
    return true;
  });
  return n;
}

TEST(Postgres, EveryStoreKeepsItsStateInPostgreSQLAcrossRestarts) {
  auto pg = graft::testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  ASSERT_TRUE((*pg)->CreateDatabase("graft").ok());
  graft::testing::TempDir dir;
  const std::string data = dir.Join("data");
  graft::testing::GraftdProcess graftd(data, dir.Join("graftd.log"));
  const std::vector<std::string> flags{"--database=" + (*pg)->Uri("graft")};
  ASSERT_TRUE(graftd.Start(flags)) << core::ReadFile(graftd.log()).value_or("");
  auto c = std::make_unique<client::GraftClient>(graftd.address(), WithToken(graftd.admin_token()));

  auto up = c->UploadDataset(graft::testing::SharedDir() + "/data/hymenoptera", "hym");
  ASSERT_TRUE(up.ok()) << up.status();
  v1::JobSpec spec;
  spec.set_backbone("squeezenet1_1");
  spec.set_dataset("hym");
  spec.set_input_size(112);
  spec.set_seed(1);
  spec.set_model_name("bees");
  spec.add_stages()->set_epochs(2);
  auto job = c->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  const int events = CountEvents(*c, job->id());
  const v1::Job done = *c->GetJob(job->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  ASSERT_TRUE(c->SetModelAlias("bees", "prod", 1).ok());
  auto app = c->CreateToken("app", v1::ROLE_INFERENCE);
  ASSERT_TRUE(app.ok()) << app.status();
  v1::PredictRequest predict;
  predict.add_models("bees@prod");
  predict.add_images()->set_encoded(
      core::ReadFile(graft::testing::SharedDir() + "/data/hymenoptera/val/bees/10870992_eebeeb3a12.jpg").value());
  const auto before = c->Predict(predict);
  ASSERT_TRUE(before.ok()) << before.status();
  // Nothing went to a SQLite file.
  EXPECT_FALSE(fs::exists(data + "/graft.db"));
  ASSERT_EQ(graftd.Stop(SIGTERM), 0);
  c.reset();
  ASSERT_TRUE(graftd.Start(flags)) << core::ReadFile(graftd.log()).value_or("");
  c = std::make_unique<client::GraftClient>(graftd.address(), WithToken(graftd.admin_token()));
  auto dataset = c->GetDataset("hym");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->train_images(), up->dataset().train_images());
  EXPECT_EQ(dataset->classes_size(), 2);
  const auto again = c->GetJob(job->id());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(again->best().val_accuracy(), done.best().val_accuracy());
  EXPECT_EQ(CountEvents(*c, job->id()), events);
  // The token made before the restart still works, with its role; the alias still points at version 1.
  client::GraftClient as_app(graftd.address(), WithToken(app->token()));
  const auto after = as_app.Predict(predict);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->results(0).predictions(0).top(0).label(), before->results(0).predictions(0).top(0).label());
  EXPECT_NEAR(after->results(0).predictions(0).top(0).probability(),
              before->results(0).predictions(0).top(0).probability(), 1e-6);
  EXPECT_EQ(as_app.CreateJob(spec).status().code(), absl::StatusCode::kPermissionDenied);
  // A second named version follows the first.
  auto second = c->CreateJob(spec);
  ASSERT_TRUE(second.ok()) << second.status();
  (void)CountEvents(*c, second->id());
  const auto model = c->GetModel(c->GetJob(second->id())->model_id());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->version(), 2);
  // Deletions: an alias, a model, a token, a dataset no model needs any more.
  ASSERT_TRUE(c->DeleteModelAlias("bees", "prod").ok());
  EXPECT_EQ(c->Predict(predict).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(c->DeleteModel(model->id()).ok());
  EXPECT_EQ(c->GetModel(model->id()).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(c->RevokeToken("app").ok());
  EXPECT_EQ(as_app.ListModels().status().code(), absl::StatusCode::kUnauthenticated);
  ASSERT_TRUE(c->DeleteDataset("hym").ok());
  EXPECT_EQ(c->GetDataset("hym").status().code(), absl::StatusCode::kNotFound);
  ASSERT_EQ(graftd.Stop(SIGTERM), 0);
  // And they stay deleted.
  ASSERT_TRUE(graftd.Start(flags)) << core::ReadFile(graftd.log()).value_or("");
  c = std::make_unique<client::GraftClient>(graftd.address(), WithToken(graftd.admin_token()));
  EXPECT_EQ(c->GetDataset("hym").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->GetModel(model->id()).status().code(), absl::StatusCode::kNotFound);
  client::GraftClient revoked(graftd.address(), WithToken(app->token()));
  EXPECT_EQ(revoked.ListModels().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(c->ListModels()->models_size(), 1);
  EXPECT_EQ(c->ListJobs()->jobs_size(), 2);
  EXPECT_EQ(c->ListJobs(v1::JOB_STATE_SUCCEEDED)->jobs_size(), 2);
  EXPECT_EQ(c->ListJobs(v1::JOB_STATE_FAILED)->jobs_size(), 0);
  EXPECT_EQ(graftd.Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace graft
