// bench/fresh_graftd: a fresh graftd process's first epoch against the
// batched forward (bench/backbone_forward's measurement) at the same input
// size, in the same run, several runs in a row.
//
// Each run measures the forward in this process (batch 32, random input,
// after a warm-up), then starts the graftd binary on an empty data
// directory, uploads a dataset of photo crops (not timed), runs a frozen
// one-epoch job and reads epoch 1's seconds from its events: the feature
// pass over every train and validation image (read, decode, resize, the
// frozen forward into the cache), the head's epoch and the validation. The
// ratio is (train + validation images) / epoch-1 seconds over the forward's
// images per second; 1.0 would mean decoding and everything else were free.
//
//   fresh_graftd [--runs 5] [--images 4317] [--image_size 128] [--input_size 0 (the backbone's)]
//                [--backbone mobilenet_v2] [--threads N] [--min_seconds 5]

#include <torch/torch.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "bench/forward_speed.h"
#include "client/client.h"
#include "core/util/compute_threads.h"
#include "core/util/host_memory.h"
#include "core/zoo/registry.h"
#include "tests/testing/graftd_process.h"

namespace {

namespace fs = std::filesystem;

struct Args {
  int runs = 5;
  int images = 4317;
  int image_size = 128;
  int input_size = 0;
  std::string backbone = "mobilenet_v2";
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  double min_seconds = 5;
};

// `n` distinct JPEGs of size x size in dir/{ants,bees}/: random crops (half
// to all of each side), resized and sometimes mirrored, of hymenoptera's
// training photos, as a user's own set of small photos would be.
int MakePhotos(const std::string& dir, int n, int size) {
  std::vector<fs::path> sources;
  for (const auto& e : fs::recursive_directory_iterator(graft::bench::SharedDir() + "/data/hymenoptera/train")) {
    if (e.is_regular_file() && e.path().extension() == ".jpg") sources.push_back(e.path());
  }
  std::sort(sources.begin(), sources.end());
  cv::RNG rng(7);
  int made = 0;
  for (int i = 0; i < n && !sources.empty(); ++i) {
    const fs::path& source = sources[static_cast<size_t>(i) % sources.size()];
    const cv::Mat image = cv::imread(source.string(), cv::IMREAD_COLOR);
    if (image.empty()) continue;
    const double scale = rng.uniform(0.5, 1.0);
    const int w = std::max(1, static_cast<int>(image.cols * scale)), h = std::max(1, static_cast<int>(image.rows * scale));
    const cv::Rect crop(rng.uniform(0, image.cols - w + 1), rng.uniform(0, image.rows - h + 1), w, h);
    cv::Mat out;
    cv::resize(image(crop), out, cv::Size(size, size), 0, 0, cv::INTER_AREA);
    if (rng.uniform(0, 2) == 1) cv::flip(out, out, 1);
    const fs::path folder = fs::path(dir) / source.parent_path().filename();
    fs::create_directories(folder);
    if (cv::imwrite((folder / (std::to_string(i) + ".jpg")).string(), out, {cv::IMWRITE_JPEG_QUALITY, 90})) ++made;
  }
  return made;
}

struct Epoch {
  double seconds = 0;
  int64_t images = 0;
  std::string error;
};

Epoch FreshGraftdEpoch(const Args& args, const std::string& photos, const std::string& scratch, int run) {
  const std::string data_dir = absl::StrCat(scratch, "/graftd", run);
  graft::testing::GraftdProcess graftd(data_dir, data_dir + ".log");
  if (!graftd.Start({absl::StrCat("--intra_op_threads=", args.threads)})) return {0, 0, "graftd did not start: see " + graftd.log()};
  graft::client::ClientOptions options;
  options.token = graftd.admin_token();
  graft::client::GraftClient client(graftd.address(), options);
  auto dataset = client.UploadDataset(photos, "photos");
  if (!dataset.ok()) return {0, 0, std::string(dataset.status().message())};
  const int64_t images = dataset->dataset().train_images() + dataset->dataset().val_images();

  graft::v1::JobSpec spec;
  spec.set_backbone(args.backbone);
  spec.set_dataset(dataset->dataset().id());
  spec.set_batch_size(32);
  if (args.input_size > 0) spec.set_input_size(args.input_size);
  auto* stage = spec.add_stages();
  stage->set_epochs(1);
  stage->set_train("head");
  auto job = client.CreateJob(spec);
  if (!job.ok()) return {0, 0, std::string(job.status().message())};
  Epoch epoch;
  epoch.images = images;
  const auto watched = client.WatchJob(job->id(), false, [&](const graft::v1::JobEvent& e) {
    if (e.has_epoch() && e.epoch().epoch() == 1) epoch.seconds = e.epoch().epoch_seconds();
    return true;
  });
  if (!watched.ok()) epoch.error = std::string(watched.message());
  if (epoch.seconds <= 0 && epoch.error.empty()) epoch.error = "the job reported no epoch 1: see " + graftd.log();
  graftd.Stop(SIGTERM);
  return epoch;
}

}  // namespace

