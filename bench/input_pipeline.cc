// bench/input_pipeline: a training job's input path — read, decode,
// preprocess or augment, frozen forward — against its bounds, all measured in
// this run on the same machine and thread count:
//   (a) the batched frozen forward alone (random tensors, the trainer's path),
//   (b) read + decode + preprocess alone on all cores,
//   (c) PyTorch's DataLoader (num_workers = cores) + eager forward doing the
//       same epoch (bench/reference/input_pipeline.py),
// for epoch 1 (feature extraction into the cache) and an augmented epoch
// (horizontal flip, nothing cached: the frozen part runs every batch), on
// generated datasets of small (32 px, 128 px) and large (800x600) JPEGs; and
// the peak RSS of an augmented epoch per dataset size.
//
//   input_pipeline [--backbone mobilenet_v2] [--images 3000] [--sets small32,small128,large]
//                  [--rss_sizes 3000,30000] [--pytorch on|off] [--threads N]

#include <c10/core/InferenceMode.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "core/data/image_codec.h"
#include "core/data/resize.h"
#include "core/data/transforms.h"
#include "core/train/trainer.h"
#include "core/util/compute_threads.h"
#include "core/util/device.h"
#include "core/util/files.h"
#include "core/util/host_memory.h"
#include "core/zoo/zoo.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using graft::core::DatasetImage;

struct Args {
  std::string backbone = "mobilenet_v2";
  int images = 3000;
  std::vector<std::string> sets{"small32", "small128", "large"};
  std::vector<int> rss_sizes{3000, 30000};
  bool pytorch = true;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
};

