// bench/backbone_forward: images/s of graft's inference forward (the path
// Predict uses: eval, inference mode, channels-last) for zoo backbones at
// batch 1 and 32, and the ratio against Python eager torchvision measured in
// the same invocation with the same thread count.
//
//   backbone_forward [--threads N] [--min_seconds S] [--archs a,b] [--batches 1,32] [--input_size 224]
//                    [--precision fp32|bf16|bf16_weights|int8]
//
// --precision bf16 runs graft's forward under CPU autocast to bfloat16 and the
// reference under torch.autocast('cpu', bfloat16); bf16_weights converts
// graft's weights and input to bfloat16 (the reference stays on autocast);
// int8 runs graft's quantized trunk against FX static int8 on onednn.

#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "bench/forward_speed.h"
#include "core/util/compute_threads.h"
#include "core/util/host_memory.h"
#include "core/zoo/registry.h"

namespace {

struct Args {
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  double min_seconds = 3.0;
  int min_iters = 3;
  std::string archs = "resnet18,resnet50,mobilenet_v2";
  std::string batches = "1,32";
  int64_t input_size = 224;
  std::string precision = "fp32";
};

}  // namespace

int main(int argc, char** argv) {
  graft::core::RetainHostMemory();  // as graftd does (--retain_host_memory)
  graft::core::UseSingleThreadedBlas();  // as graftd does
  Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--threads") args.threads = std::stoi(value);
    else if (flag == "--min_seconds") args.min_seconds = std::stod(value);
    else if (flag == "--archs") args.archs = value;
    else if (flag == "--batches") args.batches = value;
    else if (flag == "--input_size") args.input_size = std::stoll(value);
    else if (flag == "--precision") args.precision = value;
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  if (!graft::bench::KnownPrecision(args.precision)) {
    std::cerr << "--precision is fp32, bf16, bf16_weights or int8, not " << args.precision << "\n";
    return 2;
  }
  torch::set_num_threads(args.threads);
  torch::manual_seed(0);
  std::cout << "threads: " << args.threads << "\ninput_size: " << args.input_size << "\nprecision: " << args.precision
            << "\n";

  std::map<std::string, double> graft;
  for (const auto& arch : absl::StrSplit(args.archs, ',')) {
    const auto* spec = graft::core::Registry::BuiltIn().Find(std::string(arch));
    if (spec == nullptr) {
      std::cerr << "unknown backbone " << arch << "\n";
      return 2;
    }
    for (const auto& b : absl::StrSplit(args.batches, ',')) {
      const int64_t batch = std::stoll(std::string(b));
      const std::string key = spec->name + "/" + std::to_string(batch);
      graft[key] = graft::bench::ForwardImagesPerSecond(spec->name, batch, args.input_size, args.min_seconds,
                                                        args.min_iters, args.precision);
      if (args.precision != "fp32") {
        // graft's own float32 forward in the same run: the speed-up this precision buys.
        const double fp32 =
            graft::bench::ForwardImagesPerSecond(spec->name, batch, args.input_size, args.min_seconds, args.min_iters);
        std::printf("backbone_forward/%s/graft_fp32_img_s: %.2f\nbackbone_forward/%s/%s_vs_fp32: %.2f\n", key.c_str(),
                    fp32, key.c_str(), args.precision.c_str(), fp32 > 0 ? graft[key] / fp32 : 0.0);
      }
    }
  }

  const std::string cmd = std::string(GRAFT_PYTHON) + " " + GRAFT_BENCH_DIR + "/reference/backbone_forward.py --threads " +
                          std::to_string(args.threads) + " --min_seconds " + std::to_string(args.min_seconds) +
                          " --archs " + args.archs + " --batches " + args.batches +
                          " --input_size " + std::to_string(args.input_size) +
                          (args.precision == "fp32" ? "" : args.precision == "int8" ? " --int8" : " --autocast_bf16");
  return graft::bench::CompareWithReference("backbone_forward", cmd, graft, "torch_eager") ? 0 : 1;
}
