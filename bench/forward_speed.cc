#include "bench/forward_speed.h"

#include <c10/core/InferenceMode.h>
#include <torch/torch.h>

#include <chrono>
#include <optional>

#include "core/util/device.h"
#include "core/zoo/int8.h"
#include "core/zoo/registry.h"
#include "core/zoo/zoo.h"

namespace graft::bench {

bool KnownPrecision(const std::string& precision) {
  return precision == "fp32" || precision == "bf16" || precision == "bf16_weights" || precision == "int8";
}

double ForwardImagesPerSecond(const std::string& arch, int64_t batch, int64_t input_size, double min_seconds,
                              int min_iters, const std::string& precision) {
  const auto* spec = core::Registry::BuiltIn().Find(arch);
  if (spec == nullptr || !KnownPrecision(precision)) return 0;
  // What graftd serves and extracts features with. The bfloat16 forwards
  // keep dense weights: LibTorch 1.13's autocast and bfloat16 casts do not
  // take the oneDNN-blocked convolution weights (BackboneImpl::UseOneDnnLayout).
  core::BackbonePtr model;
  if (precision == "int8") {
    // What graftd serves for an int8 model: the quantized trunk (calibrated
    // here on the random input), dequantized, then the float32 classifier.
    if (!core::SelectInt8Engine().ok()) return 0;
    model = spec->make();
    model->FoldBatchNorm();
    auto graph = core::LowerTrunk(*model, arch);
    if (!graph.ok()) return 0;
    c10::InferenceMode guard;
    const torch::Tensor x = torch::randn({batch, 3, input_size, input_size});
    core::Int8Calibration calibration;
    calibration.ranges.assign((*graph)->values(), {1e9f, -1e9f});
    (*graph)->RunFloat(x, 0, (*graph)->blocks(), &calibration.ranges);
    if (!(*graph)->Quantize(calibration).ok()) return 0;
    core::Int8TrunkImpl trunk(model->blocks(), *std::move(graph));
    auto forward = [&] { return model->ForwardHead(trunk.ForwardTrunk(x).dequantize()); };
    forward();  // warm-up
    int iters = 0;
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0;
    while (iters < min_iters || elapsed < min_seconds) {
      forward();
      ++iters;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    return static_cast<double>(batch * iters) / elapsed;
  }
  if (precision == "fp32") {
    model = core::MakeInferenceBackbone(*spec, core::ModuleStateDict(*spec->make()), torch::kCPU).value();
  } else {
    model = spec->make();
    model->FoldBatchNorm();
    core::PrepareForInference(*model, torch::kCPU);
  }
  c10::InferenceMode guard;
  torch::Tensor x = torch::randn({batch, 3, input_size, input_size}).contiguous(torch::MemoryFormat::ChannelsLast);
  std::optional<core::ScopedAutocast> autocast;
  if (precision == "bf16") autocast.emplace(c10::DeviceType::CPU, torch::kBFloat16);
  if (precision == "bf16_weights") {
    model->to(torch::kBFloat16);
    x = x.to(torch::kBFloat16);
  }
  model->forward(x);  // warm-up
  int iters = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (iters < min_iters || elapsed < min_seconds) {
    model->forward(x);
    ++iters;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return static_cast<double>(batch * iters) / elapsed;
}

}  // namespace graft::bench
