#include "core/zoo/precision.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/zoo/int8.h"

namespace graft::core {

std::string PrecisionName(Precision p) {
  switch (p) {
    case Precision::kBf16:
      return "bf16";
    case Precision::kInt8:
      return "int8";
    case Precision::kFp32:
      break;
  }
  return "fp32";
}

absl::StatusOr<Precision> ParsePrecision(const std::string& name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "fp32" || n == "float32") return Precision::kFp32;
  if (n == "bf16" || n == "bfloat16") return Precision::kBf16;
  if (n == "int8") return Precision::kInt8;
  return absl::InvalidArgumentError(absl::StrCat("precision '", name, "' is not one of fp32, bf16, int8"));
}

const std::set<std::string>& CpuFlags() {
  static const std::set<std::string> flags = [] {
    std::set<std::string> out;
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      // x86: "flags : fpu vme ..."; the first processor speaks for all.
      if (line.rfind("flags", 0) != 0) continue;
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::istringstream words(line.substr(colon + 1));
      for (std::string w; words >> w;) out.insert(w);
      break;
    }
    return out;
  }();
  return flags;
}

absl::Status CpuBf16Support(const std::set<std::string>& flags) {
  if (flags.count("avx512_bf16") > 0 || flags.count("amx_bf16") > 0) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "bf16 needs a CPU with native bfloat16 arithmetic (the avx512_bf16 or amx_bf16 instruction set); this CPU "
      "has neither (/proc/cpuinfo flags), so bfloat16 would run emulated and slower than fp32");
}

absl::Status PrecisionSupported(Precision p, const torch::Device& device) {
  switch (p) {
    case Precision::kFp32:
      return absl::OkStatus();
    case Precision::kBf16:
      return device.is_cuda() ? absl::OkStatus() : CpuBf16Support(CpuFlags());
    case Precision::kInt8:
      break;
  }
  if (device.is_cuda()) return absl::UnimplementedError("int8 runs on CPU only; on CUDA serve bf16 or fp32");
  return SelectInt8Engine();
}

}  // namespace graft::core
