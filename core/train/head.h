#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include <vector>

#include "core/train/job_spec.h"

namespace graft::core {

// The classifier a job trains on pooled backbone features: for each hidden
// layer [Dropout] Linear + activation, then [Dropout] Linear to the classes.
// Linear layers are named "0", "1", ... (the last one is the classifier).
class ClassifierHeadImpl : public torch::nn::Module {
 public:
  ClassifierHeadImpl(int64_t in_features, const HeadSpec& spec, int64_t num_classes);
  torch::Tensor forward(const torch::Tensor& features);
  size_t num_linear() const { return linears_.size(); }

 private:
  std::vector<torch::nn::Linear> linears_;
  torch::nn::Dropout dropout_{nullptr};
  bool gelu_;
};
TORCH_MODULE(ClassifierHead);

}  // namespace graft::core
