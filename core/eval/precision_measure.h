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

}  // namespace graft::core
