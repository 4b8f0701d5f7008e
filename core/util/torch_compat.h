#pragma once

// Where LibTorch 1.13 (Debian 12) and LibTorch 2.x (Debian 13's 2.6, pip
// wheels, pytorch.org archives) differ: the only place graft reads
// TORCH_VERSION. Everything else calls these.

#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <torch/version.h>

#include <utility>
#include <variant>

#define GRAFT_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace graft::core::compat {

// A value out of the variants torch::nn options hold (c10::variant before
// 2.1, std::variant after).
template <typename T, typename Variant>
decltype(auto) Get(Variant&& v) {
#if GRAFT_TORCH_AT_LEAST(2, 1)
  return std::get<T>(std::forward<Variant>(v));
#else
  return c10::get<T>(std::forward<Variant>(v));
#endif
}

// Autocast state of this thread for a device type (kCPU or kCUDA); 2.4
// replaced the per-device functions with ones that take the device type.
inline bool AutocastEnabled(c10::DeviceType type) {
#if GRAFT_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

inline void SetAutocastEnabled(c10::DeviceType type, bool enabled) {
#if GRAFT_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

inline c10::ScalarType AutocastDtype(c10::DeviceType type) {
#if GRAFT_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                       : at::autocast::get_autocast_cpu_dtype();
#endif
}

inline void SetAutocastDtype(c10::DeviceType type, c10::ScalarType dtype) {
#if GRAFT_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

}  // namespace graft::core::compat
