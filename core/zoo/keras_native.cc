#include "core/zoo/keras_native.h"
#include "core/util/torch_compat.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/linear.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

namespace F = torch::nn::functional;

torch::nn::BatchNorm2d MakeBn(int64_t channels, double eps = 1e-5) {
  return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels).eps(eps));
}

// ---- Xception (timm legacy_xception) ----

// SeparableConv2d: depthwise "conv1" then "pointwise", no biases.
class SeparableConv : public torch::nn::Module {
 public:
  SeparableConv(int64_t in, int64_t out) {
    depthwise_ = register_module("conv1", MakeConv(in, in, 3, 1, 1, in));
    pointwise_ = register_module("pointwise", MakeConv(in, out, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) { return pointwise_->forward(depthwise_->forward(x)); }
  void FoldBn(const torch::nn::BatchNorm2d& bn) { FoldBatchNorm(*this, "pointwise", pointwise_, bn); }

 private:
  torch::nn::Conv2d depthwise_{nullptr}, pointwise_{nullptr};
};

// Block: "rep" = [ReLU] SeparableConv, BatchNorm, … [MaxPool]; "skip" +
// "skipbn" where the shape changes; the sum is not activated.
class XceptionBlock : public UnaryModule {
 public:
  XceptionBlock(int64_t in, int64_t out, int reps, int64_t stride, bool start_with_relu, bool grow_first)
      : stride_(stride), start_with_relu_(start_with_relu) {
    if (in != out || stride != 1) {
      skip_ = register_module("skip", MakeConv(in, out, 1, stride));
      skipbn_ = register_module("skipbn", MakeBn(out));
    }
    auto rep = register_module("rep", std::make_shared<torch::nn::Module>());
    int index = start_with_relu ? 1 : 0;  // a ReLU takes index 0
    for (int i = 0; i < reps; ++i) {
      const int64_t a = grow_first ? (i == 0 ? in : out) : in;
      const int64_t b = grow_first ? out : (i < reps - 1 ? in : out);
      seps_.push_back(rep->register_module(std::to_string(index), std::make_shared<SeparableConv>(a, b)));
      bns_.push_back(rep->register_module(std::to_string(index + 1), MakeBn(b)));
      index += 3;  // sep, bn, next ReLU
    }
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor y = x;
    for (size_t i = 0; i < seps_.size(); ++i) {
      if (i > 0 || start_with_relu_) y = torch::relu(y);
      y = seps_[i]->forward(y);
      if (!folded_) y = bns_[i]->forward(y);
    }
    if (stride_ != 1) y = F::max_pool2d(y, F::MaxPool2dFuncOptions(3).stride(stride_).padding(1));
    if (!skip_) return y + x;
    const torch::Tensor s = skip_->forward(x);
    return y + (folded_ ? s : skipbn_->forward(s));
  }

  void Fold() override {
    for (size_t i = 0; i < seps_.size(); ++i) seps_[i]->FoldBn(bns_[i]);
    if (skip_) FoldBatchNorm(*this, "skip", skip_, skipbn_);
    folded_ = true;
  }

 private:
  int64_t stride_;
  bool start_with_relu_;
  bool folded_ = false;
  torch::nn::Conv2d skip_{nullptr};
  torch::nn::BatchNorm2d skipbn_{nullptr};
  std::vector<std::shared_ptr<SeparableConv>> seps_;
  std::vector<torch::nn::BatchNorm2d> bns_;
};

class XceptionImpl : public BackboneImpl {
 public:
  explicit XceptionImpl(int64_t num_classes) {
    conv1_ = register_module("conv1", MakeConv(3, 32, 3, 2));
    bn1_ = register_module("bn1", MakeBn(32));
    conv2_ = register_module("conv2", MakeConv(32, 64, 3));
    bn2_ = register_module("bn2", MakeBn(64));
    blocks_.push_back({"stem", {"conv1.", "bn1.", "conv2.", "bn2."}});
    auto add = [&](int n, int64_t in, int64_t out, int reps, int64_t stride, bool relu_first, bool grow_first) {
      const std::string name = absl::StrCat("block", n);
      middle_.push_back(register_module(name, std::make_shared<XceptionBlock>(in, out, reps, stride, relu_first, grow_first)));
      blocks_.push_back({name, {name + "."}});
    };
    add(1, 64, 128, 2, 2, false, true);
    add(2, 128, 256, 2, 2, true, true);
    add(3, 256, 728, 2, 2, true, true);
    for (int n = 4; n <= 11; ++n) add(n, 728, 728, 3, 1, true, true);
    add(12, 728, 1024, 2, 2, true, false);
    conv3_ = register_module("conv3", std::make_shared<SeparableConv>(1024, 1536));
    bn3_ = register_module("bn3", MakeBn(1536));
    conv4_ = register_module("conv4", std::make_shared<SeparableConv>(1536, 2048));
    bn4_ = register_module("bn4", MakeBn(2048));
    blocks_.push_back({"exit", {"conv3.", "bn3.", "conv4.", "bn4."}});
    fc_ = register_module("fc", torch::nn::Linear(2048, num_classes));
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override { return fc_->forward(Pool(fmap)); }

 protected:
  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override {
    auto bn = [&](torch::nn::BatchNorm2d& b, const torch::Tensor& y) { return folded_ ? y : b->forward(y); };
    if (i == 0) {
      const torch::Tensor y = torch::relu(bn(bn1_, conv1_->forward(x)));
      return torch::relu(bn(bn2_, conv2_->forward(y)));
    }
    if (i <= middle_.size()) return middle_[i - 1]->forward(x);
    const torch::Tensor y = torch::relu(bn(bn3_, conv3_->forward(x)));
    return torch::relu(bn(bn4_, conv4_->forward(y)));
  }

  void FoldOwn() override {
    core::FoldBatchNorm(*this, "conv1", conv1_, bn1_);
    core::FoldBatchNorm(*this, "conv2", conv2_, bn2_);
    conv3_->FoldBn(bn3_);
    conv4_->FoldBn(bn4_);
    folded_ = true;
  }

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr}, bn4_{nullptr};
  std::shared_ptr<SeparableConv> conv3_, conv4_;
  std::vector<std::shared_ptr<XceptionBlock>> middle_;
  torch::nn::Linear fc_{nullptr};
  bool folded_ = false;
};

// ---- Inception-ResNet-v2 (timm inception_resnet_v2) ----

// Batch norm without a scale (Keras's scale=False): "bias" and the running
// statistics.
class ShiftNorm : public torch::nn::Module {
 public:
  explicit ShiftNorm(int64_t channels) {
    bias_ = register_parameter("bias", torch::zeros({channels}));
    mean_ = register_buffer("running_mean", torch::zeros({channels}));
    var_ = register_buffer("running_var", torch::ones({channels}));
    register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
  }
  // Training mode uses batch statistics, as BatchNorm2d does (no momentum
  // update: graft never trains a frozen-statistics layer through it).
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::batch_norm(x, {}, bias_, mean_, var_, is_training(), 0.1, kEps, /*cudnn_enabled=*/true);
  }
  std::pair<torch::Tensor, torch::Tensor> ScaleShift() const {
    const torch::Tensor scale = 1.0 / torch::sqrt(var_ + kEps);
    return {scale, bias_ - mean_ * scale};
  }
  static constexpr double kEps = 1e-3;

 private:
  torch::Tensor bias_, mean_, var_;
};

// BasicConv2d: "conv" (no bias), "bn" (no scale), ReLU.
class IrConv : public UnaryModule {
 public:
  IrConv(int64_t in, int64_t out, std::array<int64_t, 2> kernel, int64_t stride = 1, std::array<int64_t, 2> padding = {0, 0}) {
    conv_ = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, {kernel[0], kernel[1]})
                                                          .stride(stride)
                                                          .padding(torch::ExpandingArray<2>({padding[0], padding[1]}))
                                                          .bias(false)));
    bn_ = register_module("bn", std::make_shared<ShiftNorm>(out));
  }
  IrConv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0)
      : IrConv(in, out, {kernel, kernel}, stride, {padding, padding}) {}
  torch::Tensor forward(const torch::Tensor& x) override {
    if (folded_) {
      const auto& o = conv_->options;
      return torch::relu(torch::conv2d(x, weight_, bias_, o.stride(), compat::Get<torch::ExpandingArray<2>>(o.padding())));
    }
    return torch::relu(bn_->forward(conv_->forward(x)));
  }
  void Fold() override {
    torch::NoGradGuard no_grad;
    const auto [scale, shift] = bn_->ScaleShift();
    // Buffers, so that the inference copy's move to its device takes them along.
    weight_ = register_buffer("folded_weight", conv_->weight * scale.reshape({-1, 1, 1, 1}));
    bias_ = register_buffer("folded_bias", shift);
    folded_ = true;
  }

 private:
  torch::nn::Conv2d conv_{nullptr};
  std::shared_ptr<ShiftNorm> bn_;
  torch::Tensor weight_, bias_;
  bool folded_ = false;
};

