#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/train/job_spec.h"
#include "core/zoo/zoo.h"

namespace graft::core {

// What a job will hold while it trains, estimated at CreateJob from its spec
// and its backbone (no data needed), so a spec bomb is refused before it runs.
struct JobCost {
  int64_t head_parameters = 0;
  int64_t block_parameters = 0;  // of the unfrozen blocks, the largest stage
  int64_t activation_bytes = 0;  // a training step at the batch and input size
  int64_t model_bytes = 0;       // the published model's own weights
  int64_t total_bytes = 0;       // weights, gradients, optimizer state, activations
};

// `num_classes`: the dataset's. Block output sizes come from one forward of a
// single image through the backbone at its own input size (once per backbone,
// cached), scaled to the spec's input size.
absl::StatusOr<JobCost> EstimateJobCost(const JobSpec& spec, const ResidentBackbone& backbone, int num_classes);

// RESOURCE_EXHAUSTED naming the estimate and --max_job_memory_bytes when the
// cost is above `max_bytes`.
absl::Status CheckJobCost(const JobCost& cost, const JobSpec& spec, int64_t max_bytes);

}  // namespace graft::core
