#include "core/zoo/layers.h"

#include <torch/nn/functional/activation.h>

#include "core/zoo/int8.h"

namespace graft::core {

torch::Tensor Activate(const torch::Tensor& x, Activation act) {
  switch (act) {
    case Activation::kNone:
      return x;
    case Activation::kReLU:
      return torch::relu(x);
    case Activation::kReLU6:
      return torch::hardtanh(x, 0.0, 6.0);
    case Activation::kHardswish:
      return torch::hardswish(x);
    case Activation::kSiLU:
      return torch::silu(x);
  }
  return x;
}

int64_t MakeDivisible(double v) {
  int64_t n = std::max<int64_t>(8, static_cast<int64_t>(v + 4) / 8 * 8);
  if (static_cast<double>(n) < 0.9 * v) n += 8;
  return n;
}

torch::nn::Conv2d MakeConv(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                           int64_t padding, int64_t groups, bool bias) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                               .stride(stride)
                               .padding(padding)
                               .groups(groups)
                               .bias(bias));
}

ConvNormAct::ConvNormAct(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                         int64_t groups, Activation act, double bn_eps)
    : act_(act) {
  conv_ = register_module("0", MakeConv(in, out, kernel, stride, (kernel - 1) / 2, groups));
  bn_ = register_module("1", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(out).eps(bn_eps)));
}

torch::Tensor ConvNormAct::forward(const torch::Tensor& x) {
  const torch::Tensor y = conv_->forward(x);
  return Activate(folded_ ? y : bn_->forward(y), act_);
}

void ConvNormAct::Fold() {
  FoldBatchNorm(*this, "0", conv_, bn_);
  folded_ = true;
}

bool ConvNormAct::Lower(Int8Graph& graph, int input, int* output) {
  if (!folded_) return false;
  *output = graph.Conv(input, conv_, act_);
  return *output >= 0;
}

void FoldBatchNorm(torch::nn::Module& owner, const std::string& name, torch::nn::Conv2d& conv,
                   const torch::nn::BatchNorm2d& bn) {
  torch::NoGradGuard no_grad;
  const torch::Tensor scale = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
  const torch::Tensor bias = conv->bias.defined() ? conv->bias : torch::zeros_like(bn->running_mean);
  const auto& o = conv->options;
  torch::nn::Conv2d fused(torch::nn::Conv2dOptions(o.in_channels(), o.out_channels(), o.kernel_size())
                              .stride(o.stride())
                              .padding(o.padding())
                              .dilation(o.dilation())
                              .groups(o.groups())
                              .bias(true));
  fused->to(conv->weight.device());
  fused->weight.copy_(conv->weight * scale.reshape({-1, 1, 1, 1}));
  fused->bias.copy_((bias - bn->running_mean) * scale + bn->bias);
  conv = owner.replace_module(name, fused);
}

SqueezeExcitation::SqueezeExcitation(int64_t channels, int64_t squeeze, Activation act, bool hard_gate)
    : act_(act), hard_gate_(hard_gate) {
  fc1_ = register_module("fc1", MakeConv(channels, squeeze, 1, 1, 0, 1, true));
  fc2_ = register_module("fc2", MakeConv(squeeze, channels, 1, 1, 0, 1, true));
}

torch::Tensor SqueezeExcitation::forward(const torch::Tensor& x) {
  const torch::Tensor s = fc2_->forward(Activate(fc1_->forward(x.mean({2, 3}, /*keepdim=*/true)), act_));
  return x * (hard_gate_ ? torch::hardsigmoid(s) : torch::sigmoid(s));
}

ResidualBlock::ResidualBlock(bool residual) : residual_(residual) {
  block_ = register_module("block", std::make_shared<torch::nn::Module>());
}

void ResidualBlock::Add(std::shared_ptr<UnaryModule> m) {
  block_->register_module(std::to_string(layers_.size()), m);
  layers_.push_back(std::move(m));
}

torch::Tensor ResidualBlock::forward(const torch::Tensor& x) {
  torch::Tensor y = x;
  for (auto& l : layers_) y = l->forward(y);
  return residual_ ? y + x : y;
}

void BlockListBackbone::AddBlock(torch::nn::Module& parent, const std::string& child, const std::string& block,
                                 std::shared_ptr<UnaryModule> m) {
  parent.register_module(child, m);
  block_modules_.push_back(std::move(m));
  blocks_.push_back({block, {block + "."}});
}

BareConv::BareConv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding)
    : stride_(stride), padding_(padding) {
  torch::nn::Conv2d init(torch::nn::Conv2dOptions(in, out, kernel).stride(stride));
  weight_ = register_parameter("weight", init->weight.detach().clone());
  bias_ = register_parameter("bias", init->bias.detach().clone());
}

