#include "core/train/one_pass_adam.h"

#include <c10/util/Exception.h>

#include <cmath>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GRAFT_WIDEST_VECTORS __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GRAFT_WIDEST_VECTORS
#endif

namespace graft::core {
namespace {

struct Scalars {
  bool decoupled;     // AdamW: the weight decays before the update
  bool decays;        // weight_decay is not 0
  float decay;        // AdamW: 1 - lr * weight_decay
  float weight_decay; // Adam: added to the gradient times the weight
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float sqrt_correction2;  // sqrt(1 - beta2^t)
  float eps;
  float neg_step;  // -lr / (1 - beta1^t)
};

// Element by element what torch::optim's Adam step does with whole tensors:
//   grad += wd * p (Adam) | p *= 1 - lr * wd (AdamW)
//   m = m * b1 + (1 - b1) * grad;  v = v * b2 + (1 - b2) * grad * grad
//   p += -lr / (1 - b1^t) * (m / (sqrt(v) / sqrt(1 - b2^t) + eps))
// Its square roots and divisions are the work: the loop is compiled for
// AVX-512 and AVX2 too and the widest the CPU has runs (GCC; this file is
// compiled with -fno-math-errno so that the square root vectorizes).
GRAFT_WIDEST_VECTORS void Update(
    float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
    const Scalars& s) {
  // Locals, not loads through `s` that the stores could alias; the builtin
  // square root, which (unlike std::sqrt, compiled for the default target)
  // inlines into each clone.
  const bool decoupled = s.decays && s.decoupled, coupled = s.decays && !s.decoupled;
  const float decay = s.decay, weight_decay = s.weight_decay, beta1 = s.beta1, one_minus_beta1 = s.one_minus_beta1,
              beta2 = s.beta2, one_minus_beta2 = s.one_minus_beta2, sqrt_correction2 = s.sqrt_correction2,
              eps = s.eps, neg_step = s.neg_step;
  for (int64_t i = 0; i < n; ++i) {
    float grad = g[i];
    float weight = p[i];
    if (decoupled) weight = weight * decay;
    if (coupled) grad = grad + weight_decay * weight;
    const float first = m[i] * beta1 + one_minus_beta1 * grad;
    const float second = v[i] * beta2 + one_minus_beta2 * grad * grad;
    const float denom = __builtin_sqrtf(second) / sqrt_correction2 + eps;
    m[i] = first;
    v[i] = second;
    p[i] = weight + neg_step * (first / denom);
  }
}

}  // namespace

bool OnePassAdam::Handles(const OptimizerSpec& spec, const std::vector<torch::Tensor>& params) {
  if (spec.kind != OptimizerKind::kAdam && spec.kind != OptimizerKind::kAdamW) return false;
  for (const torch::Tensor& p : params) {
    if (!p.device().is_cpu() || p.scalar_type() != torch::kFloat32) return false;
  }
  return true;
}

OnePassAdam::OnePassAdam(std::vector<torch::Tensor> params, const OptimizerSpec& spec)
    : params_(std::move(params)), spec_(spec) {
  for (const torch::Tensor& p : params_) {
    first_.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
    second_.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
  }
}

void OnePassAdam::Step(double lr) {
  ++steps_;
  const double correction1 = 1 - std::pow(spec_.beta1, static_cast<double>(steps_));
  const double correction2 = 1 - std::pow(spec_.beta2, static_cast<double>(steps_));
  Scalars s;
  s.decoupled = spec_.kind == OptimizerKind::kAdamW;
  s.decays = spec_.weight_decay != 0;
  s.decay = static_cast<float>(1 - lr * spec_.weight_decay);
  s.weight_decay = static_cast<float>(spec_.weight_decay);
  s.beta1 = static_cast<float>(spec_.beta1);
  s.one_minus_beta1 = static_cast<float>(1 - spec_.beta1);
  s.beta2 = static_cast<float>(spec_.beta2);
  s.one_minus_beta2 = static_cast<float>(1 - spec_.beta2);
  s.sqrt_correction2 = static_cast<float>(std::sqrt(correction2));
  s.eps = static_cast<float>(1e-8);  // torch::optim::AdamOptions' and AdamWOptions' eps
  s.neg_step = static_cast<float>(-lr / correction1);
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i];
    const torch::Tensor& g = p.grad();
    if (!g.defined()) continue;
    TORCH_CHECK(p.is_contiguous() && g.is_contiguous() && g.scalar_type() == torch::kFloat32 &&
                    g.numel() == p.numel(),
                "OnePassAdam: a parameter or its gradient is not contiguous float32");
    Update(p.data_ptr<float>(), g.data_ptr<float>(), first_[i].data_ptr<float>(), second_[i].data_ptr<float>(),
           p.numel(), s);
  }
}

}  // namespace graft::core
