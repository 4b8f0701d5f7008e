#include "core/zoo/inception.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include "core/zoo/layers.h"

namespace graft::core {
namespace {

namespace F = torch::nn::functional;

// BasicConv2d: "conv" (no bias), "bn" (eps 1e-3), ReLU.
class BasicConv2d : public UnaryModule {
 public:
  BasicConv2d(int64_t in, int64_t out, std::array<int64_t, 2> kernel, int64_t stride = 1,
              std::array<int64_t, 2> padding = {0, 0}) {
    conv_ = register_module(
        "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, {kernel[0], kernel[1]})
                                      .stride(stride)
                                      .padding(torch::ExpandingArray<2>({padding[0], padding[1]}))
                                      .bias(false)));
    bn_ = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(out).eps(1e-3)));
  }
  BasicConv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0)
      : BasicConv2d(in, out, {kernel, kernel}, stride, {padding, padding}) {}

  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor y = conv_->forward(x);
    return torch::relu(folded_ ? y : bn_->forward(y));
  }
  void Fold() override {
    FoldBatchNorm(*this, "conv", conv_, bn_);
    folded_ = true;
  }

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
  bool folded_ = false;
};

using Conv = std::shared_ptr<BasicConv2d>;

// A module built from named BasicConv2d branches.
class Branches : public UnaryModule {
 protected:
  Conv Add(const std::string& name, Conv c) { return register_module(name, std::move(c)); }
  static Conv C(int64_t in, int64_t out, std::array<int64_t, 2> k, int64_t s = 1, std::array<int64_t, 2> p = {0, 0}) {
    return std::make_shared<BasicConv2d>(in, out, k, s, p);
  }
  static Conv C(int64_t in, int64_t out, int64_t k, int64_t s = 1, int64_t p = 0) {
    return std::make_shared<BasicConv2d>(in, out, k, s, p);
  }
  static torch::Tensor AvgPool3(const torch::Tensor& x) {
    return F::avg_pool2d(x, F::AvgPool2dFuncOptions(3).stride(1).padding(1));
  }
  static torch::Tensor MaxPool3s2(const torch::Tensor& x) { return F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2)); }
};