using Ir = std::shared_ptr<IrConv>;

// Branches: "branchN" is one IrConv or a sequence ("branchN.0", …), a pool
// optionally first (its index 0). Output: the branches concatenated.
class IrBranches : public UnaryModule {
 public:
  enum class Pool { kNone, kAvg3, kMax3s2 };

 protected:
  void Branch(int n, std::vector<Ir> convs, Pool pool = Pool::kNone) {
    const std::string name = absl::StrCat("branch", n);
    if (convs.size() == 1 && pool == Pool::kNone) {
      register_module(name, convs[0]);
    } else if (!convs.empty()) {
      auto seq = register_module(name, std::make_shared<torch::nn::Module>());
      const int first = pool == Pool::kNone ? 0 : 1;
      for (size_t i = 0; i < convs.size(); ++i) seq->register_module(std::to_string(first + static_cast<int>(i)), convs[i]);
    }
    branches_.push_back({std::move(convs), pool});
  }
  torch::Tensor Concat(const torch::Tensor& x) {
    std::vector<torch::Tensor> outs;
    for (auto& [convs, pool] : branches_) {
      torch::Tensor y = x;
      if (pool == Pool::kAvg3) {
        y = F::avg_pool2d(y, F::AvgPool2dFuncOptions(3).stride(1).padding(1).count_include_pad(false));
      } else if (pool == Pool::kMax3s2) {
        y = F::max_pool2d(y, F::MaxPool2dFuncOptions(3).stride(2));
      }
      for (auto& c : convs) y = c->forward(y);
      outs.push_back(y);
    }
    return torch::cat(outs, 1);
  }
  static Ir C(int64_t in, int64_t out, int64_t k, int64_t s = 1, int64_t p = 0) { return std::make_shared<IrConv>(in, out, k, s, p); }
  static Ir C(int64_t in, int64_t out, std::array<int64_t, 2> k, std::array<int64_t, 2> p) {
    return std::make_shared<IrConv>(in, out, k, 1, p);
  }

