#include "core/zoo/resnet.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/linear.h>

#include "absl/strings/str_cat.h"
#include "core/zoo/int8.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

namespace F = torch::nn::functional;

// conv1/bn1/conv2/bn2[/conv3/bn3] with an optional "downsample" (0 conv, 1 bn).
class ResidualBlock : public UnaryModule {
 public:
  ResidualBlock(bool bottleneck, int64_t in, int64_t planes, int64_t stride, int64_t groups,
                int64_t base_width)
      : bottleneck_(bottleneck) {
    const int64_t expansion = bottleneck ? 4 : 1;
    if (bottleneck) {
      const int64_t width = planes * base_width / 64 * groups;
      conv1_ = register_module("conv1", MakeConv(in, width, 1));
      bn1_ = register_module("bn1", torch::nn::BatchNorm2d(width));
      conv2_ = register_module("conv2", MakeConv(width, width, 3, stride, 1, groups));
      bn2_ = register_module("bn2", torch::nn::BatchNorm2d(width));
      conv3_ = register_module("conv3", MakeConv(width, planes * expansion, 1));
      bn3_ = register_module("bn3", torch::nn::BatchNorm2d(planes * expansion));
    } else {
      conv1_ = register_module("conv1", MakeConv(in, planes, 3, stride, 1));
      bn1_ = register_module("bn1", torch::nn::BatchNorm2d(planes));
      conv2_ = register_module("conv2", MakeConv(planes, planes, 3, 1, 1));
      bn2_ = register_module("bn2", torch::nn::BatchNorm2d(planes));
    }
    if (stride != 1 || in != planes * expansion) {
      down_ = std::make_shared<torch::nn::Module>();
      down_conv_ = down_->register_module("0", MakeConv(in, planes * expansion, 1, stride));
      down_bn_ = down_->register_module("1", torch::nn::BatchNorm2d(planes * expansion));
      register_module("downsample", down_);
    }
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor out = torch::relu(Bn(bn1_, conv1_->forward(x)));
    out = Bn(bn2_, conv2_->forward(out));
    if (bottleneck_) out = Bn(bn3_, conv3_->forward(torch::relu(out)));
    const torch::Tensor identity = down_conv_ ? Bn(down_bn_, down_conv_->forward(x)) : x;
    return torch::relu(out + identity);
  }

  bool Lower(Int8Graph& graph, int input, int* output) override {
    if (!folded_) return false;
    int out = graph.Conv(input, conv1_, Activation::kReLU);
    out = graph.Conv(out, conv2_, bottleneck_ ? Activation::kReLU : Activation::kNone);
    if (bottleneck_) out = graph.Conv(out, conv3_, Activation::kNone);
    const int identity = down_conv_ ? graph.Conv(input, down_conv_, Activation::kNone) : input;
    if (out < 0 || identity < 0) return false;
    *output = graph.Add(out, identity, /*relu=*/true);
    return true;
  }

  void Fold() override {
    FoldBatchNorm(*this, "conv1", conv1_, bn1_);
    FoldBatchNorm(*this, "conv2", conv2_, bn2_);
    if (bottleneck_) FoldBatchNorm(*this, "conv3", conv3_, bn3_);
    if (down_conv_) FoldBatchNorm(*down_, "0", down_conv_, down_bn_);
    folded_ = true;
  }

 private:
  torch::Tensor Bn(torch::nn::BatchNorm2d& bn, const torch::Tensor& x) { return folded_ ? x : bn->forward(x); }

  bool bottleneck_;
  bool folded_ = false;
  std::shared_ptr<torch::nn::Module> down_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr}, down_conv_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr}, down_bn_{nullptr};
};

class ResNetImpl : public BackboneImpl {
 public:
  explicit ResNetImpl(const ResNetConfig& c) {
    conv1_ = register_module("conv1", MakeConv(3, 64, 7, 2, 3));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(64));
    blocks_.push_back({"stem", {"conv1.", "bn1."}});
    const int64_t expansion = c.bottleneck ? 4 : 1;
    int64_t in = 64;
    for (int stage = 0; stage < 4; ++stage) {
      const int64_t planes = 64 << stage;
      const std::string layer = absl::StrCat("layer", stage + 1);
      UnaryList& list = layers_[stage];
      list.Register(*this, layer);
      for (int64_t b = 0; b < c.layers[stage]; ++b) {
        const int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
        list.Add(std::make_shared<ResidualBlock>(c.bottleneck, in, planes, stride, c.groups,
                                                 c.width_per_group));
        in = planes * expansion;
        const std::string name = absl::StrCat(layer, ".", b);
        blocks_.push_back({name, {name + "."}});
        block_index_.emplace_back(stage, b);
      }
    }
    fc_ = register_module("fc", torch::nn::Linear(in, c.num_classes));
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override { return fc_->forward(Pool(fmap)); }

 protected:
  void FoldOwn() override {
    graft::core::FoldBatchNorm(*this, "conv1", conv1_, bn1_);
    stem_folded_ = true;
  }

  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override {
    if (i == 0) {
      const torch::Tensor y = conv1_->forward(x);
      return F::max_pool2d(torch::relu(stem_folded_ ? y : bn1_->forward(y)),
                           F::MaxPool2dFuncOptions(3).stride(2).padding(1));
    }
    const auto [stage, b] = block_index_[i - 1];
    return layers_[stage][b].forward(x);
  }

  bool LowerBlock(size_t i, Int8Graph& graph, int input, int* output) override {
    if (i == 0) {
      if (!stem_folded_) return false;
      *output = graph.MaxPool(graph.Conv(input, conv1_, Activation::kReLU), 3, 2, 1);
      return true;
    }
    const auto [stage, b] = block_index_[i - 1];
    return layers_[stage][b].Lower(graph, input, output);
  }

 private:
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  bool stem_folded_ = false;
  std::array<UnaryList, 4> layers_;
  std::vector<std::pair<int, int64_t>> block_index_;
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

BackbonePtr MakeResNet(const ResNetConfig& config) { return std::make_shared<ResNetImpl>(config); }

}  // namespace graft::core
