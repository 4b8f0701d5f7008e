// Writes the seeds whose format graft itself defines, with graft's own
// writers (so they never drift from the readers): model.json, safetensors,
// binary JobSpec protos. Usage: graft_fuzz_seeds OUT_DIR
#include <google/protobuf/util/json_util.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "core/serve/model_store.h"
#include "core/zoo/state_dict.h"
#include "graft/v1/training.pb.h"

namespace fs = std::filesystem;

namespace {

void Write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: graft_fuzz_seeds OUT_DIR\n";
    return 2;
  }
  const fs::path out = argv[1];
  using namespace graft::core;

  ModelInfo info;
  info.id = "model-0123456789ab";
  info.job_id = "job-0123456789ab";
  info.owner = "admin";
  info.backbone = "mobilenet_v2";
  info.class_names = {"ants", "bees"};
  info.spec.backbone = "mobilenet_v2";
  info.spec.dataset = "hymenoptera";
  info.spec.stages.push_back(StageSpec{});
  info.trained_blocks = {"features.17", "features.18"};
  info.first_trained_block = 17;
  Write(out / "model_json" / "model.json", ModelInfoToJson(info));
  info.class_names = {"a", "b", "c", "d", "e"};
  info.spec.head.hidden_units = {64, 32};
  Write(out / "model_json" / "model2.json", ModelInfoToJson(info));

  StateDict tensors;
  tensors.emplace_back("fc.weight", torch::arange(6, torch::kFloat32).reshape({2, 3}));
  tensors.emplace_back("fc.bias", torch::zeros({2}, torch::kFloat16));
  tensors.emplace_back("bn.num_batches_tracked", torch::tensor(int64_t{7}));
  tensors.emplace_back("mask", torch::ones({2, 2}, torch::kBool));
  tensors.emplace_back("bf", torch::ones({3}, torch::kBFloat16));
  const auto st = SerializeSafetensors(tensors, {{"graft.class_names", "[\"a\",\"b\"]"}});
  if (!st.ok()) {
    std::cerr << st.status() << "\n";
    return 1;
  }
  Write(out / "safetensors" / "small.safetensors", *st);
  Write(out / "safetensors" / "empty.safetensors", *SerializeSafetensors({}, {}));

  graft::v1::JobSpec spec;
  spec.set_backbone("mobilenet_v2");
  spec.set_dataset("hymenoptera");
  spec.set_batch_size(16);
  spec.mutable_head()->add_hidden_units(128);
  auto* stage = spec.add_stages();
  stage->set_train("head");
  stage->set_epochs(3);
  auto* stage2 = spec.add_stages();
  stage2->set_train("top:2");
  stage2->set_epochs(2);
  Write(out / "job_spec" / "two_stages.binpb", spec.SerializeAsString());
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(spec, &json);
  Write(out / "job_spec" / "two_stages.json", json);
  // A search: every list, successive halving, and the first stage's auto rate elsewhere.
  auto* search = spec.mutable_search();
  search->add_backbones("MobileNetV2");
  search->add_backbones("squeezenet1_1");
  search->add_learning_rates(1e-3);
  search->add_learning_rates(1e-2);
  search->add_optimizers(graft::v1::OPTIMIZER_SGD);
  search->add_weight_decays(1e-4);
  search->add_heads()->add_hidden_units(64);
  search->add_label_smoothings(0.1);
  search->set_strategy(graft::v1::SEARCH_SUCCESSIVE_HALVING);
  search->set_max_trials(12);
  Write(out / "job_spec" / "search.binpb", spec.SerializeAsString());
  json.clear();
  (void)google::protobuf::util::MessageToJsonString(spec, &json);
  Write(out / "job_spec" / "search.json", json);
  spec.clear_search();
  spec.mutable_stages(0)->mutable_optimizer()->set_auto_learning_rate(true);
  Write(out / "job_spec" / "auto_lr.binpb", spec.SerializeAsString());
  return 0;
}
