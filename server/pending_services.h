#pragma once

// Services whose RPCs are part of the API but not built yet. Each answers
// UNIMPLEMENTED with a sentence naming what is missing.

#include "graft/v1/datasets.grpc.pb.h"
#include "graft/v1/models.grpc.pb.h"
#include "graft/v1/training.grpc.pb.h"

namespace graft::server {

class DatasetsService final : public v1::Datasets::Service {
 public:
  grpc::Status UploadDataset(grpc::ServerContext*, grpc::ServerReader<v1::UploadDatasetRequest>*,
                             v1::UploadDatasetResponse*) override;
  grpc::Status ListDatasets(grpc::ServerContext*, const v1::ListDatasetsRequest*, v1::ListDatasetsResponse*) override;
  grpc::Status GetDataset(grpc::ServerContext*, const v1::GetDatasetRequest*, v1::Dataset*) override;
  grpc::Status DeleteDataset(grpc::ServerContext*, const v1::DeleteDatasetRequest*, v1::DeleteDatasetResponse*) override;
};

class TrainingService final : public v1::Training::Service {
 public:
  grpc::Status CreateJob(grpc::ServerContext*, const v1::CreateJobRequest*, v1::Job*) override;
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest*, v1::Job*) override;
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*, v1::ListJobsResponse*) override;
  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest*, v1::Job*) override;
  grpc::Status WatchJob(grpc::ServerContext*, const v1::WatchJobRequest*, grpc::ServerWriter<v1::JobEvent>*) override;
};

class ModelsService final : public v1::Models::Service {
 public:
  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest*, v1::ListModelsResponse*) override;
  grpc::Status GetModel(grpc::ServerContext*, const v1::GetModelRequest*, v1::Model*) override;
  grpc::Status DeleteModel(grpc::ServerContext*, const v1::DeleteModelRequest*, v1::DeleteModelResponse*) override;
  grpc::Status ExportModel(grpc::ServerContext*, const v1::ExportModelRequest*,
                           grpc::ServerWriter<v1::ExportModelChunk>*) override;
};

}  // namespace graft::server
