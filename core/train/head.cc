#include "core/train/head.h"

#include <torch/nn/functional/activation.h>

namespace graft::core {

ClassifierHeadImpl::ClassifierHeadImpl(int64_t in_features, const HeadSpec& spec, int64_t num_classes)
    : gelu_(spec.activation == "gelu") {
  int64_t in = in_features;
  int index = 0;
  for (int units : spec.hidden_units) {
    linears_.push_back(register_module(std::to_string(index++), torch::nn::Linear(in, units)));
    in = units;
  }
  linears_.push_back(register_module(std::to_string(index), torch::nn::Linear(in, num_classes)));
  if (spec.dropout > 0) dropout_ = register_module("dropout", torch::nn::Dropout(spec.dropout));
}

torch::Tensor ClassifierHeadImpl::forward(const torch::Tensor& features) {
  torch::Tensor x = features;
  for (size_t i = 0; i < linears_.size(); ++i) {
    if (dropout_) x = dropout_->forward(x);
    x = linears_[i]->forward(x);
    if (i + 1 < linears_.size()) x = gelu_ ? torch::gelu(x) : torch::relu(x);
  }
  return x;
}

}  // namespace graft::core
