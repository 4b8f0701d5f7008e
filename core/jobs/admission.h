#pragma once

#include "absl/status/statusor.h"
#include "core/auth/token_store.h"
#include "core/data/dataset_store.h"
#include "core/train/job_spec.h"
#include "core/zoo/zoo.h"

namespace graft::core {

// What a job must pass before it is queued: CreateJob's spec, each of a
// search's candidate backbones, a learning-rate range test. Its backbone is
// known (NOT_FOUND naming spec.backbone), its spec complete and in range
// (defaults filled, names made canonical), its dataset the caller's own (any
// for an admin) with validation images, its estimated memory within
// --max_job_memory_bytes, and a data-parallel job only where trainers share
// a database. Added datasets and a promotion's holdout are the caller's too,
// and the holdout shares no content with what the job trains on.
class JobAdmission {
 public:
  struct Limits {
    int64_t max_job_memory_bytes = 8LL << 30;  // RunnerOptions::max_job_memory_bytes
    bool shared = false;                        // RunnerOptions::shared
  };
  JobAdmission(const Zoo& zoo, DatasetStore& datasets, Limits limits)
      : zoo_(zoo), datasets_(datasets), limits_(limits) {}

  // Checks `spec` for `by` and completes it in place (canonical backbone
  // name, the dataset's id, defaults).
  absl::Status Admit(JobSpec& spec, const Principal& by) const;
  // spec.dataset resolved for `by`: NOT_FOUND or PERMISSION_DENIED naming the field.
  absl::StatusOr<DatasetInfo> DatasetFor(const JobSpec& spec, const Principal& by) const;

 private:
  // `ref` resolved for `by`, errors naming `field`.
  absl::StatusOr<DatasetInfo> OwnedDataset(const std::string& ref, const std::string& field, const Principal& by) const;
  // spec.add_datasets and spec.promotion.holdout resolved to ids; the
  // holdout refused when it shares content with the training images.
  absl::Status AdmitAddedData(JobSpec& spec, const Principal& by) const;

  const Zoo& zoo_;
  DatasetStore& datasets_;
  const Limits limits_;
};

}  // namespace graft::core
