#pragma once

// The number formats a backbone's frozen trunk may serve in, and whether this
// machine computes them fast.

#include <torch/types.h>

#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace graft::core {

// kFp32: the trunk as loaded (oneDNN layout on CPU). kBf16: on CPU a copy of
// the trunk with bfloat16 weights (batch norm folded, dense layout: LibTorch
// 1.13's bfloat16 casts do not take oneDNN-blocked weights), fed bfloat16
// and read back as float32; on CUDA the float32 trunk under bfloat16
// autocast. kInt8 (CPU): the trunk statically quantized, per-channel int8
// weights and uint8 activations calibrated per model (core/zoo/int8.h).
enum class Precision { kFp32, kBf16, kInt8 };

std::string PrecisionName(Precision p);  // "fp32", "bf16", "int8"
// INVALID_ARGUMENT naming the accepted values.
absl::StatusOr<Precision> ParsePrecision(const std::string& name);

// The CPU's instruction-set flags as /proc/cpuinfo lists them (empty where
// it cannot be read).
const std::set<std::string>& CpuFlags();
// OK when `flags` hold an instruction set that computes bfloat16 natively
// (avx512_bf16, amx_bf16); else FAILED_PRECONDITION naming the missing one.
absl::Status CpuBf16Support(const std::set<std::string>& flags);
// Whether a trunk on `device` may serve in `p` here: float32 always; bf16 on
// CUDA, or on a CPU with native bfloat16 (CpuBf16Support); int8 on CPU with
// a quantized engine (SelectInt8Engine), UNIMPLEMENTED on CUDA.
absl::Status PrecisionSupported(Precision p, const torch::Device& device);

}  // namespace graft::core
