// The soak: an in-process graftd under 64 concurrent clients mixing Predict,
// Embed, dataset uploads (each followed by its delete) and one fine-tuning job
// after another, for --minutes (default 10). Every minute it prints the
// Predict p50/p99 of that minute, the process's RSS, open file descriptors
// and threads. Anything but an expected answer (OK; RESOURCE_EXHAUSTED from
// the upload and queue limits) is a failure. Targets: 0 failures; RSS, FDs
// and threads flat after warm-up: the last minute against the middle one
// (minute 5 of 10) < 1.05. graftd keeps freed host memory for the next forward
// (--retain_host_memory), so RSS climbs to the high-water mark of the heaviest
// mix it has seen, which took 4 minutes at 64 clients; a leak goes on growing
// through the second half. The ratios against minute 2 are printed too.
//   build/bench/soak [--minutes 10] [--clients 64] [--threads 0]

#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_server.h"
#include "core/util/files.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int CountEntries(const char* dir) {
  int n = 0;
  if (DIR* d = ::opendir(dir)) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n - 2;  // . and ..
}

int Threads() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return 0;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

struct Sample {
  double p50_ms, p99_ms;
  int64_t rss;
  int fds, threads;
  int64_t predicts, failures;
};

}  // namespace

int main(int argc, char** argv) {
  double minutes = 10;
  int clients = 64, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--minutes") minutes = std::stod(value);
    else if (flag == "--clients") clients = std::stoi(value);
    else if (flag == "--threads") threads = std::stoi(value);
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  graft::bench::ScratchDir dir;
  auto options = graft::bench::BenchServerOptions(dir.path() + "/data", threads);
  options.checkpoint_interval_s = 30;
  auto server = graft::server::GraftServer::Start(options);
  if (!server.ok()) {
    std::cerr << "graftd: " << server.status().message() << "\n";
    return 1;
  }
  const std::string target = "127.0.0.1:" + std::to_string((*server)->port());
  const auto client_options = graft::bench::BenchClientOptions(dir.path() + "/data");
  const std::string shared = graft::bench::SharedDir();
  const std::string image = graft::core::ReadFile(shared + "/images/dog.jpg").value();
  const std::string hymenoptera = shared + "/data/hymenoptera";
  // A small folder dataset for the uploads: 8 images of two classes.
  const std::string small = dir.path() + "/small";
  for (const char* cls : {"ants", "bees"}) {
    fs::create_directories(small + "/" + cls);
    int k = 0;
    for (const auto& e : fs::directory_iterator(hymenoptera + "/train/" + cls)) {
      if (k++ == 4) break;
      fs::copy_file(e.path(), small + "/" + cls + "/" + e.path().filename().string());
    }
  }
  {
    graft::client::GraftClient c(target, client_options);
    if (auto up = c.UploadDataset(hymenoptera, "hym"); !up.ok()) {
      std::cerr << "upload: " << up.status() << "\n";
      return 1;
    }
  }

  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<double> latencies_ms;  // this minute's Predicts
  std::atomic<int64_t> predicts{0}, failures{0}, uploads{0}, embeds{0}, jobs{0};
  auto fail = [&](const std::string& what, const absl::Status& s) {
    ++failures;
    std::lock_guard<std::mutex> lock(mu);
    std::cerr << "failure: " << what << ": " << s << "\n";
  };
  std::vector<std::thread> workers;
  for (int w = 0; w < clients; ++w) {
    workers.emplace_back([&, w]() {
      graft::client::GraftClient c(target, client_options);
      std::mt19937 rng(static_cast<uint32_t>(w));
      int n = 0;
      while (!stop) {
        const int pick = static_cast<int>(rng() % 100);
        if (pick < 65) {
          graft::v1::PredictRequest r;
          r.set_backbone("mobilenet_v2");
          r.add_images()->set_encoded(image);
          const auto t0 = Clock::now();
          const auto answer = c.Predict(r);
          const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
          if (!answer.ok()) {
            fail("Predict", answer.status());
            continue;
          }
          ++predicts;
          std::lock_guard<std::mutex> lock(mu);
          latencies_ms.push_back(ms);
        } else if (pick < 95) {
          graft::v1::EmbedRequest r;
          r.set_backbone("squeezenet1_1");
          r.add_images()->set_encoded(image);
          const auto answer = c.Embed(r);
          if (!answer.ok()) fail("Embed", answer.status());
          else ++embeds;
        } else {
          const std::string name = "soak-" + std::to_string(w) + "-" + std::to_string(n++);
          const auto up = c.UploadDataset(small, name);
          if (!up.ok()) {
            if (!absl::IsResourceExhausted(up.status())) fail("UploadDataset", up.status());
            continue;
          }
          ++uploads;
          if (auto s = c.DeleteDataset(name); !s.ok()) fail("DeleteDataset", s);
        }
      }
    });
  }
  // One fine-tuning job after another (uncached, so each epoch runs the backbone).
  workers.emplace_back([&]() {
    graft::client::GraftClient c(target, client_options);
    while (!stop) {
      graft::v1::JobSpec spec;
      spec.set_backbone("mobilenet_v2");
      spec.set_dataset("hym");
      spec.set_input_size(112);
      spec.mutable_augmentation()->set_horizontal_flip(true);
      spec.add_stages()->set_epochs(2);
      auto job = c.CreateJob(spec);
      if (!job.ok()) {
        fail("CreateJob", job.status());
        std::this_thread::sleep_for(std::chrono::seconds(1));
        continue;
      }
      (void)c.WatchJob(job->id(), false, [&](const graft::v1::JobEvent&) { return !stop; });
      auto ended = c.GetJob(job->id());
      if (stop) break;
      if (!ended.ok() || ended->state() != graft::v1::JOB_STATE_SUCCEEDED) {
        fail("job", ended.ok() ? absl::InternalError(ended->error()) : ended.status());
        continue;
      }
      ++jobs;
      (void)c.DeleteModel(ended->model_id());
    }
  });

  std::vector<Sample> samples;
  const int total = std::max(1, static_cast<int>(minutes * 60));
  std::printf("minute  predicts  p50_ms  p99_ms  rss_mb  fds  threads  failures\n");
  for (int s = 1; s <= total; ++s) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    if (s % 60 != 0 && s != total) continue;
    std::vector<double> minute;
    {
      std::lock_guard<std::mutex> lock(mu);
      minute.swap(latencies_ms);
    }
    Sample x{Percentile(minute, 0.5), Percentile(minute, 0.99), graft::bench::ResidentBytes(),
             CountEntries("/proc/self/fd"), Threads(), predicts.load(), failures.load()};
    samples.push_back(x);
    std::printf("%6d  %8lld  %6.1f  %6.1f  %6lld  %3d  %7d  %8lld\n", static_cast<int>(samples.size()),
                static_cast<long long>(x.predicts), x.p50_ms, x.p99_ms, static_cast<long long>(x.rss >> 20), x.fds,
                x.threads, static_cast<long long>(x.failures));
    std::fflush(stdout);
  }
  stop = true;
  for (auto& t : workers) t.join();
  (*server)->Shutdown();

  // Growth after warm-up: the last minute against the middle one; against
  // minute 2 for the record.
  const Sample& last = samples.back();
  const Sample& early = samples[std::min<size_t>(1, samples.size() - 1)];
  std::printf("soak/rss_ratio_vs_minute_2: %.3f\nsoak/threads_ratio_vs_minute_2: %.3f\n",
              static_cast<double>(last.rss) / static_cast<double>(early.rss),
              static_cast<double>(last.threads) / std::max(1, early.threads));
  const Sample& warm = samples[(samples.size() - 1) / 2];
  const double rss = static_cast<double>(last.rss) / static_cast<double>(warm.rss);
  const double fds = static_cast<double>(last.fds) / std::max(1, warm.fds);
  const double thr = static_cast<double>(last.threads) / std::max(1, warm.threads);
  const double p50 = last.p50_ms / std::max(1e-9, warm.p50_ms);
  std::printf("soak/rss_ratio: %.3f\nsoak/fds_ratio: %.3f\nsoak/threads_ratio: %.3f\nsoak/p50_ratio: %.3f\n", rss, fds, thr,
              p50);
  const bool pass = failures == 0 && rss < 1.05 && fds < 1.05 && thr < 1.05;
  std::printf("soak: %s\n", pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
