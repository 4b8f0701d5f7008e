// bench/multi_model_memory: resident memory (VmRSS) of a process serving one
// head-only model of a backbone against the same process serving 100 of them,
// each having answered Predicts. The backbone is resident once and shared; a
// head-only model adds its head (feature_dim x classes floats) and nothing
// else. Target: ratio <= 1.1.
//
//   multi_model_memory [--backbone mobilenet_v2] [--models 100] [--classes 10]

#include <torch/torch.h>

#include <filesystem>
#include <iostream>

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

absl::StatusOr<std::string> PublishHeadOnly(ModelStore& store, const ResidentBackbone& b, int classes, int seed) {
  torch::manual_seed(seed);
  ModelInfo info;
  info.id = NewId("model");
  info.job_id = absl::StrCat("bench-", seed);
  info.backbone = b.spec->name;
  for (int c = 0; c < classes; ++c) info.class_names.push_back(absl::StrCat("class_", c));
  info.preprocessing = b.spec->preprocessing;
  info.spec.backbone = b.spec->name;
  info.first_trained_block = static_cast<int>(b.module->blocks().size());
  ClassifierHead head(b.spec->feature_dim, info.spec.head, classes);
  StateDict weights;
  for (const auto& [name, t] : ModuleStateDict(*head)) weights.emplace_back("head." + name, t);
  auto published = store.Publish(info, weights);
  if (!published.ok()) return published.status();
  return published->id;
}

// Every model answers `rounds` Predicts of all images.
absl::Status Serve(const Predictor& predictor, const std::vector<std::string>& ids,
                   const std::vector<ImageInput>& images, int rounds) {
  for (int r = 0; r < rounds; ++r) {
    for (const auto& id : ids) {
      auto out = predictor.PredictModels({id}, images, 1);
      if (!out.ok()) return out.status();
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  graft::core::RetainHostMemory();  // as graftd does (--retain_host_memory)
  std::string backbone = "mobilenet_v2";
  int models = 100, classes = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--backbone") backbone = value;
    else if (flag == "--models") models = std::stoi(value);
    else if (flag == "--classes") classes = std::stoi(value);
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
  Predictor predictor(**zoo, store->get(), {});
  std::vector<ImageInput> images;
  for (const char* name : {"dog.jpg", "eagle.jpg", "kite.jpg", "horses.jpg"}) {
    images.push_back({ReadFile(graft::bench::SharedDir() + "/images/" + name).value_or(""), {}});
  }

  std::vector<std::string> ids;
  auto first = PublishHeadOnly(**store, **resident, classes, 0);
  if (!first.ok()) {
    std::cerr << first.status().message() << "\n";
    return 1;
  }
  ids.push_back(*first);
  // Warm every allocator path with as many requests as the 100-model phase makes.
  absl::Status served = Serve(predictor, {ids[0]}, images, models);
  const int64_t one = graft::bench::ResidentBytes();
  for (int m = 1; m < models && served.ok(); ++m) {
    auto id = PublishHeadOnly(**store, **resident, classes, m);
    if (!id.ok()) served = id.status();
    else ids.push_back(*id);
  }
  if (served.ok()) served = Serve(predictor, ids, images, 1);
  if (!served.ok()) {
    std::cerr << served.message() << "\n";
    return 1;
  }
  const int64_t many = graft::bench::ResidentBytes();
  const int64_t head_bytes = (static_cast<int64_t>((*resident)->spec->feature_dim) + 1) * classes * 4;
  std::cout << "backbone: " << backbone << "\nclasses: " << classes << "\nmodels: " << ids.size()
            << "\nrss_1_model_mb: " << one / 1e6 << "\nrss_" << ids.size() << "_models_mb: " << many / 1e6
            << "\nhead_bytes_per_model: " << head_bytes
            << "\nrss_growth_per_model_kb: " << (many - one) / 1e3 / static_cast<double>(ids.size() - 1)
            << "\nratio: " << static_cast<double>(many) / static_cast<double>(one) << "\n";
  return 0;
}
