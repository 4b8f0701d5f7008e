// Weights on demand: a download is kept only when its SHA-256 starts with the
// hash prefix in its torchvision file name; corrupted and truncated copies
// are refused with the reason and leave no file behind.

#include "core/zoo/download.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>

#include "core/serve/predictor.h"
#include "core/util/files.h"
#include "core/zoo/zoo.h"
#include "core/zoo/state_dict.h"
#include "tests/testing/http_server.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {

namespace fs = std::filesystem;

// The shared squeezenet1_1 weights under the name torchvision's scheme gives
// them: the first 8 hex digits of their SHA-256.
constexpr char kFile[] = "squeezenet1_1-26933201.pth";

class DownloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto bytes = ReadFile(graft::testing::WeightsDir() + "/squeezenet1_1-imagenet.pth");
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    good_ = *bytes;
  }
  std::vector<std::string> ZooFiles() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(zoo_.path())) out.push_back(e.path().filename().string());
    return out;
  }
  std::string good_;
  graft::testing::TempDir zoo_;
  graft::testing::HttpServer http_;
};

TEST(HashPrefix, ComesFromTheTorchvisionFileName) {
  EXPECT_EQ(HashPrefix("resnet50-0676ba61.pth"), "0676ba61");
  EXPECT_EQ(HashPrefix("alexnet-owt-7be5be79.pth"), "7be5be79");
  EXPECT_EQ(HashPrefix("resnet50-imagenet.pth"), "");
}

TEST_F(DownloadTest, AGoodCopyIsVerifiedAndLoads) {
  http_.Serve("/models/" + std::string(kFile), good_);
  int64_t last_done = 0;
  auto path = DownloadVerified(http_.Url("/models/") + kFile, zoo_.path(), kFile,
                               [&](const DownloadProgress& p) { last_done = p.bytes_done; });
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, zoo_.Join(kFile));
  EXPECT_EQ(last_done, static_cast<int64_t>(good_.size()));
  EXPECT_EQ(ZooFiles(), std::vector<std::string>{kFile});
  auto weights = ReadPth(*path);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->size(), 52u);
}

TEST_F(DownloadTest, AFileLargerThanTheCapIsRefusedAndNotKept) {
  http_.Serve("/" + std::string(kFile), good_);
  auto path = DownloadVerified(http_.Url("/") + kFile, zoo_.path(), kFile, {}, {},
                               static_cast<int64_t>(good_.size()) - 1);
  EXPECT_EQ(path.status().code(), absl::StatusCode::kResourceExhausted) << path.status();
  EXPECT_NE(path.status().message().find("is larger than"), std::string::npos) << path.status();
  EXPECT_TRUE(ZooFiles().empty());
}

TEST_F(DownloadTest, OneDownloadOfAFileAtATime) {
  http_.Serve("/" + std::string(kFile), good_);
  // The first download waits in its progress callback while a second starts.
  std::promise<void> started, second_done;
  std::thread first([&] {
    bool signalled = false;
    auto path = DownloadVerified(http_.Url("/") + kFile, zoo_.path(), kFile, [&](const DownloadProgress&) {
      if (signalled) return;
      signalled = true;
      started.set_value();
      second_done.get_future().wait();
    });
    EXPECT_TRUE(path.ok()) << path.status();
  });
  started.get_future().wait();
  auto second = DownloadVerified(http_.Url("/") + kFile, zoo_.path(), kFile);
  second_done.set_value();
  first.join();
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  EXPECT_NE(second.status().message().find("already being downloaded"), std::string::npos);
  EXPECT_EQ(ZooFiles(), std::vector<std::string>{kFile});
}