class InceptionA : public Branches {
 public:
  InceptionA(int64_t in, int64_t pool_features) {
    b1_ = Add("branch1x1", C(in, 64, 1));
    b5_1_ = Add("branch5x5_1", C(in, 48, 1));
    b5_2_ = Add("branch5x5_2", C(48, 64, 5, 1, 2));
    d1_ = Add("branch3x3dbl_1", C(in, 64, 1));
    d2_ = Add("branch3x3dbl_2", C(64, 96, 3, 1, 1));
    d3_ = Add("branch3x3dbl_3", C(96, 96, 3, 1, 1));
    pool_ = Add("branch_pool", C(in, pool_features, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return torch::cat({b1_->forward(x), b5_2_->forward(b5_1_->forward(x)),
                       d3_->forward(d2_->forward(d1_->forward(x))), pool_->forward(AvgPool3(x))},
                      1);
  }

 private:
  Conv b1_, b5_1_, b5_2_, d1_, d2_, d3_, pool_;
};

class InceptionB : public Branches {
 public:
  explicit InceptionB(int64_t in) {
    b3_ = Add("branch3x3", C(in, 384, 3, 2));
    d1_ = Add("branch3x3dbl_1", C(in, 64, 1));
    d2_ = Add("branch3x3dbl_2", C(64, 96, 3, 1, 1));
    d3_ = Add("branch3x3dbl_3", C(96, 96, 3, 2));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return torch::cat({b3_->forward(x), d3_->forward(d2_->forward(d1_->forward(x))), MaxPool3s2(x)}, 1);
  }

 private:
  Conv b3_, d1_, d2_, d3_;
};

class InceptionC : public Branches {
 public:
  InceptionC(int64_t in, int64_t c7) {
    b1_ = Add("branch1x1", C(in, 192, 1));
    s1_ = Add("branch7x7_1", C(in, c7, 1));
    s2_ = Add("branch7x7_2", C(c7, c7, {1, 7}, 1, {0, 3}));
    s3_ = Add("branch7x7_3", C(c7, 192, {7, 1}, 1, {3, 0}));
    d1_ = Add("branch7x7dbl_1", C(in, c7, 1));
    d2_ = Add("branch7x7dbl_2", C(c7, c7, {7, 1}, 1, {3, 0}));
    d3_ = Add("branch7x7dbl_3", C(c7, c7, {1, 7}, 1, {0, 3}));
    d4_ = Add("branch7x7dbl_4", C(c7, c7, {7, 1}, 1, {3, 0}));
    d5_ = Add("branch7x7dbl_5", C(c7, 192, {1, 7}, 1, {0, 3}));
    pool_ = Add("branch_pool", C(in, 192, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor s = s3_->forward(s2_->forward(s1_->forward(x)));
    const torch::Tensor d = d5_->forward(d4_->forward(d3_->forward(d2_->forward(d1_->forward(x)))));
    return torch::cat({b1_->forward(x), s, d, pool_->forward(AvgPool3(x))}, 1);
  }

 private:
  Conv b1_, s1_, s2_, s3_, d1_, d2_, d3_, d4_, d5_, pool_;
};

class InceptionD : public Branches {
 public:
  explicit InceptionD(int64_t in) {
    t1_ = Add("branch3x3_1", C(in, 192, 1));
    t2_ = Add("branch3x3_2", C(192, 320, 3, 2));
    s1_ = Add("branch7x7x3_1", C(in, 192, 1));
    s2_ = Add("branch7x7x3_2", C(192, 192, {1, 7}, 1, {0, 3}));
    s3_ = Add("branch7x7x3_3", C(192, 192, {7, 1}, 1, {3, 0}));
    s4_ = Add("branch7x7x3_4", C(192, 192, 3, 2));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return torch::cat({t2_->forward(t1_->forward(x)), s4_->forward(s3_->forward(s2_->forward(s1_->forward(x)))),
                       MaxPool3s2(x)},
                      1);
  }

 private:
  Conv t1_, t2_, s1_, s2_, s3_, s4_;
};

class InceptionE : public Branches {
 public:
  explicit InceptionE(int64_t in) {
    b1_ = Add("branch1x1", C(in, 320, 1));
    t1_ = Add("branch3x3_1", C(in, 384, 1));
    t2a_ = Add("branch3x3_2a", C(384, 384, {1, 3}, 1, {0, 1}));
    t2b_ = Add("branch3x3_2b", C(384, 384, {3, 1}, 1, {1, 0}));
    d1_ = Add("branch3x3dbl_1", C(in, 448, 1));
    d2_ = Add("branch3x3dbl_2", C(448, 384, 3, 1, 1));
    d3a_ = Add("branch3x3dbl_3a", C(384, 384, {1, 3}, 1, {0, 1}));
    d3b_ = Add("branch3x3dbl_3b", C(384, 384, {3, 1}, 1, {1, 0}));
    pool_ = Add("branch_pool", C(in, 192, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor t = t1_->forward(x);
    const torch::Tensor d = d2_->forward(d1_->forward(x));
    return torch::cat({b1_->forward(x), t2a_->forward(t), t2b_->forward(t), d3a_->forward(d), d3b_->forward(d),
                       pool_->forward(AvgPool3(x))},
                      1);
  }

 private:
  Conv b1_, t1_, t2a_, t2b_, d1_, d2_, d3a_, d3b_, pool_;
};

// GoogLeNet's Inception: "branch1", "branch2" (1x1, 3x3), "branch3" (1x1,
// 3x3, as torchvision builds it), "branch4" (max pool, 1x1).
class GoogLeNetInception : public Branches {
 public:
  GoogLeNetInception(int64_t in, int64_t c1, int64_t c3r, int64_t c3, int64_t c5r, int64_t c5, int64_t pool_proj) {
    b1_ = Add("branch1", C(in, c1, 1));
    auto b2 = register_module("branch2", std::make_shared<torch::nn::Module>());
    b2a_ = b2->register_module("0", C(in, c3r, 1));
    b2b_ = b2->register_module("1", C(c3r, c3, 3, 1, 1));
    auto b3 = register_module("branch3", std::make_shared<torch::nn::Module>());
    b3a_ = b3->register_module("0", C(in, c5r, 1));
    b3b_ = b3->register_module("1", C(c5r, c5, 3, 1, 1));
    auto b4 = register_module("branch4", std::make_shared<torch::nn::Module>());
    b4_ = b4->register_module("1", C(in, pool_proj, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor pooled = F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(1).padding(1).ceil_mode(true));
    return torch::cat({b1_->forward(x), b2b_->forward(b2a_->forward(x)), b3b_->forward(b3a_->forward(x)),
                       b4_->forward(pooled)},
                      1);
  }

 private:
  Conv b1_, b2a_, b2b_, b3a_, b3b_, b4_;
};

// Re-normalises an ImageNet-normalised batch to (x - 0.5) / 0.5 per channel.
torch::Tensor TransformInput(const torch::Tensor& x) {
  const torch::Tensor scale = torch::tensor({0.229f / 0.5f, 0.224f / 0.5f, 0.225f / 0.5f}, x.options()).view({1, 3, 1, 1});
  const torch::Tensor shift =
      torch::tensor({(0.485f - 0.5f) / 0.5f, (0.456f - 0.5f) / 0.5f, (0.406f - 0.5f) / 0.5f}, x.options()).view({1, 3, 1, 1});
  return x * scale + shift;
}

// A trunk of named top-level modules; `after[i]` runs after module i (a pool).
class InceptionFamily : public BlockListBackbone {
 public:
  torch::Tensor ForwardHead(const torch::Tensor& fmap) override { return fc_->forward(dropout_->forward(Pool(fmap))); }

 protected:
  enum class After { kNone, kMaxPool3s2, kMaxPool3s2Ceil, kMaxPool2s2Ceil };

  void Add(const std::string& name, std::shared_ptr<UnaryModule> m, After after = After::kNone) {
    AddBlock(*this, name, name, std::move(m));
    after_.push_back(after);
  }
  void AddHead(int64_t features, int64_t classes, double dropout) {
    dropout_ = register_module("dropout", torch::nn::Dropout(dropout));
    fc_ = register_module("fc", torch::nn::Linear(features, classes));
  }

  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override {
    const torch::Tensor y = BlockListBackbone::ForwardBlock(i, i == 0 ? TransformInput(x) : x);
    switch (after_[i]) {
      case After::kNone:
        return y;
      case After::kMaxPool3s2:
        return F::max_pool2d(y, F::MaxPool2dFuncOptions(3).stride(2));
      case After::kMaxPool3s2Ceil:
        return F::max_pool2d(y, F::MaxPool2dFuncOptions(3).stride(2).ceil_mode(true));
      case After::kMaxPool2s2Ceil:
        return F::max_pool2d(y, F::MaxPool2dFuncOptions(2).stride(2).ceil_mode(true));
    }
    return y;
  }

 private:
  std::vector<After> after_;
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

class InceptionV3Impl : public InceptionFamily {
 public:
  explicit InceptionV3Impl(int64_t num_classes) {
    Add("Conv2d_1a_3x3", std::make_shared<BasicConv2d>(3, 32, 3, 2));
    Add("Conv2d_2a_3x3", std::make_shared<BasicConv2d>(32, 32, 3));
    Add("Conv2d_2b_3x3", std::make_shared<BasicConv2d>(32, 64, 3, 1, 1), After::kMaxPool3s2);
    Add("Conv2d_3b_1x1", std::make_shared<BasicConv2d>(64, 80, 1));
    Add("Conv2d_4a_3x3", std::make_shared<BasicConv2d>(80, 192, 3), After::kMaxPool3s2);
    Add("Mixed_5b", std::make_shared<InceptionA>(192, 32));
    Add("Mixed_5c", std::make_shared<InceptionA>(256, 64));
    Add("Mixed_5d", std::make_shared<InceptionA>(288, 64));
    Add("Mixed_6a", std::make_shared<InceptionB>(288));
    Add("Mixed_6b", std::make_shared<InceptionC>(768, 128));
    Add("Mixed_6c", std::make_shared<InceptionC>(768, 160));
    Add("Mixed_6d", std::make_shared<InceptionC>(768, 160));
    Add("Mixed_6e", std::make_shared<InceptionC>(768, 192));
    Add("Mixed_7a", std::make_shared<InceptionD>(768));
    Add("Mixed_7b", std::make_shared<InceptionE>(1280));
    Add("Mixed_7c", std::make_shared<InceptionE>(2048));
    AddHead(2048, num_classes, 0.5);
  }
};

class GoogLeNetImpl : public InceptionFamily {
 public:
  explicit GoogLeNetImpl(int64_t num_classes) {
    Add("conv1", std::make_shared<BasicConv2d>(3, 64, 7, 2, 3), After::kMaxPool3s2Ceil);
    Add("conv2", std::make_shared<BasicConv2d>(64, 64, 1));
    Add("conv3", std::make_shared<BasicConv2d>(64, 192, 3, 1, 1), After::kMaxPool3s2Ceil);
    Add("inception3a", std::make_shared<GoogLeNetInception>(192, 64, 96, 128, 16, 32, 32));
    Add("inception3b", std::make_shared<GoogLeNetInception>(256, 128, 128, 192, 32, 96, 64), After::kMaxPool3s2Ceil);
    Add("inception4a", std::make_shared<GoogLeNetInception>(480, 192, 96, 208, 16, 48, 64));
    Add("inception4b", std::make_shared<GoogLeNetInception>(512, 160, 112, 224, 24, 64, 64));
    Add("inception4c", std::make_shared<GoogLeNetInception>(512, 128, 128, 256, 24, 64, 64));
    Add("inception4d", std::make_shared<GoogLeNetInception>(512, 112, 144, 288, 32, 64, 64));
    Add("inception4e", std::make_shared<GoogLeNetInception>(528, 256, 160, 320, 32, 128, 128), After::kMaxPool2s2Ceil);
    Add("inception5a", std::make_shared<GoogLeNetInception>(832, 256, 160, 320, 32, 128, 128));
    Add("inception5b", std::make_shared<GoogLeNetInception>(832, 384, 192, 384, 48, 128, 128));
    AddHead(1024, num_classes, 0.2);
  }
};

}  // namespace

BackbonePtr MakeInceptionV3(int64_t num_classes) { return std::make_shared<InceptionV3Impl>(num_classes); }

BackbonePtr MakeGoogLeNet(int64_t num_classes) { return std::make_shared<GoogLeNetImpl>(num_classes); }

std::string InceptionKey(const std::string& key) {
  for (const char* aux : {"AuxLogits.", "aux1.", "aux2."}) {
    if (key.rfind(aux, 0) == 0) return "";
  }
  return key;
}

}  // namespace graft::core
