#include "core/util/device.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

namespace graft::core {

at::Tensor ToDevice(const at::Tensor& host, const c10::Device& device) {
  if (device.is_cuda()) {
    const at::Tensor source = host.is_cpu() && !host.is_pinned() ? host.contiguous().pin_memory() : host;
    return source.to(device, /*non_blocking=*/true);
  }
  const at::Tensor on = host.to(device);
  return on.dim() == 4 ? on.contiguous(at::MemoryFormat::ChannelsLast) : on;
}

AutocastScope::AutocastScope(const c10::Device& device, bool enabled, c10::ScalarType dtype) {
  if (!enabled || !device.is_cuda()) return;
  active_ = true;
  was_enabled_ = at::autocast::is_enabled();
  previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
  at::autocast::set_enabled(true);
  at::autocast::set_autocast_gpu_dtype(dtype);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_enabled(was_enabled_);
  at::autocast::set_autocast_gpu_dtype(previous_dtype_);
}

}  // namespace graft::core
