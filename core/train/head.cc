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

torch::Tensor DropoutKeep(at::IntArrayRef sizes, double p, at::Generator& generator) {
  torch::Tensor keep = torch::empty(sizes, torch::kFloat32);
  keep.bernoulli_(1.0 - p, generator);
  return keep.div_(1.0 - p);
}

torch::Tensor ClassifierHeadImpl::Dropout(const torch::Tensor& x) {
  if (!is_training() || dropout_ <= 0) return x;
  return x * DropoutKeep(x.sizes(), dropout_, generator_).to(x.device(), x.scalar_type());
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

void HeadStack::Rebuild(const std::vector<ClassifierHead>& heads) {
  torch::NoGradGuard no_grad;
  heads_ = heads;
  weights_.clear();
  biases_.clear();
  if (heads.empty()) return;
  const ClassifierHeadImpl& first = *heads.front();
  dropout_ = first.dropout_;
  gelu_ = first.gelu_;
  const auto n = static_cast<int64_t>(heads.size());
  for (size_t l = 0; l < first.linears_.size(); ++l) {
    const torch::Tensor& w = first.linears_[l]->weight;
    torch::Tensor weights = torch::empty({n, w.size(0), w.size(1)}, w.options().requires_grad(false));
    torch::Tensor biases = torch::empty({n, w.size(0)}, w.options().requires_grad(false));
    for (int64_t i = 0; i < n; ++i) {
      const torch::nn::Linear& linear = heads[static_cast<size_t>(i)]->linears_[l];
      weights[i].copy_(linear->weight);
      biases[i].copy_(linear->bias);
      linear->weight.set_data(weights.select(0, i));
      linear->bias.set_data(biases.select(0, i));
    }
    weights_.push_back(weights.requires_grad_(true));
    biases_.push_back(biases.requires_grad_(true));
  }
}

torch::Tensor HeadStack::Forward(const torch::Tensor& features, bool train, uint64_t dropout_seed) {
  const auto n = static_cast<int64_t>(heads_.size());
  const int64_t batch = features.size(0);
  const bool drop = train && dropout_ > 0;
  at::Generator generator = at::detail::createCPUGenerator(dropout_seed);
  torch::Tensor x = features;  // [B, in], then [n, B, units]
  for (size_t l = 0; l < weights_.size(); ++l) {
    const int64_t out = weights_[l].size(1), in = weights_[l].size(2);
    // The mask one head draws for its [B, in] input, the same for every head.
    if (drop) x = x * DropoutKeep({batch, in}, dropout_, generator).to(x.device(), x.scalar_type());
    if (l == 0) {  // the shared input: one product for every head's first layer
      x = torch::addmm(biases_[0].view({n * out}), x, weights_[0].view({n * out, in}).t())
              .view({batch, n, out})
              .transpose(0, 1);
    } else {
      x = torch::baddbmm(biases_[l].unsqueeze(1), x, weights_[l].transpose(1, 2));
    }
    if (l + 1 < weights_.size()) x = gelu_ ? torch::gelu(x) : torch::relu(x);
  }
  return x;
}

void HeadStack::ClearGradients() {
  for (auto* stacked : {&weights_, &biases_}) {
    for (torch::Tensor& t : *stacked) t.mutable_grad().reset();
  }
  for (const ClassifierHead& head : heads_) {
    for (torch::Tensor& p : head->parameters()) p.mutable_grad().reset();
  }
}

void HeadStack::ShareGradients() {
  for (size_t l = 0; l < weights_.size(); ++l) {
    const torch::Tensor& w = weights_[l].grad();
    const torch::Tensor& b = biases_[l].grad();
    for (size_t i = 0; i < heads_.size(); ++i) {
      torch::nn::Linear& linear = heads_[i]->linears_[l];
      if (w.defined()) linear->weight.mutable_grad() = w.select(0, static_cast<int64_t>(i));
      if (b.defined()) linear->bias.mutable_grad() = b.select(0, static_cast<int64_t>(i));
    }
  }
}

}  // namespace graft::core
