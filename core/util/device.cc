#include "core/util/device.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include "core/util/torch_compat.h"

namespace graft::core {

bool CudaCompiled() {
  try {
    (void)at::detail::getCUDAHooks().versionCUDART();  // the CPU-only stub throws
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

bool CudaAvailable() { return at::hasCUDA(); }

at::Tensor ToDevice(const at::Tensor& host, const c10::Device& device) {
  if (device.is_cuda()) {
    const at::Tensor source = host.is_cpu() && !host.is_pinned() ? host.contiguous().pin_memory() : host;
    return source.to(device, /*non_blocking=*/true);
  }
  const at::Tensor on = host.to(device);
  return on.dim() == 4 ? on.contiguous(at::MemoryFormat::ChannelsLast) : on;
}

ScopedAutocast::ScopedAutocast(c10::DeviceType type, c10::ScalarType dtype)
    : type_(type), was_enabled_(compat::AutocastEnabled(type)), previous_dtype_(compat::AutocastDtype(type)) {
  compat::SetAutocastEnabled(type, true);
  compat::SetAutocastDtype(type, dtype);
  at::autocast::increment_nesting();
}

ScopedAutocast::~ScopedAutocast() {
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  compat::SetAutocastEnabled(type_, was_enabled_);
  compat::SetAutocastDtype(type_, previous_dtype_);
}

AutocastScope::AutocastScope(const c10::Device& device, bool enabled, c10::ScalarType dtype) {
  if (enabled && device.is_cuda()) scope_.emplace(c10::DeviceType::CUDA, dtype);
}

}  // namespace graft::core
