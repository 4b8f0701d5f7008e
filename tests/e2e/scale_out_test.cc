// Scale-out on loopback: three graftd processes on one PostgreSQL database
// and one artifact directory (a trainer, --serve=false; two serving
// processes, --train=false). A model the trainer publishes is served by both
// within 2 s, alias moves and token changes reach the other process within
// 2 s, the trainer killed mid-job is replaced by a second trainer that
// resumes the job from its checkpoint (it succeeds once, one model), and a
// job running in one process is cancelled through another.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "client/client.h"
#include "core/util/files.h"
#include "tests/e2e/cluster.h"
#include "tests/testing/http_get.h"
#include "tests/testing/paths.h"
#include "tests/testing/hymenoptera.h"

namespace graft {
namespace {

namespace fs = std::filesystem;


v1::JobSpec Spec(int epochs) {
  v1::JobSpec spec;
  spec.set_backbone("squeezenet1_1");
  spec.set_dataset("hym");
  spec.set_input_size(112);
  spec.set_seed(5);
  spec.set_model_name("bees");
  spec.mutable_augmentation()->set_horizontal_flip(true);  // no feature cache: epochs take seconds
  spec.add_stages()->set_epochs(epochs);
  return spec;
}

using graft::testing::GraftdProcess;
using graft::testing::SecondsUntil;
using ScaleOut = graft::testing::ClusterTest;

v1::PredictRequest PredictBee(const std::string& model) {
  v1::PredictRequest predict;
  predict.add_models(model);
  predict.add_images()->set_encoded(core::ReadFile(graft::testing::HymenopteraDir() + "/val/bees/10870992_eebeeb3a12.jpg").value());
  return predict;
}

TEST_F(ScaleOut, ServingReplicasAndTrainersShareOneDatabaseAndArtifactDirectory) {
  GraftdProcess* trainer = Launch("t1", {"--serve=false", "--worker_id=t1"});
  ASSERT_NE(trainer, nullptr);
  GraftdProcess* serve1 = Launch("s1", {"--train=false"});
  ASSERT_NE(serve1, nullptr);
  GraftdProcess* serve2 = Launch("s2", {"--train=false"});
  ASSERT_NE(serve2, nullptr);
  // The first process made the admin token, in the shared directory; the others use it.
  const client::ClientOptions as_admin = Admin();
  ASSERT_FALSE(as_admin.token.empty());
  client::GraftClient s1(serve1->address(), as_admin), s2(serve2->address(), as_admin);
  auto t1 = std::make_unique<client::GraftClient>(trainer->address(), as_admin);

  // A dataset uploaded to one process, a job created on the other, run by the trainer.
  auto up = s1.UploadDataset(graft::testing::HymenopteraDir(), "hym");
  ASSERT_TRUE(up.ok()) << up.status();
  auto first = s2.CreateJob(Spec(1));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(s1.WatchJob(first->id(), false, [](const v1::JobEvent&) { return true; }).ok());
  const v1::Job done = *s1.GetJob(first->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  const double served =
      SecondsUntil(10, [&] { return s1.Predict(PredictBee("bees")).ok() && s2.Predict(PredictBee("bees")).ok(); });
  EXPECT_GE(served, 0);
  EXPECT_LT(served, 2.0) << "both serving processes serve the new model within 2 s of the job's end";
  EXPECT_EQ(s2.Predict(PredictBee("bees"))->results(0).model(), done.model_id());
  // The trainer serves nothing.
  EXPECT_EQ(t1->Predict(PredictBee("bees")).status().code(), absl::StatusCode::kUnimplemented);

  // An alias set through one process resolves in the other within 2 s.
  ASSERT_TRUE(s1.SetModelAlias("bees", "prod", 1).ok());
  const double alias_set = SecondsUntil(10, [&] { return s2.Predict(PredictBee("bees@prod")).ok(); });
  EXPECT_GE(alias_set, 0);
  EXPECT_LT(alias_set, 2.0);
  // A token made in one process opens the other.
  auto app = s1.CreateToken("app", v1::ROLE_INFERENCE);
  ASSERT_TRUE(app.ok()) << app.status();
  client::ClientOptions as_app;
  as_app.token = app->token();
  client::GraftClient app_on_s2(serve2->address(), as_app);
  const double token_made = SecondsUntil(10, [&] { return app_on_s2.Predict(PredictBee("bees@prod")).ok(); });
  EXPECT_GE(token_made, 0);
  EXPECT_LT(token_made, 2.0);

  // The trainer is killed after the job's first checkpoint; a second trainer takes it over.
  auto second = s1.CreateJob(Spec(3));
  ASSERT_TRUE(second.ok()) << second.status();
  bool checkpointed = false;
  ASSERT_TRUE(s1.WatchJob(second->id(), false, [&](const v1::JobEvent& e) {
                  checkpointed = e.has_checkpoint();
                  return !checkpointed;
                }).ok());
  ASSERT_TRUE(checkpointed);
  trainer->Stop(SIGKILL);
  t1.reset();
  GraftdProcess* trainer2 = Launch("t2", {"--serve=false", "--worker_id=t2"});
  ASSERT_NE(trainer2, nullptr);
  std::vector<int> epochs;
  std::vector<std::string> reasons;
  int succeeded = 0;
  ASSERT_TRUE(s2.WatchJob(second->id(), false, [&](const v1::JobEvent& e) {
                  if (e.has_epoch()) epochs.push_back(e.epoch().epoch());
                  if (e.has_state()) reasons.push_back(e.state().reason());
                  if (e.has_state() && e.state().state() == v1::JOB_STATE_SUCCEEDED) ++succeeded;
                  return true;
                }).ok());
  const v1::Job resumed = *s2.GetJob(second->id());
  ASSERT_EQ(resumed.state(), v1::JOB_STATE_SUCCEEDED) << resumed.error() << "\n" << Log("t2");
  EXPECT_EQ(succeeded, 1);
  EXPECT_EQ(resumed.worker(), "t2");
  EXPECT_EQ(done.worker(), "t1");
  bool took_over = false;
  for (const std::string& r : reasons) {
    took_over =
        took_over || (absl::StartsWith(r, "trainer t1 stopped heartbeating") && absl::StrContains(r, "resuming"));
  }
  EXPECT_TRUE(took_over) << absl::StrJoin(reasons, " | ");
  ASSERT_FALSE(epochs.empty());
  EXPECT_EQ(epochs.back(), 3);
  EXPECT_EQ(epochs.front(), 1);
  EXPECT_LE(epochs.size(), 4u) << "the epochs before the checkpoint are not run again";
  auto models = s1.ListModels();
  ASSERT_TRUE(models.ok()) << models.status();
  int of_second = 0;
  for (const auto& m : models->models()) of_second += m.job_id() == second->id();
  EXPECT_EQ(of_second, 1);
  EXPECT_EQ(models->models_size(), 2);
  EXPECT_FALSE(fs::exists(artifacts() + "/checkpoints/" + second->id() + ".ckpt"));

  // The alias moves to version 2 through the second process; the first follows within 2 s.
  ASSERT_TRUE(s2.SetModelAlias("bees", "prod", 2).ok());
  const double alias_moved = SecondsUntil(10, [&] {
    auto p = s1.Predict(PredictBee("bees@prod"));
    return p.ok() && p->results(0).model() == resumed.model_id();
  });
  EXPECT_GE(alias_moved, 0);
  EXPECT_LT(alias_moved, 2.0);
  // The token revoked in one process stops working in the other within 2 s.
  ASSERT_TRUE(s2.RevokeToken("app").ok());
  client::GraftClient app_on_s1(serve1->address(), as_app);
  const double revoked = SecondsUntil(
      10, [&] { return app_on_s1.Predict(PredictBee("bees")).status().code() == absl::StatusCode::kUnauthenticated; });
  EXPECT_GE(revoked, 0);
  EXPECT_LT(revoked, 2.0);
  std::cout << "seconds until the other process saw it: model served by both " << served << ", alias set " << alias_set
            << ", token made " << token_made << ", alias moved " << alias_moved << ", token revoked " << revoked
            << "\n";

  // A job running in the trainer is cancelled through a serving process.
  auto third = s1.CreateJob(Spec(20));
  ASSERT_TRUE(third.ok()) << third.status();
  ASSERT_GE(SecondsUntil(60, [&] { return s1.GetJob(third->id())->state() == v1::JOB_STATE_RUNNING; }), 0);
  auto cancelled = s1.CancelJob(third->id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  // Every process reports the database's job counts, whichever ran the jobs.
  for (const int port : {serve1->metrics_port(), serve2->metrics_port(), trainer2->metrics_port()}) {
    const std::string page = graft::testing::HttpGet(port, "/metrics");
    EXPECT_NE(page.find("graft_jobs{state=\"SUCCEEDED\"} 2\n"), std::string::npos) << page.substr(0, 2000);
    EXPECT_NE(page.find("graft_jobs{state=\"CANCELLED\"} 1\n"), std::string::npos);
    EXPECT_NE(page.find("graft_jobs{state=\"RUNNING\"} 0\n"), std::string::npos);
  }
  for (GraftdProcess* p : {trainer2, serve1, serve2}) EXPECT_EQ(p->Stop(SIGTERM), 0);
}

// A trainer frozen (SIGSTOP) past --job_takeover_s loses its job to another;
// thawed, it finds the job held elsewhere and stops it (no publish, no end
// recorded, no checkpoint at the stop): the job
// succeeds once, from the second trainer.
TEST_F(ScaleOut, AStalledTrainerLosesItsJobAndStopsItWhenItWakes) {
  GraftdProcess* t1 = Launch("t1", {"--serve=false", "--worker_id=t1"});
  ASSERT_NE(t1, nullptr);
  GraftdProcess* serve = Launch("s", {"--train=false"});
  ASSERT_NE(serve, nullptr);
  client::GraftClient s(serve->address(), Admin());
  ASSERT_TRUE(s.UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  auto job = s.CreateJob(Spec(3));
  ASSERT_TRUE(job.ok()) << job.status();
  bool checkpointed = false;
  ASSERT_TRUE(s.WatchJob(job->id(), false, [&](const v1::JobEvent& e) {
                 checkpointed = e.has_checkpoint();
                 return !checkpointed;
               }).ok());
  ASSERT_TRUE(checkpointed);
  t1->Signal(SIGSTOP);
  GraftdProcess* t2 = Launch("t2", {"--serve=false", "--worker_id=t2"});
  ASSERT_NE(t2, nullptr);
  ASSERT_GE(SecondsUntil(30, [&] { return s.GetJob(job->id())->worker() == "t2"; }), 0);
  t1->Signal(SIGCONT);
  int succeeded = 0;
  ASSERT_TRUE(s.WatchJob(job->id(), false, [&](const v1::JobEvent& e) {
                 succeeded += e.has_state() && e.state().state() == v1::JOB_STATE_SUCCEEDED;
                 return true;
               }).ok());
  const v1::Job done = *s.GetJob(job->id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.worker(), "t2");
  EXPECT_EQ(succeeded, 1);
  EXPECT_EQ(s.ListModels()->models_size(), 1);
  // t1 saw it had lost the job (at its first heartbeat tick after waking).
  EXPECT_GE(SecondsUntil(10, [&] { return Log("t1").find("was taken over by another trainer") != std::string::npos; }),
            0)
      << Log("t1");
  for (GraftdProcess* p : {t1, t2, serve}) EXPECT_EQ(p->Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace graft
