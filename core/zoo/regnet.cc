#include "core/zoo/regnet.h"

#include <torch/nn/modules/linear.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

// ResBottleneckBlock: "f" = "a" 1x1, "b" grouped 3x3 (stride), ["se"], "c"
// 1x1 without activation; "proj" 1x1 where the shape changes; ReLU after
// the sum.
class ResBottleneck : public UnaryModule {
 public:
  ResBottleneck(int64_t in, int64_t out, int64_t stride, int64_t group_width, bool se) {
    if (in != out || stride != 1) {
      proj_ = register_module("proj", std::make_shared<ConvNormAct>(in, out, 1, stride, 1, Activation::kNone));
    }
    auto f = register_module("f", std::make_shared<torch::nn::Module>());
    auto add = [&](const char* name, std::shared_ptr<UnaryModule> m) {
      f->register_module(name, m);
      layers_.push_back(std::move(m));
    };
    add("a", std::make_shared<ConvNormAct>(in, out, 1, 1, 1, Activation::kReLU));
    add("b", std::make_shared<ConvNormAct>(out, out, 3, stride, out / group_width, Activation::kReLU));
    if (se) add("se", std::make_shared<SqueezeExcitation>(out, in / 4, Activation::kReLU, false));
    add("c", std::make_shared<ConvNormAct>(out, out, 1, 1, 1, Activation::kNone));
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor y = x;
    for (auto& l : layers_) y = l->forward(y);
    return torch::relu(y + (proj_ ? proj_->forward(x) : x));
  }

 private:
  std::shared_ptr<ConvNormAct> proj_;
  std::vector<std::shared_ptr<UnaryModule>> layers_;
};

class RegNetImpl : public BlockListBackbone {
 public:
  RegNetImpl(const RegNetConfig& c, int64_t num_classes) {
    constexpr int64_t kStem = 32;
    AddBlock(*this, "stem", "stem", std::make_shared<ConvNormAct>(3, kStem, 3, 2, 1, Activation::kReLU));
    auto trunk = register_module("trunk_output", std::make_shared<torch::nn::Module>());
    int64_t width = kStem;
    for (size_t s = 0; s < c.stages.size(); ++s) {
      const RegNetStage& st = c.stages[s];
      const std::string stage_name = absl::StrCat("block", s + 1);
      auto stage = trunk->register_module(stage_name, std::make_shared<torch::nn::Module>());
      for (int64_t i = 0; i < st.depth; ++i) {
        const std::string name = absl::StrCat(stage_name, "-", i);
        AddBlock(*stage, name, absl::StrCat("trunk_output.", stage_name, ".", name),
                 std::make_shared<ResBottleneck>(i == 0 ? width : st.width, st.width, i == 0 ? 2 : 1, st.group_width,
                                                 c.squeeze_excite));
      }
      width = st.width;
    }
    fc_ = register_module("fc", torch::nn::Linear(width, num_classes));
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override { return fc_->forward(Pool(fmap)); }

 private:
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

RegNetConfig RegNetVariant(const std::string& variant) {
  // (depth, width, group width) per stage as torchvision's
  // BlockParams.from_init_params quantises them from (w_0, w_a, w_m, depth).
  static const std::map<std::string, std::array<RegNetStage, 4>> kStages = {
      {"x_400mf", {{{1, 32, 16}, {2, 64, 16}, {7, 160, 16}, {12, 400, 16}}}},
      {"x_800mf", {{{1, 64, 16}, {3, 128, 16}, {7, 288, 16}, {5, 672, 16}}}},
      {"x_1_6gf", {{{2, 72, 24}, {4, 168, 24}, {10, 408, 24}, {2, 912, 24}}}},
      {"x_3_2gf", {{{2, 96, 48}, {6, 192, 48}, {15, 432, 48}, {2, 1008, 48}}}},
      {"x_8gf", {{{2, 80, 80}, {5, 240, 120}, {15, 720, 120}, {1, 1920, 120}}}},
      {"x_16gf", {{{2, 256, 128}, {6, 512, 128}, {13, 896, 128}, {1, 2048, 128}}}},
      {"x_32gf", {{{2, 336, 168}, {7, 672, 168}, {13, 1344, 168}, {1, 2520, 168}}}},
      {"y_400mf", {{{1, 48, 8}, {3, 104, 8}, {6, 208, 8}, {6, 440, 8}}}},
      {"y_800mf", {{{1, 64, 16}, {3, 144, 16}, {8, 320, 16}, {2, 784, 16}}}},
      {"y_1_6gf", {{{2, 48, 24}, {6, 120, 24}, {17, 336, 24}, {2, 888, 24}}}},
      {"y_3_2gf", {{{2, 72, 24}, {5, 216, 24}, {13, 576, 24}, {1, 1512, 24}}}},
      {"y_8gf", {{{2, 224, 56}, {4, 448, 56}, {10, 896, 56}, {1, 2016, 56}}}},
      {"y_16gf", {{{2, 224, 112}, {4, 448, 112}, {11, 1232, 112}, {1, 3024, 112}}}},
      {"y_32gf", {{{2, 232, 232}, {5, 696, 232}, {12, 1392, 232}, {1, 3712, 232}}}},
  };
  RegNetConfig c;
  c.stages = kStages.at(variant);
  c.squeeze_excite = variant[0] == 'y';
  return c;
}

BackbonePtr MakeRegNet(const RegNetConfig& config, int64_t num_classes) {
  return std::make_shared<RegNetImpl>(config, num_classes);
}

}  // namespace graft::core