 private:
  std::vector<std::pair<std::vector<Ir>, Pool>> branches_;
};

// A concatenation of branches (Mixed_5b, Mixed_6a, Mixed_7a).
class IrMixed : public IrBranches {
 public:
  torch::Tensor forward(const torch::Tensor& x) override { return Concat(x); }
  static std::shared_ptr<IrMixed> Mixed5b() {
    auto m = std::make_shared<IrMixed>();
    m->Branch(0, {C(192, 96, 1)});
    m->Branch(1, {C(192, 48, 1), C(48, 64, 5, 1, 2)});
    m->Branch(2, {C(192, 64, 1), C(64, 96, 3, 1, 1), C(96, 96, 3, 1, 1)});
    m->Branch(3, {C(192, 64, 1)}, Pool::kAvg3);
    return m;
  }
  static std::shared_ptr<IrMixed> Mixed6a() {
    auto m = std::make_shared<IrMixed>();
    m->Branch(0, {C(320, 384, 3, 2)});
    m->Branch(1, {C(320, 256, 1), C(256, 256, 3, 1, 1), C(256, 384, 3, 2)});
    m->Branch(2, {}, Pool::kMax3s2);
    return m;
  }
  static std::shared_ptr<IrMixed> Mixed7a() {
    auto m = std::make_shared<IrMixed>();
    m->Branch(0, {C(1088, 256, 1), C(256, 384, 3, 2)});
    m->Branch(1, {C(1088, 256, 1), C(256, 288, 3, 2)});
    m->Branch(2, {C(1088, 256, 1), C(256, 288, 3, 1, 1), C(288, 320, 3, 2)});
    m->Branch(3, {}, Pool::kMax3s2);
    return m;
  }
};

