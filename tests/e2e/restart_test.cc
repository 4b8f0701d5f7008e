// Durability: graftd killed with SIGKILL mid-epoch and mid-upload, restarted
// on the same data directory.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "client/client.h"
#include "core/util/files.h"
#include "tests/testing/archive_writer.h"
#include "tests/testing/graftd_process.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/hymenoptera.h"

namespace graft {
namespace {

namespace fs = std::filesystem;


v1::JobSpec Spec(int epochs, bool augment) {
  v1::JobSpec spec;
  spec.set_backbone("mobilenet_v2");
  spec.set_dataset("hym");
  spec.set_seed(3);
  spec.set_input_size(112);
  spec.set_batch_size(16);
  if (augment) spec.mutable_augmentation()->set_horizontal_flip(true);  // no cache: epochs take seconds
  auto* stage = spec.add_stages();
  stage->set_epochs(epochs);
  return spec;
}

client::ClientOptions Admin(const graft::testing::GraftdProcess& graftd) {
  client::ClientOptions options;
  options.token = graftd.admin_token();
  return options;
}

v1::Job WaitForEnd(client::GraftClient& c, const std::string& id) {
  v1::Job job;
  (void)c.WatchJob(id, false, [](const v1::JobEvent&) { return true; });
  return c.GetJob(id).value_or(job);
}

// Returns once the job is in `epoch` at batch >= `batch`.
bool WaitForBatch(client::GraftClient& c, const std::string& id, int epoch, int batch) {
  bool reached = false;
  (void)c.WatchJob(id, true, [&](const v1::JobEvent& e) {
    reached = e.has_progress() && e.progress().epoch() == epoch && e.progress().batch() >= batch;
    return !reached;
  });
  return reached;
}

TEST(Restart, JobsResumeAndNothingAcknowledgedIsLost) {
  graft::testing::TempDir dir;
  const std::string data = dir.Join("data");
  graft::testing::GraftdProcess graftd(data, dir.Join("graftd.log"));
  ASSERT_TRUE(graftd.Start()) << graftd.log();
  auto c = std::make_unique<client::GraftClient>(graftd.address(), Admin(graftd));

  auto up = c->UploadDataset(graft::testing::HymenopteraDir(), "hym");
  ASSERT_TRUE(up.ok()) << up.status();
  const int blobs = graft::testing::CountFiles(data + "/datasets/blobs");

  // An earlier model, and what it says about one image.
  auto first = c->CreateJob(Spec(1, false));
  ASSERT_TRUE(first.ok()) << first.status();
  const v1::Job model_job = WaitForEnd(*c, first->id());
  ASSERT_EQ(model_job.state(), v1::JOB_STATE_SUCCEEDED) << model_job.error();
  v1::PredictRequest predict;
  predict.add_models(model_job.model_id());
  predict.add_images()->set_encoded(core::ReadFile(graft::testing::HymenopteraDir() + "/val/bees/10870992_eebeeb3a12.jpg").value());
  const auto before = c->Predict(predict);
  ASSERT_TRUE(before.ok()) << before.status();

  // SIGKILL during epoch 2 of a job.
  auto job = c->CreateJob(Spec(3, true));
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(WaitForBatch(*c, job->id(), 2, 3));
  graftd.Stop(SIGKILL);
  c.reset();

  ASSERT_TRUE(graftd.Start()) << graftd.log();
  c = std::make_unique<client::GraftClient>(graftd.address(), Admin(graftd));
  std::vector<int> epochs;
  std::vector<std::string> reasons;
  ASSERT_TRUE(c->WatchJob(job->id(), false, [&](const v1::JobEvent& e) {
    if (e.has_epoch()) epochs.push_back(e.epoch().epoch());
    if (e.has_state()) reasons.push_back(e.state().reason());
    return true;
  }).ok());
  EXPECT_EQ(epochs, (std::vector<int>{1, 2, 3})) << "epoch 1 from before the kill, then 2 and 3 after it";
  EXPECT_NE(std::find(reasons.begin(), reasons.end(), "graftd restarted; resuming after epoch 1"), reasons.end());
  const v1::Job resumed = *c->GetJob(job->id());
  EXPECT_EQ(resumed.state(), v1::JOB_STATE_SUCCEEDED) << resumed.error();
  EXPECT_FALSE(resumed.model_id().empty());
  EXPECT_FALSE(fs::exists(data + "/checkpoints/" + job->id() + ".ckpt"));

  // The dataset and the earlier model are intact.
  auto dataset = c->GetDataset("hym");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->train_images(), up->dataset().train_images());
  EXPECT_EQ(dataset->val_images(), up->dataset().val_images());
  const auto after = c->Predict(predict);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->results(0).predictions(0).top(0).index(), before->results(0).predictions(0).top(0).index());
  EXPECT_NEAR(after->results(0).predictions(0).top(0).probability(),
              before->results(0).predictions(0).top(0).probability(), 1e-5);

