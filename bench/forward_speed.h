#pragma once

// The batched forward every speed benchmark compares against: graft's
// inference path (batch norm folded, channels-last, inference mode) on a
// random input, after a warm-up, for at least `min_seconds`.

#include <cstdint>
#include <string>

namespace graft::bench {

// How the forward computes: "fp32" (what graftd serves today), "bf16"
// (float32 weights, the forward under CPU autocast to bfloat16) or
// "bf16_weights" (weights and input converted to bfloat16) or "int8" (the
// trunk statically quantized as graftd serves int8, core/zoo/int8.h; the
// classifier in float32).
bool KnownPrecision(const std::string& precision);

// Images per second of `arch` (a registry name) at `batch` x 3 x size x size
// on this thread's LibTorch threads; 0 when the registry does not know `arch`.
double ForwardImagesPerSecond(const std::string& arch, int64_t batch, int64_t input_size, double min_seconds,
                              int min_iters = 3, const std::string& precision = "fp32");

}  // namespace graft::bench
