#include "core/zoo/mnasnet.h"

#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include "absl/strings/str_cat.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

// _InvertedResidual: "layers" = expand 1x1, depthwise k x k, project 1x1.
class MnasResidual : public UnaryModule {
 public:
  MnasResidual(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t expand)
      : residual_(in == out && stride == 1) {
    auto layers = register_module("layers", std::make_shared<torch::nn::Module>());
    const int64_t mid = in * expand;
    int i = seq_.Add(*layers, 0, {in, mid, 1, 1, 1, true});
    i = seq_.Add(*layers, i, {mid, mid, kernel, stride, mid, true});
    seq_.Add(*layers, i, {mid, out, 1, 1, 1, false});
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor y = seq_.Forward(x);
    return residual_ ? y + x : y;
  }

 private:
  bool residual_;
  ConvBnChain seq_;
};

class MnasNetImpl : public BackboneImpl {
 public:
  MnasNetImpl(double alpha, int64_t num_classes) {
    int64_t d[8];
    const int64_t base[8] = {32, 16, 24, 40, 80, 96, 192, 320};
    for (int i = 0; i < 8; ++i) d[i] = MakeDivisible(static_cast<double>(base[i]) * alpha);
    layers_ = register_module("layers", std::make_shared<torch::nn::Module>());
    int index = stem_.Add(*layers_, 0, {3, d[0], 3, 2, 1, true});
    index = stem_.Add(*layers_, index, {d[0], d[0], 3, 1, d[0], true});
    index = stem_.Add(*layers_, index, {d[0], d[1], 1, 1, 1, false});
    blocks_.push_back({"stem", {"layers.0.", "layers.1.", "layers.3.", "layers.4.", "layers.6.", "layers.7."}});
    // (out, kernel, stride, expansion, repeats) per stack
    const int64_t stacks[6][5] = {{d[2], 3, 2, 3, 3}, {d[3], 5, 2, 3, 3}, {d[4], 5, 2, 6, 3},
                                  {d[5], 3, 1, 6, 2}, {d[6], 5, 2, 6, 4}, {d[7], 3, 1, 6, 1}};
    int64_t in = d[1];
    for (const auto& s : stacks) {
      const std::string stack = std::to_string(index++);
      auto holder = layers_->register_module(stack, std::make_shared<torch::nn::Module>());
      for (int64_t r = 0; r < s[4]; ++r) {
        units_.push_back(holder->register_module(std::to_string(r),
                                                 std::make_shared<MnasResidual>(in, s[0], s[1], r == 0 ? s[2] : 1, s[3])));
        in = s[0];
        const std::string name = absl::StrCat("layers.", stack, ".", r);
        blocks_.push_back({name, {name + "."}});
      }
    }
    head_.Add(*layers_, index, {in, 1280, 1, 1, 1, true});
    blocks_.push_back({"head", {absl::StrCat("layers.", index, "."), absl::StrCat("layers.", index + 1, ".")}});
    auto classifier = std::make_shared<torch::nn::Module>();
    dropout_ = classifier->register_module("0", torch::nn::Dropout(0.2));
    fc_ = classifier->register_module("1", torch::nn::Linear(1280, num_classes));
    register_module("classifier", classifier);
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override { return fc_->forward(dropout_->forward(Pool(fmap))); }

 protected:
  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override {
    if (i == 0) return stem_.Forward(x);
    if (i == blocks_.size() - 1) return head_.Forward(x);
    return units_[i - 1]->forward(x);
  }

 private:
  std::shared_ptr<torch::nn::Module> layers_;
  ConvBnChain stem_, head_;
  std::vector<std::shared_ptr<UnaryModule>> units_;
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

BackbonePtr MakeMnasNet(double alpha, int64_t num_classes) { return std::make_shared<MnasNetImpl>(alpha, num_classes); }

}  // namespace graft::core
