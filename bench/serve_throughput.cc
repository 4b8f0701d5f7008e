// bench/serve_throughput: single-image Predicts over loopback from 1, 4, 16
// and 64 concurrent clients (one channel each) against an in-process graftd:
// images/s, p50/p99 latency, and the ratio to the in-process batched forward
// of the same backbone (batch = --max_batch_size) measured in this invocation,
// before the load and again after it with the server shut down (the ratios
// use the mean of the two).
// Clients send 224x224 JPEGs, as a client that sizes its images for the
// model does.
//
//   serve_throughput [--backbone mobilenet_v2] [--seconds 8] [--clients 1,4,16,64]
//                    [--max_batch_size 32] [--max_queue_delay_us 500] [--threads N]
//                    [--decode_on auto|batcher|callers] [--retain_host_memory on|off]
//                    [--precision fp32|bf16|int8]
//
// --precision bf16 or int8: the clients predict with a model fine-tuned on
// ../shared's ants and bees (one epoch, head only) and switched with graft
// models optimize (gate open: speed is measured here, accuracy by the
// tests); the reference is that precision's trunk's own batched forward
// (int8: calibrated here on ../shared/images, which sets ranges, not speed),
// and graft's fp32 trunk forward is measured beside it.

#include <c10/core/InferenceMode.h>
#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_server.h"
#include "client/client.h"
#include "core/data/transforms.h"
#include "core/zoo/zoo.h"
#include "server/server.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string backbone = "mobilenet_v2";
  bool retain_host_memory = true;
  double seconds = 8;
  std::string clients = "1,4,16,64";
  int64_t max_batch_size = 32;
  int64_t max_queue_delay_us = 500;
  std::string decode_on = "auto";
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  std::string precision = "fp32";
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Forward passes of a resident trunk in this process (bf16: its bfloat16
// copy, fed bfloat16 as the batcher feeds it; int8: the quantized trunk,
// read back as float32 as the batcher reads it).
double ForwardImagesPerSecond(const graft::core::BackbonePtr& trunk, graft::core::Precision precision, int64_t batch,
                              double min_seconds, double* median_ms) {
  c10::InferenceMode guard;
  torch::Tensor x = torch::randn({batch, 3, 224, 224}).contiguous(torch::MemoryFormat::ChannelsLast);
  if (precision == graft::core::Precision::kBf16) x = x.to(torch::kBFloat16);
  const auto forward = [&] {
    return precision == graft::core::Precision::kInt8 ? trunk->ForwardTrunk(x).dequantize() : trunk->forward(x);
  };
  forward();
  std::vector<double> times;
  const auto start = Clock::now();
  while (times.size() < 5 || Seconds(Clock::now() - start) < min_seconds) {
    const auto t = Clock::now();
    forward();
    times.push_back(Seconds(Clock::now() - t));
  }
  std::sort(times.begin(), times.end());
  if (median_ms != nullptr) *median_ms = times[times.size() / 2] * 1e3;
  return static_cast<double>(batch) * static_cast<double>(times.size()) / Seconds(Clock::now() - start);
}

// A model of `backbone` trained for one epoch on the ants and bees, serving
// `precision` (the gate left open: this measures speed); its id.
absl::StatusOr<std::string> BenchModel(const std::string& target, const std::string& data_dir,
                                       const std::string& backbone, graft::v1::Precision precision) {
  graft::client::GraftClient client(target, graft::bench::BenchClientOptions(data_dir));
  auto uploaded = client.UploadDataset(graft::bench::SharedDir() + "/data/hymenoptera", "hym");
  if (!uploaded.ok()) return uploaded.status();
  graft::v1::JobSpec spec;
  spec.set_backbone(backbone);
  spec.set_dataset("hym");
  auto* stage = spec.add_stages();
  stage->set_epochs(1);
  stage->set_train("head");
  auto job = client.CreateJob(spec);
  if (!job.ok()) return job.status();
  while (job->state() < graft::v1::JOB_STATE_SUCCEEDED) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    job = client.GetJob(job->id());
    if (!job.ok()) return job.status();
  }
  if (job->state() != graft::v1::JOB_STATE_SUCCEEDED) return absl::InternalError("the job failed: " + job->error());
  graft::v1::OptimizeModelRequest request;
  request.set_model(job->model_id());
  request.set_precision(precision);
  request.set_min_agreement(0);
  request.set_max_accuracy_drop(1);
  auto optimized = client.OptimizeModel(request);
  if (!optimized.ok()) return optimized.status();
  std::cout << "model: " << job->model_id() << " (against fp32 on " << optimized->check().images()
            << " images: top-1 agreement " << optimized->check().top1_agreement() << ")\n";
  return job->model_id();
}