  // SIGKILL during epoch 1: no checkpoint yet, so the job fails with the reason.
  auto early = c->CreateJob(Spec(3, true));
  ASSERT_TRUE(early.ok());
  ASSERT_TRUE(WaitForBatch(*c, early->id(), 1, 2));
  graftd.Stop(SIGKILL);
  c.reset();
  // What a kill at other moments leaves: the checkpoint of a job whose model
  // was already published, a half-written checkpoint. Nobody resumes from them.
  const std::string ended_ckpt = data + "/checkpoints/" + model_job.id() + ".ckpt";
  const std::string half_written = data + "/checkpoints/" + early->id() + ".ckpt.tmp-1234";
  ASSERT_TRUE(core::WriteFileAtomic(ended_ckpt, "stale").ok());
  ASSERT_TRUE(core::WriteFileAtomic(half_written, "half").ok());

  // SIGKILL during an upload: nothing of it is kept.
  ASSERT_TRUE(graftd.Start()) << graftd.log();
  EXPECT_FALSE(fs::exists(ended_ckpt)) << "the checkpoint of an ended job survives restarts";
  EXPECT_FALSE(fs::exists(half_written));
  EXPECT_EQ(graft::testing::CountFiles(data + "/checkpoints"), 0);
  c = std::make_unique<client::GraftClient>(graftd.address(), Admin(graftd));
  const v1::Job failed = *c->GetJob(early->id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.error(), "interrupted before the first checkpoint");
  const std::string fresh = dir.Join("fresh");
  for (int i = 0; i < 300; ++i) {
    const std::string cls = fresh + (i % 2 ? "/red" : "/blue");
    fs::create_directories(cls);
    const std::string png = graft::testing::EncodeImage("png", 16 + i, 16, i % 256, 40, 200);
    ASSERT_TRUE(core::WriteFileAtomic(cls + "/" + std::to_string(i) + ".png", png).ok());
  }
  std::atomic<bool> killed{false};
  std::thread uploader([&]() {
    client::GraftClient slow(graftd.address(), Admin(graftd));
    (void)slow.UploadDataset(fresh, "half", 0, 0, [&](const client::GraftClient::UploadProgress& p) {
      if (p.files_sent == 100 && !killed.exchange(true)) graftd.Stop(SIGKILL);
    });
  });
  uploader.join();
  ASSERT_TRUE(killed);
  ASSERT_TRUE(graftd.Start()) << graftd.log();
  c = std::make_unique<client::GraftClient>(graftd.address(), Admin(graftd));
  EXPECT_EQ(c->GetDataset("half").status().code(), absl::StatusCode::kNotFound);
  auto all = c->ListDatasets();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->datasets_size(), 1);
  EXPECT_EQ(graft::testing::CountFiles(data + "/datasets/staging"), 0);
  EXPECT_EQ(graft::testing::CountFiles(data + "/datasets/blobs"), blobs);
  EXPECT_EQ(graftd.Stop(SIGTERM), 0);
}

// The events of a job once it has ended: epochs run, state reasons, and the
// mid-epoch checkpoints (epoch, batch).
struct JobHistory {
  std::vector<int> epochs;
  std::vector<std::string> reasons;
  std::vector<std::pair<int, int>> mid_epoch_checkpoints;
};

JobHistory History(client::GraftClient& c, const std::string& id) {
  JobHistory h;
  (void)c.WatchJob(id, false, [&](const v1::JobEvent& e) {
    if (e.has_epoch()) h.epochs.push_back(e.epoch().epoch());
    if (e.has_state()) h.reasons.push_back(e.state().reason());
    if (e.has_checkpoint() && e.checkpoint().batch() > 0) {
      h.mid_epoch_checkpoints.emplace_back(e.checkpoint().epoch(), e.checkpoint().batch());
    }
    return true;
  });
  return h;
}

