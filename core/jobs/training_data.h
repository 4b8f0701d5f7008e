#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"
#include "core/data/dataset_store.h"
#include "core/train/job_spec.h"

namespace graft::core {

// A job's own validation split of a FLAT dataset: per class, seeded.
void Resplit(std::vector<DatasetImage>& images, double fraction, uint64_t seed);

// What a job trains and validates on.
struct JobData {
  // The job's dataset; with added datasets (spec.add_datasets) its classes
  // are extended by theirs that it lacks (after its own, by name) and its
  // counts include their images.
  DatasetInfo dataset;
  // The dataset's images (re-split when spec.validation_fraction says so),
  // then every image of each added dataset as a training image.
  std::vector<DatasetImage> images;
  int64_t added_images = 0;
};

// Reads the job's data from the store (the spec's datasets are ids, as
// admission leaves them).
absl::StatusOr<JobData> LoadJobData(DatasetStore& datasets, const JobSpec& spec);

// An image's content hash (the SHA-256 its blob is stored under).
std::string ContentHash(const DatasetImage& image);

// INVALID_ARGUMENT naming spec.promotion.holdout when any image of `holdout` has the content of a training image of
// `data` (a holdout the job trains on proves nothing).
absl::Status CheckHoldout(const JobData& data, const DatasetInfo& holdout, const std::vector<DatasetImage>& images);

}  // namespace graft::core
