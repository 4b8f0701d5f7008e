#include "core/zoo/squeezenet.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/dropout.h>

#include "absl/strings/str_cat.h"
#include "core/zoo/int8.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

namespace F = torch::nn::functional;

class Fire : public UnaryModule {
 public:
  Fire(int64_t in, int64_t squeeze, int64_t e1, int64_t e3) {
    squeeze_ = register_module("squeeze", MakeConv(in, squeeze, 1, 1, 0, 1, true));
    expand1x1_ = register_module("expand1x1", MakeConv(squeeze, e1, 1, 1, 0, 1, true));
    expand3x3_ = register_module("expand3x3", MakeConv(squeeze, e3, 3, 1, 1, 1, true));
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor s = torch::relu(squeeze_->forward(x));
    return torch::cat({torch::relu(expand1x1_->forward(s)), torch::relu(expand3x3_->forward(s))}, 1);
  }
  bool Lower(Int8Graph& graph, int input, int* output) override {
    const int s = graph.Conv(input, squeeze_, Activation::kReLU);
    if (s < 0) return false;
    const int a = graph.Conv(s, expand1x1_, Activation::kReLU), b = graph.Conv(s, expand3x3_, Activation::kReLU);
    if (a < 0 || b < 0) return false;
    *output = graph.Cat({a, b});
    return true;
  }

 private:
  torch::nn::Conv2d squeeze_{nullptr}, expand1x1_{nullptr}, expand3x3_{nullptr};
};

std::shared_ptr<UnaryModule> MaxPoolCeil() { return std::make_shared<MaxPoolLayer>(3, 2, 0, /*ceil_mode=*/true); }

class SqueezeNetImpl : public BackboneImpl {
 public:
  SqueezeNetImpl(bool v1_1, int64_t num_classes) {
    features_.Register(*this, "features");
    struct FireCfg { int64_t in, s, e1, e3; };  // in == 0 marks a max-pool
    // features.0 is a bare conv: torchvision names it "features.0.weight".
    features_.Add(std::make_shared<BareConv>(3, v1_1 ? 64 : 96, v1_1 ? 3 : 7, 2));
    features_.Add(std::make_shared<ReluLayer>());
    features_.Add(MaxPoolCeil());
    const std::vector<FireCfg> fires =
        v1_1 ? std::vector<FireCfg>{{64, 16, 64, 64}, {128, 16, 64, 64}, {0, 0, 0, 0},
                                    {128, 32, 128, 128}, {256, 32, 128, 128}, {0, 0, 0, 0},
                                    {256, 48, 192, 192}, {384, 48, 192, 192}, {384, 64, 256, 256},
                                    {512, 64, 256, 256}}
             : std::vector<FireCfg>{{96, 16, 64, 64}, {128, 16, 64, 64}, {128, 32, 128, 128},
                                    {0, 0, 0, 0}, {256, 32, 128, 128}, {256, 48, 192, 192},
                                    {384, 48, 192, 192}, {384, 64, 256, 256}, {0, 0, 0, 0},
                                    {512, 64, 256, 256}};
    blocks_.push_back({"stem", {"features.0."}});
    ranges_.emplace_back(0, 3);
    size_t block_start = 3;
    for (const FireCfg& f : fires) {
      if (f.in == 0) {
        features_.Add(MaxPoolCeil());
        continue;
      }
      features_.Add(std::make_shared<Fire>(f.in, f.s, f.e1, f.e3));
      const size_t index = features_.size() - 1;
      const std::string name = absl::StrCat("features.", index);
      blocks_.push_back({name, {name + "."}});
      ranges_.emplace_back(block_start, index + 1);
      block_start = index + 1;
    }
    auto classifier = std::make_shared<torch::nn::Module>();
    dropout_ = classifier->register_module("0", torch::nn::Dropout(0.5));
    final_conv_ = classifier->register_module("1", MakeConv(512, num_classes, 1, 1, 0, 1, true));
    register_module("classifier", classifier);
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override {
    return Pool(torch::relu(final_conv_->forward(dropout_->forward(fmap))));
  }

 protected:
  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override {
    torch::Tensor y = x;
    for (size_t j = ranges_[i].first; j < ranges_[i].second; ++j) y = features_[j].forward(y);
    return y;
  }
  bool LowerBlock(size_t i, Int8Graph& graph, int input, int* output) override {
    return features_.Lower(ranges_[i].first, ranges_[i].second, graph, input, output);
  }

 private:
  UnaryList features_;
  std::vector<std::pair<size_t, size_t>> ranges_;
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Conv2d final_conv_{nullptr};
};

}  // namespace

BackbonePtr MakeSqueezeNet(bool v1_1, int64_t num_classes) {
  return std::make_shared<SqueezeNetImpl>(v1_1, num_classes);
}

}  // namespace graft::core
