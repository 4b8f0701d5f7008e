#include "core/zoo/densenet.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/linear.h>

#include <regex>

#include "absl/strings/str_cat.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

namespace F = torch::nn::functional;

// norm1, relu, conv1 (1x1), norm2, relu, conv2 (3x3): growth_rate new
// channels, appended to its input.
class DenseLayer : public UnaryModule {
 public:
  DenseLayer(int64_t in, int64_t growth, int64_t bn_size) {
    norm1_ = register_module("norm1", torch::nn::BatchNorm2d(in));
    conv1_ = register_module("conv1", MakeConv(in, bn_size * growth, 1));
    norm2_ = register_module("norm2", torch::nn::BatchNorm2d(bn_size * growth));
    conv2_ = register_module("conv2", MakeConv(bn_size * growth, growth, 3, 1, 1));
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor y = conv1_->forward(torch::relu(norm1_->forward(x)));
    y = conv2_->forward(torch::relu(folded_ ? y : norm2_->forward(y)));
    return torch::cat({x, y}, 1);
  }

  void Fold() override {
    FoldBatchNorm(*this, "conv1", conv1_, norm2_);
    folded_ = true;
  }

 private:
  torch::nn::BatchNorm2d norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  bool folded_ = false;
};

// norm, relu, conv (1x1, halving the channels), 2x2 average pool.
class Transition : public UnaryModule {
 public:
  Transition(int64_t in, int64_t out) {
    norm_ = register_module("norm", torch::nn::BatchNorm2d(in));
    conv_ = register_module("conv", MakeConv(in, out, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return F::avg_pool2d(conv_->forward(torch::relu(norm_->forward(x))), F::AvgPool2dFuncOptions(2).stride(2));
  }

 private:
  torch::nn::BatchNorm2d norm_{nullptr};
  torch::nn::Conv2d conv_{nullptr};
};

class DenseNetImpl : public BackboneImpl {
 public:
  explicit DenseNetImpl(const DenseNetConfig& c) {
    features_ = register_module("features", std::make_shared<torch::nn::Module>());
    conv0_ = features_->register_module("conv0", MakeConv(3, c.num_init_features, 7, 2, 3));
    norm0_ = features_->register_module("norm0", torch::nn::BatchNorm2d(c.num_init_features));
    blocks_.push_back({"stem", {"features.conv0.", "features.norm0."}});
    layers_.push_back(nullptr);
    int64_t channels = c.num_init_features;
    for (size_t b = 0; b < c.block_config.size(); ++b) {
      const std::string block = absl::StrCat("denseblock", b + 1);
      auto holder = features_->register_module(block, std::make_shared<torch::nn::Module>());
      for (int64_t l = 0; l < c.block_config[b]; ++l) {
        const std::string layer = absl::StrCat("denselayer", l + 1);
        layers_.push_back(holder->register_module(layer, std::make_shared<DenseLayer>(channels, c.growth_rate, c.bn_size)));
        blocks_.push_back({block + "." + layer, {absl::StrCat("features.", block, ".", layer, ".")}});
        channels += c.growth_rate;
      }
      if (b + 1 < c.block_config.size()) {
        const std::string name = absl::StrCat("transition", b + 1);
        layers_.push_back(features_->register_module(name, std::make_shared<Transition>(channels, channels / 2)));
        blocks_.push_back({name, {"features." + name + "."}});
        channels /= 2;
      }
    }
    norm5_ = features_->register_module("norm5", torch::nn::BatchNorm2d(channels));
    blocks_.push_back({"norm5", {"features.norm5."}});
    classifier_ = register_module("classifier", torch::nn::Linear(channels, c.num_classes));
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override { return classifier_->forward(Pool(fmap)); }

 protected:
  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override {
    if (i == 0) {
      const torch::Tensor y = conv0_->forward(x);
      return F::max_pool2d(torch::relu(stem_folded_ ? y : norm0_->forward(y)),
                           F::MaxPool2dFuncOptions(3).stride(2).padding(1));
    }
    if (i == blocks_.size() - 1) return torch::relu(norm5_->forward(x));
    return layers_[i]->forward(x);
  }

  void FoldOwn() override {
    graft::core::FoldBatchNorm(*features_, "conv0", conv0_, norm0_);
    stem_folded_ = true;
  }

 private:
  std::shared_ptr<torch::nn::Module> features_;
  torch::nn::Conv2d conv0_{nullptr};
  torch::nn::BatchNorm2d norm0_{nullptr}, norm5_{nullptr};
  std::vector<std::shared_ptr<UnaryModule>> layers_;  // by block index; [0] is the stem
  torch::nn::Linear classifier_{nullptr};
  bool stem_folded_ = false;
};

}  // namespace

BackbonePtr MakeDenseNet(const DenseNetConfig& config) { return std::make_shared<DenseNetImpl>(config); }

std::string DenseNetKey(const std::string& key) {
  static const std::regex kOld(R"(^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$)");
  std::smatch m;
  if (!std::regex_match(key, m, kOld)) return key;
  return m[1].str() + m[2].str();
}

}  // namespace graft::core
