#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "core/serve/evaluation_report.h"

namespace graft::core {

struct ReportOptions {
  int bins = 15;             // reliability bins over (0, 1]
  int hardest = 16;          // highest-loss images kept
  int confused_pairs = 10;
};

// The report from per-image class probabilities ([N, C], rows summing to 1),
// true labels (N, each in [0, C)) and file names (N). INVALID_ARGUMENT when
// the shapes or labels disagree. Fills everything but model, dataset, split,
// computed_at and seconds.
absl::StatusOr<EvaluationReport> ComputeReport(const torch::Tensor& probabilities, const std::vector<int>& labels,
                                               const std::vector<std::string>& files,
                                               const std::vector<std::string>& class_names,
                                               const ReportOptions& options = {});

}  // namespace graft::core