bool HasReasonStartingWith(const JobHistory& h, const std::string& prefix) {
  return std::any_of(h.reasons.begin(), h.reasons.end(),
                     [&](const std::string& r) { return r.rfind(prefix, 0) == 0; });
}

// SIGTERM in the middle of epoch 1: predicts in flight end well, the job
// checkpoints at its next batch, graftd exits 0, and after the restart the
// job goes on from that batch (not from the start of the epoch).
TEST(Restart, SigtermCheckpointsMidEpochAndTheJobResumesThere) {
  graft::testing::TempDir dir;
  const std::string data = dir.Join("data");
  graft::testing::GraftdProcess graftd(data, dir.Join("graftd.log"));
  const std::vector<std::string> flags = {"--checkpoint_interval_s=0", "--shutdown_grace_s=20"};
  ASSERT_TRUE(graftd.Start(flags)) << graftd.log();
  auto c = std::make_unique<client::GraftClient>(graftd.address(), Admin(graftd));
  ASSERT_TRUE(c->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  auto job = c->CreateJob(Spec(2, true));
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(WaitForBatch(*c, job->id(), 1, 4));

  // Predicts keep coming while graftd stops: each succeeds, but for the last
  // one, which may be refused as UNAVAILABLE (the server going away) or, when
  // it reached the server just as gRPC's Shutdown began and no handler had
  // taken it yet, CANCELLED by gRPC itself (grpc/grpc#41785: gRPC cancels
  // such pending calls; graft never saw the request). Never cut off any
  // other way.
  std::atomic<bool> done{false};
  std::vector<absl::StatusCode> codes;
  std::thread predictor([&]() {
    client::GraftClient p(graftd.address(), Admin(graftd));
    v1::PredictRequest predict;
    predict.set_backbone("mobilenet_v2");  // the ImageNet head, batched like any predict
    predict.add_images()->set_encoded(core::ReadFile(graft::testing::HymenopteraDir() + "/val/bees/10870992_eebeeb3a12.jpg").value());
    while (!done) {
      const auto r = p.Predict(predict);
      codes.push_back(r.status().code());
      if (!r.ok()) break;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto stop_start = std::chrono::steady_clock::now();
  EXPECT_EQ(graftd.Stop(SIGTERM), 0);
  const double stop_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - stop_start).count();
  done = true;
  predictor.join();
  c.reset();
  EXPECT_LT(stop_seconds, 20) << "graftd waited out its whole grace period";
  ASSERT_FALSE(codes.empty());
  EXPECT_EQ(codes.front(), absl::StatusCode::kOk);
  for (size_t i = 0; i + 1 < codes.size(); ++i) EXPECT_EQ(codes[i], absl::StatusCode::kOk);
  EXPECT_TRUE(codes.back() == absl::StatusCode::kOk || codes.back() == absl::StatusCode::kUnavailable ||
              codes.back() == absl::StatusCode::kCancelled)
      << "last predict: " << static_cast<int>(codes.back());
  EXPECT_TRUE(fs::exists(data + "/checkpoints/" + job->id() + ".ckpt"));

  ASSERT_TRUE(graftd.Start(flags)) << graftd.log();
  c = std::make_unique<client::GraftClient>(graftd.address(), Admin(graftd));
  const JobHistory h = History(*c, job->id());
  ASSERT_EQ(h.mid_epoch_checkpoints.size(), 1u);
  EXPECT_EQ(h.mid_epoch_checkpoints[0].first, 1);
  EXPECT_GE(h.mid_epoch_checkpoints[0].second, 4);
  EXPECT_TRUE(HasReasonStartingWith(h, "graftd restarted; resuming epoch 1 after batch " +
                                           std::to_string(h.mid_epoch_checkpoints[0].second)))
      << ::testing::PrintToString(h.reasons);
  EXPECT_EQ(h.epochs, (std::vector<int>{1, 2}));
  const v1::Job ended = *c->GetJob(job->id());
  EXPECT_EQ(ended.state(), v1::JOB_STATE_SUCCEEDED) << ended.error();
  EXPECT_EQ(ended.last().epoch(), 2);
  EXPECT_GT(ended.last().val_accuracy(), 0.5);
  EXPECT_FALSE(fs::exists(data + "/checkpoints/" + job->id() + ".ckpt"));
  EXPECT_EQ(graftd.Stop(SIGTERM), 0);
}

// The crash-loop guard: a job whose run ends graftd (here: SIGKILL after its
// first checkpoint) is resumed at most --max_job_restarts times; the next
// start fails it with the reason instead of running it into the same end.
TEST(Restart, AJobWhoseRunKeepsEndingGraftdIsNotResumedForever) {
  graft::testing::TempDir dir;
  const std::string data = dir.Join("data");
  graft::testing::GraftdProcess graftd(data, dir.Join("graftd.log"));
  ASSERT_TRUE(graftd.Start({"--max_job_restarts=0"})) << graftd.log();
  auto c = std::make_unique<client::GraftClient>(graftd.address(), Admin(graftd));
  ASSERT_TRUE(c->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  // Stops graftd with `signal` in epoch 2 of a new job, starts it again and
  // returns how the job ended.
  const auto interrupted = [&](int epochs, int signal) {
    auto job = c->CreateJob(Spec(epochs, true));
    EXPECT_TRUE(job.ok()) << job.status();
    EXPECT_TRUE(WaitForBatch(*c, job->id(), 2, 1));
    graftd.Stop(signal);
    c.reset();
    EXPECT_TRUE(graftd.Start({"--max_job_restarts=0"})) << graftd.log();
    c = std::make_unique<client::GraftClient>(graftd.address(), Admin(graftd));
    return WaitForEnd(*c, job->id());
  };
  const v1::Job failed = interrupted(3, SIGKILL);
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(failed.error().find("ended abnormally 1 times"), std::string::npos) << failed.error();
  EXPECT_NE(failed.error().find("(--max_job_restarts is 0)"), std::string::npos) << failed.error();
  EXPECT_FALSE(fs::exists(data + "/checkpoints/" + failed.id() + ".ckpt"));
  // A graceful restart is no abnormal end: a job stopped by SIGTERM resumes.
  const v1::Job resumed = interrupted(2, SIGTERM);
  EXPECT_EQ(resumed.state(), v1::JOB_STATE_SUCCEEDED) << resumed.error();
}

// --checkpoint_interval_s: a SIGKILL in epoch 1 no longer loses the job; it
// resumes from its last mid-epoch checkpoint.
TEST(Restart, PeriodicMidEpochCheckpointsSurviveSigkill) {
  graft::testing::TempDir dir;
  const std::string data = dir.Join("data");
  graft::testing::GraftdProcess graftd(data, dir.Join("graftd.log"));
  const std::vector<std::string> flags = {"--checkpoint_interval_s=0.1"};
  ASSERT_TRUE(graftd.Start(flags)) << graftd.log();
  auto c = std::make_unique<client::GraftClient>(graftd.address(), Admin(graftd));
  ASSERT_TRUE(c->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  auto job = c->CreateJob(Spec(2, true));
  ASSERT_TRUE(job.ok()) << job.status();
  // Killed right after the first mid-epoch checkpoint of epoch 1.
  int saved_batch = 0;
  (void)c->WatchJob(job->id(), false, [&](const v1::JobEvent& e) {
    if (e.has_checkpoint() && e.checkpoint().epoch() == 1 && e.checkpoint().batch() > 0) {
      saved_batch = e.checkpoint().batch();
      graftd.Stop(SIGKILL);
      return false;
    }
    return !e.has_epoch();
  });
  ASSERT_GT(saved_batch, 0) << "epoch 1 ended before any mid-epoch checkpoint";
  c.reset();

  ASSERT_TRUE(graftd.Start(flags)) << graftd.log();
  c = std::make_unique<client::GraftClient>(graftd.address(), Admin(graftd));
  const JobHistory h = History(*c, job->id());
  EXPECT_TRUE(HasReasonStartingWith(h, "graftd restarted; resuming epoch 1 after batch "))
      << ::testing::PrintToString(h.reasons);
  ASSERT_FALSE(h.mid_epoch_checkpoints.empty());
  EXPECT_GE(h.mid_epoch_checkpoints.back().second, saved_batch);
  EXPECT_EQ(h.epochs, (std::vector<int>{1, 2}));
  EXPECT_EQ(c->GetJob(job->id())->state(), v1::JOB_STATE_SUCCEEDED) << c->GetJob(job->id())->error();
  EXPECT_EQ(graftd.Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace graft
