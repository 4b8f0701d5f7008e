// bench/data_parallel: what a data-parallel job (JobSpec::workers) costs and
// gains, measured in this run on this machine:
//   (a) one trainer with --threads T: images/s of augmented epochs (fresh
//       flips: every batch is decoded and runs the frozen trunk) on
//       hymenoptera;
//   (b) a group of two ranks (threads of this process, T/2 intra-op threads
//       each) joined over loopback through c10d's TCPStore and Gloo, on the
//       same global batches: images/s, and the ratio b/a;
//   (c) the all-reduce of one step's buffer between the two ranks, for a head
//       (what a head-only job sends), the top blocks and the whole backbone:
//       ms per all-reduce, the share of a step it costs, and the loopback's
//       bandwidth and latency behind the scaling model printed last.
//
//   data_parallel [--backbone squeezenet1_1] [--input_size 112] [--epochs 2] [--threads N]

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "core/train/trainer.h"
#include "core/util/collective.h"
#include "core/zoo/zoo.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace graft::core;

struct Args {
  std::string backbone = "squeezenet1_1";
  int input_size = 112;
  int epochs = 2;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
};

double Seconds(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::vector<DatasetImage> Hymenoptera() {
  std::vector<DatasetImage> images;
  const std::string root = graft::bench::SharedDir() + "/data/hymenoptera";
  for (const auto& [split, dir] : {std::pair{Split::kTrain, "train"}, std::pair{Split::kVal, "val"}}) {
    for (const auto& [label, cls] : {std::pair{0, "ants"}, std::pair{1, "bees"}}) {
      std::vector<std::string> files;
      for (const auto& f : fs::directory_iterator(root + "/" + dir + "/" + cls)) {
        if (f.path().extension() != ".gif") files.push_back(f.path().string());  // not an image graft reads
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) images.push_back(DatasetImage{split, label, f.substr(root.size() + 1), f});
    }
  }
  return images;
}

TrainInput Input(const Args& a, const std::shared_ptr<ResidentBackbone>& resident,
                 const std::vector<DatasetImage>& images) {
  TrainInput in;
  in.spec.backbone = a.backbone;
  in.spec.dataset = "hymenoptera";
  in.spec.input_size = a.input_size;
  in.spec.batch_size = 32;
  in.spec.seed = 1;
  in.spec.augmentation.horizontal_flip = true;
  in.spec.stages.push_back({});
  in.spec.stages[0].epochs = a.epochs;
  in.spec.stages[0].optimizer.kind = OptimizerKind::kSgd;
  in.spec.stages[0].optimizer.learning_rate = 0.01;
  in.spec.stages[0].optimizer.momentum = 0.9;
  (void)NormalizeJobSpec(in.spec, static_cast<int>(resident->module->blocks().size()));
  in.resident = resident;
  in.images = images;
  in.num_classes = 2;
  return in;
}

// Training images per second over the run's epochs (the first epoch's
// start-up included, as a job's is).
class Rate : public TrainEvents {
 public:
  void OnEpoch(const EpochMetrics& m) override { seconds += m.epoch_seconds; }
  double seconds = 0;
};

// Two ranks on threads; `body(rank, group)` runs in each once both joined.
void InGroup(const std::function<void(int, Collective&)>& body) {
  auto rendezvous = Rendezvous::Serve("127.0.0.1", 0, 120);
  if (!rendezvous.ok()) {
    std::cerr << rendezvous.status() << "\n";
    std::exit(1);
  }
  static int groups = 0;
  const std::string prefix = "bench/" + std::to_string(++groups) + "/";
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    ranks.emplace_back([&, rank] {
      GroupOptions g;
      g.store_host = g.own_host = "127.0.0.1";
      g.store_port = (*rendezvous)->port();
      g.prefix = prefix;
      g.rank = rank;
      g.size = 2;
      g.timeout_s = 120;
      auto group = JoinGroup(g, rank == 0 ? rendezvous->get() : nullptr);
      if (!group.ok()) {
        std::cerr << group.status() << "\n";
        std::exit(1);
      }
      body(rank, **group);
    });
  }
  for (auto& t : ranks) t.join();
}