torch::Tensor BareConv::forward(const torch::Tensor& x) {
  return torch::conv2d(x, weight_, bias_, {stride_, stride_}, {padding_, padding_});
}

void BareConv::AbsorbBatchNorm(const torch::Tensor& scale, const torch::Tensor& shift) {
  torch::NoGradGuard no_grad;
  weight_.mul_(scale.reshape({-1, 1, 1, 1}));
  bias_.mul_(scale).add_(shift);
}

bool BareConv::LowerWith(Int8Graph& graph, int input, Activation act, int* output) {
  *output = graph.Conv(input, weight_, bias_, stride_, padding_, act);
  return *output >= 0;
}

bool BareBatchNorm::Lower(Int8Graph& graph, int input, int* output) {
  *output = input;
  return folded_;
}

bool ReluLayer::Lower(Int8Graph& graph, int input, int* output) {
  *output = graph.Relu(input);
  return true;
}

torch::Tensor MaxPoolLayer::forward(const torch::Tensor& x) {
  return torch::max_pool2d(x, {kernel_, kernel_}, {stride_, stride_}, {padding_, padding_}, {1, 1}, ceil_mode_);
}

bool MaxPoolLayer::Lower(Int8Graph& graph, int input, int* output) {
  *output = graph.MaxPool(input, kernel_, stride_, padding_, ceil_mode_);
  return true;
}

bool UnaryList::Lower(size_t begin, size_t end, Int8Graph& graph, int input, int* output) {
  int v = input;
  for (size_t i = begin; i < end && i < items_.size(); ++i) {
    if (auto* conv = dynamic_cast<BareConv*>(items_[i].get())) {
      size_t next = i + 1;  // past a folded batch norm
      if (next < end && dynamic_cast<BareBatchNorm*>(items_[next].get()) != nullptr) {
        int same = -1;
        if (!items_[next]->Lower(graph, v, &same)) return false;
        ++next;
      }
      const bool relu = next < end && dynamic_cast<ReluLayer*>(items_[next].get()) != nullptr;
      if (!conv->LowerWith(graph, v, relu ? Activation::kReLU : Activation::kNone, &v)) return false;
      i = relu ? next : next - 1;
      continue;
    }
    if (!items_[i]->Lower(graph, v, &v)) return false;
  }
  *output = v;
  return true;
}

BareBatchNorm::BareBatchNorm(int64_t channels) {
  weight_ = register_parameter("weight", torch::ones({channels}));
  bias_ = register_parameter("bias", torch::zeros({channels}));
  running_mean_ = register_buffer("running_mean", torch::zeros({channels}));
  running_var_ = register_buffer("running_var", torch::ones({channels}));
  num_batches_tracked_ = register_buffer("num_batches_tracked", torch::zeros({}, torch::kInt64));
}

torch::Tensor BareBatchNorm::forward(const torch::Tensor& x) {
  if (folded_) return x;
  return torch::batch_norm(x, weight_, bias_, running_mean_, running_var_, is_training(), 0.1, 1e-5,
                           /*cudnn_enabled=*/true);
}

void BareBatchNorm::FoldInto(BareConv& conv) {
  torch::NoGradGuard no_grad;
  const torch::Tensor scale = weight_ / torch::sqrt(running_var_ + 1e-5);
  conv.AbsorbBatchNorm(scale, bias_ - running_mean_ * scale);
  folded_ = true;
}

void UnaryList::Register(torch::nn::Module& parent, const std::string& name) {
  list_ = parent.register_module(name, torch::nn::ModuleList());
}

void UnaryList::Add(std::shared_ptr<UnaryModule> m) {
  list_->push_back(m);
  items_.push_back(std::move(m));
}

int ConvBnChain::Add(torch::nn::Module& owner, int index, const ConvBnStep& s) {
  convs_.push_back(owner.register_module(std::to_string(index++),
                                         MakeConv(s.in, s.out, s.kernel, s.stride, (s.kernel - 1) / 2, s.groups)));
  bns_.push_back(owner.register_module(std::to_string(index++), torch::nn::BatchNorm2d(s.out)));
  relu_.push_back(s.relu);
  return s.relu ? index + 1 : index;
}

torch::Tensor ConvBnChain::Forward(torch::Tensor x) {
  for (size_t i = 0; i < convs_.size(); ++i) {
    x = bns_[i]->forward(convs_[i]->forward(x));
    if (relu_[i]) x = torch::relu(x);
  }
  return x;
}

ConvBnSequence::ConvBnSequence(const std::vector<ConvBnStep>& steps) {
  int index = 0;
  for (const ConvBnStep& s : steps) index = chain_.Add(*this, index, s);
}

}  // namespace graft::core
