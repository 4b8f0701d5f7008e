#pragma once

// Building blocks shared by the families, registered under torchvision's
// child names ("0", "1", ...) so that state dicts load key for key.

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/zoo/backbone.h"

namespace graft::core {

// A module with a single-tensor forward, usable in a typed list.
class UnaryModule : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  // Folds this module's own eval-mode batch norms into the convolutions before
  // them (not its children's: BackboneImpl::FoldBatchNorm visits every module).
  virtual void Fold() {}
  // After Fold: this module's computation on value `input` as int8 graph
  // operations (BackboneImpl::LowerBlock); false where it has no int8 form.
  virtual bool Lower(Int8Graph& graph, int input, int* output) { return false; }
};

// Replaces `conv` (registered in `owner` as `name`) by a convolution with a
// bias that computes conv followed by eval-mode `bn`; the caller then skips bn.
void FoldBatchNorm(torch::nn::Module& owner, const std::string& name, torch::nn::Conv2d& conv,
                   const torch::nn::BatchNorm2d& bn);

enum class Activation { kNone, kReLU, kReLU6, kHardswish, kSiLU };

torch::Tensor Activate(const torch::Tensor& x, Activation act);

// torchvision's _make_divisible(v, 8) (MNASNet's _round_to_multiple_of(v, 8,
// 0.9) is the same): the nearest multiple of 8, at least 8, not below 0.9 v.
int64_t MakeDivisible(double v);

torch::nn::Conv2d MakeConv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                           int64_t padding = 0, int64_t groups = 1, bool bias = false);

// torchvision's Conv2dNormActivation: "0" conv, "1" batch norm, activation.
class ConvNormAct : public UnaryModule {
 public:
  ConvNormAct(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups,
              Activation act, double bn_eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x) override;
  void Fold() override;
  bool Lower(Int8Graph& graph, int input, int* output) override;

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
  Activation act_;
  bool folded_ = false;
};

// torchvision.ops.SqueezeExcitation: "fc1", "fc2" (1x1 convolutions with
// bias) on the pooled input, `act` between them, then a sigmoid (or hard
// sigmoid) gate scaling the input.
class SqueezeExcitation : public UnaryModule {
 public:
  SqueezeExcitation(int64_t channels, int64_t squeeze, Activation act, bool hard_gate);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  torch::nn::Conv2d fc1_{nullptr}, fc2_{nullptr};
  Activation act_;
  bool hard_gate_;
};

// A convolution whose "weight" and "bias" sit at this module's own level, for
// lists where torchvision places a bare nn.Conv2d (e.g. "features.0.weight").
class BareConv : public UnaryModule {
 public:
  BareConv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding = 0);
  torch::Tensor forward(const torch::Tensor& x) override;
  // Absorbs an eval-mode batch norm that follows it (weights scaled, bias shifted).
  void AbsorbBatchNorm(const torch::Tensor& scale, const torch::Tensor& shift);
  bool Lower(Int8Graph& graph, int input, int* output) override { return LowerWith(graph, input, Activation::kNone, output); }
  // Lowered with the activation that follows it fused.
  bool LowerWith(Int8Graph& graph, int input, Activation act, int* output);

 private:
  torch::Tensor weight_, bias_;
  int64_t stride_, padding_;
};

// A BatchNorm2d whose parameters and buffers sit at this module's own level
// ("features.1.weight", "features.1.running_mean"), for torchvision's
// nn.Sequential feature lists (VGG-BN). After the convolution before it
// absorbs it (FoldIntoPrevious), it is the identity.
class BareBatchNorm : public UnaryModule {
 public:
  explicit BareBatchNorm(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x) override;
  void FoldInto(BareConv& conv);
  bool Lower(Int8Graph& graph, int input, int* output) override;  // folded: the identity

 private:
  torch::Tensor weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
  bool folded_ = false;
};

// Convolution (no bias) + batch norm [+ ReLU] steps of a torchvision
// nn.Sequential, registered on `owner` under its indices; a ReLU takes an
// index of its own (ShuffleNetV2, MNASNet).
struct ConvBnStep {
  int64_t in, out, kernel, stride, groups;
  bool relu;
};

