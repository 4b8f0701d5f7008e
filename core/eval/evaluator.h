#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"
#include "core/eval/report.h"
#include "core/serve/predictor.h"

namespace graft::core {

// A model over a stored dataset's images, in chunks through the Predictor
// (the same batcher and preprocessing as Predict).
struct DatasetPass {
  std::shared_ptr<const ServingModel> model;
  std::vector<DatasetImage> images;         // the part to run, in order
  std::vector<std::string> dataset_classes; // the dataset's label -> class name
  int chunk = 32;                           // images per Predictor call
  std::optional<Precision> precision;       // the trunk's (unset: the model's own)
};

// Called after each chunk: images done, images in all.
using PassProgressFn = std::function<void(int64_t done, int64_t total)>;

// Each chunk's outputs (probabilities [n, model classes], embeddings) with
// its images, in order.
using ChunkFn = std::function<absl::Status(const std::vector<const DatasetImage*>& images, const ModelOutputs& out)>;

// Runs the pass; CANCELLED once `caller.cancelled` says so (checked per chunk).
absl::Status RunDatasetPass(const Predictor& predictor, const DatasetPass& pass, const ChunkFn& on_chunk,
                            const PassProgressFn& progress = {}, const Caller& caller = {});

// The dataset's labels as the model's class indices; INVALID_ARGUMENT naming
// the dataset classes the model does not have (only for classes with images
// in `images`).
absl::StatusOr<std::vector<int>> ModelLabels(const ServingModel& model, const std::vector<std::string>& dataset_classes,
                                             const std::vector<DatasetImage>& images);

// The evaluation report of `pass` (dataset and split name the report).
absl::StatusOr<EvaluationReport> EvaluateModel(const Predictor& predictor, const DatasetPass& pass,
                                               const std::string& dataset, const std::string& split,
                                               const PassProgressFn& progress = {},
                                               const Caller& caller = {});

struct Evaluation {
  EvaluationReport report;
  // The reference profile of the same images (core/serve/model_monitor.h);
  // null when it could not be made (logged).
  std::shared_ptr<const ReferenceProfile> profile;
};
// The report and, from the same pass, the model's reference profile
// (`seed` draws its sketch).
absl::StatusOr<Evaluation> EvaluateAndProfile(const Predictor& predictor, const DatasetPass& pass,
                                              const std::string& dataset, const std::string& split, uint64_t seed,
                                              const PassProgressFn& progress = {}, const Caller& caller = {});

}  // namespace graft::core
