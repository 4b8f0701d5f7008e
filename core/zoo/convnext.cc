#include "core/zoo/convnext.h"

#include <torch/nn/functional/normalization.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "absl/strings/str_cat.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

constexpr double kEps = 1e-6;

torch::nn::LayerNorm MakeLayerNorm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(kEps));
}

// LayerNorm over the channels of an NCHW map (torchvision's LayerNorm2d).
torch::Tensor ChannelNorm(torch::nn::LayerNorm& norm, const torch::Tensor& x) {
  return norm->forward(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
}

// "0" convolution (with bias), "1" LayerNorm2d, in either order.
class ConvAndNorm : public UnaryModule {
 public:
  ConvAndNorm(int64_t in, int64_t out, int64_t kernel, bool norm_first) : norm_first_(norm_first) {
    conv_ = register_module(norm_first ? "1" : "0", MakeConv(in, out, kernel, kernel, 0, 1, true));
    norm_ = register_module(norm_first ? "0" : "1", MakeLayerNorm(norm_first ? in : out));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return norm_first_ ? conv_->forward(ChannelNorm(norm_, x)) : ChannelNorm(norm_, conv_->forward(x));
  }

 private:
  bool norm_first_;
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
};

// CNBlock: "block" = depthwise 7x7 "0", LayerNorm "2", Linear "3", GELU,
// Linear "5" (channels last between the permutes), scaled by "layer_scale",
// plus the input. Stochastic depth is the identity in eval mode.
class CNBlock : public UnaryModule {
 public:
  explicit CNBlock(int64_t dim) {
    auto block = register_module("block", std::make_shared<torch::nn::Module>());
    dwconv_ = block->register_module("0", MakeConv(dim, dim, 7, 1, 3, dim, true));
    norm_ = block->register_module("2", MakeLayerNorm(dim));
    fc1_ = block->register_module("3", torch::nn::Linear(dim, 4 * dim));
    fc2_ = block->register_module("5", torch::nn::Linear(4 * dim, dim));
    layer_scale_ = register_parameter("layer_scale", torch::full({dim, 1, 1}, 1e-6));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor y = dwconv_->forward(x).permute({0, 2, 3, 1});
    y = fc2_->forward(torch::gelu(fc1_->forward(norm_->forward(y)))).permute({0, 3, 1, 2});
    return layer_scale_ * y + x;
  }

 private:
  torch::nn::Conv2d dwconv_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
  torch::Tensor layer_scale_;
};

class ConvNeXtImpl : public BlockListBackbone {
 public:
  ConvNeXtImpl(const ConvNeXtConfig& c, int64_t num_classes) {
    auto features = register_module("features", std::make_shared<torch::nn::Module>());
    AddBlock(*features, "0", "features.0", std::make_shared<ConvAndNorm>(3, c.dims[0], 4, /*norm_first=*/false));
    int index = 1;
    for (size_t s = 0; s < 4; ++s) {
      auto stage = features->register_module(std::to_string(index), std::make_shared<torch::nn::Module>());
      for (int64_t i = 0; i < c.depths[s]; ++i) {
        AddBlock(*stage, std::to_string(i), absl::StrCat("features.", index, ".", i), std::make_shared<CNBlock>(c.dims[s]));
      }
      ++index;
      if (s + 1 < 4) {
        AddBlock(*features, std::to_string(index), absl::StrCat("features.", index),
            std::make_shared<ConvAndNorm>(c.dims[s], c.dims[s + 1], 2, /*norm_first=*/true));
        ++index;
      }
    }
    auto classifier = register_module("classifier", std::make_shared<torch::nn::Module>());
    norm_ = classifier->register_module("0", MakeLayerNorm(c.dims[3]));
    fc_ = classifier->register_module("2", torch::nn::Linear(c.dims[3], num_classes));
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override { return fc_->forward(norm_->forward(Pool(fmap))); }

 private:
  torch::nn::LayerNorm norm_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

ConvNeXtConfig ConvNeXtSize(const std::string& size) {
  if (size == "tiny") return {{96, 192, 384, 768}, {3, 3, 9, 3}};
  if (size == "small") return {{96, 192, 384, 768}, {3, 3, 27, 3}};
  if (size == "base") return {{128, 256, 512, 1024}, {3, 3, 27, 3}};
  return {{192, 384, 768, 1536}, {3, 3, 27, 3}};
}

BackbonePtr MakeConvNeXt(const ConvNeXtConfig& config, int64_t num_classes) {
  return std::make_shared<ConvNeXtImpl>(config, num_classes);
}

}  // namespace graft::core
