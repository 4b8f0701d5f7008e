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
  friend class HeadStack;
  torch::Tensor Dropout(const torch::Tensor& x);

  std::vector<torch::nn::Linear> linears_;
  double dropout_ = 0;
  bool gelu_;
  at::Generator generator_;
};
TORCH_MODULE(ClassifierHead);

// Dropout's scaled keep mask for an input of `sizes`: 1/(1-p) where kept,
// 0 where dropped, drawn from `generator` (float32, CPU).
torch::Tensor DropoutKeep(at::IntArrayRef sizes, double p, at::Generator& generator);

// Heads of one HeadSpec trained together on the same features (a search's
// fused trials): one forward computes them all, the first layer as a single
// matrix product over the shared input ([B, in] x [in, n*out]), the later
// ones as one batched product. Each head's parameters become views of the
// stacked tensors, so its own optimizer steps it, and its state dict and
// loading work as before. The heads draw the same dropout masks they would
// draw alone from the seed they share, so each head's output is what its own
// forward gives, up to float rounding.
class HeadStack {
 public:
  // Moves `heads` (one HeadSpec, one input width, on one device) into
  // stacked storage, their current values kept. Heads stacked before and not
  // among these keep their own (old) storage and are never touched again.
  void Rebuild(const std::vector<ClassifierHead>& heads);
  const std::vector<ClassifierHead>& heads() const { return heads_; }

  // Logits [n, B, classes] of every head for `features` [B, in]; `train`:
  // dropout as each head's forward after Seed(dropout_seed).
  torch::Tensor Forward(const torch::Tensor& features, bool train, uint64_t dropout_seed);
  // Before a backward: no stacked gradient. After it: each head's parameters'
  // gradients are their slices of the stacked ones.
  void ClearGradients();
  void ShareGradients();

 private:
  std::vector<ClassifierHead> heads_;
  std::vector<torch::Tensor> weights_;  // per layer [n, out, in], leaves that require grad
  std::vector<torch::Tensor> biases_;   // per layer [n, out]
  double dropout_ = 0;
  bool gelu_ = false;
};

}  // namespace graft::core