double Seconds(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// `n` JPEGs of `w` x `h` in dir/{c0,c1}/: two classes of tinted noise. 64
// distinct images per class are encoded; the rest are hard links to them
// (every image is still read and decoded on its own).
std::vector<DatasetImage> Generate(const std::string& dir, int n, int w, int h) {
  std::vector<DatasetImage> out;
  cv::RNG rng(3);
  for (int i = 0; i < n; ++i) {
    const int c = i % 2;
    const fs::path folder = fs::path(dir) / ("c" + std::to_string(c));
    fs::create_directories(folder);
    const fs::path path = folder / (std::to_string(i) + ".jpg");
    if (i < 128) {
      cv::Mat image(h, w, CV_8UC3);
      rng.fill(image, cv::RNG::UNIFORM, cv::Scalar(0, 0, 0), cv::Scalar(256, 256, 256));
      cv::GaussianBlur(image, image, cv::Size(5, 5), 2);
      image += c == 0 ? cv::Scalar(0, 0, 80) : cv::Scalar(80, 0, 0);
      cv::imwrite(path.string(), image, {cv::IMWRITE_JPEG_QUALITY, 90});
    } else {
      fs::create_hard_link(fs::path(dir) / ("c" + std::to_string(c)) / (std::to_string(i % 128) + ".jpg"), path);
    }
    // Every 20th image validates (as a job's validation split would).
    out.push_back({i % 20 == 19 ? graft::core::Split::kVal : graft::core::Split::kTrain, c, path.filename().string(),
                   path.string()});
  }
  return out;
}

// (a) The frozen forward the trainer runs per batch, on ready tensors.
double ForwardRate(const graft::core::ResidentBackbone& b, int batch) {
  c10::InferenceMode guard;
  const torch::Tensor x = graft::core::ToDevice(torch::rand({batch, 3, 224, 224}), b.device);
  const size_t n = b.inference->blocks().size();
  for (int i = 0; i < 5; ++i) (void)b.inference->ForwardTrunk(x, 0, n);  // warm-up: kernels, allocator, heap
  int iters = 0;
  const auto start = Clock::now();
  while (iters < 5 || Seconds(start) < 5.0) {
    (void)graft::core::BackboneImpl::Pool(b.inference->ForwardTrunk(x, 0, n));
    ++iters;
  }
  return batch * iters / Seconds(start);
}

// (b) Read + decode + resize + preprocess on all cores, nothing else running.
double DecodeRate(const std::vector<DatasetImage>& images, const graft::core::Preprocessing& p) {
  const size_t n = std::min<size_t>(images.size(), 2000);
  const auto start = Clock::now();
  graft::core::ParallelForEach(static_cast<int64_t>(n), [&](int64_t i) {
    const auto bytes = graft::core::ReadFile(images[static_cast<size_t>(i)].blob_path);
    auto image = graft::core::DecodeImage(*bytes, graft::core::DecodeLimits{});
    if (!image.ok()) return;
    cv::Mat m = *image;
    if (std::min(m.cols, m.rows) > p.resize_size) {
      m = graft::core::ResizeLikePil(m, graft::core::ResizeTarget(m.cols, m.rows, p.resize_size));
    }
    (void)graft::core::PreprocessImage(m, p);
  });
  return static_cast<double>(n) / Seconds(start);
}

struct EpochRun {
  double images_per_second = 0;
  int64_t peak_rss_growth = 0;
  std::string error;
};

// One epoch of a head-only job through Train(): all images (train and
// validation) over the wall time, and the peak RSS above the start.
EpochRun RunEpoch(const std::shared_ptr<graft::core::ResidentBackbone>& backbone,
                  const std::vector<DatasetImage>& images, bool augmented, const std::string& scratch) {
  graft::core::TrainInput in;
  in.spec.backbone = backbone->spec->name;
  in.spec.dataset = "bench";
  in.spec.batch_size = 32;
  in.spec.seed = 1;
  in.spec.augmentation.horizontal_flip = augmented;  // no cached views: the frozen part runs every batch
  in.spec.stages.push_back({});
  in.spec.stages[0].epochs = 1;
  if (auto s = graft::core::NormalizeJobSpec(in.spec, static_cast<int>(backbone->module->blocks().size())); !s.ok()) {
    return {0, 0, std::string(s.message())};
  }
  in.resident = backbone;
  in.images = images;
  in.num_classes = 2;
  in.checkpoint_path = scratch + "/ckpt";
  in.feature_cache.memory_bytes = 4LL << 30;
  in.feature_cache.half = true;
  fs::remove(in.checkpoint_path);
  graft::core::CancellationToken cancel;
  graft::core::TrainEvents events;
  const int64_t before = graft::bench::ResidentBytes();
  std::atomic<bool> done{false};
  std::atomic<int64_t> peak{before};
  std::thread sampler([&] {
    while (!done) {
      peak = std::max<int64_t>(peak, graft::bench::ResidentBytes());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  const auto start = Clock::now();
  auto trained = graft::core::Train(in, cancel, events);
  const double seconds = Seconds(start);
  done = true;
  sampler.join();
  if (!trained.ok()) return {0, 0, std::string(trained.status().message())};
  return {static_cast<double>(images.size()) / seconds, peak - before, ""};
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--backbone") args.backbone = v;
    if (k == "--images") args.images = std::stoi(v);
    if (k == "--sets") args.sets = absl::StrSplit(v, ',');
    if (k == "--pytorch") args.pytorch = v == "on";
    if (k == "--threads") args.threads = std::stoi(v);
    if (k == "--rss_sizes") {
      args.rss_sizes.clear();
      for (absl::string_view s : absl::StrSplit(v, ',')) args.rss_sizes.push_back(std::stoi(std::string(s)));
    }
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines as they come, also into a file
  graft::core::RetainHostMemory();  // as graftd runs
  graft::core::UseSingleThreadedBlas();
  at::set_num_threads(args.threads);
  graft::bench::ScratchDir scratch;
  auto zoo = graft::core::Zoo::Create(graft::core::ZooAt(graft::bench::SharedDir() + "/weights", "cpu"));
  if (!zoo.ok()) {
    std::cerr << zoo.status() << "\n";
    return 1;
  }
  auto backbone = (*zoo)->Resident(args.backbone);
  if (!backbone.ok()) {
    std::cerr << backbone.status() << "\n";
    return 1;
  }
  const graft::core::Preprocessing& p = (*backbone)->spec->preprocessing;
  double forward = ForwardRate(**backbone, 32);
  std::printf("input_pipeline/threads: %d\ninput_pipeline/forward_img_s: %.1f\n", args.threads, forward);
  std::map<std::string, std::pair<int, int>> shapes{
      {"small32", {32, 32}}, {"small128", {128, 128}}, {"large", {800, 600}}};
  for (const std::string& set : args.sets) {
    if (!shapes.count(set)) continue;
    const std::string dir = scratch.path() + "/" + set;
    const auto images = Generate(dir, args.images, shapes[set].first, shapes[set].second);
    const double decode = DecodeRate(images, p);
    // The bound is the best forward rate seen (measured again beside each set).
    forward = std::max(forward, ForwardRate(**backbone, 32));
    const double bound = 1.0 / (1.0 / forward + 1.0 / decode);
    const std::string name = absl::StrCat("input_pipeline/", set, "/", args.images);
    std::printf("%s/forward_img_s: %.1f\n%s/decode_img_s: %.1f\n%s/serial_bound_img_s: %.1f\n", name.c_str(), forward,
                name.c_str(), decode, name.c_str(), bound);
    std::map<std::string, double> graft_rates;
    for (const bool augmented : {false, true}) {
      const EpochRun run = RunEpoch(*backbone, images, augmented, scratch.path());
      const std::string epoch = augmented ? "augmented" : "epoch1";
      if (!run.error.empty()) {
        std::cerr << name << "/" << epoch << ": " << run.error << "\n";
        continue;
      }
      graft_rates[epoch] = run.images_per_second;
      std::printf("%s/%s/img_s: %.1f\n%s/%s/vs_forward: %.2f\n%s/%s/vs_serial_bound: %.2f\n", name.c_str(),
                  epoch.c_str(), run.images_per_second, name.c_str(), epoch.c_str(), run.images_per_second / forward,
                  name.c_str(), epoch.c_str(), run.images_per_second / bound);
    }
    if (args.pytorch) {
      const std::string command =
          absl::StrCat(graft::bench::kPython, " ", GRAFT_BENCH_DIR, "/reference/input_pipeline.py --root ", dir,
                       " --threads ", args.threads, " --workers ", args.threads, " --arch ", args.backbone);
      std::map<std::string, double> keyed;
      for (const auto& [k, v] : graft_rates) keyed[k] = v;
      graft::bench::CompareWithReference(absl::StrCat("input_pipeline/", set), command, keyed, "pytorch_dataloader");
    }
  }
  // Peak RSS of an augmented epoch (nothing cached) per dataset size, large JPEGs.
  for (const int n : args.rss_sizes) {
    const std::string dir = scratch.path() + "/rss" + std::to_string(n);
    const auto images = Generate(dir, n, 800, 600);
    const EpochRun run = RunEpoch(*backbone, images, /*augmented=*/true, scratch.path());
    if (!run.error.empty()) {
      std::cerr << "rss " << n << ": " << run.error << "\n";
      continue;
    }
    std::printf("input_pipeline/rss/%d/peak_rss_growth_mb: %.1f\ninput_pipeline/rss/%d/img_s: %.1f\n", n,
                static_cast<double>(run.peak_rss_growth) / 1e6, n, run.images_per_second);
    fs::remove_all(dir);
  }
  return 0;
}