TEST_F(DownloadTest, AFileThatKeepsFailingIsTriedLessAndLessOften) {
  std::string corrupted = good_;
  corrupted[corrupted.size() / 2] ^= 1;
  http_.Serve("/" + std::string(kFile), corrupted);
  FetchOptions options;
  options.base_url = http_.Url("/");
  options.retry_after = std::chrono::seconds(1);
  options.retry_after_max = std::chrono::seconds(4);
  WeightsFetcher fetcher(zoo_.path(), options);
  const auto fails = [&] {
    EXPECT_TRUE(fetcher.Start(kFile).running) << "no new download started";
    const FetchProgress p = fetcher.Wait(kFile, [] { return false; }, std::chrono::seconds(30));
    EXPECT_FALSE(p.running);
    EXPECT_EQ(p.result.code(), absl::StatusCode::kDataLoss) << p.result;
  };
  const auto pause = [](int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
  fails();
  EXPECT_FALSE(fetcher.Start(kFile).running) << "retried at once";
  pause(1300);  // past retry_after (1 s): tried again
  fails();
  pause(1300);  // within the doubled wait (2 s): answered the failure
  const FetchProgress held = fetcher.Start(kFile);
  EXPECT_FALSE(held.running) << "retried before its doubled wait";
  EXPECT_EQ(held.result.code(), absl::StatusCode::kDataLoss);
  pause(1000);  // past it
  fails();
  EXPECT_TRUE(ZooFiles().empty());
}

TEST_F(DownloadTest, ACorruptedCopyIsRefusedAndNotKept) {
  std::string bad = good_;
  bad[bad.size() / 2] ^= 0x5a;
  http_.Serve("/" + std::string(kFile), bad);
  auto path = DownloadVerified(http_.Url("/") + kFile, zoo_.path(), kFile);
  EXPECT_EQ(path.status().code(), absl::StatusCode::kDataLoss) << path.status();
  EXPECT_NE(path.status().message().find("does not start with 26933201"), std::string::npos) << path.status();
  EXPECT_TRUE(ZooFiles().empty());
}

TEST_F(DownloadTest, ATruncatedCopyIsRefusedAndNotKept) {
  // The server promises the whole file and hangs up half way.
  http_.Serve("/cut/" + std::string(kFile), good_.substr(0, good_.size() / 2), static_cast<int64_t>(good_.size()));
  auto cut = DownloadVerified(http_.Url("/cut/") + kFile, zoo_.path(), kFile);
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kDataLoss) << cut.status();
  EXPECT_NE(cut.status().message().find("ended early"), std::string::npos) << cut.status();
  EXPECT_TRUE(ZooFiles().empty());
  // A short file served as if complete fails the hash instead.
  http_.Serve("/short/" + std::string(kFile), good_.substr(0, 1000));
  auto shorter = DownloadVerified(http_.Url("/short/") + kFile, zoo_.path(), kFile);
  EXPECT_EQ(shorter.status().code(), absl::StatusCode::kDataLoss) << shorter.status();
  EXPECT_TRUE(ZooFiles().empty());
}

TEST_F(DownloadTest, MissingFilesAndNamesWithoutAHashAreErrors) {
  auto missing = DownloadVerified(http_.Url("/nothing/") + kFile, zoo_.path(), kFile);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable) << missing.status();
  EXPECT_NE(missing.status().message().find("404"), std::string::npos) << missing.status();
  auto unnamed = DownloadVerified(http_.Url("/x.pth"), zoo_.path(), "x.pth");
  EXPECT_EQ(unnamed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ZooFiles().empty());
}

TEST_F(DownloadTest, WeightsAndClassNamesArrivingAfterStartAreReadOnDemand) {
  ZooOptions options;
  options.zoo_dir = zoo_.path();
  options.device = "cpu";
  auto zoo = Zoo::Create(options);
  ASSERT_TRUE(zoo.ok()) << zoo.status();
  EXPECT_EQ((*zoo)->Resident("squeezenet1_1").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*zoo)->LoadNow("squeezenet1_1").status().code(), absl::StatusCode::kFailedPrecondition);
  // What PullBackbone does once a download is verified and in place.
  fs::copy_file(graft::testing::WeightsDir() + "/squeezenet1_1-imagenet.pth", zoo_.Join("squeezenet1_1-imagenet.pth"));
  auto loaded = (*zoo)->LoadNow("SqueezeNet1_1");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->weights_present);
  EXPECT_EQ(loaded->blocks.size(), 9u);
  auto resident = (*zoo)->Resident("squeezenet1_1");
  ASSERT_TRUE(resident.ok()) << resident.status();
  Predictor predictor(**zoo, nullptr, {});
  auto dog = ReadFile(graft::testing::ImagesDir() + "/dog.jpg");
  ASSERT_TRUE(dog.ok());
  const auto r = predictor.Predict("squeezenet1_1", {ImageInput{*dog, {}}}, 1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->images[0][0].index, 537);  // dogsled
  EXPECT_EQ(r->images[0][0].label, "class 537") << "the zoo has no imagenet_classes.txt yet";

  // The class names arriving later are read too, without a restart.
  fs::copy_file(graft::testing::WeightsDir() + "/imagenet_classes.txt", zoo_.Join("imagenet_classes.txt"));
  const auto named = predictor.Predict("squeezenet1_1", {ImageInput{*dog, {}}}, 1);
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->images[0][0].label, "dogsled, dog sled, dog sleigh");
}

}  // namespace
}  // namespace graft::core
