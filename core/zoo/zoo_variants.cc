// Zoo::Trunk's variants of a resident backbone's float32 trunk: its bfloat16
// copy and its int8 trunks (README, Precision). Part of Zoo (zoo.h).

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"
#include "core/zoo/state_dict.h"
#include "core/zoo/zoo.h"

namespace graft::core {

namespace {

// A copy of the trunk from the torchvision-named weights, batch norm folded,
// dense float32 weights (not the oneDNN layout `inference` serves in): what
// the bf16 and int8 variants are made from. Throws as LibTorch does.
BackbonePtr FoldedCopy(const ResidentBackbone& backbone) {
  const BackboneSpec& spec = *backbone.spec;
  BackbonePtr m = spec.make();
  const absl::Status loaded = LoadStateDict(*m, ModuleStateDict(*backbone.module));
  if (!loaded.ok()) throw std::runtime_error(std::string(loaded.message()));
  if (spec.custom) m->to(backbone.device);
  m->FoldBatchNorm();
  return m;
}

// The trunk's int8 graph (core/zoo/int8.h).
absl::StatusOr<std::unique_ptr<Int8Graph>> Int8GraphOf(const ResidentBackbone& backbone) {
  const BackboneSpec& spec = *backbone.spec;
  if (spec.custom || !backbone.device.is_cpu()) {
    return absl::FailedPreconditionError(absl::StrCat("backbone '", spec.name, "' has no int8 form: ",
                                                      spec.custom ? "it is a TorchScript backbone" : "int8 runs on CPU"));
  }
  BackbonePtr m;
  RETURN_IF_ERROR(GuardInternal("float32 copy of " + spec.name, [&]() -> absl::Status {
    m = FoldedCopy(backbone);
    return absl::OkStatus();
  }));
  return LowerTrunk(*m, spec.name);
}

}  // namespace

absl::StatusOr<Int8Calibration> Zoo::CalibrateInt8(const ResidentBackbone& backbone,
                                                   const std::vector<torch::Tensor>& batches) const {
  RETURN_IF_ERROR(PrecisionSupported(Precision::kInt8, backbone.device));
  ASSIGN_OR_RETURN(const std::unique_ptr<Int8Graph> graph, Int8GraphOf(backbone));
  return CalibrateGraph(*graph, batches);
}

absl::StatusOr<BackbonePtr> Zoo::Trunk(ResidentBackbone& backbone, Precision precision,
                                       const Int8Calibration* calibration) const {
  RETURN_IF_ERROR(PrecisionSupported(precision, backbone.device));
  if (precision == Precision::kInt8) {
    if (calibration == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("int8 on backbone '", backbone.spec->name,
                                                        "' needs a calibration: graft models optimize MODEL "
                                                        "--precision int8 makes one"));
    }
    const std::string key = calibration->Fingerprint();
    absl::MutexLock lock(&backbone.variant_mu);
    auto& variants = backbone.int8;
    for (auto it = variants.begin(); it != variants.end(); ++it) {
      if (it->fingerprint != key) continue;
      std::rotate(it, it + 1, variants.end());  // most recently used last
      return variants.back().trunk;
    }
    ASSIGN_OR_RETURN(std::unique_ptr<Int8Graph> graph, Int8GraphOf(backbone));
    RETURN_IF_ERROR(graph->Quantize(*calibration));
    auto trunk = std::make_shared<Int8TrunkImpl>(backbone.module->blocks(), std::move(graph));
    RETURN_IF_ERROR(GuardInternal("int8 trunk of " + backbone.spec->name, [&]() -> absl::Status {
      c10::InferenceMode guard;  // one image now, not in a request
      const Preprocessing& p = backbone.spec->preprocessing;
      trunk->ForwardTrunk(torch::zeros({1, 3, p.height, p.width}));
      return absl::OkStatus();
    }));
    if (variants.size() >= kMaxInt8Trunks) variants.erase(variants.begin());
    variants.push_back({key, trunk, Charge(DeviceLedger::Kind::kModel, trunk->StateBytes())});
    ABSL_LOG(INFO) << "backbone " << backbone.spec->name << ": int8 trunk made for calibration " << key << " ("
                   << trunk->StateBytes() << " bytes)";
    return BackbonePtr(trunk);
  }
  if (precision == Precision::kFp32 || backbone.device.is_cuda()) return backbone.inference;
  absl::MutexLock lock(&backbone.variant_mu);
  if (backbone.bf16 != nullptr) return backbone.bf16;
  const BackboneSpec& spec = *backbone.spec;
  auto made = GuardInternal("bfloat16 copy of " + spec.name, [&]() -> absl::StatusOr<BackbonePtr> {
    BackbonePtr m = FoldedCopy(backbone);
    PrepareForInference(*m, backbone.device);
    m->to(torch::kBFloat16);
    // A TorchScript backbone may hold float32 constants a bfloat16 input
    // cannot meet: one image through it says so now, not in a request.
    c10::InferenceMode guard;
    const Preprocessing& p = spec.preprocessing;
    m->forward(torch::zeros({1, 3, p.height, p.width}, torch::kBFloat16).contiguous(torch::MemoryFormat::ChannelsLast));
    return m;
  });
  if (!made.ok()) {
    // The interpreter's report ends with the error itself ("RuntimeError: ...").
    const std::string why(made.status().message());
    const size_t error = why.rfind("Error: ");
    return absl::FailedPreconditionError(absl::StrCat(
        "backbone '", spec.name, "' cannot run in bf16: ",
        error == std::string::npos ? why.substr(0, why.find('\n')) : why.substr(error + 7, why.find('\n', error) - error - 7)));
  }
  BackbonePtr m = *std::move(made);
  backbone.bf16_charge = Charge(DeviceLedger::Kind::kModel, m->StateBytes());
  backbone.bf16 = m;
  ABSL_LOG(INFO) << "backbone " << spec.name << ": bfloat16 trunk made (" << m->StateBytes() << " bytes)";
  return m;
}

}  // namespace graft::core
