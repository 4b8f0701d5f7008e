#include "core/zoo/vgg.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/container/functional.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include "absl/strings/str_cat.h"
#include "core/zoo/int8.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

namespace F = torch::nn::functional;

std::shared_ptr<UnaryModule> Relu() { return std::make_shared<ReluLayer>(); }

std::shared_ptr<UnaryModule> MaxPool(int64_t kernel, int64_t stride) { return std::make_shared<MaxPoolLayer>(kernel, stride); }

// features (a UnaryList under torchvision's indices), split into blocks by
// index ranges; avgpool to `pool` x `pool`; a classifier of three Linears
// with ReLU and dropout, in torchvision's order: VGG "0/3/6" (Linear, ReLU,
// Dropout, ...), AlexNet "1/4/6" (Dropout, Linear, ReLU, ...).
class SequentialConvNet : public BackboneImpl {
 public:
  SequentialConvNet(int64_t channels, int64_t pool, int64_t num_classes, bool dropout_first) : pool_(pool) {
    features_.Register(*this, "features");
    torch::nn::Sequential c;
    const auto relu = [] { return torch::nn::Functional([](const torch::Tensor& x) { return torch::relu(x); }); };
    if (dropout_first) {
      c->push_back(torch::nn::Dropout(0.5));
      c->push_back(torch::nn::Linear(channels * pool * pool, 4096));
      c->push_back(relu());
      c->push_back(torch::nn::Dropout(0.5));
      c->push_back(torch::nn::Linear(4096, 4096));
      c->push_back(relu());
    } else {
      c->push_back(torch::nn::Linear(channels * pool * pool, 4096));
      c->push_back(relu());
      c->push_back(torch::nn::Dropout(0.5));
      c->push_back(torch::nn::Linear(4096, 4096));
      c->push_back(relu());
      c->push_back(torch::nn::Dropout(0.5));
    }
    c->push_back(torch::nn::Linear(4096, num_classes));
    classifier_ = register_module("classifier", c);
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override {
    return classifier_->forward(F::adaptive_avg_pool2d(fmap, F::AdaptiveAvgPool2dFuncOptions(pool_)).flatten(1));
  }

 protected:
  // Appends modules to features; a block ends where EndBlock is called.
  void Add(std::shared_ptr<UnaryModule> m) { features_.Add(std::move(m)); }
  void EndBlock(const std::string& name) {
    std::vector<std::string> prefixes;
    for (size_t i = block_start_; i < features_.size(); ++i) {
      if (!features_[i].parameters(/*recurse=*/false).empty()) prefixes.push_back(absl::StrCat("features.", i, "."));
    }
    blocks_.push_back({name, prefixes});
    ranges_.emplace_back(block_start_, features_.size());
    block_start_ = features_.size();
  }

  torch::Tensor ForwardBlock(size_t index, const torch::Tensor& x) override {
    torch::Tensor y = x;
    for (size_t i = ranges_[index].first; i < ranges_[index].second; ++i) y = features_[i].forward(y);
    return y;
  }
  bool LowerBlock(size_t index, Int8Graph& graph, int input, int* output) override {
    return features_.Lower(ranges_[index].first, ranges_[index].second, graph, input, output);
  }

  void FoldOwn() override {
    for (size_t i = 1; i < features_.size(); ++i) {
      auto* bn = dynamic_cast<BareBatchNorm*>(&features_[i]);
      auto* conv = dynamic_cast<BareConv*>(&features_[i - 1]);
      if (bn != nullptr && conv != nullptr) bn->FoldInto(*conv);
    }
  }

 private:
  UnaryList features_;
  std::vector<std::pair<size_t, size_t>> ranges_;
  size_t block_start_ = 0;
  int64_t pool_;
  torch::nn::Sequential classifier_{nullptr};

};

class VggImpl : public SequentialConvNet {
 public:
  VggImpl(const std::vector<int>& layers, bool batch_norm, int64_t num_classes)
      : SequentialConvNet(512, 7, num_classes, /*dropout_first=*/false) {
    int64_t in = 3;
    int block = 1;
    for (int v : layers) {
      if (v == 0) {
        Add(MaxPool(2, 2));
        EndBlock(absl::StrCat("block", block++));
        continue;
      }
      Add(std::make_shared<BareConv>(in, v, 3, 1, 1));
      if (batch_norm) Add(std::make_shared<BareBatchNorm>(v));
      Add(Relu());
      in = v;
    }
  }
};

class AlexNetImpl : public SequentialConvNet {
 public:
  explicit AlexNetImpl(int64_t num_classes) : SequentialConvNet(256, 6, num_classes, /*dropout_first=*/true) {
    Add(std::make_shared<BareConv>(3, 64, 11, 4, 2));
    Add(Relu());
    Add(MaxPool(3, 2));
    EndBlock("conv1");
    Add(std::make_shared<BareConv>(64, 192, 5, 1, 2));
    Add(Relu());
    Add(MaxPool(3, 2));
    EndBlock("conv2");
    Add(std::make_shared<BareConv>(192, 384, 3, 1, 1));
    Add(Relu());
    EndBlock("conv3");
    Add(std::make_shared<BareConv>(384, 256, 3, 1, 1));
    Add(Relu());
    EndBlock("conv4");
    Add(std::make_shared<BareConv>(256, 256, 3, 1, 1));
    Add(Relu());
    Add(MaxPool(3, 2));
    EndBlock("conv5");
  }
};

}  // namespace

std::vector<int> VggLayers(int depth) {
  switch (depth) {
    case 11: return {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
    case 13: return {64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
    case 16: return {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0};
    default: return {64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0};
  }
}

BackbonePtr MakeVgg(const std::vector<int>& layers, bool batch_norm, int64_t num_classes) {
  return std::make_shared<VggImpl>(layers, batch_norm, num_classes);
}

BackbonePtr MakeAlexNet(int64_t num_classes) { return std::make_shared<AlexNetImpl>(num_classes); }

}  // namespace graft::core
