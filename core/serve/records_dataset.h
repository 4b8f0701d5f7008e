#pragma once

// A dataset from prediction records: what feedback (or the model's own
// answer) labelled becomes an ordinary immutable dataset, one folder per
// class, usable in jobs and evaluations like an uploaded one.

#include <string>

#include "absl/status/statusor.h"
#include "core/data/dataset_store.h"
#include "core/serve/prediction_records.h"

namespace graft::core {

struct RecordsDatasetRequest {
  std::string model_key;  // whose records (PredictionRecords::KeyOf)
  std::string name;       // the new dataset's name
  std::string owner;      // its owner
  // Only records with feedback; otherwise a record without feedback is
  // labelled with the model's own top-1 answer (a pseudo-label).
  bool labelled_only = true;
  double since = 0;  // records made at or after (Unix seconds)
  double split_fraction = 0;  // held out for validation; 0: the store's default (0.2)
  uint64_t split_seed = 0;
};

struct RecordsDatasetResult {
  IngestResult ingest;
  int64_t records = 0;      // records read
  int64_t duplicates = 0;   // records whose image another record already gave (the latest label wins)
  int64_t unlabelled = 0;   // records skipped for want of feedback (labelled_only)
};

// FAILED_PRECONDITION when no record qualifies; the dataset store's own
// errors (a taken name, limits) otherwise.
absl::StatusOr<RecordsDatasetResult> DatasetFromRecords(PredictionRecords& records, DatasetStore& datasets,
                                                        const RecordsDatasetRequest& request);

}  // namespace graft::core
