// Training refused or stopped: a cancel within one batch, specs that name the
// wrong field, a full queue, and uploads with hostile or broken entries.

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include "client/client.h"
#include <torch/torch.h>

#include "core/data/image_codec.h"
#include "core/data/transforms.h"
#include "core/util/files.h"
#include "core/zoo/mobilenet_v2.h"
#include "core/zoo/state_dict.h"
#include "server/server.h"
#include "tests/integration/training_fixture.h"
#include "tests/testing/archive_writer.h"
#include "tests/testing/local_server.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"

namespace graft::server {
namespace {

namespace fs = std::filesystem;
using graft::testing::ArchiveEntry;

TEST_F(TrainingTest, CancelStopsWithinOneBatch) {
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::JobSpec spec = Spec("hym", 50);
  spec.set_batch_size(4);
  spec.set_input_size(96);
  spec.mutable_augmentation()->set_horizontal_flip(true);  // no feature cache: every batch runs the backbone
  auto job = client_->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  std::atomic<int> batches{0};
  std::thread watcher([&]() {
    client::GraftClient c("127.0.0.1:" + std::to_string(server_->port()),
                                                   graft::testing::AdminClientOptions(dir_.Join("data")));
    (void)c.WatchJob(job->id(), /*progress=*/true, [&](const v1::JobEvent& e) {
      if (e.has_progress()) batches = e.progress().batch();
      return true;
    });
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (batches < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_GE(batches, 3);
  const auto start = std::chrono::steady_clock::now();
  auto cancelled = client_->CancelJob(job->id());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  watcher.join();
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_NE(cancelled->error().find("cancelled at epoch 1, batch"), std::string::npos) << cancelled->error();
  EXPECT_LT(seconds, 5.0) << "one batch of 4 images at 96 px takes well under a second";
  EXPECT_TRUE(cancelled->model_id().empty());
  EXPECT_EQ(client_->CancelJob(job->id()).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(TrainingTest, InvalidSpecsNameTheField) {
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  auto expect = [&](v1::JobSpec spec, absl::StatusCode code, const std::string& fragment) {
    const auto r = client_->CreateJob(spec);
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
  };
  v1::JobSpec s = Spec("hym", 1);
  s.set_backbone("vgg99");
  expect(s, absl::StatusCode::kNotFound, "spec.backbone: unknown backbone 'vgg99'");
  s = Spec("hym", 1);
  s.mutable_stages(0)->set_train("top:99");
  expect(s, absl::StatusCode::kInvalidArgument, "spec.stages[0].train: must be head, all or top:N with N in 1..19");
  s = Spec("hym", 1);
  s.mutable_stages(0)->mutable_optimizer()->set_learning_rate(-1);
  expect(s, absl::StatusCode::kInvalidArgument, "spec.stages[0].optimizer.learning_rate");
  s = Spec("hym", 1);
  s.set_batch_size(-3);
  expect(s, absl::StatusCode::kInvalidArgument, "spec.batch_size: must be 1..4096, got -3");
  s = Spec("hym", 1);
  s.mutable_head()->set_dropout(1.5);
  expect(s, absl::StatusCode::kInvalidArgument, "spec.head.dropout");
  s = Spec("hym", 1);
  s.mutable_stages(0)->mutable_optimizer()->set_nesterov(true);
  expect(s, absl::StatusCode::kInvalidArgument, "spec.stages[0].optimizer.nesterov: needs the SGD optimizer");
  s = Spec("hym", 1);
  s.mutable_augmentation()->set_cached_views(4);
  expect(s, absl::StatusCode::kInvalidArgument, "spec.augmentation.cached_views: needs an augmentation");
  s.mutable_augmentation()->set_horizontal_flip(true);
  s.mutable_augmentation()->set_cached_views(65);
  expect(s, absl::StatusCode::kInvalidArgument, "spec.augmentation.cached_views: must be 0..64");
  s = Spec("hym", 1);
  s.set_balanced_sampling(true);
  s.set_class_weighting(true);
  expect(s, absl::StatusCode::kInvalidArgument,
         "spec.balanced_sampling: and class_weighting both correct for class imbalance; choose one");
  s = Spec("hym", 1);
  s.set_workers(65);
  expect(s, absl::StatusCode::kInvalidArgument, "spec.workers: must be 1..64");
  s.set_workers(-1);
  expect(s, absl::StatusCode::kInvalidArgument, "spec.workers: must be 1..64");
  s = Spec("hym", 1);
  s.set_workers(2);
  s.mutable_stages(0)->mutable_optimizer()->set_auto_learning_rate(true);
  expect(s, absl::StatusCode::kInvalidArgument, "spec.workers: learning_rate auto runs on one trainer");
  // One graftd on SQLite has no other trainers to share a job with.
  s = Spec("hym", 1);
  s.set_workers(2);
  expect(s, absl::StatusCode::kFailedPrecondition,
         "spec.workers: 2 trainers share a job only when trainer processes share a PostgreSQL database");
  s = Spec("nope", 1);
  expect(s, absl::StatusCode::kNotFound, "spec.dataset: no dataset 'nope'");
  s = Spec("hym", 1);
  s.set_backbone("resnet50");
  expect(s, absl::StatusCode::kFailedPrecondition, "no ImageNet weights");
  auto jobs = client_->ListJobs();
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(jobs->jobs_size(), 0) << "nothing was queued";
}

TEST_F(TrainingTest, FullQueueIsResourceExhausted) {
  Restart([](ServerOptions& o) { o.max_queued_jobs = 1; });
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::JobSpec slow = Spec("hym", 50);
  slow.mutable_augmentation()->set_horizontal_flip(true);
  std::vector<std::string> ids;
  absl::Status refused;
  for (int i = 0; i < 3 && refused.ok(); ++i) {  // one runs, one waits, the next is refused
    auto job = client_->CreateJob(slow);
    if (job.ok()) {
      ids.push_back(job->id());
    } else {
      refused = job.status();
    }
  }
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.message().find("the job queue is full"), std::string::npos) << refused;
  EXPECT_EQ(client_->ListJobs()->jobs_size(), static_cast<int>(ids.size()));
  for (const auto& id : ids) {
    auto cancelled = client_->CancelJob(id);
    ASSERT_TRUE(cancelled.ok()) << cancelled.status();
    EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  }
}

TEST_F(TrainingTest, UploadRejectsHostileAndBrokenEntries) {
  const std::string cat = graft::testing::EncodeImage("png", 8, 8, 0, 0, 255);
  const std::string dog = graft::testing::EncodeImage("jpg", 8, 8, 255, 0, 0);
  std::string tall = graft::testing::EncodeImage("png", 1, 1, 1, 2, 3);
  const char dims[8] = {0, 0, 0, 1, 0, 1, static_cast<char>(0x86), static_cast<char>(0xA0)};  // 1 x 100000
  tall.replace(16, 8, dims, 8);
  std::vector<ArchiveEntry> entries = {
      {"cats/a.png", cat, ""},
      {"cats/b.png", graft::testing::EncodeImage("png", 9, 9, 1, 1, 250), ""},
      {"dogs/a.jpg", dog, ""},
      {"dogs/b.jpg", graft::testing::EncodeImage("jpg", 9, 9, 250, 1, 1), ""},
      {"../../evil.jpg", dog, ""},
      {"/etc/evil.jpg", dog, ""},
      {"dogs/link.jpg", "", "../../../etc/passwd"},
      {"dogs/tall.png", tall, ""},
      {"cats/notes.jpg", "this is a text file renamed .jpg", ""},
  };
  const std::string zip = dir_.Join("pets.zip");
  ASSERT_TRUE(graft::testing::WriteArchive(zip, "zip", entries));
  auto up = client_->UploadDataset(zip, "pets", 0.5, 7);
  ASSERT_TRUE(up.ok()) << up.status();
  std::map<std::string, std::string> why;
  for (const auto& r : up->rejected()) why[r.path()] = r.reason();
  EXPECT_EQ(why["../../evil.jpg"], "paths with '..' are not accepted");
  EXPECT_EQ(why["/etc/evil.jpg"], "absolute paths are not accepted");
  EXPECT_EQ(why["dogs/link.jpg"], "symbolic links are not accepted");
  // 1 x 100000 is under the pixel cap, but the header promises rows the file does not hold.
  EXPECT_NE(why["dogs/tall.png"].find("png"), std::string::npos) << why["dogs/tall.png"];
  EXPECT_NE(why["cats/notes.jpg"].find("not an image"), std::string::npos) << why["cats/notes.jpg"];
  EXPECT_EQ(up->rejected_size(), 5);
  EXPECT_EQ(up->dataset().layout(), v1::DATASET_LAYOUT_FLAT);
  EXPECT_EQ(up->dataset().train_images() + up->dataset().val_images(), 4);
  EXPECT_EQ(up->dataset().val_images(), 2);  // one per class at fraction 0.5
  EXPECT_FALSE(fs::exists(dir_.Join("data/evil.jpg")));
  EXPECT_FALSE(fs::exists(dir_.Join("evil.jpg")));

  // One class only: refused, and nothing is kept.
  const int blobs = BlobCount();
  const std::string single = dir_.Join("single.tar.gz");
  ASSERT_TRUE(graft::testing::WriteArchive(single, "tar.gz", {{"cats/x.png", graft::testing::EncodeImage("png", 5, 5, 9, 9, 9), ""},
                                                               {"cats/y.png", graft::testing::EncodeImage("png", 6, 5, 9, 9, 9), ""}}));
  auto one = client_->UploadDataset(single, "single");
  EXPECT_EQ(one.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(one.status().message().find("at least 2 classes, found 1 ('cats')"), std::string::npos) << one.status();
  EXPECT_EQ(BlobCount(), blobs);
  EXPECT_EQ(client_->GetDataset("single").status().code(), absl::StatusCode::kNotFound);

  // A class whose every file is rejected.
  const std::string empty = dir_.Join("empty.tar.gz");
  ASSERT_TRUE(graft::testing::WriteArchive(empty, "tar.gz", {{"cats/x.png", cat, ""}, {"dogs/x.jpg", "garbage", ""}}));
  auto left_empty = client_->UploadDataset(empty, "empty");
  EXPECT_EQ(left_empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(left_empty.status().message().find("left without training images: dogs"), std::string::npos)
      << left_empty.status();

  // Not an archive at all.
  ASSERT_TRUE(core::WriteFileAtomic(dir_.Join("junk.tar"), "definitely not a tar file").ok());
  EXPECT_EQ(client_->UploadDataset(dir_.Join("junk.tar"), "junk").status().code(), absl::StatusCode::kInvalidArgument);

  // Delete removes the dataset and its images.
  ASSERT_TRUE(client_->DeleteDataset("pets").ok());
  EXPECT_EQ(client_->GetDataset("pets").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(BlobCount(), 0);
}

}  // namespace
}  // namespace graft::server
