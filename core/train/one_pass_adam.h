#pragma once

// Adam and AdamW as torch::optim computes them (without amsgrad), in one pass
// over each parameter's elements: its weight, gradient and two moments read
// once and written once per step, where torch::optim takes eight tensor-wide
// operations and three temporaries. Fused search trials use it: their stacked
// heads' steps are bound by memory traffic, not arithmetic. The same results
// up to float rounding (tests/core/fused_trials_test.cc).

#include <torch/types.h>

#include <vector>

#include "core/train/job_spec.h"

namespace graft::core {

class OnePassAdam {
 public:
  // Whether it computes `spec`'s optimizer for `params` (float32 on the CPU).
  static bool Handles(const OptimizerSpec& spec, const std::vector<torch::Tensor>& params);
  // `params` as Handles accepted: contiguous, their gradients set before each
  // Step (contiguous too).
  OnePassAdam(std::vector<torch::Tensor> params, const OptimizerSpec& spec);
  // One step at learning rate `lr`; parameters without a gradient are skipped,
  // as torch::optim skips them.
  void Step(double lr);

 private:
  std::vector<torch::Tensor> params_, first_, second_;  // weights, their moments
  OptimizerSpec spec_;
  int64_t steps_ = 0;
};

}  // namespace graft::core
