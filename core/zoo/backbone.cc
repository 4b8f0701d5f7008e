#include "core/zoo/backbone.h"

#include <torch/nn/functional/pooling.h>

#include "core/zoo/layers.h"

namespace graft::core {

torch::Tensor BackboneImpl::ForwardTrunk(torch::Tensor x, size_t begin, size_t end) {
  for (size_t i = begin; i < end && i < blocks_.size(); ++i) x = ForwardBlock(i, x);
  return x;
}

torch::Tensor BackboneImpl::Pool(const torch::Tensor& feature_map) {
  return feature_map.mean({2, 3});
}

void BackboneImpl::FoldBatchNorm() {
  torch::NoGradGuard no_grad;
  eval();
  FoldOwn();
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto* unary = dynamic_cast<UnaryModule*>(m.get())) unary->Fold();
  }
}

int64_t BackboneImpl::ParameterCount() const {
  int64_t n = 0;
  for (const auto& p : parameters(/*recurse=*/true)) n += p.numel();
  return n;
}

int64_t BackboneImpl::StateBytes() const {
  int64_t n = 0;
  for (const auto& p : parameters(true)) n += p.numel() * static_cast<int64_t>(p.element_size());
  for (const auto& b : buffers(true)) n += b.numel() * static_cast<int64_t>(b.element_size());
  return n;
}

}  // namespace graft::core
