// Data-parallel jobs across graftd processes on loopback: trainers on one
// PostgreSQL database and artifact directory form a c10d group (Gloo) for a
// job that asks for workers: 2. The two-worker job publishes the model a
// one-worker job publishes (the same predictions), each trainer reading half
// of the images; a rank killed mid-job fails the step, and the job resumes
// from rank 0's checkpoint in a new group with another trainer.

#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "core/util/files.h"
#include "tests/e2e/cluster.h"
#include "tests/testing/http_get.h"
#include "tests/testing/paths.h"
#include "tests/testing/hymenoptera.h"

namespace graft {
namespace {

using graft::testing::GraftdProcess;
using graft::testing::SecondsUntil;


// Trainers t1 and t2 (loopback rendezvous), a serving process s, and the
// dataset "hym" uploaded.
class DataParallel : public graft::testing::ClusterTest {
 protected:
  void StartTrainer(const std::string& name) {
    ASSERT_NE(Launch(name, {"--serve=false", "--dist_host=127.0.0.1", "--worker_id=" + name}), nullptr);
  }
  void StartTwoTrainersAndAServer() {
    ASSERT_NO_FATAL_FAILURE(StartTrainer("t1"));
    ASSERT_NO_FATAL_FAILURE(StartTrainer("t2"));
    GraftdProcess* serve = Launch("s", {"--train=false"});
    ASSERT_NE(serve, nullptr);
    ASSERT_TRUE(client::GraftClient(serve->address(), Admin()).UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  }
};

// A frozen squeezenet1_1 (112 px) under a linear head: no dropout, no
// batch norm training. `augment`: fresh flips every epoch (epochs take seconds).
v1::JobSpec Spec(int workers, const std::string& model_name, int epochs, bool augment) {
  v1::JobSpec spec;
  spec.set_backbone("squeezenet1_1");
  spec.set_dataset("hym");
  spec.set_input_size(112);
  spec.set_batch_size(16);
  spec.set_seed(4);
  spec.set_model_name(model_name);
  spec.set_workers(workers);
  spec.mutable_augmentation()->set_horizontal_flip(augment);
  auto* stage = spec.add_stages();
  stage->set_epochs(epochs);
  stage->mutable_optimizer()->set_kind(v1::OPTIMIZER_SGD);
  stage->mutable_optimizer()->set_learning_rate(0.01);
  stage->mutable_optimizer()->set_momentum(0.9);
  return spec;
}

// Every state reason of the job, in order.
std::vector<std::string> Reasons(client::GraftClient& c, const std::string& job) {
  std::vector<std::string> reasons;
  EXPECT_TRUE(c.WatchJob(job, false, [&](const v1::JobEvent& e) {
                 if (e.has_state()) reasons.push_back(e.state().reason());
                 return true;
               }).ok());
  return reasons;
}

// The value of a sample line `series VALUE` of a /metrics page; -1 when absent.
double Sample(const std::string& page, const std::string& series) {
  const size_t at = page.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(page.substr(at + series.size() + 2));
}

bool AnyStartsWith(const std::vector<std::string>& all, const std::string& prefix) {
  for (const auto& s : all) {
    if (absl::StartsWith(s, prefix)) return true;
  }
  return false;
}

TEST_F(DataParallel, ATwoWorkerJobPublishesTheModelAOneWorkerJobPublishes) {
  ASSERT_NO_FATAL_FAILURE(StartTwoTrainersAndAServer());
  GraftdProcess *t1 = processes_["t1"].get(), *t2 = processes_["t2"].get(), *serve = processes_["s"].get();
  client::GraftClient s(serve->address(), Admin());

  auto one = s.CreateJob(Spec(1, "one", 3, false));
  ASSERT_TRUE(one.ok()) << one.status();
  Reasons(s, one->id());
  auto two = s.CreateJob(Spec(2, "two", 3, false));
  ASSERT_TRUE(two.ok()) << two.status();
  const std::vector<std::string> reasons = Reasons(s, two->id());
  const v1::Job a = *s.GetJob(one->id()), b = *s.GetJob(two->id());
  ASSERT_EQ(a.state(), v1::JOB_STATE_SUCCEEDED) << a.error();
  ASSERT_EQ(b.state(), v1::JOB_STATE_SUCCEEDED) << b.error() << "\n"
                                                << absl::StrJoin(reasons, "\n") << "\n--- t1:\n"
                                                << Log("t1") << "\n--- t2:\n"
                                                << Log("t2");
  const std::string rank0 = b.worker(), rank1 = rank0 == "t1" ? "t2" : "t1";
  EXPECT_TRUE(
      AnyStartsWith(reasons, absl::StrCat("data-parallel group 1 of 2: ", rank0, " (rank 0), ", rank1, " (rank 1)")))
      << absl::StrJoin(reasons, "\n");
  // Each rank read every other image of the dataset.
  int read = 0, of = 0;
  for (const auto& r : reasons) {
    if (absl::StartsWith(r, "group 1 done; ")) {
      ASSERT_EQ(std::sscanf(r.c_str(), "group 1 done; rank 0 read %d of %d images", &read, &of), 2) << r;
    }
  }
  ASSERT_GT(of, 300) << absl::StrJoin(reasons, "\n");
  EXPECT_EQ(read, (of + 1) / 2);
  EXPECT_NE(Log(rank1).find(absl::StrCat("rank 1 of 2: done; read ", of / 2, " of ", of, " images")), std::string::npos)
      << Log(rank1);
  // Both ranks count the same all-reduces (one per step, one per validation):
  // 3 epochs of 16 batches of 16, and 3 validations at least.
  const std::string page0 = graft::testing::HttpGet(processes_[rank0]->metrics_port(), "/metrics"),
                    page1 = graft::testing::HttpGet(processes_[rank1]->metrics_port(), "/metrics");
  EXPECT_GE(Sample(page0, "graft_allreduce_seconds_count"), 3 * 16 + 3) << page0;
  EXPECT_EQ(Sample(page0, "graft_allreduce_seconds_count"), Sample(page1, "graft_allreduce_seconds_count"));
  EXPECT_EQ(Sample(page0, "graft_allreduce_bytes_total"), Sample(page1, "graft_allreduce_bytes_total"));
  EXPECT_EQ(Sample(page0, "graft_data_parallel_groups_total{outcome=\"done\"}"), 1) << page0;

  // The same predictions from both models, image by image.
  v1::PredictRequest predict;
  predict.add_models("one");
  predict.add_models("two");
  predict.set_top_k(2);
  for (const char* f : {"/val/bees/10870992_eebeeb3a12.jpg", "/val/ants/10308379_1b6c72e180.jpg",
                        "/val/bees/1032546534_06907fe3b3.jpg"}) {
    auto bytes = core::ReadFile(graft::testing::HymenopteraDir() + f);
    ASSERT_TRUE(bytes.ok()) << f;
    predict.add_images()->set_encoded(*bytes);
  }
  auto p = s.Predict(predict);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->results_size(), 2);
  for (int i = 0; i < 3; ++i) {
    for (int k = 0; k < 2; ++k) {
      const auto& x = p->results(0).predictions(i).top(k);
      const auto& y = p->results(1).predictions(i).top(k);
      EXPECT_EQ(x.label(), y.label());
      EXPECT_NEAR(x.probability(), y.probability(), 1e-4) << "image " << i;
    }
  }
  for (GraftdProcess* proc : {t1, t2, serve}) EXPECT_EQ(proc->Stop(SIGTERM), 0);
}

TEST_F(DataParallel, AKilledRankFailsTheStepAndTheJobResumesInANewGroup) {
  ASSERT_NO_FATAL_FAILURE(StartTwoTrainersAndAServer());
  GraftdProcess *t1 = processes_["t1"].get(), *t2 = processes_["t2"].get(), *serve = processes_["s"].get();
  client::GraftClient s(serve->address(), Admin());
  auto job = s.CreateJob(Spec(2, "bees", 3, true));
  ASSERT_TRUE(job.ok()) << job.status();
  // Killed once the group has finished an epoch.
  bool trained_an_epoch = false;
  ASSERT_TRUE(s.WatchJob(job->id(), false, [&](const v1::JobEvent& e) {
                 trained_an_epoch = e.has_epoch();
                 return !trained_an_epoch;
               }).ok());
  ASSERT_TRUE(trained_an_epoch);
  const std::string rank0 = s.GetJob(job->id())->worker();
  GraftdProcess* rank1 = rank0 == "t1" ? t2 : t1;
  rank1->Stop(SIGKILL);
  ASSERT_NO_FATAL_FAILURE(StartTrainer("t3"));
  GraftdProcess* t3 = processes_["t3"].get();
  std::vector<int> epochs;
  std::vector<std::string> reasons;
  int succeeded = 0;
  ASSERT_TRUE(s.WatchJob(job->id(), false, [&](const v1::JobEvent& e) {
                 if (e.has_epoch()) epochs.push_back(e.epoch().epoch());
                 if (e.has_state()) reasons.push_back(e.state().reason());
                 succeeded += e.has_state() && e.state().state() == v1::JOB_STATE_SUCCEEDED;
                 return true;
               }).ok());
  const v1::Job done = *s.GetJob(job->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error() << "\n" << absl::StrJoin(reasons, "\n");
  EXPECT_EQ(succeeded, 1);
  EXPECT_EQ(done.worker(), rank0);
  bool failed_step = false, resumed = false;
  for (const auto& r : reasons) {
    // Killed during a step or the epoch's evaluation: Gloo's error either way.
    failed_step =
        failed_step || absl::StrContains(r, "; resuming from the last checkpoint in a new group (attempt 2 of 3)");
    resumed =
        resumed || absl::StartsWith(r, absl::StrCat("data-parallel group 2 of 2: ", rank0, " (rank 0), t3 (rank 1)"));
  }
  std::cout << "the job's states:\n  " << absl::StrJoin(reasons, "\n  ") << "\n";
  EXPECT_TRUE(failed_step) << absl::StrJoin(reasons, "\n");
  EXPECT_TRUE(resumed) << absl::StrJoin(reasons, "\n");
  // Each epoch ran once: the failed one went on from the batch it stopped at.
  EXPECT_EQ(epochs, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(s.ListModels()->models_size(), 1);
  // Rank 0 counts its two groups: the one that failed, the one that finished.
  const std::string page = graft::testing::HttpGet(processes_[rank0]->metrics_port(), "/metrics");
  EXPECT_EQ(Sample(page, "graft_data_parallel_groups_total{outcome=\"failed\"}"), 1) << page;
  EXPECT_EQ(Sample(page, "graft_data_parallel_groups_total{outcome=\"done\"}"), 1) << page;
  for (GraftdProcess* proc : {t1 == rank1 ? t2 : t1, t3, serve}) EXPECT_EQ(proc->Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace graft
