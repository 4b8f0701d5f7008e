// The training input streams: an uncached (augmented) job's memory does not
// grow with its number of images, and where images are decoded (the
// training thread's team on CPU, the pool ahead of the forward on CUDA)
// changes nothing of the result.

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <thread>

#include "core/train/trainer.h"
#include "core/util/compute_threads.h"
#include "core/util/host_memory.h"
#include "core/zoo/zoo.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/weights_zoo.h"

namespace graft::core {
namespace {
namespace fs = std::filesystem;

int64_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

// The highest resident set size while `f` runs.
template <typename F>
int64_t PeakRss(F&& f) {
  std::atomic<bool> done{false};
  std::atomic<int64_t> peak{RssBytes()};
  std::thread sampler([&] {
    while (!done) {
      peak = std::max<int64_t>(peak, RssBytes());
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  f();
  done = true;
  sampler.join();
  return std::max<int64_t>(peak, RssBytes());
}

class StreamingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RetainHostMemory();                    // as graftd runs (--retain_host_memory): no page faults per batch
    at::set_num_threads(AvailableCpus());  // as graftd does
    zoo_ = graft::testing::NewWeightsZoo();
    ASSERT_NE(zoo_, nullptr);
  }
  static void TearDownTestSuite() {
    delete zoo_;
    zoo_ = nullptr;
  }

  // Large photos (800x600 JPEG): reddish or bluish noise, two classes.
  std::vector<std::string> LargeJpegs(int per_class) {
    std::vector<std::string> paths;
    cv::RNG rng(7);
    for (int c = 0; c < 2; ++c) {
      for (int i = 0; i < per_class; ++i) {
        cv::Mat image(600, 800, CV_8UC3);
        rng.fill(image, cv::RNG::UNIFORM, cv::Scalar(0, 0, 0), cv::Scalar(256, 256, 256));
        cv::GaussianBlur(image, image, cv::Size(9, 9), 3);
        image += c == 0 ? cv::Scalar(0, 0, 90) : cv::Scalar(90, 0, 0);  // BGR
        const std::string path = dir_.Join("c" + std::to_string(c) + "_" + std::to_string(i) + ".jpg");
        EXPECT_TRUE(cv::imwrite(path, image, {cv::IMWRITE_JPEG_QUALITY, 90}));
        paths.push_back(path);
      }
    }
    return paths;
  }

  TrainInput Input(const std::string& backbone, int input_size) {
    TrainInput in;
    in.spec.backbone = backbone;
    in.spec.dataset = "generated";
    in.spec.input_size = input_size;
    in.spec.batch_size = 32;
    in.spec.seed = 5;
    in.spec.augmentation.horizontal_flip = true;  // no cached views: every batch is decoded and augmented
    in.spec.stages.push_back({});
    in.spec.stages[0].epochs = 1;
    auto resident = zoo_->Resident(backbone);
    EXPECT_TRUE(resident.ok()) << resident.status();
    in.resident = *resident;
    EXPECT_TRUE(NormalizeJobSpec(in.spec, static_cast<int>(in.resident->module->blocks().size())).ok());
    in.num_classes = 2;
    in.checkpoint_path = dir_.Join("ckpt");
    in.feature_cache.memory_bytes = 1LL << 30;
    return in;
  }

  absl::StatusOr<TrainedModel> Run(const TrainInput& in) {
    fs::remove(in.checkpoint_path);
    CancellationToken cancel;
    TrainEvents events;
    return Train(in, cancel, events);
  }

  static Zoo* zoo_;
  graft::testing::TempDir dir_;
};

Zoo* StreamingTest::zoo_ = nullptr;

TEST_F(StreamingTest, MemoryDoesNotGrowWithTheNumberOfImages) {
  const std::vector<std::string> files = LargeJpegs(12);
  // `n` training images (the files over and over: each is still read and
  // decoded on its own), and 8 for validation.
  auto dataset = [&](int n) {
    std::vector<DatasetImage> images;
    for (int i = 0; i < n + 8; ++i) {
      const std::string& f = files[static_cast<size_t>(i) % files.size()];
      const int label = fs::path(f).filename().string()[1] - '0';
      images.push_back({i < n ? Split::kTrain : Split::kVal, label, "img" + std::to_string(i) + ".jpg", f});
    }
    return images;
  };
  // A first run warms the allocator, oneDNN and the heap graftd keeps
  // (--retain_host_memory: freed memory stays with the process, so the
  // resident set never shrinks back): it reaches its plateau within about
  // 1,500 images. After it, a job of 2,000 images peaks where one of 400 does.
  int64_t peak[3] = {0, 0, 0};
  const int sizes[3] = {1600, 400, 2000};
  for (int r = 0; r < 3; ++r) {
    TrainInput in = Input("squeezenet1_1", 112);
    in.images = dataset(sizes[r]);
    absl::StatusOr<TrainedModel> trained = absl::UnknownError("not run");
    peak[r] = PeakRss([&] { trained = Run(in); });
    ASSERT_TRUE(trained.ok()) << trained.status();
    EXPECT_EQ(trained->feature_cache, "none");
    std::cout << sizes[r] << " images: peak RSS " << peak[r] / (1 << 20) << " MiB" << std::endl;
  }
  // Decoding all 1,600 more images at the resize size (128x171x3) would hold
  // ~105 MB more; streaming holds a few batches whatever the count.
  EXPECT_LT(peak[2] - peak[1], 24 << 20)
      << "peak RSS was " << (peak[2] - peak[1]) / (1 << 20) << " MiB higher for 2,000 images than for 400";
}

TEST_F(StreamingTest, DecodingInTheTeamOrAheadOnThePoolTrainsTheSameModel) {
  std::vector<DatasetImage> images;
  const fs::path root = fs::path(graft::testing::SharedDir()) / "data" / "hymenoptera";
  for (const auto& [split, dir] : {std::pair{Split::kTrain, "train"}, std::pair{Split::kVal, "val"}}) {
    for (int c = 0; c < 2; ++c) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(root / dir / (c == 0 ? "ants" : "bees"))) {
        if (e.path().extension() == ".jpg") files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
      for (size_t i = 0; i < std::min<size_t>(files.size(), 24); ++i) {
        images.push_back({split, c, files[i].filename().string(), files[i].string()});
      }
    }
  }
  TrainedModel models[2];
  for (int r = 0; r < 2; ++r) {
    TrainInput in = Input("mobilenet_v2", 96);
    in.spec.stages[0].epochs = 2;
    in.images = images;
    in.decode_on = r == 0 ? TrainInput::DecodeOn::kTeam : TrainInput::DecodeOn::kPool;
    in.prefetch_batches = 1;
    auto trained = Run(in);
    ASSERT_TRUE(trained.ok()) << trained.status();
    models[r] = *trained;
  }
  EXPECT_EQ(models[0].final_metrics.train_loss, models[1].final_metrics.train_loss);
  EXPECT_EQ(models[0].final_metrics.val_accuracy, models[1].final_metrics.val_accuracy);
  ASSERT_EQ(models[0].weights.size(), models[1].weights.size());
  for (size_t i = 0; i < models[0].weights.size(); ++i) {
    EXPECT_TRUE(torch::equal(models[0].weights[i].second, models[1].weights[i].second)) << models[0].weights[i].first;
  }
  EXPECT_GT(models[0].final_metrics.val_accuracy, 0.6);
}

}  // namespace
}  // namespace graft::core