// Block35 / Block17 / Block8: branches, "conv2d" (1x1 with bias) back to the
// input width, scaled and added to the input, ReLU (not after the last Block8).
class IrResidual : public IrBranches {
 public:
  IrResidual(int64_t channels, int64_t concat, double scale, bool relu) : scale_(scale), relu_(relu) {
    conv_ = register_module("conv2d", MakeConv(concat, channels, 1, 1, 0, 1, true));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor y = conv_->forward(Concat(x)) * scale_ + x;
    return relu_ ? torch::relu(y) : y;
  }
  static std::shared_ptr<IrResidual> Block35() {
    auto m = std::make_shared<IrResidual>(320, 128, 0.17, true);
    m->Branch(0, {C(320, 32, 1)});
    m->Branch(1, {C(320, 32, 1), C(32, 32, 3, 1, 1)});
    m->Branch(2, {C(320, 32, 1), C(32, 48, 3, 1, 1), C(48, 64, 3, 1, 1)});
    return m;
  }
  static std::shared_ptr<IrResidual> Block17() {
    auto m = std::make_shared<IrResidual>(1088, 384, 0.10, true);
    m->Branch(0, {C(1088, 192, 1)});
    m->Branch(1, {C(1088, 128, 1), C(128, 160, {1, 7}, {0, 3}), C(160, 192, {7, 1}, {3, 0})});
    return m;
  }
  static std::shared_ptr<IrResidual> Block8(double scale, bool relu) {
    auto m = std::make_shared<IrResidual>(2080, 448, scale, relu);
    m->Branch(0, {C(2080, 192, 1)});
    m->Branch(1, {C(2080, 192, 1), C(192, 224, {1, 3}, {0, 1}), C(224, 256, {3, 1}, {1, 0})});
    return m;
  }

 private:
  double scale_;
  bool relu_;
  torch::nn::Conv2d conv_{nullptr};
};

class InceptionResNetV2Impl : public BlockListBackbone {
 public:
  explicit InceptionResNetV2Impl(int64_t num_classes) {
    Add("conv2d_1a", std::make_shared<IrConv>(3, 32, 3, 2));
    Add("conv2d_2a", std::make_shared<IrConv>(32, 32, 3));
    Add("conv2d_2b", std::make_shared<IrConv>(32, 64, 3, 1, 1), true);
    Add("conv2d_3b", std::make_shared<IrConv>(64, 80, 1));
    Add("conv2d_4a", std::make_shared<IrConv>(80, 192, 3), true);
    Add("mixed_5b", IrMixed::Mixed5b());
    Repeat("repeat", 10, [] { return IrResidual::Block35(); });
    Add("mixed_6a", IrMixed::Mixed6a());
    Repeat("repeat_1", 20, [] { return IrResidual::Block17(); });
    Add("mixed_7a", IrMixed::Mixed7a());
    Repeat("repeat_2", 9, [] { return IrResidual::Block8(0.20, true); });
    Add("block8", IrResidual::Block8(1.0, false));
    Add("conv2d_7b", std::make_shared<IrConv>(2080, 1536, 1));
    fc_ = register_module("classif", torch::nn::Linear(1536, num_classes));
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override { return fc_->forward(Pool(fmap)); }

 protected:
  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override {
    const torch::Tensor y = BlockListBackbone::ForwardBlock(i, x);
    return pool_after_[i] ? F::max_pool2d(y, F::MaxPool2dFuncOptions(3).stride(2)) : y;
  }

 private:
  void Add(const std::string& name, std::shared_ptr<UnaryModule> m, bool pool_after = false) {
    AddBlock(*this, name, name, std::move(m));
    pool_after_.push_back(pool_after);
  }
  void Repeat(const std::string& name, int n, const std::function<std::shared_ptr<UnaryModule>()>& make) {
    auto seq = register_module(name, std::make_shared<torch::nn::Module>());
    for (int i = 0; i < n; ++i) {
      AddBlock(*seq, std::to_string(i), absl::StrCat(name, ".", i), make());
      pool_after_.push_back(false);
    }
  }

  std::vector<bool> pool_after_;
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

BackbonePtr MakeXception(int64_t num_classes) { return std::make_shared<XceptionImpl>(num_classes); }

BackbonePtr MakeInceptionResNetV2(int64_t num_classes) {
  return std::make_shared<InceptionResNetV2Impl>(num_classes);
}

std::string XceptionKey(const std::string& key) {
  if (absl::StartsWith(key, "last_linear.")) return "fc." + key.substr(12);
  return key;
}

std::string InceptionResNetV2Key(const std::string& key) {
  if (absl::StartsWith(key, "last_linear.")) return "classif." + key.substr(12);
  if (absl::EndsWith(key, ".bn.weight")) return "";  // all ones: TF trained it with scale=False
  return key;
}

int64_t KerasParameterCount(const BackboneImpl& model) {
  int64_t n = model.ParameterCount();
  for (const auto& b : model.named_buffers()) {
    if (absl::EndsWith(b.key(), "running_mean") || absl::EndsWith(b.key(), "running_var")) n += b.value().numel();
  }
  return n;
}

}  // namespace graft::core
