#include "core/zoo/shufflenet.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/linear.h>

#include "absl/strings/str_cat.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

namespace F = torch::nn::functional;

class ShuffleUnit : public UnaryModule {
 public:
  ShuffleUnit(int64_t in, int64_t out, int64_t stride) : stride_(stride) {
    const int64_t half = out / 2;
    if (stride > 1) {
      branch1_ = register_module("branch1", std::make_shared<ConvBnSequence>(std::vector<ConvBnStep>{
                                                {in, in, 3, stride, in, false}, {in, half, 1, 1, 1, true}}));
    }
    branch2_ = register_module("branch2", std::make_shared<ConvBnSequence>(std::vector<ConvBnStep>{
                                              {stride > 1 ? in : half, half, 1, 1, 1, true},
                                              {half, half, 3, stride, half, false},
                                              {half, half, 1, 1, 1, true}}));
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor out;
    if (stride_ == 1) {
      const auto halves = x.chunk(2, 1);
      out = torch::cat({halves[0], branch2_->forward(halves[1])}, 1);
    } else {
      out = torch::cat({branch1_->forward(x), branch2_->forward(x)}, 1);
    }
    // channel shuffle, 2 groups
    const auto s = out.sizes();
    return out.view({s[0], 2, s[1] / 2, s[2], s[3]}).transpose(1, 2).contiguous().view({s[0], -1, s[2], s[3]});
  }

 private:
  int64_t stride_;
  std::shared_ptr<ConvBnSequence> branch1_, branch2_;
};

class ShuffleNetV2Impl : public BackboneImpl {
 public:
  ShuffleNetV2Impl(const std::array<int64_t, 5>& out, int64_t num_classes) {
    conv1_ = register_module("conv1", std::make_shared<ConvBnSequence>(
                                          std::vector<ConvBnStep>{{3, out[0], 3, 2, 1, true}}));
    blocks_.push_back({"stem", {"conv1."}});
    units_.push_back(nullptr);
    const int64_t repeats[3] = {4, 8, 4};
    int64_t in = out[0];
    for (int s = 0; s < 3; ++s) {
      const std::string stage = absl::StrCat("stage", s + 2);
      UnaryList& list = stages_[static_cast<size_t>(s)];
      list.Register(*this, stage);
      for (int64_t i = 0; i < repeats[s]; ++i) {
        auto unit = std::make_shared<ShuffleUnit>(in, out[static_cast<size_t>(s) + 1], i == 0 ? 2 : 1);
        list.Add(unit);
        units_.push_back(unit);
        in = out[static_cast<size_t>(s) + 1];
        const std::string name = absl::StrCat(stage, ".", i);
        blocks_.push_back({name, {name + "."}});
      }
    }
    conv5_ = register_module("conv5", std::make_shared<ConvBnSequence>(
                                          std::vector<ConvBnStep>{{in, out[4], 1, 1, 1, true}}));
    blocks_.push_back({"conv5", {"conv5."}});
    fc_ = register_module("fc", torch::nn::Linear(out[4], num_classes));
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override { return fc_->forward(Pool(fmap)); }

 protected:
  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override {
    if (i == 0) return F::max_pool2d(conv1_->forward(x), F::MaxPool2dFuncOptions(3).stride(2).padding(1));
    if (i == blocks_.size() - 1) return conv5_->forward(x);
    return units_[i]->forward(x);
  }

 private:
  std::shared_ptr<ConvBnSequence> conv1_, conv5_;
  std::array<UnaryList, 3> stages_;
  std::vector<std::shared_ptr<UnaryModule>> units_;  // by block index; [0] is the stem
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

BackbonePtr MakeShuffleNetV2(const std::array<int64_t, 5>& out, int64_t num_classes) {
  return std::make_shared<ShuffleNetV2Impl>(out, num_classes);
}

}  // namespace graft::core
