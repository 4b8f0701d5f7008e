#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "core/eval/evaluator.h"
#include "core/serve/precision_check.h"

namespace graft::core {

// Runs `pass` (a model over labelled images) twice through the Predictor, in
// float32 and in `precision`, and measures the second against the first
// (top-1 agreement, probability differences) and both against the labels
// (accuracy); `passed` says whether `gate` holds. The precision must be
// supported here (PrecisionSupported's refusal, before any image runs);
// FAILED_PRECONDITION without images. `dataset` and `split` name them.
absl::StatusOr<PrecisionCheck> MeasurePrecision(const Predictor& predictor, DatasetPass pass, Precision precision,
                                                const PrecisionGate& gate, const std::string& dataset,
                                                const std::string& split, const PassProgressFn& progress = {},
                                                const Caller& caller = {});

// The preprocessed pixels a calibration holds at most (512 MiB: 891 images
// at 224 x 224).
inline constexpr int64_t kCalibrationBytes = int64_t{512} << 20;

// An int8 calibration of `model`'s backbone on `images` images of `pass`
// (evenly spaced through it, decoded and preprocessed as the model's; fewer
// where they would pass kCalibrationBytes: Int8Calibration::images says),
// through the float32 graph of its trunk (Zoo::CalibrateInt8). `dataset`
// and `split` name the images; FAILED_PRECONDITION without any.
absl::StatusOr<Int8Calibration> CalibrateModel(const Predictor& predictor, const DatasetPass& pass, int64_t images,
                                               const std::string& dataset, const std::string& split,
                                               const Caller& caller = {});

}  // namespace graft::core
