#include "core/zoo/backbone.h"
#include "core/util/torch_compat.h"

#include <c10/core/InferenceMode.h>
#include <torch/nn/functional/pooling.h>

#include <algorithm>

#include "core/zoo/layers.h"

namespace graft::core {

torch::Tensor BackboneImpl::ForwardTrunk(torch::Tensor x, size_t begin, size_t end) {
  const bool convert = onednn_ && !x.is_mkldnn() && begin < end;
  if (!convert) {
    for (size_t i = begin; i < end && i < blocks_.size(); ++i) x = ForwardBlock(i, x);
    return x;
  }
  // oneDNN tensors have no autograd, and LibTorch 2.x asserts on their max
  // pool whenever autograd keys are dispatched, NoGradGuard or not: the
  // blocks run in inference mode, and a caller outside it (the trainer's
  // frozen prefix) gets an ordinary tensor back.
  const bool inference = c10::InferenceMode::is_enabled();
  torch::Tensor y;
  {
    c10::InferenceMode guard;
    torch::Tensor m = x.contiguous().to_mkldnn();
    for (size_t i = begin; i < end && i < blocks_.size(); ++i) m = ForwardBlock(i, m);
    y = m.to_dense();
  }
  return inference ? y : y.clone();
}

void BackboneImpl::UseOneDnnLayout() {
  torch::NoGradGuard no_grad;
  for (const auto& m : modules(/*include_self=*/false)) {
    auto* conv = m->as<torch::nn::Conv2dImpl>();
    if (conv == nullptr) continue;
    const auto& o = conv->options;
    const torch::Tensor reordered = torch::mkldnn_reorder_conv2d_weight(
        conv->weight.contiguous().to_mkldnn(), compat::Get<torch::ExpandingArray<2>>(o.padding()), o.stride(),
        o.dilation(), o.groups());
    // The forward reads the `weight` member; the dense parameter it replaces
    // keeps its name but gives its memory back.
    torch::Tensor dense = conv->named_parameters(/*recurse=*/false)["weight"];
    conv->weight = conv->register_buffer("weight_onednn", reordered);
    dense.set_data(torch::empty({0}, dense.options()));
  }
  onednn_ = true;
}

torch::Tensor BackboneImpl::Pool(const torch::Tensor& feature_map) {
  if (feature_map.dim() == 3) return feature_map.mean(1);  // tokens [N, L, D] (a transformer's inner blocks)
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

void BackboneImpl::SetTrainableBlocks(int n, bool train_batch_norm) {
  eval();
  const size_t first = blocks_.size() - std::min(blocks_.size(), static_cast<size_t>(std::max(n, 0)));
  auto trainable = [&](const std::string& name) {
    for (size_t b = first; b < blocks_.size(); ++b) {
      for (const std::string& prefix : blocks_[b].param_prefixes) {
        if (name.rfind(prefix, 0) == 0) return true;
      }
    }
    return false;
  };
  // Batch norms, by module name + ".": frozen ones stay in eval mode and
  // their scale and shift take no gradient.
  std::vector<std::string> batch_norms;
  if (!train_batch_norm) {
    for (const auto& m : named_modules("", /*include_self=*/false)) {
      if (m.value()->as<torch::nn::BatchNorm2dImpl>() != nullptr || m.value()->as<BareBatchNorm>() != nullptr) {
        batch_norms.push_back(m.key() + ".");
      }
    }
  }
  const auto in_batch_norm = [&](const std::string& name) {
    for (const std::string& prefix : batch_norms) {
      if (name.rfind(prefix, 0) == 0) return true;
    }
    return false;
  };
  // A block's prefixes name modules ("layer4.1.") or single parameters
  // ("class_token"): parameters by name, train mode for the modules.
  for (auto& p : named_parameters()) p.value().set_requires_grad(trainable(p.key()) && !in_batch_norm(p.key()));
  for (const auto& m : named_modules("", /*include_self=*/false)) {
    if (trainable(m.key() + ".")) m.value()->train(true);
  }
  for (const auto& m : named_modules("", /*include_self=*/false)) {
    if (in_batch_norm(m.key() + ".")) m.value()->eval();
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
