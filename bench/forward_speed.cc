#include "bench/forward_speed.h"

#include <c10/core/InferenceMode.h>
#include <torch/torch.h>

#include <chrono>

#include "core/zoo/registry.h"
#include "core/zoo/zoo.h"

namespace graft::bench {

double ForwardImagesPerSecond(const std::string& arch, int64_t batch, int64_t input_size, double min_seconds,
                              int min_iters) {
  const auto* spec = core::Registry::BuiltIn().Find(arch);
  if (spec == nullptr) return 0;
  // What graftd serves and extracts features with.
  auto model = core::MakeInferenceBackbone(*spec, core::ModuleStateDict(*spec->make()), torch::kCPU).value();
  c10::InferenceMode guard;
  const torch::Tensor x =
      torch::randn({batch, 3, input_size, input_size}).contiguous(torch::MemoryFormat::ChannelsLast);
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
