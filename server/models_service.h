#pragma once

#include <atomic>

#include "core/data/dataset_store.h"
#include "core/serve/model_store.h"
#include "core/serve/predictor.h"
#include "graft/v1/models.grpc.pb.h"
#include "server/auth.h"
#include "server/metrics.h"

namespace graft::server {

// Inference principals list and get every model (to predict with it); train
// principals only their own, which they may also delete and export.
class ModelsService final : public v1::Models::Service {
 public:
  ModelsService(core::ModelStore& store, Metrics& metrics, const Auth& auth, const core::Predictor* predictor = nullptr,
                core::DatasetStore* datasets = nullptr, int max_concurrent_evaluations = 2)
      : store_(store),
        metrics_(metrics),
        auth_(auth),
        predictor_(predictor),
        datasets_(datasets),
        max_evaluations_(max_concurrent_evaluations) {}

  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest*, v1::ListModelsResponse*) override;
  grpc::Status GetModel(grpc::ServerContext*, const v1::GetModelRequest*, v1::Model*) override;
  grpc::Status DeleteModel(grpc::ServerContext*, const v1::DeleteModelRequest*, v1::DeleteModelResponse*) override;
  grpc::Status ExportModel(grpc::ServerContext*, const v1::ExportModelRequest*,
                           grpc::ServerWriter<v1::ExportModelChunk>*) override;
  grpc::Status Evaluate(grpc::ServerContext*, const v1::EvaluateRequest*,
                        grpc::ServerWriter<v1::EvaluateProgress>*) override;

 private:
  absl::Status RunEvaluation(const core::Principal& who, grpc::ServerContext* context, const v1::EvaluateRequest& request,
                             grpc::ServerWriter<v1::EvaluateProgress>* writer);

  core::ModelStore& store_;
  Metrics& metrics_;
  const Auth& auth_;
  const core::Predictor* predictor_;
  core::DatasetStore* datasets_;
  const int max_evaluations_;
  std::atomic<int> evaluations_{0};
};

// Whether `who` may use a model `owner` made to predict or read its metadata:
// inference principals (applications) any, train principals their own.
bool MayUseModel(const core::Principal& who, const std::string& owner);

}  // namespace graft::server