class ConvBnChain {
 public:
  // Registers the step at `index` on `owner`; returns the next free index.
  int Add(torch::nn::Module& owner, int index, const ConvBnStep& step);
  torch::Tensor Forward(torch::Tensor x);

 private:
  std::vector<torch::nn::Conv2d> convs_;
  std::vector<torch::nn::BatchNorm2d> bns_;
  std::vector<bool> relu_;
};

// A ConvBnChain as a module of its own (children "0", "1", ...).
class ConvBnSequence : public torch::nn::Module {
 public:
  explicit ConvBnSequence(const std::vector<ConvBnStep>& steps);
  torch::Tensor forward(const torch::Tensor& x) { return chain_.Forward(x); }

 private:
  ConvBnChain chain_;
};

// A "block" sequence of unary modules ("block.0", "block.1", …) plus the
// input when `residual`: MobileNetV3's and EfficientNet's inverted residuals.
class ResidualBlock : public UnaryModule {
 public:
  explicit ResidualBlock(bool residual);
  torch::Tensor forward(const torch::Tensor& x) override;

 protected:
  void Add(std::shared_ptr<UnaryModule> m);

 private:
  bool residual_;
  std::shared_ptr<torch::nn::Module> block_;
  std::vector<std::shared_ptr<UnaryModule>> layers_;
};

// A backbone whose blocks are unary modules run in order.
class BlockListBackbone : public BackboneImpl {
 protected:
  // Registers `m` as `child` of `parent` (this backbone or a container of
  // it) and appends it as the block `block` (its prefix "block.").
  void AddBlock(torch::nn::Module& parent, const std::string& child, const std::string& block,
                std::shared_ptr<UnaryModule> m);
  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override { return block_modules_[i]->forward(x); }
  size_t block_module_count() const { return block_modules_.size(); }

 private:
  std::vector<std::shared_ptr<UnaryModule>> block_modules_;
};

// A ReLU holding its place in a torchvision nn.Sequential (VGG, SqueezeNet).
class ReluLayer : public UnaryModule {
 public:
  torch::Tensor forward(const torch::Tensor& x) override { return torch::relu(x); }
  bool Lower(Int8Graph& graph, int input, int* output) override;
};

// nn.MaxPool2d(kernel, stride, padding, ceil_mode) in such a list.
class MaxPoolLayer : public UnaryModule {
 public:
  MaxPoolLayer(int64_t kernel, int64_t stride, int64_t padding = 0, bool ceil_mode = false)
      : kernel_(kernel), stride_(stride), padding_(padding), ceil_mode_(ceil_mode) {}
  torch::Tensor forward(const torch::Tensor& x) override;
  bool Lower(Int8Graph& graph, int input, int* output) override;

 private:
  int64_t kernel_, stride_, padding_;
  bool ceil_mode_;
};

// A parameter-free step (activation, pooling) holding its place in a list.
class LambdaModule : public UnaryModule {
 public:
  explicit LambdaModule(std::function<torch::Tensor(const torch::Tensor&)> fn) : fn_(std::move(fn)) {}
  torch::Tensor forward(const torch::Tensor& x) override { return fn_(x); }

 private:
  std::function<torch::Tensor(const torch::Tensor&)> fn_;
};

// An ordered list registered as a torch ModuleList (children "0", "1", ...)
// that keeps typed pointers for calling forward.
class UnaryList {
 public:
  UnaryList() = default;
  void Register(torch::nn::Module& parent, const std::string& name);
  void Add(std::shared_ptr<UnaryModule> m);
  size_t size() const { return items_.size(); }
  UnaryModule& operator[](size_t i) { return *items_[i]; }
  // Items [begin, end) lowered in order, a bare convolution and the ReLU
  // after it (past a folded batch norm) fused; false where one has no int8 form.
  bool Lower(size_t begin, size_t end, Int8Graph& graph, int input, int* output);

 private:
  torch::nn::ModuleList list_{nullptr};
  std::vector<std::shared_ptr<UnaryModule>> items_;
};

}  // namespace graft::core
