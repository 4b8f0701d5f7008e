// bench/shadow_overhead: what a shadow version costs the callers. Predicts
// of one image to a head-only MobileNetV2 model, from 1 and from 4 clients,
// in blocks: without a shadow (the reference, measured in the same run),
// with a shadow on the same trunk (another head: its activations come from
// the request's own pass), and with a shadow on another backbone
// (SqueezeNet 1.1, run whole as background work). Prints each mode's p50 and
// its difference from the reference. Target (issue 37): the shadow delays
// the answer by at most 1 ms at p50.
//
//   shadow_overhead [--rounds 60] [--repeats 3]

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
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

absl::StatusOr<std::string> PublishHead(ModelStore& store, Zoo& zoo, const std::string& backbone, int seed) {
  auto resident = zoo.Resident(backbone);
  if (!resident.ok()) return resident.status();
  ModelInfo info;
  info.id = NewId("model");
  info.backbone = backbone;
  info.class_names = {"ants", "bees"};
  info.preprocessing = (*resident)->spec->preprocessing;
  info.first_trained_block = static_cast<int>((*resident)->module->blocks().size());
  torch::manual_seed(seed);
  ClassifierHead head((*resident)->spec->feature_dim, info.spec.head, 2);
  StateDict state;
  for (const auto& [name, t] : ModuleStateDict(*head)) state.emplace_back("head." + name, t);
  auto published = store.Publish(info, state);
  if (!published.ok()) return published.status();
  return published->id;
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  graft::core::RetainHostMemory();
  int rounds = 60, repeats = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--rounds") rounds = std::stoi(value);
    else if (flag == "--repeats") repeats = std::stoi(value);
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  graft::bench::ScratchDir dir;
  auto zoo = graft::bench::SharedBackboneZoo(dir.path(), std::vector<std::string>{"mobilenet_v2", "squeezenet1_1"});
  auto db = Database::Open((fs::path(dir.path()) / "graft.db").string());
  if (!zoo.ok() || !db.ok()) {
    std::cerr << "setup: " << (zoo.ok() ? db.status() : zoo.status()).message() << "\n";
    return 1;
  }
  auto store = ModelStore::Open(**db, (fs::path(dir.path()) / "models").string(), **zoo);
  if (!store.ok()) {
    std::cerr << store.status().message() << "\n";
    return 1;
  }
  const auto served_or = PublishHead(**store, **zoo, "mobilenet_v2", 1);
  const auto same_trunk_or = PublishHead(**store, **zoo, "mobilenet_v2", 2);
  const auto other_or = PublishHead(**store, **zoo, "squeezenet1_1", 3);
  if (!served_or.ok() || !same_trunk_or.ok() || !other_or.ok()) {
    std::cerr << "publish failed\n";
    return 1;
  }
  const std::string served = *served_or, same_trunk = *same_trunk_or, other = *other_or;
  Predictor predictor(**zoo, store->get(), {});
  const std::vector<ImageInput> image = {{ReadFile(graft::bench::SharedDir() + "/images/dog.jpg").value_or(""), {}}};
  const std::vector<std::pair<std::string, ShadowMap>> modes = {
      {"none", {}}, {"same_trunk", ShadowMap{{served, same_trunk}}}, {"other_backbone", ShadowMap{{served, other}}}};
  for (const auto& [name, shadows] : modes) {  // warm every path
    for (int w = 0; w < 5; ++w) {
      if (auto r = predictor.PredictModels({served}, image, 1, {}, shadows); !r.ok()) {
        std::cerr << r.status().message() << "\n";
        return 1;
      }
    }
    predictor.DrainShadows();
  }
  std::cout << "images_per_request: 1\n";
  for (const int clients : {1, 4}) {
    std::map<std::string, std::vector<double>> latencies_ms;
    for (int rep = 0; rep < repeats; ++rep) {
      for (const auto& [name, shadows] : modes) {
        std::vector<std::vector<double>> per_client(static_cast<size_t>(clients));
        std::vector<std::thread> threads;
        for (int c = 0; c < clients; ++c) {
          threads.emplace_back([&, c, shadows = shadows] {
            for (int r = 0; r < rounds; ++r) {
              const auto start = Clock::now();
              (void)predictor.PredictModels({served}, image, 1, {}, shadows);
              per_client[static_cast<size_t>(c)].push_back(
                  std::chrono::duration<double, std::milli>(Clock::now() - start).count());
            }
          });
        }
        for (auto& t : threads) t.join();
        predictor.DrainShadows();  // the next block starts with an idle lane
        for (const auto& v : per_client) latencies_ms[name].insert(latencies_ms[name].end(), v.begin(), v.end());
      }
    }
    const double base = Percentile(latencies_ms["none"], 0.5);
    std::cout << "clients_" << clients << "/p50_ms_none: " << base << "\n";
    for (const auto& [name, shadows] : modes) {
      if (name == "none") continue;
      const double p50 = Percentile(latencies_ms[name], 0.5);
      std::cout << "clients_" << clients << "/p50_ms_" << name << ": " << p50 << "\n"
                << "clients_" << clients << "/p50_delta_ms_" << name << ": " << p50 - base << "\n"
                << "clients_" << clients << "/p50_ratio_" << name << ": " << p50 / base << "\n";
    }
  }
  for (const std::string& id : {same_trunk, other}) {
    const auto model = (*store)->Get(id).value();
    for (const auto& a : model->Agreements()) {
      std::cout << "shadow_" << (id == other ? "other_backbone" : "same_trunk") << "/compared: "
                << a.agreement.images << "\nshadow_" << (id == other ? "other_backbone" : "same_trunk")
                << "/dropped: " << a.agreement.dropped_images << "\n";
    }
  }
  return 0;
}