// Median ms of an all-reduce of `floats` float32 values between two ranks.
double AllReduceMs(int64_t floats) {
  std::vector<double> times;
  InGroup([&](int rank, Collective& group) {
    torch::Tensor t = torch::ones({floats});
    std::vector<double> mine;
    for (int i = 0; i < 30; ++i) {
      const auto start = Clock::now();
      if (!group.AllReduceSum(t).ok()) std::exit(1);
      mine.push_back(Seconds(start) * 1000);
    }
    if (rank == 0) times = mine;
  });
  std::sort(times.begin() + 5, times.end());  // the first five warm the connection up
  return times[5 + (times.size() - 5) / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    bool ok = true;
    if (k == "--backbone")
      a.backbone = v;
    else if (k == "--input_size")
      ok = absl::SimpleAtoi(v, &a.input_size);
    else if (k == "--epochs")
      ok = absl::SimpleAtoi(v, &a.epochs);
    else if (k == "--threads")
      ok = absl::SimpleAtoi(v, &a.threads);
    else
      ok = false;
    if (!ok) {
      std::cerr << "usage: data_parallel [--backbone B] [--input_size N] [--epochs N] [--threads N]\n";
      return 2;
    }
  }
  auto zoo = Zoo::Create(ZooAt(graft::bench::SharedDir() + "/weights", "cpu"));
  if (!zoo.ok()) {
    std::cerr << zoo.status() << "\n";
    return 1;
  }
  auto resident = (*zoo)->Resident(a.backbone);
  if (!resident.ok()) {
    std::cerr << resident.status() << "\n";
    return 1;
  }
  const std::vector<DatasetImage> images = Hymenoptera();
  int64_t train_images = 0;
  for (const auto& i : images) train_images += i.split == Split::kTrain;
  const int64_t seen = train_images * a.epochs;

  // (a) one trainer, all threads.
  at::set_num_threads(a.threads);
  CancellationToken cancel;
  Rate one;
  const auto alone = Train(Input(a, *resident, images), cancel, one);
  if (!alone.ok()) {
    std::cerr << alone.status() << "\n";
    return 1;
  }
  const double one_img_s = static_cast<double>(seen) / one.seconds;
  // (b) two ranks, half the threads each.
  std::vector<Rate> rates(2);
  std::vector<int64_t> read(2);
  InGroup([&](int rank, Collective& group) {
    at::set_num_threads(std::max(1, a.threads / 2));
    TrainInput in = Input(a, *resident, images);
    in.collective = &group;
    CancellationToken c;
    auto trained = Train(in, c, rates[rank]);
    if (!trained.ok()) {
      std::cerr << "rank " << rank << ": " << trained.status() << "\n";
      std::exit(1);
    }
    read[rank] = trained->images_read;
  });
  at::set_num_threads(a.threads);
  const double two_img_s = static_cast<double>(seen) / std::max(rates[0].seconds, rates[1].seconds);
  std::cout << "backbone: " << a.backbone << " @" << a.input_size << ", threads " << a.threads << ", " << a.epochs
            << " augmented epochs of " << train_images << " images\n";
  std::cout << "one_trainer_img_s: " << absl::StrFormat("%.1f", one_img_s) << "\n";
  std::cout << "two_ranks_img_s: " << absl::StrFormat("%.1f", two_img_s) << "\n";
  std::cout << "two_ranks_over_one: " << absl::StrFormat("%.2f", two_img_s / one_img_s) << "\n";
  std::cout << "images_read_rank0: " << read[0] << " of " << images.size() << "\n";
  std::cout << "images_read_rank1: " << read[1] << " of " << images.size() << "\n";

  // (c) one step's all-reduce: a head (feature_dim x 2 + 2, plus the four
  // flags), the whole trunk (every parameter), and in between.
  int64_t trunk = 0;
  for (const auto& p : (*resident)->module->parameters()) trunk += p.numel();
  const int64_t feature_dim = (*resident)->spec->feature_dim;
  const int64_t head = feature_dim * 2 + 2 + 4;
  const double step_ms = 1000.0 * 32 / one_img_s;
  std::cout << "step_ms_one_trainer (batch 32): " << absl::StrFormat("%.1f", step_ms) << "\n";
  double small_ms = 0, large_ms = 0;
  const int64_t large = std::max<int64_t>(trunk, 1 << 20);
  for (const auto& [label, floats] :
       {std::pair<std::string, int64_t>{"head", head}, std::pair<std::string, int64_t>{"quarter_trunk", trunk / 4},
        std::pair<std::string, int64_t>{"whole_trunk", large}}) {
    const double ms = AllReduceMs(floats);
    if (label == "head") small_ms = ms;
    if (label == "whole_trunk") large_ms = ms;
    std::cout << "allreduce_ms/" << label << " (" << floats * 4 / 1024 << " KiB): " << absl::StrFormat("%.3f", ms)
              << "  share_of_step: " << absl::StrFormat("%.3f", ms / step_ms) << "\n";
  }
  // Ring all-reduce of B bytes over N ranks: 2(N-1) messages of B/N each:
  // t(N, B) = 2(N-1) alpha + 2(N-1)/N * B / beta. With N = 2: alpha from the
  // small buffer, beta from the large one.
  const double alpha_ms = small_ms / 2;
  const double beta_bytes_per_ms = (static_cast<double>(large) * 4) / std::max(large_ms - 2 * alpha_ms, 1e-6);
  std::cout << "loopback_latency_ms: " << absl::StrFormat("%.3f", alpha_ms) << "\n";
  std::cout << "loopback_bandwidth_GB_s: " << absl::StrFormat("%.2f", beta_bytes_per_ms / 1e6) << "\n";
  for (const int n : {2, 4, 8}) {
    for (const auto& [label, floats] :
         {std::pair<std::string, int64_t>{"head", head}, std::pair<std::string, int64_t>{"whole_trunk", large}}) {
      const double comm = 2 * (n - 1) * alpha_ms + 2.0 * (n - 1) / n * floats * 4 / beta_bytes_per_ms;
      std::cout << "model_speedup/N=" << n << "/" << label << ": "
                << absl::StrFormat("%.2f", step_ms / (step_ms / n + comm)) << "\n";
    }
  }
  return 0;
}
