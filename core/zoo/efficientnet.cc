#include "core/zoo/efficientnet.h"

#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

// MBConv: "block" = [expand 1x1], depthwise k x k, squeeze-excite, project
// 1x1; FusedMBConv: "block" = k x k expand (or k x k to out), [project 1x1].
// Stochastic depth is the identity in eval mode.
class MBConv : public ResidualBlock {
 public:
  MBConv(bool fused, int64_t expand, int64_t kernel, int64_t stride, int64_t in, int64_t out, double eps)
      : ResidualBlock(stride == 1 && in == out) {
    const int64_t expanded = MakeDivisible(static_cast<double>(in * expand));
    if (fused) {
      if (expanded != in) {
        Add(std::make_shared<ConvNormAct>(in, expanded, kernel, stride, 1, Activation::kSiLU, eps));
        Add(std::make_shared<ConvNormAct>(expanded, out, 1, 1, 1, Activation::kNone, eps));
      } else {
        Add(std::make_shared<ConvNormAct>(in, out, kernel, stride, 1, Activation::kSiLU, eps));
      }
      return;
    }
    if (expanded != in) Add(std::make_shared<ConvNormAct>(in, expanded, 1, 1, 1, Activation::kSiLU, eps));
    Add(std::make_shared<ConvNormAct>(expanded, expanded, kernel, stride, expanded, Activation::kSiLU, eps));
    Add(std::make_shared<SqueezeExcitation>(expanded, std::max<int64_t>(1, in / 4), Activation::kSiLU, false));
    Add(std::make_shared<ConvNormAct>(expanded, out, 1, 1, 1, Activation::kNone, eps));
  }
};

class EfficientNetImpl : public BlockListBackbone {
 public:
  EfficientNetImpl(const EfficientNetConfig& c, int64_t num_classes) {
    auto channels = [&](int64_t v) { return MakeDivisible(static_cast<double>(v) * c.width_mult); };
    auto features = register_module("features", std::make_shared<torch::nn::Module>());
    AddBlock(*features, "0", "features.0",
        std::make_shared<ConvNormAct>(3, channels(c.stages[0].in), 3, 2, 1, Activation::kSiLU, c.bn_eps));
    size_t index = 1;
    for (const EfficientNetStage& st : c.stages) {
      auto stage = features->register_module(std::to_string(index), std::make_shared<torch::nn::Module>());
      const int64_t layers = static_cast<int64_t>(std::ceil(static_cast<double>(st.layers) * c.depth_mult));
      for (int64_t i = 0; i < layers; ++i) {
        const int64_t in = i == 0 ? channels(st.in) : channels(st.out);
        AddBlock(*stage, std::to_string(i), absl::StrCat("features.", index, ".", i),
            std::make_shared<MBConv>(st.fused, st.expand, st.kernel, i == 0 ? st.stride : 1, in, channels(st.out),
                                     c.bn_eps));
      }
      ++index;
    }
    const int64_t last_in = channels(c.stages.back().out);
    feature_dim_ = c.last_channel > 0 ? c.last_channel : 4 * last_in;
    AddBlock(*features, std::to_string(index), absl::StrCat("features.", index),
        std::make_shared<ConvNormAct>(last_in, feature_dim_, 1, 1, 1, Activation::kSiLU, c.bn_eps));
    auto classifier = register_module("classifier", std::make_shared<torch::nn::Module>());
    dropout_ = classifier->register_module("0", torch::nn::Dropout(c.dropout));
    fc_ = classifier->register_module("1", torch::nn::Linear(feature_dim_, num_classes));
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override { return fc_->forward(dropout_->forward(Pool(fmap))); }

 private:
  int64_t feature_dim_ = 0;
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

EfficientNetConfig EfficientNetB(int variant) {
  // (width, depth, dropout) per variant, as torchvision builds them.
  static const double kScale[8][3] = {{1.0, 1.0, 0.2}, {1.0, 1.1, 0.2}, {1.1, 1.2, 0.3}, {1.2, 1.4, 0.3},
                                      {1.4, 1.8, 0.4}, {1.6, 2.2, 0.4}, {1.8, 2.6, 0.5}, {2.0, 3.1, 0.5}};
  EfficientNetConfig c;
  c.stages = {{false, 1, 3, 1, 32, 16, 1},  {false, 6, 3, 2, 16, 24, 2},   {false, 6, 5, 2, 24, 40, 2},
              {false, 6, 3, 2, 40, 80, 3},  {false, 6, 5, 1, 80, 112, 3},  {false, 6, 5, 2, 112, 192, 4},
              {false, 6, 3, 1, 192, 320, 1}};
  c.width_mult = kScale[variant][0];
  c.depth_mult = kScale[variant][1];
  c.dropout = kScale[variant][2];
  return c;
}

EfficientNetConfig EfficientNetV2(char size) {
  EfficientNetConfig c;
  c.last_channel = 1280;
  c.bn_eps = 1e-3;
  if (size == 's') {
    c.stages = {{true, 1, 3, 1, 24, 24, 2},     {true, 4, 3, 2, 24, 48, 4},     {true, 4, 3, 2, 48, 64, 4},
                {false, 4, 3, 2, 64, 128, 6},   {false, 6, 3, 1, 128, 160, 9},  {false, 6, 3, 2, 160, 256, 15}};
    c.dropout = 0.2;
  } else if (size == 'm') {
    c.stages = {{true, 1, 3, 1, 24, 24, 3},     {true, 4, 3, 2, 24, 48, 5},     {true, 4, 3, 2, 48, 80, 5},
                {false, 4, 3, 2, 80, 160, 7},   {false, 6, 3, 1, 160, 176, 14}, {false, 6, 3, 2, 176, 304, 18},
                {false, 6, 3, 1, 304, 512, 5}};
    c.dropout = 0.3;
  } else {
    c.stages = {{true, 1, 3, 1, 32, 32, 4},     {true, 4, 3, 2, 32, 64, 7},     {true, 4, 3, 2, 64, 96, 7},
                {false, 4, 3, 2, 96, 192, 10},  {false, 6, 3, 1, 192, 224, 19}, {false, 6, 3, 2, 224, 384, 25},
                {false, 6, 3, 1, 384, 640, 7}};
    c.dropout = 0.4;
  }
  return c;
}

BackbonePtr MakeEfficientNet(const EfficientNetConfig& config, int64_t num_classes) {
  return std::make_shared<EfficientNetImpl>(config, num_classes);
}

}  // namespace graft::core
