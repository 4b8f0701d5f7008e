#include "tests/fakes/tiny_backbone.h"

#include <torch/torch.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/util/files.h"
#include "core/util/status_macros.h"
#include "core/zoo/state_dict.h"

namespace graft::fakes {
namespace {

class TinyBackboneImpl : public core::BackboneImpl {
 public:
  explicit TinyBackboneImpl(int64_t w) {
    auto features = std::make_shared<torch::nn::Module>();
    conv0_ = features->register_module("0", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, w, 3).stride(2).padding(1)));
    conv1_ = features->register_module("1", torch::nn::Conv2d(torch::nn::Conv2dOptions(w, 2 * w, 3).stride(2).padding(1)));
    register_module("features", features);
    fc_ = register_module("fc", torch::nn::Linear(2 * w, 10));
    blocks_.push_back({"features.0", {"features.0."}});
    blocks_.push_back({"features.1", {"features.1."}});
  }

  torch::Tensor ForwardHead(const torch::Tensor& feature_map) override { return fc_->forward(Pool(feature_map)); }

 protected:
  torch::Tensor ForwardBlock(size_t index, const torch::Tensor& x) override {
    return torch::relu(index == 0 ? conv0_->forward(x) : conv1_->forward(x));
  }

 private:
  torch::nn::Conv2d conv0_{nullptr}, conv1_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

core::BackboneSpec TinySpec(const std::string& name, int64_t w) {
  core::BackboneSpec spec;
  spec.name = name;
  spec.family = "tiny";
  spec.preprocessing.height = 32;
  spec.preprocessing.width = 32;
  spec.preprocessing.resize_size = 36;
  spec.feature_dim = 2 * w;
  spec.num_classes = 10;
  spec.classifier_prefix = "fc.";
  spec.linear_classifier = "fc";
  spec.make = [w]() -> core::BackbonePtr { return std::make_shared<TinyBackboneImpl>(w); };
  spec.parameter_count = (3 * w * 9 + w) + (w * 2 * w * 9 + 2 * w) + (2 * w * 10 + 10);
  spec.reference = "graft's tests";
  return spec;
}

absl::Status WriteTinyWeights(const core::BackboneSpec& spec, const std::string& zoo_dir, uint64_t seed) {
  torch::manual_seed(seed);
  const core::BackbonePtr module = spec.make();
  ASSIGN_OR_RETURN(const std::string bytes, core::SerializeSafetensors(core::ModuleStateDict(*module)));
  std::error_code ec;
  std::filesystem::create_directories(zoo_dir, ec);
  return core::WriteFileAtomic((std::filesystem::path(zoo_dir) / (spec.name + "-imagenet.safetensors")).string(), bytes);
}

absl::StatusOr<core::ZooOptions> TinyZooAt(const std::string& zoo_dir, std::vector<core::BackboneSpec> specs) {
  uint64_t seed = 1;
  for (const core::BackboneSpec& spec : specs) RETURN_IF_ERROR(WriteTinyWeights(spec, zoo_dir, seed++));
  core::ZooOptions options = core::ZooAt(zoo_dir, "cpu");
  options.extra_backbones = std::move(specs);
  return options;
}

}  // namespace graft::fakes
