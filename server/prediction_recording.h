#pragma once

// What Predict and Open Inference's ModelInfer share about prediction
// records: every answer of a fine-tuned model gets a prediction id, and the
// model's record policy (core/serve/prediction_records.h) decides which are
// kept, counted in graft_prediction_records_total.

#include <string>
#include <vector>

#include "core/serve/model_store.h"
#include "core/serve/prediction_records.h"
#include "server/metrics.h"

namespace graft::server {

struct RecordedAnswer {
  std::string prediction_id;
  bool recorded = false;
};

// Whether the model's record policy may keep anything (false without records).
bool KeepsRecords(core::PredictionRecords* records, const core::ModelInfo& model);

// `encoded[i]`: the bytes answer i came from (null or absent: a tensor
// input); `store` false: the caller opted out, nothing is kept.
std::vector<RecordedAnswer> RecordAnswers(core::PredictionRecords* records, Metrics& metrics,
                                          const core::ModelInfo& model, const std::string& principal,
                                          const std::vector<const std::string*>& encoded,
                                          const std::vector<std::vector<core::ClassScore>>& answers, bool store);

}  // namespace graft::server
