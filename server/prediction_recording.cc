#include "server/prediction_recording.h"

#include "core/util/ids.h"

namespace graft::server {

bool KeepsRecords(core::PredictionRecords* records, const core::ModelInfo& model) {
  if (records == nullptr) return false;
  const auto policy = records->Policy(core::PredictionRecords::KeyOf(model));
  return policy && policy->KeepsAny();
}

std::vector<RecordedAnswer> RecordAnswers(core::PredictionRecords* records, Metrics& metrics,
                                          const core::ModelInfo& model, const std::string& principal,
                                          const std::vector<const std::string*>& encoded,
                                          const std::vector<std::vector<core::ClassScore>>& answers, bool store) {
  std::vector<RecordedAnswer> out(answers.size());
  const bool keeps = store && KeepsRecords(records, model);
  const std::string key = core::PredictionRecords::KeyOf(model);
  for (size_t i = 0; i < answers.size(); ++i) {
    out[i].prediction_id = core::NewId("pred");
    if (!keeps) continue;
    core::RecordCandidate c;
    c.prediction_id = out[i].prediction_id;
    c.model = &model;
    c.principal = principal;
    c.image = i < encoded.size() ? encoded[i] : nullptr;
    c.top = answers[i];
    const core::RecordOutcome outcome = records->Consider(c);
    if (outcome != core::RecordOutcome::kNotChosen) metrics.OnRecord(key, core::RecordOutcomeName(outcome));
    out[i].recorded = core::Kept(outcome);
  }
  return out;
}

}  // namespace graft::server
