#pragma once

#include "core/data/dataset_store.h"
#include "core/serve/model_store.h"
#include "core/serve/prediction_records.h"
#include "graft/v1/predictions.grpc.pb.h"
#include "server/auth.h"
#include "server/metrics.h"

namespace graft::server {

// Record policies, prediction records and feedback (core/serve/prediction_records.h).
// Records belong to their model's owner: only the owner and admins list,
// read, purge them or set the policy. The principal that made a prediction
// may read its record and send feedback on it.
class PredictionsService final : public v1::Predictions::Service {
 public:
  PredictionsService(core::PredictionRecords& records, core::ModelStore& models, core::DatasetStore& datasets,
                     Metrics& metrics, const Auth& auth)
      : records_(records), models_(models), datasets_(datasets), metrics_(metrics), auth_(auth) {}

  grpc::Status SetRecordPolicy(grpc::ServerContext*, const v1::SetRecordPolicyRequest*, v1::RecordPolicy*) override;
  grpc::Status GetRecordPolicy(grpc::ServerContext*, const v1::GetRecordPolicyRequest*, v1::RecordPolicy*) override;
  grpc::Status ListPredictions(grpc::ServerContext*, const v1::ListPredictionsRequest*,
                               v1::ListPredictionsResponse*) override;
  grpc::Status GetPrediction(grpc::ServerContext*, const v1::GetPredictionRequest*, v1::PredictionRecord*) override;
  grpc::Status Feedback(grpc::ServerContext*, const v1::FeedbackRequest*, v1::PredictionRecord*) override;
  grpc::Status CreateDatasetFromPredictions(grpc::ServerContext*, const v1::CreateDatasetFromPredictionsRequest*,
                                            v1::CreateDatasetFromPredictionsResponse*) override;
  grpc::Status PurgePredictions(grpc::ServerContext*, const v1::PurgePredictionsRequest*,
                                v1::PurgePredictionsResponse*) override;

 private:
  struct Owned {
    std::string key;
    std::string owner;
  };
  // The record key of the model `ref` names, which `who` must own.
  absl::StatusOr<Owned> OwnedKey(const core::Principal& who, const std::string& ref);
  // The record `id`, which `who` must own or have asked for (NOT_FOUND
  // otherwise: another tenant learns nothing of it).
  absl::StatusOr<core::PredictionRecord> Visible(const core::Principal& who, const std::string& id);

  core::PredictionRecords& records_;
  core::ModelStore& models_;
  core::DatasetStore& datasets_;
  Metrics& metrics_;
  const Auth& auth_;
};

void ToProto(const core::PredictionRecord& in, v1::PredictionRecord* out);

}  // namespace graft::server