int main(int argc, char** argv) {
  graft::core::RetainHostMemory();       // as graftd does
  graft::core::UseSingleThreadedBlas();  // as graftd does
  Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--runs") args.runs = std::stoi(value);
    else if (flag == "--images") args.images = std::stoi(value);
    else if (flag == "--image_size") args.image_size = std::stoi(value);
    else if (flag == "--input_size") args.input_size = std::stoi(value);
    else if (flag == "--backbone") args.backbone = value;
    else if (flag == "--threads") args.threads = std::stoi(value);
    else if (flag == "--min_seconds") args.min_seconds = std::stod(value);
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  const auto* spec = graft::core::Registry::BuiltIn().Find(args.backbone);
  if (spec == nullptr) {
    std::cerr << "unknown backbone " << args.backbone << "\n";
    return 2;
  }
  const int input_size = args.input_size > 0 ? args.input_size : spec->preprocessing.height;
  torch::set_num_threads(args.threads);
  torch::manual_seed(0);
  graft::bench::ScratchDir scratch;
  const std::string photos = scratch.path() + "/photos";
  const int made = MakePhotos(photos, args.images, args.image_size);
  std::cout << "threads: " << args.threads << "\nbackbone: " << spec->name << "\ninput_size: " << input_size
            << "\nphotos: " << made << " of " << args.image_size << " px\n"
            << std::flush;  // before graftd's fork, which would print the buffer again

  std::vector<double> ratios;
  for (int run = 1; run <= args.runs; ++run) {
    const double forward = graft::bench::ForwardImagesPerSecond(spec->name, 32, input_size, args.min_seconds);
    const Epoch epoch = FreshGraftdEpoch(args, photos, scratch.path(), run);
    if (!epoch.error.empty()) {
      std::cerr << "run " << run << ": " << epoch.error << "\n";
      return 1;
    }
    const double epoch_img_s = static_cast<double>(epoch.images) / epoch.seconds;
    ratios.push_back(epoch_img_s / forward);
    const std::string key = absl::StrCat("fresh_graftd/run", run);
    std::printf("%s/forward_img_s: %.2f\n%s/epoch1_seconds: %.2f\n%s/epoch1_img_s: %.2f\n%s/ratio: %.3f\n", key.c_str(),
                forward, key.c_str(), epoch.seconds, key.c_str(), epoch_img_s, key.c_str(), ratios.back());
    std::fflush(stdout);
  }
  std::sort(ratios.begin(), ratios.end());
  std::printf("fresh_graftd/ratio_min: %.3f\nfresh_graftd/ratio_median: %.3f\nfresh_graftd/ratio_max: %.3f\n", ratios.front(),
              ratios[ratios.size() / 2], ratios.back());
  return 0;
}
