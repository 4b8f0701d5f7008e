#pragma once

// An evaluation report's figures: plain types stored with each model (the
// model store) and computed over a dataset by core/eval.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/statusor.h"

namespace graft::core {

// What a model gets right and wrong on a set of labelled images.
struct ClassReport {
  std::string name;
  double precision = 0;  // of the images predicted as this class, the share that are (0 when none is)
  double recall = 0;     // of this class's images, the share predicted as it (0 when it has none)
  double f1 = 0;         // harmonic mean of the two (0 when both are 0)
  int64_t support = 0;   // images of this class
  int64_t predicted = 0; // images predicted as this class
};

struct ConfusedPair {
  int true_class = 0;
  int predicted_class = 0;
  int64_t count = 0;
};

// Images whose top-1 confidence falls in (lower, upper].
struct ReliabilityBin {
  double lower = 0;
  double upper = 0;
  int64_t count = 0;
  double confidence = 0;  // mean top-1 probability in the bin (0 when empty)
  double accuracy = 0;    // share right in the bin (0 when empty)
};

struct HardExample {
  std::string file;       // the dataset's file name
  int true_class = 0;
  int predicted_class = 0;
  double predicted_probability = 0;
  double true_probability = 0;
  double loss = 0;        // -log(true_probability)
  std::string thumbnail;  // JPEG, at most kThumbnailSide pixels a side; empty: none
};

inline constexpr int kThumbnailSide = 128;
// Reports of more classes keep no dense confusion matrix: at 36,000 classes
// it would be 10 GB (and every model listing would carry it).
inline constexpr int64_t kMaxDenseConfusionClasses = 256;

struct EvaluationReport {
  std::string model;     // model id
  std::string dataset;   // dataset name
  std::string split;     // "val", "train" or "all"
  int64_t images = 0;
  double accuracy = 0;
  double top5_accuracy = 0;  // top-min(5, classes)
  double log_loss = 0;       // mean -log p(true class), p clipped to [1e-15, 1]
  double macro_f1 = 0;       // mean F1 over the classes with images or predictions
  double weighted_f1 = 0;    // F1 weighted by support
  double expected_calibration_error = 0;  // sum over bins of |accuracy - confidence| * count / images
  std::vector<ClassReport> classes;
  // Row-major [true][predicted], classes x classes; empty beyond
  // kMaxDenseConfusionClasses classes (most_confused and the per-class
  // figures still hold every cell that counts).
  std::vector<int64_t> confusion;
  std::vector<ConfusedPair> most_confused;  // off-diagonal cells, largest first (at most 10, none empty)
  std::vector<ReliabilityBin> reliability;
  std::vector<HardExample> highest_loss;
  double computed_at = 0;    // seconds since the epoch
  double seconds = 0;        // how long the evaluation took
};

nlohmann::json EvaluationReportToJson(const EvaluationReport& r);
absl::StatusOr<EvaluationReport> EvaluationReportFromJson(const nlohmann::json& j);

}  // namespace graft::core
