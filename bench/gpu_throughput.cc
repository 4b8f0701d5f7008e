// bench/gpu_throughput: training and inference images/s of ResNet-50 and
// MobileNetV2 on one device, with and without mixed precision, against Python
// torch on the same device in the same invocation.
//
//   gpu_throughput [--device auto|cpu|cuda:N] [--archs a,b] [--batch 64] [--train_batch 32]
//                  [--min_seconds 3] [--python /usr/bin/python3]
//
// Inference is graft's serving path: the optimised copy (batch norm folded),
// each batch copied from pinned host memory (ToDevice), float16 autocast when
// mixed. Training is the whole network in train mode with SGD, bfloat16
// autocast when mixed. On a CPU-only machine mixed precision is off (the
// CUDA-only AutocastScope does nothing) and the figures say so.

#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <string>

#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "core/util/device.h"
#include "core/util/host_memory.h"
#include "core/zoo/registry.h"
#include "core/zoo/zoo.h"

namespace {

using graft::core::AutocastScope;
using graft::core::ToDevice;

struct Args {
  std::string device = "auto";
  std::string archs = "resnet50,mobilenet_v2";
  int64_t batch = 64, train_batch = 32;
  double min_seconds = 3.0;
  std::string python = GRAFT_PYTHON;
};

void Sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

// Images per second of `step` (which handles `batch` images), after warm-up.
double Rate(const torch::Device& device, int64_t batch, double min_seconds, const std::function<void()>& step) {
  for (int i = 0; i < 3; ++i) step();
  Sync(device);
  int iters = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (iters < 5 || elapsed < min_seconds) {
    step();
    ++iters;
    if (iters % 5 == 0) {
      Sync(device);
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
  }
  return static_cast<double>(batch * iters) / elapsed;
}

double Inference(const graft::core::BackboneSpec& spec, const torch::Device& device, bool mixed, const Args& a) {
  auto model = graft::core::MakeInferenceBackbone(spec, graft::core::ModuleStateDict(*spec.make()), device).value();
  const torch::Tensor host = torch::randn({a.batch, 3, 224, 224});
  return Rate(device, a.batch, a.min_seconds, [&] {
    c10::InferenceMode guard;
    const AutocastScope autocast(device, mixed, torch::kHalf);
    model->forward(ToDevice(host, device));
  });
}

double Training(const graft::core::BackboneSpec& spec, const torch::Device& device, bool mixed, const Args& a) {
  graft::core::BackbonePtr model = spec.make();
  model->to(device);
  model->train();
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const torch::Tensor host = torch::randn({a.train_batch, 3, 224, 224});
  const torch::Tensor labels = torch::randint(0, 1000, {a.train_batch}, torch::kLong).to(device);
  return Rate(device, a.train_batch, a.min_seconds, [&] {
    torch::Tensor loss;
    {
      const AutocastScope autocast(device, mixed, torch::kBFloat16);
      loss = torch::nn::functional::cross_entropy(model->forward(ToDevice(host, device)).to(torch::kFloat32), labels);
    }
    opt.zero_grad();
    loss.backward();
    opt.step();
  });
}

}  // namespace

int main(int argc, char** argv) {
  graft::core::RetainHostMemory();  // as graftd does (--retain_host_memory)
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--device") a.device = value;
    else if (flag == "--archs") a.archs = value;
    else if (flag == "--batch") a.batch = std::stoll(value);
    else if (flag == "--train_batch") a.train_batch = std::stoll(value);
    else if (flag == "--min_seconds") a.min_seconds = std::stod(value);
    else if (flag == "--python") a.python = value;
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  const auto resolved = graft::core::ResolveDevice(a.device);
  if (!resolved.ok()) {
    std::cerr << resolved.status() << "\n";
    return 2;
  }
  const torch::Device device = *resolved;
  torch::manual_seed(0);
  std::cout << "device: " << device.str() << "\n";
  if (!device.is_cuda()) std::cout << "note: mixed precision is CUDA-only; the mixed rows equal the float32 rows here\n";

  std::map<std::string, double> graft;
  for (const auto& arch : absl::StrSplit(a.archs, ',')) {
    const auto* spec = graft::core::Registry::BuiltIn().Find(std::string(arch));
    if (spec == nullptr) {
      std::cerr << "unknown backbone " << arch << "\n";
      return 2;
    }
    for (const bool mixed : {false, true}) {
      const std::string suffix = mixed ? "mixed" : "fp32";
      graft[spec->name + "/infer_" + suffix] = Inference(*spec, device, mixed, a);
      graft[spec->name + "/train_" + suffix] = Training(*spec, device, mixed, a);
    }
  }

  const std::string cmd = a.python + " " + GRAFT_BENCH_DIR + "/reference/gpu_throughput.py --device " +
                          device.str() + " --archs " + a.archs + " --batch " + std::to_string(a.batch) +
                          " --train_batch " + std::to_string(a.train_batch) + " --min_seconds " +
                          std::to_string(a.min_seconds);
  return graft::bench::CompareWithReference("gpu_throughput", cmd, graft, "torch") ? 0 : 1;
}
