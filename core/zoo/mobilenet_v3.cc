#include "core/zoo/mobilenet_v3.h"

#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include "absl/strings/str_cat.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

constexpr double kEps = 0.001;  // torchvision's MobileNetV3 batch norm

struct BlockConfig {
  int64_t in, kernel, expanded, out;
  bool se, hardswish;
  int64_t stride;
};

// "block": [expand ConvNormAct], depthwise ConvNormAct, [SqueezeExcite],
// projection ConvNormAct without activation; residual when shapes allow.
class InvertedResidualV3 : public ResidualBlock {
 public:
  explicit InvertedResidualV3(const BlockConfig& c) : ResidualBlock(c.stride == 1 && c.in == c.out) {
    const Activation act = c.hardswish ? Activation::kHardswish : Activation::kReLU;
    if (c.expanded != c.in) Add(std::make_shared<ConvNormAct>(c.in, c.expanded, 1, 1, 1, act, kEps));
    Add(std::make_shared<ConvNormAct>(c.expanded, c.expanded, c.kernel, c.stride, c.expanded, act, kEps));
    if (c.se) {
      Add(std::make_shared<SqueezeExcitation>(c.expanded, MakeDivisible(static_cast<double>(c.expanded / 4)),
                                              Activation::kReLU, /*hard_gate=*/true));
    }
    Add(std::make_shared<ConvNormAct>(c.expanded, c.out, 1, 1, 1, Activation::kNone, kEps));
  }
};

class MobileNetV3Impl : public BackboneImpl {
 public:
  MobileNetV3Impl(bool large, int64_t num_classes) {
    const std::vector<BlockConfig> large_cfg = {
        {16, 3, 16, 16, false, false, 1},   {16, 3, 64, 24, false, false, 2},   {24, 3, 72, 24, false, false, 1},
        {24, 5, 72, 40, true, false, 2},    {40, 5, 120, 40, true, false, 1},   {40, 5, 120, 40, true, false, 1},
        {40, 3, 240, 80, false, true, 2},   {80, 3, 200, 80, false, true, 1},   {80, 3, 184, 80, false, true, 1},
        {80, 3, 184, 80, false, true, 1},   {80, 3, 480, 112, true, true, 1},   {112, 3, 672, 112, true, true, 1},
        {112, 5, 672, 160, true, true, 2},  {160, 5, 960, 160, true, true, 1},  {160, 5, 960, 160, true, true, 1}};
    const std::vector<BlockConfig> small_cfg = {
        {16, 3, 16, 16, true, false, 2},    {16, 3, 72, 24, false, false, 2},   {24, 3, 88, 24, false, false, 1},
        {24, 5, 96, 40, true, true, 2},     {40, 5, 240, 40, true, true, 1},    {40, 5, 240, 40, true, true, 1},
        {40, 5, 120, 48, true, true, 1},    {48, 5, 144, 48, true, true, 1},    {48, 5, 288, 96, true, true, 2},
        {96, 5, 576, 96, true, true, 1},    {96, 5, 576, 96, true, true, 1}};
    const auto& cfg = large ? large_cfg : small_cfg;
    features_.Register(*this, "features");
    features_.Add(std::make_shared<ConvNormAct>(3, 16, 3, 2, 1, Activation::kHardswish, kEps));
    for (const auto& c : cfg) features_.Add(std::make_shared<InvertedResidualV3>(c));
    const int64_t last_in = cfg.back().out, last_out = 6 * last_in;
    features_.Add(std::make_shared<ConvNormAct>(last_in, last_out, 1, 1, 1, Activation::kHardswish, kEps));
    for (size_t i = 0; i < features_.size(); ++i) {
      const std::string name = absl::StrCat("features.", i);
      blocks_.push_back({name, {name + "."}});
    }
    const int64_t last_channel = large ? 1280 : 1024;
    auto classifier = std::make_shared<torch::nn::Module>();
    fc1_ = classifier->register_module("0", torch::nn::Linear(last_out, last_channel));
    dropout_ = classifier->register_module("2", torch::nn::Dropout(0.2));
    fc2_ = classifier->register_module("3", torch::nn::Linear(last_channel, num_classes));
    register_module("classifier", classifier);
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override {
    return fc2_->forward(dropout_->forward(torch::hardswish(fc1_->forward(Pool(fmap)))));
  }

 protected:
  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override { return features_[i].forward(x); }

 private:
  UnaryList features_;
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};

}  // namespace

BackbonePtr MakeMobileNetV3(bool large, int64_t num_classes) {
  return std::make_shared<MobileNetV3Impl>(large, num_classes);
}

}  // namespace graft::core
