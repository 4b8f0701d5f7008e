#pragma once

#include "core/data/dataset_store.h"
#include "core/eval/evaluator.h"
#include "core/serve/model_store.h"
#include "core/serve/prediction_records.h"
#include "core/serve/predictor.h"
#include "core/util/shared_slots.h"
#include "graft/v1/models.grpc.pb.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/stream_watchdog.h"

namespace graft::server {

// Inference principals list and get every model (to predict with it); train
// principals only their own, which they may also delete and export.
class ModelsService final : public v1::Models::Service {
 public:
  ModelsService(core::ModelStore& store, Metrics& metrics, const Auth& auth, const core::Predictor* predictor = nullptr,
                core::DatasetStore* datasets = nullptr, int max_concurrent_evaluations = 2,
                int evaluations_per_principal = 1, StreamDeadlines deadlines = {})
      : store_(store),
        metrics_(metrics),
        auth_(auth),
        predictor_(predictor),
        datasets_(datasets),
        deadlines_(deadlines),
        passes_({"evaluations or dataset predictions", max_concurrent_evaluations, "--max_concurrent_evaluations",
                 evaluations_per_principal, "--max_evaluations_per_principal"}) {}

  // Deleting a model deletes its prediction records (null: none kept).
  void SetRecords(core::PredictionRecords* records) { records_ = records; }

  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest*, v1::ListModelsResponse*) override;
  grpc::Status GetModel(grpc::ServerContext*, const v1::GetModelRequest*, v1::Model*) override;
  grpc::Status DeleteModel(grpc::ServerContext*, const v1::DeleteModelRequest*, v1::DeleteModelResponse*) override;
  grpc::Status ExportModel(grpc::ServerContext*, const v1::ExportModelRequest*,
                           grpc::ServerWriter<v1::ExportModelChunk>*) override;
  grpc::Status Evaluate(grpc::ServerContext*, const v1::EvaluateRequest*,
                        grpc::ServerWriter<v1::EvaluateProgress>*) override;
  grpc::Status PredictDataset(grpc::ServerContext*, const v1::PredictDatasetRequest*,
                              grpc::ServerWriter<v1::PredictDatasetResponse>*) override;
  grpc::Status SetModelAlias(grpc::ServerContext*, const v1::SetModelAliasRequest*, v1::Model*) override;
  grpc::Status DeleteModelAlias(grpc::ServerContext*, const v1::DeleteModelAliasRequest*,
                                v1::DeleteModelAliasResponse*) override;
  // models_optimize.cc
  grpc::Status OptimizeModel(grpc::ServerContext*, const v1::OptimizeModelRequest*,
                             grpc::ServerWriter<v1::OptimizeModelProgress>*) override;

 private:
  absl::StatusOr<std::string> ResolveFor(const core::Principal& who, const std::string& ref);
  struct Pass {
    core::DatasetPass run;
    core::DatasetInfo dataset;
    std::string split;  // val, train or all
  };
  // The model and the dataset part, each checked against `who`.
  absl::StatusOr<Pass> PreparePass(const core::Principal& who, const std::string& model_ref,
                                   const std::string& dataset_ref, v1::DatasetSplit split);

  core::ModelStore& store_;
  Metrics& metrics_;
  const Auth& auth_;
  const core::Predictor* predictor_;
  core::DatasetStore* datasets_;
  core::PredictionRecords* records_ = nullptr;
  const StreamDeadlines deadlines_;
  core::SharedSlots passes_;  // Evaluate, PredictDataset and OptimizeModel calls running
};

// Whether `who` may use a model `owner` made to predict or read its metadata:
// inference principals (applications) any, train principals their own.
bool MayUseModel(const core::Principal& who, const std::string& owner);

// Inference principals start no first-use download of a backbone's ImageNet
// weights when they name the backbone itself (a published model's backbone
// is fetched for it: train principals chose it): FAILED_PRECONDITION saying
// who can. Unknown names pass (the predictor names them).
absl::Status MayStartWeightsFetch(const core::Principal& who, const core::Zoo& zoo, const std::string& backbone);

}  // namespace graft::server
