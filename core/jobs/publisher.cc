#include "core/jobs/publisher.h"

#include "absl/strings/str_cat.h"
#include "core/data/augment.h"
#include "core/eval/evaluator.h"
#include "core/util/ids.h"
#include "core/util/limit_error.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"

namespace graft::core {

absl::StatusOr<PreparedModel> ModelPublisher::Prepare(const JobRecord& job, const TrainedModel& trained,
                                                      const JobSpec& model_spec, const DatasetInfo& dataset,
                                                      const std::vector<DatasetImage>& images,
                                                      const std::vector<JobEvent>& events,
                                                      const Caller& caller) const {
  ASSIGN_OR_RETURN(const BackboneStatus backbone, zoo_.Get(model_spec.backbone));
  PreparedModel out;
  ModelInfo& info = out.info;
  info.id = NewId("model");
  info.job_id = job.id;
  info.owner = job.owner;
  info.name = model_spec.model_name;
  info.backbone = model_spec.backbone;
  for (const auto& c : dataset.classes) info.class_names.push_back(c.name);
  info.preprocessing = ForInputSize(backbone.spec->preprocessing, model_spec.input_size);  // as the trainer's
  info.final_metrics = trained.final_metrics;
  info.best_metrics = trained.best_metrics;
  LearningCurves curves = LearningCurvesOf(events);
  info.history = std::move(curves.epochs);
  info.restored_epochs = std::move(curves.restored_epochs);
  info.spec = model_spec;
  info.created_at = NowSeconds();
  info.trained_blocks = trained.trained_blocks;
  info.first_trained_block = trained.first_trained_block;
  auto serving = models_.Prepare(info, trained.weights);
  if (!serving.ok()) {
    return Rephrased(serving.status().code(), absl::StrCat("loading the model: ", serving.status().message()),
                     serving.status());
  }
  out.serving = *serving;
  if (predictor_ == nullptr) return out;
  DatasetPass pass;
  pass.model = out.serving;
  for (const DatasetImage& image : images) {
    if (image.split == Split::kVal) pass.images.push_back(image);
  }
  for (const auto& c : dataset.classes) pass.dataset_classes.push_back(c.name);
  auto evaluation = EvaluateAndProfile(*predictor_, pass, dataset.name, "val", model_spec.seed, {}, caller);
  if (evaluation.ok()) {
    info.report = std::move(evaluation->report);
    info.profile = std::move(evaluation->profile);
  } else if (caller.cancelled && caller.cancelled()) {
    out.evaluation_cancelled = true;
  } else {
    ABSL_LOG(ERROR) << "job " << job.id << ": the model is published without its report: " << evaluation.status().message();
  }
  return out;
}

absl::StatusOr<ModelInfo> ModelPublisher::Publish(const PreparedModel& prepared, const TrainedModel& trained) const {
  auto published = models_.Publish(prepared.info, trained.weights, prepared.serving);
  if (!published.ok()) {
    return Rephrased(published.status().code(), absl::StrCat("publishing the model: ", published.status().message()),
                     published.status());
  }
  return published;
}

}  // namespace graft::core
