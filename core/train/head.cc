#include "core/train/head.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/activation.h>
#include <torch/torch.h>

#include <cmath>

namespace graft::core {

ClassifierHeadImpl::ClassifierHeadImpl(int64_t in_features, const HeadSpec& spec, int64_t num_classes, uint64_t seed)
    : dropout_(spec.dropout), gelu_(spec.activation == "gelu"), generator_(at::detail::createCPUGenerator(seed)) {
  int64_t in = in_features;
  int index = 0;
  std::vector<int64_t> outs(spec.hidden_units.begin(), spec.hidden_units.end());
  outs.push_back(num_classes);
  torch::NoGradGuard no_grad;
  for (int64_t units : outs) {
    torch::nn::Linear linear = register_module(std::to_string(index++), torch::nn::Linear(in, units));
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    linear->weight.uniform_(-bound, bound, generator_);
    linear->bias.uniform_(-bound, bound, generator_);
    linears_.push_back(linear);
    in = units;
  }
}

void ClassifierHeadImpl::Seed(uint64_t seed) { generator_.set_current_seed(seed); }

torch::Tensor ClassifierHeadImpl::Dropout(const torch::Tensor& x) {
  if (!is_training() || dropout_ <= 0) return x;
  torch::Tensor keep = torch::empty(x.sizes(), torch::kFloat32);
  keep.bernoulli_(1.0 - dropout_, generator_);
  return x * keep.to(x.device(), x.scalar_type()).div_(1.0 - dropout_);
}

torch::Tensor ClassifierHeadImpl::forward(const torch::Tensor& features) {
  torch::Tensor x = features;
  for (size_t i = 0; i < linears_.size(); ++i) {
    x = Dropout(x);
    x = linears_[i]->forward(x);
    if (i + 1 < linears_.size()) x = gelu_ ? torch::gelu(x) : torch::relu(x);
  }
  return x;
}

}  // namespace graft::core
