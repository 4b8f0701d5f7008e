// bench/monitor_overhead: what model monitoring adds to serving. A request
// of 16 images to a head-only model (its Predict, with the monitor fed)
// against the monitor's own work for the same 16 images (ObserveBatch:
// sketching the pooled features and the window's bookkeeping), measured in
// the same run; and a read of the statistics (what each scrape and GetModel
// pay per model) against the same request. Target: observe / predict <= 0.03.
// Then serving throughput at 16 clients (one image a request) of the same
// model served with monitoring and without (--monitor_window 0), in
// alternating blocks of the same run: the ratio is what monitoring costs.
//
//   monitor_overhead [--backbone mobilenet_v2] [--classes 10] [--rounds 40] [--blocks 6]

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "bench/shared_zoo.h"
#include "core/serve/model_store.h"
#include "core/serve/predictor.h"
#include "core/util/files.h"
#include "core/util/host_memory.h"
#include "core/util/ids.h"
#include "core/zoo/zoo.h"

namespace {

namespace fs = std::filesystem;
using namespace graft::core;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
  graft::core::RetainHostMemory();
  std::string backbone = "mobilenet_v2";
  int classes = 10, rounds = 40, blocks = 6;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--backbone") backbone = value;
    else if (flag == "--classes") classes = std::stoi(value);
    else if (flag == "--rounds") rounds = std::stoi(value);
    else if (flag == "--blocks") blocks = std::stoi(value);
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  graft::bench::ScratchDir dir;
  auto zoo = graft::bench::SharedBackboneZoo(dir.path(), backbone);
  auto resident = zoo.ok() ? (*zoo)->Resident(backbone) : zoo.status();
  auto db = Database::Open((fs::path(dir.path()) / "graft.db").string());
  if (!resident.ok() || !db.ok()) {
    std::cerr << "setup: " << (resident.ok() ? db.status() : resident.status()).message() << "\n";
    return 1;
  }
  auto store = ModelStore::Open(**db, (fs::path(dir.path()) / "models").string(), **zoo);
  if (!store.ok()) {
    std::cerr << store.status().message() << "\n";
    return 1;
  }
  const int64_t dim = (*resident)->spec->feature_dim;
  // A head-only model with a full-size profile (256 reference rows: the
  // largest a read compares with).
  torch::manual_seed(1);
  auto profile = MakeReferenceProfile(torch::randn({300, dim}), torch::softmax(torch::randn({300, classes}), 1), 1);
  if (!profile.ok()) {
    std::cerr << profile.status().message() << "\n";
    return 1;
  }
  ModelInfo info;
  info.id = NewId("model");
  info.backbone = backbone;
  for (int c = 0; c < classes; ++c) info.class_names.push_back(absl::StrCat("class_", c));
  info.preprocessing = (*resident)->spec->preprocessing;
  info.first_trained_block = static_cast<int>((*resident)->module->blocks().size());
  info.profile = std::make_shared<const ReferenceProfile>(std::move(*profile));
  ClassifierHead head(dim, info.spec.head, classes);
  StateDict state;
  for (const auto& [name, t] : ModuleStateDict(*head)) state.emplace_back("head." + name, t);
  auto published = (*store)->Publish(info, state);
  if (!published.ok()) {
    std::cerr << published.status().message() << "\n";
    return 1;
  }
  Predictor predictor(**zoo, store->get(), {});
  std::vector<ImageInput> images;
  for (int r = 0; r < 4; ++r) {
    for (const char* name : {"dog.jpg", "eagle.jpg", "kite.jpg", "horses.jpg"}) {
      images.push_back({ReadFile(graft::bench::SharedDir() + "/images/" + name).value_or(""), {}});
    }
  }
  auto model = (*store)->Get(published->id).value();
  for (int w = 0; w < 3; ++w) {
    if (auto r = predictor.PredictModels({published->id}, images, 1); !r.ok()) {
      std::cerr << r.status().message() << "\n";
      return 1;
    }
  }
  auto start = Clock::now();
  for (int r = 0; r < rounds; ++r) (void)predictor.PredictModels({published->id}, images, 1);
  const double predict_s = SecondsSince(start) / rounds;
  // The monitor's work for the same 16 images, alone.
  const torch::Tensor embeddings = torch::randn({16, dim});
  const torch::Tensor probabilities = torch::softmax(torch::randn({16, classes}), 1);
  const int observe_rounds = rounds * 50;
  start = Clock::now();
  for (int r = 0; r < observe_rounds; ++r) model->monitor()->ObserveBatch(embeddings, probabilities, NowSeconds());
  const double observe_s = SecondsSince(start) / observe_rounds;
  start = Clock::now();
  for (int r = 0; r < rounds; ++r) (void)model->monitor()->Read(NowSeconds());
  const double read_s = SecondsSince(start) / rounds;
  std::cout << "backbone: " << backbone << "\nimages_per_request: 16\npredict_ms: " << predict_s * 1e3
            << "\nobserve_ms: " << observe_s * 1e3 << "\nread_ms: " << read_s * 1e3
            << "\nobserve_share_of_predict: " << observe_s / predict_s
            << "\nread_vs_predict: " << read_s / predict_s << std::endl;

  // The same model in a store whose monitors are off, served by its own predictor.
  auto db_off = Database::Open((fs::path(dir.path()) / "graft-off.db").string());
  if (!db_off.ok()) return 1;
  auto store_off = ModelStore::Open(**db_off, (fs::path(dir.path()) / "models-off").string(), **zoo,
                                    MonitorOptions{/*window=*/0, /*max_age_s=*/0});
  if (!store_off.ok()) return 1;
  auto published_off = (*store_off)->Publish(info, state);
  if (!published_off.ok()) {
    std::cerr << published_off.status().message() << "\n";
    return 1;
  }
  Predictor predictor_off(**zoo, store_off->get(), {});
  const std::vector<ImageInput> one = {images[0]};
  constexpr int kClients = 16;
  const int per_client = std::max(1, rounds / 2);
  auto throughput = [&](const Predictor& p, const std::string& id) {
    const auto t0 = Clock::now();
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&] {
        for (int r = 0; r < per_client; ++r) (void)p.PredictModels({id}, one, 1);
      });
    }
    for (auto& t : clients) t.join();
    return kClients * per_client / SecondsSince(t0);
  };
  (void)throughput(predictor, published->id);  // warm both batchers
  (void)throughput(predictor_off, published_off->id);
  // Each block runs both, the order alternating (whichever runs second
  // finds the cores warm); the whole run's ratio is of the mean rates.
  std::vector<double> ratios;
  double sum_on = 0, sum_off = 0;
  for (int b = 0; b < blocks; ++b) {
    double on = 0, off = 0;
    if (b % 2 == 0) {
      off = throughput(predictor_off, published_off->id);
      on = throughput(predictor, published->id);
    } else {
      on = throughput(predictor, published->id);
      off = throughput(predictor_off, published_off->id);
    }
    ratios.push_back(on / off);
    sum_on += on;
    sum_off += off;
    std::cout << "block " << b << ": img/s monitored " << on << ", unmonitored " << off << std::endl;
  }
  std::sort(ratios.begin(), ratios.end());
  std::cout << "clients: 16\nthroughput_ratio_monitored_vs_off: " << sum_on / sum_off
            << "\nthroughput_ratio_block_min: " << ratios.front()
            << "\nthroughput_ratio_block_max: " << ratios.back() << "\n";
  return 0;
}
