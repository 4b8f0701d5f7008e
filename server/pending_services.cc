#include "server/pending_services.h"

#include "server/unimplemented.h"

namespace graft::server {
namespace {
constexpr char kDatasets[] = "dataset upload and storage";
constexpr char kJobs[] = "fine-tuning jobs";
constexpr char kModels[] = "fine-tuned models";
}  // namespace

grpc::Status DatasetsService::UploadDataset(grpc::ServerContext*, grpc::ServerReader<v1::UploadDatasetRequest>*,
                                            v1::UploadDatasetResponse*) {
  return Unimplemented("Datasets.UploadDataset", kDatasets);
}
grpc::Status DatasetsService::ListDatasets(grpc::ServerContext*, const v1::ListDatasetsRequest*, v1::ListDatasetsResponse*) {
  return Unimplemented("Datasets.ListDatasets", kDatasets);
}
grpc::Status DatasetsService::GetDataset(grpc::ServerContext*, const v1::GetDatasetRequest*, v1::Dataset*) {
  return Unimplemented("Datasets.GetDataset", kDatasets);
}
grpc::Status DatasetsService::DeleteDataset(grpc::ServerContext*, const v1::DeleteDatasetRequest*,
                                            v1::DeleteDatasetResponse*) {
  return Unimplemented("Datasets.DeleteDataset", kDatasets);
}

grpc::Status TrainingService::CreateJob(grpc::ServerContext*, const v1::CreateJobRequest*, v1::Job*) {
  return Unimplemented("Training.CreateJob", kJobs);
}
grpc::Status TrainingService::GetJob(grpc::ServerContext*, const v1::GetJobRequest*, v1::Job*) {
  return Unimplemented("Training.GetJob", kJobs);
}
grpc::Status TrainingService::ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*, v1::ListJobsResponse*) {
  return Unimplemented("Training.ListJobs", kJobs);
}
grpc::Status TrainingService::CancelJob(grpc::ServerContext*, const v1::CancelJobRequest*, v1::Job*) {
  return Unimplemented("Training.CancelJob", kJobs);
}
grpc::Status TrainingService::WatchJob(grpc::ServerContext*, const v1::WatchJobRequest*,
                                       grpc::ServerWriter<v1::JobEvent>*) {
  return Unimplemented("Training.WatchJob", kJobs);
}

grpc::Status ModelsService::ListModels(grpc::ServerContext*, const v1::ListModelsRequest*, v1::ListModelsResponse*) {
  return Unimplemented("Models.ListModels", kModels);
}
grpc::Status ModelsService::GetModel(grpc::ServerContext*, const v1::GetModelRequest*, v1::Model*) {
  return Unimplemented("Models.GetModel", kModels);
}
grpc::Status ModelsService::DeleteModel(grpc::ServerContext*, const v1::DeleteModelRequest*, v1::DeleteModelResponse*) {
  return Unimplemented("Models.DeleteModel", kModels);
}
grpc::Status ModelsService::ExportModel(grpc::ServerContext*, const v1::ExportModelRequest*,
                                        grpc::ServerWriter<v1::ExportModelChunk>*) {
  return Unimplemented("Models.ExportModel", kModels);
}

}  // namespace graft::server
