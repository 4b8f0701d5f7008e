#include "core/zoo/mobilenet_v2.h"

#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include "absl/strings/str_cat.h"
#include "core/zoo/int8.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

// torchvision's InvertedResidual: "conv" holds [expand ConvNormAct], depthwise
// ConvNormAct, then the projection conv and its batch norm.
class InvertedResidual : public UnaryModule {
 public:
  InvertedResidual(int64_t in, int64_t out, int64_t stride, int64_t expand_ratio)
      : use_residual_(stride == 1 && in == out) {
    const int64_t hidden = in * expand_ratio;
    auto conv = std::make_shared<torch::nn::Module>();
    int next = 0;
    if (expand_ratio != 1) {
      expand_ = conv->register_module(std::to_string(next++),
                                      std::make_shared<ConvNormAct>(in, hidden, 1, 1, 1, Activation::kReLU6));
    }
    depthwise_ = conv->register_module(
        std::to_string(next++),
        std::make_shared<ConvNormAct>(hidden, hidden, 3, stride, hidden, Activation::kReLU6));
    project_name_ = std::to_string(next++);
    project_ = conv->register_module(project_name_, MakeConv(hidden, out, 1));
    project_bn_ = conv->register_module(std::to_string(next++), torch::nn::BatchNorm2d(out));
    conv_ = register_module("conv", conv);
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor y = expand_ ? expand_->forward(x) : x;
    y = project_->forward(depthwise_->forward(y));
    if (!folded_) y = project_bn_->forward(y);
    return use_residual_ ? x + y : y;
  }

  bool Lower(Int8Graph& graph, int input, int* output) override {
    if (!folded_) return false;
    int y = input;
    if (expand_ && !expand_->Lower(graph, y, &y)) return false;
    if (!depthwise_->Lower(graph, y, &y)) return false;
    y = graph.Conv(y, project_, Activation::kNone);
    if (y < 0) return false;
    *output = use_residual_ ? graph.Add(input, y, /*relu=*/false) : y;
    return true;
  }

  void Fold() override {  // expand_ and depthwise_ fold themselves
    FoldBatchNorm(*conv_, project_name_, project_, project_bn_);
    folded_ = true;
  }

 private:
  bool use_residual_;
  bool folded_ = false;
  std::shared_ptr<torch::nn::Module> conv_;
  std::string project_name_;
  std::shared_ptr<ConvNormAct> expand_, depthwise_;
  torch::nn::Conv2d project_{nullptr};
  torch::nn::BatchNorm2d project_bn_{nullptr};
};

class MobileNetV2Impl : public BackboneImpl {
 public:
  explicit MobileNetV2Impl(int64_t num_classes) {
    features_.Register(*this, "features");
    features_.Add(std::make_shared<ConvNormAct>(3, 32, 3, 2, 1, Activation::kReLU6));
    // expand ratio t, channels c, repeats n, first stride s
    const int64_t settings[7][4] = {{1, 16, 1, 1},  {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                    {6, 96, 3, 1},  {6, 160, 3, 2}, {6, 320, 1, 1}};
    int64_t in = 32;
    for (const auto& s : settings) {
      for (int64_t i = 0; i < s[2]; ++i) {
        features_.Add(std::make_shared<InvertedResidual>(in, s[1], i == 0 ? s[3] : 1, s[0]));
        in = s[1];
      }
    }
    features_.Add(std::make_shared<ConvNormAct>(in, 1280, 1, 1, 1, Activation::kReLU6));
    for (size_t i = 0; i < features_.size(); ++i) {
      const std::string name = absl::StrCat("features.", i);
      blocks_.push_back({name, {name + "."}});
    }
    auto classifier = std::make_shared<torch::nn::Module>();
    dropout_ = classifier->register_module("0", torch::nn::Dropout(0.2));
    fc_ = classifier->register_module("1", torch::nn::Linear(1280, num_classes));
    register_module("classifier", classifier);
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override {
    return fc_->forward(dropout_->forward(Pool(fmap)));
  }

 protected:
  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override { return features_[i].forward(x); }
  bool LowerBlock(size_t i, Int8Graph& graph, int input, int* output) override {
    return features_[i].Lower(graph, input, output);
  }

 private:
  UnaryList features_;
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

BackbonePtr MakeMobileNetV2(int64_t num_classes) { return std::make_shared<MobileNetV2Impl>(num_classes); }

}  // namespace graft::core
