#pragma once

#include "core/serve/predictor.h"
#include "graft/v1/inference.grpc.pb.h"
#include "core/data/decode_budget.h"
#include "core/serve/model_store.h"
#include "core/serve/prediction_records.h"
#include "server/admission.h"
#include "server/auth.h"
#include "server/metrics.h"

namespace graft::server {

class InferenceService final : public v1::Inference::Service {
 public:
  // `models` resolves model owners (null: backbones only);
  // `budget`: tensor inputs hold their bytes in the decode budget while the
  // request runs (null: unbounded).
  InferenceService(const core::Predictor& predictor, Metrics& metrics, const Auth& auth, core::ModelStore* models,
                   RequestLimits limits, core::DecodeBudget* budget = nullptr)
      : predictor_(predictor), metrics_(metrics), auth_(auth), models_(models), limits_(limits), budget_(budget) {}

  // Keeps the prediction records model policies choose (null: none).
  void SetRecords(core::PredictionRecords* records) { records_ = records; }

  grpc::Status Predict(grpc::ServerContext*, const v1::PredictRequest*, v1::PredictResponse*) override;
  grpc::Status Embed(grpc::ServerContext*, const v1::EmbedRequest*, v1::EmbedResponse*) override;

 private:
  const core::Predictor& predictor_;
  // INVALID_ARGUMENT / RESOURCE_EXHAUSTED for too many images, PERMISSION_DENIED
  // for a model `who` may not use.
  absl::StatusOr<Admission> Admit(const core::Principal& who,
                                  const google::protobuf::RepeatedPtrField<v1::ImageInput>& images,
                                  const std::vector<std::string>& model_ids) const;
  // A model id, NAME, NAME:VERSION or NAME@ALIAS as the id it means for `who`.
  absl::StatusOr<std::string> ResolveModel(const core::Principal& who, const std::string& ref) const;
  // The version a prediction through `ref` is served by (an alias's canaries
  // take their shares; see ModelStore::ResolveForServing), and its shadow.
  absl::StatusOr<core::ServingRoute> ResolveForServing(const core::Principal& who, const std::string& ref,
                                                       const std::string& routing_key) const;

  Metrics& metrics_;
  const Auth& auth_;
  core::ModelStore* models_;
  const RequestLimits limits_;
  core::DecodeBudget* budget_;
  core::PredictionRecords* records_ = nullptr;
};

}  // namespace graft::server
