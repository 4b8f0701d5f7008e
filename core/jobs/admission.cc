#include "core/jobs/admission.h"

#include "absl/strings/str_cat.h"
#include "core/auth/policy.h"
#include "core/jobs/training_data.h"
#include "core/train/job_cost.h"
#include "core/util/limit_error.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {

absl::Status JobAdmission::Admit(JobSpec& spec, const Principal& by) const {
  if (spec.backbone.empty()) return absl::InvalidArgumentError("spec.backbone: required (a name from graft backbones)");
  auto found = zoo_.Resident(spec.backbone);
  if (absl::IsNotFound(found.status())) {
    // A name that names nothing is NOT_FOUND in every RPC (Predict's
    // backbone, a job's dataset, a model), with the field it came in.
    return absl::NotFoundError(absl::StrCat("spec.backbone: unknown backbone '", spec.backbone,
                                            "'; graft backbones lists the names"));
  }
  // Weights being fetched on first use: the job waits for them in QUEUED;
  // no room for the backbone now: it waits for room when it starts.
  if (!found.ok() && !absl::IsUnavailable(found.status()) && !absl::IsResourceExhausted(found.status())) {
    return found.status();
  }
  ASSIGN_OR_RETURN(const BackboneStatus backbone, zoo_.Get(spec.backbone));
  spec.backbone = backbone.spec->name;
  const int num_blocks = static_cast<int>(backbone.blocks.size());
  RETURN_IF_ERROR(NormalizeJobSpec(spec, num_blocks));
  if (backbone.spec->custom) {
    for (size_t i = 0; i < spec.stages.size(); ++i) {
      if (TrainableBlocks(spec.stages[i].train, num_blocks) > 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "stages[", i, "].train: '", spec.backbone,
            "' is a custom TorchScript backbone, which graft trains frozen only; use train: head"));
      }
    }
  }
  ASSIGN_OR_RETURN(const DatasetInfo found_dataset, DatasetFor(spec, by));
  const DatasetInfo* dataset = &found_dataset;
  if (spec.validation_fraction > 0 && dataset->layout == DatasetLayout::kTrainVal) {
    return absl::InvalidArgumentError(absl::StrCat("spec.validation_fraction: dataset '", dataset->name,
                                                   "' has its own val/ folder; leave validation_fraction at 0"));
  }
  if (dataset->val_images == 0 && spec.validation_fraction == 0) {
    return absl::FailedPreconditionError(absl::StrCat("dataset '", dataset->name, "' has no validation images"));
  }
  spec.dataset = dataset->id;
  RETURN_IF_ERROR(AdmitAddedData(spec, by));
  // The estimate measures activations with a forward pass; a backbone whose
  // weights are still being fetched is measured with random ones.
  std::shared_ptr<ResidentBackbone> measured = found.ok() ? *found : nullptr;
  if (measured == nullptr) {
    ASSIGN_OR_RETURN(measured, GuardInternal("building " + spec.backbone,
                                             [&]() -> absl::StatusOr<std::shared_ptr<ResidentBackbone>> {
                                               auto r = std::make_shared<ResidentBackbone>();
                                               r->spec = backbone.spec;
                                               r->device = torch::Device(torch::kCPU);
                                               r->module = backbone.spec->make();
                                               r->module->eval();
                                               r->inference = r->module;
                                               return r;
                                             }));
  }
  ASSIGN_OR_RETURN(const JobCost cost,
                   EstimateJobCost(spec, *measured, static_cast<int>(dataset->classes.size())));
  RETURN_IF_ERROR(CheckJobCost(cost, spec, limits_.max_job_memory_bytes));
  // A search trains each of its heads as the job's first stage: every one is
  // costed as a job would be (jobs, searches and range tests all pass here).
  if (spec.has_search) {
    for (size_t i = 0; i < spec.search.heads.size(); ++i) {
      JobSpec trial = spec;
      trial.head = spec.search.heads[i];
      trial.stages.resize(1);
      ASSIGN_OR_RETURN(const JobCost trial_cost,
                       EstimateJobCost(trial, *measured, static_cast<int>(dataset->classes.size())));
      if (absl::Status s = CheckJobCost(trial_cost, trial, limits_.max_job_memory_bytes); !s.ok()) {
        return Rephrased(s.code(), absl::StrCat("spec.search.heads[", i, "]: ", s.message()), s);
      }
    }
  }
  if (spec.workers > 1 && !limits_.shared) {
    return absl::FailedPreconditionError(absl::StrCat(
        "spec.workers: ", spec.workers, " trainers share a job only when trainer processes share a PostgreSQL "
        "database (--database=postgresql://...); this graftd runs alone on SQLite: use workers 1"));
  }
  return absl::OkStatus();
}

absl::StatusOr<DatasetInfo> JobAdmission::DatasetFor(const JobSpec& spec, const Principal& by) const {
  return OwnedDataset(spec.dataset, "spec.dataset", by);
}

absl::StatusOr<DatasetInfo> JobAdmission::OwnedDataset(const std::string& ref, const std::string& field,
                                                       const Principal& by) const {
  auto dataset = datasets_.Resolve(ref, by.name, SeesEveryOwner(by));
  if (!dataset.ok()) {
    return Rephrased(dataset.status().code(), absl::StrCat(field, ": ", dataset.status().message()), dataset.status());
  }
  if (!Owns(by, dataset->owner)) {
    return absl::PermissionDeniedError(absl::StrCat(field, ": dataset '", ref, "' belongs to another principal"));
  }
  return *std::move(dataset);
}

absl::Status JobAdmission::AdmitAddedData(JobSpec& spec, const Principal& by) const {
  for (size_t i = 0; i < spec.add_datasets.size(); ++i) {
    const std::string field = absl::StrCat("spec.add_datasets[", i, "]");
    ASSIGN_OR_RETURN(const DatasetInfo added, OwnedDataset(spec.add_datasets[i], field, by));
    if (added.id == spec.dataset) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": '", added.name, "' is the job's dataset already"));
    }
    for (size_t k = 0; k < i; ++k) {
      if (spec.add_datasets[k] == added.id) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": '", added.name, "' is added twice"));
      }
    }
    spec.add_datasets[i] = added.id;
  }
  if (!spec.has_promotion) return absl::OkStatus();
  ASSIGN_OR_RETURN(const DatasetInfo holdout, OwnedDataset(spec.promotion.holdout, "spec.promotion.holdout", by));
  spec.promotion.holdout = holdout.id;
  // The same content check however the holdout came about: by id, a copy
  // uploaded under another name, or records turned into a dataset.
  ASSIGN_OR_RETURN(const JobData data, LoadJobData(datasets_, spec));
  ASSIGN_OR_RETURN(const std::vector<DatasetImage> images, datasets_.Images(holdout.id));
  if (images.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("spec.promotion.holdout: dataset '", holdout.name,
                                                      "' has no images"));
  }
  return CheckHoldout(data, holdout, images);
}

}  // namespace graft::core
