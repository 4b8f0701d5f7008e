#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"
#include "core/jobs/job_store.h"
#include "core/serve/model_store.h"
#include "core/serve/predictor.h"
#include "core/train/trainer.h"
#include "core/zoo/zoo.h"

namespace graft::core {

// A trained model on its way to being served, checked but not yet stored.
struct PreparedModel {
  ModelInfo info;
  std::shared_ptr<const ServingModel> serving;
  // The validation pass was cancelled (the caller's cancel tripped during
  // it): the model has no report. A pass that failed otherwise is logged
  // and the model is published without a report.
  bool evaluation_cancelled = false;
};

// Turns what a job trained into a published model: its record (classes,
// the preprocessing of the job's input size, learning curves from the job's
// events), the weights loaded as a serving model, a report of it on the
// job's validation images through the serving path, then stored and named.
class ModelPublisher {
 public:
  // `predictor`: evaluates before publishing; null: no report.
  ModelPublisher(const Zoo& zoo, ModelStore& models, const Predictor* predictor)
      : zoo_(zoo), models_(models), predictor_(predictor) {}

  // Everything up to storing: FAILED_PRECONDITION and the like with the
  // reason when the backbone is gone or the weights do not load. A failed
  // or cancelled evaluation is not an error (PreparedModel::evaluation_cancelled).
  absl::StatusOr<PreparedModel> Prepare(const JobRecord& job, const TrainedModel& trained, const JobSpec& model_spec,
                                        const DatasetInfo& dataset, const std::vector<DatasetImage>& images,
                                        const std::vector<JobEvent>& events, const Caller& caller) const;
  // Stores the model and its name; nothing is kept when this fails.
  absl::StatusOr<ModelInfo> Publish(const PreparedModel& prepared, const TrainedModel& trained) const;

 private:
  const Zoo& zoo_;
  ModelStore& models_;
  const Predictor* predictor_;
};

}  // namespace graft::core
