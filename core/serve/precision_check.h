#pragma once

// What serving a model in another number format was measured to cost in
// answers, against float32 on the same images (graft models optimize).

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/statusor.h"
#include "core/zoo/precision.h"

namespace graft::core {

// The gate a precision must pass to serve (OptimizeModel).
struct PrecisionGate {
  double min_agreement = 0.99;     // top-1 agreement with float32, at least
  double max_accuracy_drop = 0.005;  // float32's accuracy minus the variant's, at most
  // Largest |p_variant - p_fp32| over every image and class, at most (1: no bound).
  double max_probability_difference = 1;
};
// The defaults for `p`: agreement 0.99 for bf16, 0.98 for int8; drop 0.005.
PrecisionGate DefaultGate(Precision p);
// INVALID_ARGUMENT naming a figure outside [0, 1].
absl::Status ValidateGate(const PrecisionGate& gate);

struct PrecisionCheck {
  Precision precision = Precision::kFp32;
  std::string dataset;  // the images measured on: the dataset's name and split
  std::string split;
  int64_t images = 0;
  double top1_agreement = 0;            // share of images with the same top-1 class
  double fp32_accuracy = 0;             // of the float32 answers
  double accuracy = 0;                  // of this precision's answers
  double max_probability_difference = 0;  // over every image and class
  double mean_probability_difference = 0;  // of |Δp| of float32's top-1 class, over the images
  double fp32_seconds = 0;              // the passes' wall time (decoding included)
  double seconds = 0;
  PrecisionGate gate;
  bool passed = false;
  double created_at = 0;  // Unix seconds
  int64_t calibration_images = 0;  // int8: images its ranges were calibrated on
};

// Whether `check`'s figures pass its gate; the reasons it does not (empty:
// passes), each naming the figure, the bound and its flag.
std::string GateFailures(const PrecisionCheck& check);

nlohmann::json PrecisionCheckToJson(const PrecisionCheck& check);
absl::StatusOr<PrecisionCheck> PrecisionCheckFromJson(const nlohmann::json& j);

}  // namespace graft::core
