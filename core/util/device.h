#pragma once

// Moving batches to the compute device and running them in mixed precision.
// On CUDA a host batch is copied from pinned (page-locked) memory without
// blocking the host, and forward passes may run under autocast; on CPU both
// are no-ops beyond the channels-last layout the CPU kernels prefer.

#include <ATen/core/ATen_fwd.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <optional>

namespace graft::core {

// Whether this LibTorch has CUDA compiled in, and whether a CUDA device is usable.
bool CudaCompiled();
bool CudaAvailable();

// `host` on `device`: pinned + non_blocking on CUDA, channels-last (4-d) on CPU.
at::Tensor ToDevice(const at::Tensor& host, const c10::Device& device);

// While alive, autocast for `type` (kCPU or kCUDA) is on for this thread in
// `dtype`; on destruction the state and dtype it found come back.
class ScopedAutocast {
 public:
  ScopedAutocast(c10::DeviceType type, c10::ScalarType dtype);
  ~ScopedAutocast();
  ScopedAutocast(const ScopedAutocast&) = delete;
  ScopedAutocast& operator=(const ScopedAutocast&) = delete;

 private:
  c10::DeviceType type_;
  bool was_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::Half;
};

// While alive, eligible ops on this thread run in `dtype` (float16 for
// inference, bfloat16 for training: no loss scaling needed) — on CUDA only
// and when `enabled`. Outputs may be in `dtype`; callers cast what leaves.
class AutocastScope {
 public:
  AutocastScope(const c10::Device& device, bool enabled, c10::ScalarType dtype);
  bool active() const { return scope_.has_value(); }

 private:
  std::optional<ScopedAutocast> scope_;
};

}  // namespace graft::core
