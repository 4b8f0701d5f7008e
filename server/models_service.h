#pragma once

#include "core/serve/model_store.h"
#include "graft/v1/models.grpc.pb.h"
#include "server/metrics.h"

namespace graft::server {

class ModelsService final : public v1::Models::Service {
 public:
  ModelsService(core::ModelStore& store, Metrics& metrics) : store_(store), metrics_(metrics) {}

  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest*, v1::ListModelsResponse*) override;
  grpc::Status GetModel(grpc::ServerContext*, const v1::GetModelRequest*, v1::Model*) override;
  grpc::Status DeleteModel(grpc::ServerContext*, const v1::DeleteModelRequest*, v1::DeleteModelResponse*) override;
  grpc::Status ExportModel(grpc::ServerContext*, const v1::ExportModelRequest*,
                           grpc::ServerWriter<v1::ExportModelChunk>*) override;

 private:
  core::ModelStore& store_;
  Metrics& metrics_;
};

}  // namespace graft::server
