#include "core/eval/precision_measure.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/util/files.h"
#include "core/util/ids.h"
#include "core/util/limit_error.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {

absl::StatusOr<PrecisionCheck> MeasurePrecision(const Predictor& predictor, DatasetPass pass, Precision precision,
                                                const PrecisionGate& gate, const std::string& dataset,
                                                const std::string& split, const PassProgressFn& progress,
                                                const Caller& caller) {
  RETURN_IF_ERROR(ValidateGate(gate));
  RETURN_IF_ERROR(PrecisionSupported(precision, predictor.zoo().device()));
  {  // the trunk made (or refused, a TorchScript backbone) before any image runs
    ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> resident,
                     predictor.zoo().AwaitResident(pass.model->info().backbone, caller.cancelled));
    const auto& calibration = pass.model->info().int8_calibration;
    RETURN_IF_ERROR(predictor.zoo().Trunk(*resident, precision, calibration ? &*calibration : nullptr).status());
  }
  if (pass.images.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("dataset '", dataset, "' has no ", split,
                                                      " images to measure precision ", PrecisionName(precision), " on"));
  }
  ASSIGN_OR_RETURN(const std::vector<int> labels, ModelLabels(*pass.model, pass.dataset_classes, pass.images));
  const int64_t total = static_cast<int64_t>(pass.images.size());
  // Both passes' probabilities, and how long each took.
  const auto run = [&](Precision p, int64_t offset, double& seconds) -> absl::StatusOr<torch::Tensor> {
    pass.precision = p;
    std::vector<torch::Tensor> chunks;
    const auto start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(RunDatasetPass(
        predictor, pass,
        [&](const std::vector<const DatasetImage*>&, const ModelOutputs& out) -> absl::Status {
          chunks.push_back(out.probabilities);
          return absl::OkStatus();
        },
        [&](int64_t done, int64_t) {
          if (progress) progress(offset + done, 2 * total);
        },
        caller));
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return GuardInternal("joining probabilities", [&]() -> absl::StatusOr<torch::Tensor> { return torch::cat(chunks, 0); });
  };
  PrecisionCheck check;
  check.precision = precision;
  check.dataset = dataset;
  check.split = split;
  check.gate = gate;
  check.created_at = NowSeconds();
  ASSIGN_OR_RETURN(const torch::Tensor fp32, run(Precision::kFp32, 0, check.fp32_seconds));
  ASSIGN_OR_RETURN(const torch::Tensor other, run(precision, total, check.seconds));
  RETURN_IF_ERROR(GuardInternal("comparing precisions", [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    const torch::Tensor truth = torch::tensor(std::vector<int64_t>(labels.begin(), labels.end()), torch::kLong);
    const torch::Tensor top_fp32 = fp32.argmax(1);
    const torch::Tensor top_other = other.argmax(1);
    check.images = fp32.size(0);
    check.top1_agreement = top_fp32.eq(top_other).to(torch::kDouble).mean().item<double>();
    check.fp32_accuracy = top_fp32.eq(truth).to(torch::kDouble).mean().item<double>();
    check.accuracy = top_other.eq(truth).to(torch::kDouble).mean().item<double>();
    const torch::Tensor diff = (other.to(torch::kDouble) - fp32.to(torch::kDouble)).abs();
    check.max_probability_difference = diff.max().item<double>();
    check.mean_probability_difference = diff.gather(1, top_fp32.unsqueeze(1)).mean().item<double>();
    return absl::OkStatus();
  }));
  check.passed = GateFailures(check).empty();
  if (precision == Precision::kInt8 && pass.model->info().int8_calibration) {
    check.calibration_images = pass.model->info().int8_calibration->images;
  }
  return check;
}

absl::StatusOr<Int8Calibration> CalibrateModel(const Predictor& predictor, const DatasetPass& pass, int64_t images,
                                               const std::string& dataset, const std::string& split,
                                               const Caller& caller) {
  if (pass.images.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset '", dataset, "' has no ", split, " images to calibrate int8 on"));
  }
  const int64_t total = static_cast<int64_t>(pass.images.size());
  const Preprocessing& p = pass.model->info().preprocessing;
  // Both calibration passes read the images: they are held preprocessed,
  // at most kCalibrationBytes of them whatever the input size.
  const int64_t per_image = 3 * int64_t{p.height} * p.width * static_cast<int64_t>(sizeof(float));
  const int64_t n = std::min({std::max<int64_t>(images, 1), total, std::max<int64_t>(1, kCalibrationBytes / per_image)});
  std::vector<torch::Tensor> batches;
  std::vector<ImageInput> chunk;
  for (int64_t i = 0; i < n; ++i) {
    if (caller.cancelled && caller.cancelled()) return absl::CancelledError("cancelled by the client");
    const DatasetImage& image = pass.images[static_cast<size_t>(i * total / n)];
    ASSIGN_OR_RETURN(std::string bytes, ReadFile(image.blob_path));
    chunk.push_back({std::move(bytes), {}});
    if (static_cast<int64_t>(chunk.size()) == pass.chunk || i + 1 == n) {
      auto made = predictor.Preprocess(p, chunk);
      if (!made.ok()) {
        return Rephrased(made.status().code(), absl::StrCat("calibration image '", image.path, "' and the ",
                                                            chunk.size() - 1, " before it: ", made.status().message()),
                         made.status());
      }
      batches.push_back(*std::move(made));
      chunk.clear();
    }
  }
  ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> resident,
                   predictor.zoo().AwaitResident(pass.model->info().backbone, caller.cancelled));
  ASSIGN_OR_RETURN(Int8Calibration calibration, predictor.zoo().CalibrateInt8(*resident, batches));
  calibration.dataset = dataset;
  calibration.split = split;
  return calibration;
}

}  // namespace graft::core
