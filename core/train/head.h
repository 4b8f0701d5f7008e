#pragma once

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <vector>

#include "core/train/job_spec.h"

namespace graft::core {

// The classifier a job trains on pooled backbone features: for each hidden
// layer [Dropout] Linear + activation, then [Dropout] Linear to the classes.
// Linear layers are named "0", "1", ... (the last one is the classifier).
//
// Its randomness is its own: the initial weights (PyTorch's Linear default,
// uniform in ±1/sqrt(fan_in)) come from `seed`, dropout masks from a
// generator reseeded by Seed(). Heads trained at once on several threads (a
// search's trials) are each exactly what they would be alone.
class ClassifierHeadImpl : public torch::nn::Module {
 public:
  ClassifierHeadImpl(int64_t in_features, const HeadSpec& spec, int64_t num_classes, uint64_t seed = 0);
  torch::Tensor forward(const torch::Tensor& features);
  size_t num_linear() const { return linears_.size(); }
  void Seed(uint64_t seed);

 private:
  torch::Tensor Dropout(const torch::Tensor& x);

  std::vector<torch::nn::Linear> linears_;
  double dropout_ = 0;
  bool gelu_;
  at::Generator generator_;
};
TORCH_MODULE(ClassifierHead);

}  // namespace graft::core