// The six photos, preprocessed for the trunk: an int8 calibration batch.
torch::Tensor PhotoBatch(const graft::core::Preprocessing& p) {
  std::vector<torch::Tensor> out;
  for (const char* name : {"dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg"}) {
    cv::Mat bgr = cv::imread(graft::bench::SharedDir() + "/images/" + name), rgb;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    out.push_back(graft::core::PreprocessImage(rgb, p).value());
  }
  return torch::stack(out);
}

std::vector<std::string> Images() {
  std::vector<std::string> out;
  for (const char* name : {"dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg"}) {
    cv::Mat image = cv::imread(graft::bench::SharedDir() + "/images/" + name);
    cv::Mat small;
    cv::resize(image, small, cv::Size(224, 224), 0, 0, cv::INTER_AREA);
    std::vector<uint8_t> jpeg;
    cv::imencode(".jpg", small, jpeg, {cv::IMWRITE_JPEG_QUALITY, 90});
    out.emplace_back(jpeg.begin(), jpeg.end());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--backbone") args.backbone = value;
    else if (flag == "--seconds") args.seconds = std::stod(value);
    else if (flag == "--clients") args.clients = value;
    else if (flag == "--max_batch_size") args.max_batch_size = std::stoll(value);
    else if (flag == "--max_queue_delay_us") args.max_queue_delay_us = std::stoll(value);
    else if (flag == "--threads") args.threads = std::stoi(value);
    else if (flag == "--decode_on") args.decode_on = value;
    else if (flag == "--retain_host_memory") args.retain_host_memory = value != "off";
    else if (flag == "--precision") args.precision = value;
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  if (args.precision != "fp32" && args.precision != "bf16" && args.precision != "int8") {
    std::cerr << "--precision is fp32, bf16 or int8, not " << args.precision << "\n";
    return 2;
  }
  const graft::core::Precision precision = graft::core::ParsePrecision(args.precision).value();
  const bool variant = precision != graft::core::Precision::kFp32;
  graft::bench::ScratchDir dir;
  graft::server::ServerOptions options = graft::bench::BenchServerOptions(dir.path(), args.threads);
  options.max_batch_size = args.max_batch_size;
  options.retain_host_memory = args.retain_host_memory;
  options.max_queue_delay_us = args.max_queue_delay_us;
  options.decode_on = args.decode_on;
  auto server = graft::server::GraftServer::Start(options);
  if (!server.ok()) {
    std::cerr << "graftd: " << server.status().message() << "\n";
    return 1;
  }
  // The reference: the same resident backbone, in this process, no gRPC.
  graft::core::ZooOptions zoo_options;
  zoo_options.zoo_dir = options.zoo_dir;
  zoo_options.device = "cpu";
  auto zoo = graft::core::Zoo::Create(zoo_options);
  auto resident = zoo.ok() ? (*zoo)->Resident(args.backbone) : zoo.status();
  if (!resident.ok()) {
    std::cerr << args.backbone << ": " << resident.status().message() << "\n";
    return 1;
  }
  // Measured before the load and again after it, with the server shut down
  // (its batchers' OpenMP teams gone, as before), each on a thread of its own
  // whose team goes with it: the ratios use the mean of the two, which on a
  // noisy machine brackets the load better than one measurement before it.
  graft::core::BackbonePtr trunk = (*resident)->inference;
  if (variant) {
    std::optional<graft::core::Int8Calibration> calibration;
    if (precision == graft::core::Precision::kInt8) {
      auto made = (*zoo)->CalibrateInt8(**resident, {PhotoBatch((*resident)->spec->preprocessing)});
      if (!made.ok()) {
        std::cerr << "int8 calibration: " << made.status().message() << "\n";
        return 1;
      }
      calibration = *made;
    }
    auto made = (*zoo)->Trunk(**resident, precision, calibration ? &*calibration : nullptr);
    if (!made.ok()) {
      std::cerr << args.precision << ": " << made.status().message() << "\n";
      return 1;
    }
    trunk = *made;
  }
  const auto reference = [&](double* batched, double* single_ms) {
    std::thread t([&] {
      *batched = ForwardImagesPerSecond(trunk, precision, args.max_batch_size, 4, nullptr);
      ForwardImagesPerSecond(trunk, precision, 1, 2, single_ms);
    });
    t.join();
  };
  std::string model;  // --precision bf16 or int8: what the clients predict with
  if (variant) {
    auto made = BenchModel(absl::StrCat("127.0.0.1:", (*server)->port()), dir.path(), args.backbone,
                           precision == graft::core::Precision::kInt8 ? graft::v1::PRECISION_INT8
                                                                      : graft::v1::PRECISION_BF16);
    if (!made.ok()) {
      std::cerr << "the " << args.precision << " model: " << made.status().message() << "\n";
      return 1;
    }
    model = *made;
    double fp32 = 0;
    std::thread t([&] {
      fp32 = ForwardImagesPerSecond((*resident)->inference, graft::core::Precision::kFp32, args.max_batch_size, 4,
                                    nullptr);
    });
    t.join();
    std::cout << "fp32_batched_forward_images_per_second: " << fp32 << "\n";
  }
  double single_ms_before = 0, batched_before = 0;
  reference(&batched_before, &single_ms_before);
  std::cout << "backbone: " << args.backbone << "\nthreads: " << args.threads
            << "\nprecision: " << args.precision << "\nmax_batch_size: " << args.max_batch_size << "\nmax_queue_delay_us: " << args.max_queue_delay_us << "\ndecode_on: " << args.decode_on
            << "\nreference_batched_forward_images_per_second_before: " << batched_before
            << "\nreference_single_image_forward_ms_before: " << single_ms_before << "\n";

  const std::vector<std::string> images = Images();
  const std::string target = absl::StrCat("127.0.0.1:", (*server)->port());
  std::vector<std::pair<int, double>> rates;  // clients, images/s
  double p50_at_1_client = -1;
  for (const auto& count_text : absl::StrSplit(args.clients, ',')) {
    const int clients = std::stoi(std::string(count_text));
    std::vector<std::vector<double>> latencies(static_cast<size_t>(clients));
    std::atomic<int64_t> decode_us{0}, queue_us{0}, compute_us{0}, server_us{0}, batch_images{0}, answered{0};
    std::atomic<bool> stop{false};
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    std::atomic<bool> measuring{false};
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        graft::client::GraftClient client(target, graft::bench::BenchClientOptions(dir.path()));
        graft::v1::PredictRequest request;
        if (model.empty()) {
          request.set_backbone(args.backbone);
        } else {
          request.add_models(model);
        }
        request.set_top_k(1);
        size_t i = static_cast<size_t>(c);
        while (!stop) {
          request.clear_images();
          request.add_images()->set_encoded(images[i++ % images.size()]);
          const auto t = Clock::now();
          const auto r = client.Predict(request);
          const double ms = Seconds(Clock::now() - t) * 1e3;
          if (!r.ok()) ++failures;
          if (measuring && !stop) {
            latencies[static_cast<size_t>(c)].push_back(ms);
            if (r.ok()) {
              decode_us += r->timing().decode_us();
              queue_us += r->timing().queue_us();
              compute_us += r->timing().compute_us();
              server_us += r->timing().total_us();
              batch_images += r->timing().batch_images();
              ++answered;
            }
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // warm-up: channels, batch shapes
    measuring = true;
    const auto start = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(args.seconds));
    stop = true;
    const double elapsed = Seconds(Clock::now() - start);
    for (auto& t : threads) t.join();
    std::vector<double> all;
    for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
    std::sort(all.begin(), all.end());
    const double rate = static_cast<double>(all.size()) / elapsed;
    const auto pct = [&](double p) { return all.empty() ? 0.0 : all[static_cast<size_t>(p * (all.size() - 1))]; };
    const std::string k = absl::StrCat("clients_", clients, "_");
    std::cout << k << "images_per_second: " << rate << "\n"
              << k << "p50_ms: " << pct(0.5) << "\n"
              << k << "p99_ms: " << pct(0.99) << "\n"
              << k << "failures: " << failures.load() << "\n";
    if (answered > 0) {
      const double n = static_cast<double>(answered.load()) * 1e3;
      std::cout << k << "mean_server_decode_ms: " << decode_us / n << "\n"
                << k << "mean_server_queue_ms: " << queue_us / n << "\n"
                << k << "mean_server_compute_ms: " << compute_us / n << "\n"
                << k << "mean_server_total_ms: " << server_us / n << "\n"
                << k << "mean_batch_images: " << static_cast<double>(batch_images) / static_cast<double>(answered) << "\n";
    }
    rates.emplace_back(clients, rate);
    if (clients == 1) p50_at_1_client = pct(0.5);
  }
  (*server)->Shutdown();
  server->reset();
  double single_ms_after = 0, batched_after = 0;
  reference(&batched_after, &single_ms_after);
  const double batched = (batched_before + batched_after) / 2, single_ms = (single_ms_before + single_ms_after) / 2;
  std::cout << "reference_batched_forward_images_per_second_after: " << batched_after
            << "\nreference_single_image_forward_ms_after: " << single_ms_after
            << "\nreference_batched_forward_images_per_second: " << batched
            << "\nreference_single_image_forward_ms: " << single_ms << "\n";
  for (const auto& [clients, rate] : rates) {
    std::cout << "clients_" << clients << "_ratio_to_batched_forward: " << rate / batched << "\n";
  }
  if (p50_at_1_client >= 0) {
    std::cout << "p50_at_1_client_minus_single_forward_ms: " << p50_at_1_client - single_ms << "\n";
  }
  return 0;
}
