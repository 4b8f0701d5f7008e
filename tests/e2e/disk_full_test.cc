// A full disk under the data directory: uploads fail with RESOURCE_EXHAUSTED
// naming the disk, nothing stored is lost or half-kept, graftd keeps serving,
// and once space is freed the same upload succeeds. The data directory is a
// small tmpfs the test mounts (root only; skipped otherwise).

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "client/client.h"
#include "core/util/files.h"
#include "tests/testing/graftd_process.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"

namespace graft {
namespace {

namespace fs = std::filesystem;

// `per_class` noise PNGs (incompressible, ~200 KB each) in two class folders.
void NoiseDataset(const std::string& dir, int per_class, int seed) {
  cv::RNG rng(static_cast<uint64_t>(seed));
  for (int c = 0; c < 2; ++c) {
    const std::string cls = dir + (c == 0 ? "/noise" : "/static");
    fs::create_directories(cls);
    for (int i = 0; i < per_class; ++i) {
      cv::Mat img(256, 256, CV_8UC3);
      rng.fill(img, cv::RNG::UNIFORM, 0, 256);
      std::vector<uchar> png;
      ASSERT_TRUE(cv::imencode(".png", img, png));
      ASSERT_TRUE(core::WriteFileAtomic(cls + "/" + std::to_string(i) + ".png", std::string(png.begin(), png.end())).ok());
    }
  }
}

class TmpfsMount {
 public:
  TmpfsMount(const std::string& dir, const std::string& size) : dir_(dir) {
    fs::create_directories(dir);
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

TEST(DiskFull, UploadsFailNamingTheDiskNothingIsLostAndFreedSpaceWorksAgain) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs as the data directory";
  graft::testing::TempDir dir;
  const std::string data = dir.Join("data");
  TmpfsMount tmpfs(data, "24m");
  ASSERT_TRUE(tmpfs.mounted()) << "mount tmpfs: " << std::strerror(errno);
  NoiseDataset(dir.Join("a"), 20, 1);  // ~8 MB
  NoiseDataset(dir.Join("b"), 25, 2);  // ~10 MB: staged and stored, it does not fit beside a

  graft::testing::GraftdProcess graftd(data, dir.Join("graftd.log"));
  ASSERT_TRUE(graftd.Start()) << graftd.log();
  client::ClientOptions admin;
  admin.token = graftd.admin_token();
  client::GraftClient c(graftd.address(), admin);

  auto a = c.UploadDataset(dir.Join("a"), "a");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->dataset().train_images() + a->dataset().val_images(), 40);
  const int blobs = graft::testing::CountFiles(data + "/datasets/blobs");

  auto b = c.UploadDataset(dir.Join("b"), "b");
  ASSERT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted) << b.status();
  EXPECT_NE(b.status().message().find("no space left on the disk holding"), std::string::npos) << b.status();

  // Nothing of b was kept, a is whole, and graftd still serves.
  EXPECT_EQ(c.GetDataset("b").status().code(), absl::StatusCode::kNotFound);
  auto still = c.GetDataset("a");
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->train_images() + still->val_images(), 40);
  EXPECT_EQ(graft::testing::CountFiles(data + "/datasets/blobs"), blobs);
  EXPECT_EQ(graft::testing::CountFiles(data + "/datasets/staging"), 0);
  v1::PredictRequest predict;
  predict.set_backbone("mobilenet_v2");
  predict.add_images()->set_encoded(core::ReadFile(graft::testing::SharedDir() + "/images/dog.jpg").value());
  EXPECT_TRUE(c.Predict(predict).ok());

  // Space freed: the same upload goes through.
  ASSERT_TRUE(c.DeleteDataset("a").ok());
  auto again = c.UploadDataset(dir.Join("b"), "b");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->dataset().train_images() + again->dataset().val_images(), 50);
  EXPECT_EQ(graftd.Stop(SIGTERM), 0);
}

TEST(DiskFull, ACheckpointThatDoesNotFitFailsTheJobNamingTheDiskAndFreedSpaceWorksAgain) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs as the data directory";
  graft::testing::TempDir dir;
  const std::string data = dir.Join("data");
  TmpfsMount tmpfs(data, "32m");
  ASSERT_TRUE(tmpfs.mounted()) << "mount tmpfs: " << std::strerror(errno);
  NoiseDataset(dir.Join("n"), 6, 3);  // ~2.4 MB

  graft::testing::GraftdProcess graftd(data, dir.Join("graftd.log"));
  ASSERT_TRUE(graftd.Start()) << graftd.log();
  client::ClientOptions admin;
  admin.token = graftd.admin_token();
  client::GraftClient c(graftd.address(), admin);
  ASSERT_TRUE(c.UploadDataset(dir.Join("n"), "n").ok());

  // A 512-unit head: 2.6 MB of weights, a checkpoint of ~10 MB (weights, best
  // weights, Adam's two moments). With 24 MB of other data it does not fit.
  {
    std::ofstream filler(data + "/filler", std::ios::binary);
    const std::string mib(1 << 20, 'x');
    for (int i = 0; i < 24; ++i) filler << mib;
    ASSERT_TRUE(filler.good());
  }
  v1::JobSpec spec;
  spec.set_backbone("mobilenet_v2");
  spec.set_dataset("n");
  spec.set_input_size(64);
  spec.set_batch_size(4);
  spec.mutable_head()->add_hidden_units(512);
  spec.add_stages()->set_epochs(2);
  auto job = c.CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  const absl::Status watched = c.WatchJob(job->id(), false, [](const v1::JobEvent&) { return true; });
  ASSERT_TRUE(watched.ok()) << watched << core::ReadFile(graftd.log()).value_or("");
  const v1::Job failed = *c.GetJob(job->id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(failed.error().find("no space left on the disk holding '" + data + "/checkpoints/"), std::string::npos)
      << failed.error();
  EXPECT_EQ(graft::testing::CountFiles(data + "/checkpoints"), 0) << "a half-written checkpoint stays";
  EXPECT_EQ(graft::testing::CountFiles(data + "/models"), 0);
  // graftd goes on serving; the dataset is whole.
  auto dataset = c.GetDataset("n");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->train_images() + dataset->val_images(), 12);
  v1::PredictRequest predict;
  predict.set_backbone("mobilenet_v2");
  predict.add_images()->set_encoded(core::ReadFile(graft::testing::SharedDir() + "/images/dog.jpg").value());
  EXPECT_TRUE(c.Predict(predict).ok());

  // Space freed: the same job trains, checkpoints, publishes and serves.
  fs::remove(data + "/filler");
  auto again = c.CreateJob(spec);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(c.WatchJob(again->id(), false, [](const v1::JobEvent&) { return true; }).ok());
  const v1::Job done = *c.GetJob(again->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  v1::PredictRequest with_model;
  with_model.add_models(done.model_id());
  with_model.add_images()->set_encoded(predict.images(0).encoded());
  auto answer = c.Predict(with_model);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->results(0).predictions(0).top_size(), 2);
  EXPECT_EQ(graftd.Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace graft
