#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/auth/token_store.h"
#include "core/data/dataset_store.h"
#include "core/jobs/job_store.h"
#include "core/serve/evaluation_report.h"
#include "core/serve/model_store.h"
#include "core/serve/predictor.h"
#include "core/train/job_spec.h"

namespace graft::core {

// The report's figure for `metric` (accuracy, macro F1, log loss).
double MetricValue(const EvaluationReport& report, Monitor metric);

// Whether `challenger` beats `champion` on `metric` by at least min_gain
// (higher is better, but lower for the loss).
bool ChallengerWins(Monitor metric, double champion, double challenger, double min_gain);

// Decides a job's promotion (spec.promotion) once its model is published:
// the challenger and the version the alias serves now are evaluated on every
// image of the holdout through the serving path (as background work, so
// that predictions keep their latency), and the alias moves (or starts a
// canary) only when the challenger wins. The decision never fails the job:
// what went wrong is the result's reason, and the alias stays.
class Promoter {
 public:
  Promoter(ModelStore& models, DatasetStore& datasets, const Predictor* predictor)
      : models_(models), datasets_(datasets), predictor_(predictor) {}

  PromotionResult Decide(const JobSpec& spec, const ModelInfo& challenger, const Caller& caller) const;

 private:
  // The report of model `id` on the holdout's images.
  absl::StatusOr<EvaluationReport> Evaluate(const std::string& id, const DatasetInfo& holdout,
                                            const std::vector<DatasetImage>& images, const Caller& caller) const;

  ModelStore& models_;
  DatasetStore& datasets_;
  const Predictor* predictor_;
};

// What `graft retrain` asks: a new version of a served model, trained with
// its spec on its data plus `add_datasets`, optionally promoted.
struct RetrainRequest {
  std::string model;  // NAME@ALIAS, NAME:VERSION, NAME or a model id
  std::vector<std::string> add_datasets;
  std::optional<int> epochs;  // every stage's epochs; unset: the model's
  std::string name;           // the job's label
  bool has_promotion = false;
  PromotionSpec promotion;
};

// The job spec of a retrain: the model's own (its backbone, head, stages,
// seed, dataset) publishing the next version of its name. NOT_FOUND for a
// model the caller cannot see; FAILED_PRECONDITION for a model without a
// name (there would be no alias to promote).
absl::StatusOr<JobSpec> RetrainSpec(ModelStore& models, const RetrainRequest& request, const Principal& by);

}  // namespace graft::core
