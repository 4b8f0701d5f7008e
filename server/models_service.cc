#include "server/models_service.h"

#include "server/job_convert.h"
#include "server/status_util.h"

namespace graft::server {

grpc::Status ModelsService::ListModels(grpc::ServerContext*, const v1::ListModelsRequest*,
                                       v1::ListModelsResponse* response) {
  for (const auto& m : store_.List()) ToProto(m, response->add_models());
  return grpc::Status::OK;
}

grpc::Status ModelsService::GetModel(grpc::ServerContext*, const v1::GetModelRequest* request, v1::Model* response) {
  auto m = store_.Get(request->id());
  if (!m.ok()) return ToGrpcStatus(m.status());
  ToProto((*m)->info(), response);
  return grpc::Status::OK;
}

grpc::Status ModelsService::DeleteModel(grpc::ServerContext*, const v1::DeleteModelRequest* request,
                                        v1::DeleteModelResponse*) {
  if (auto s = store_.Delete(request->id()); !s.ok()) return ToGrpcStatus(s);
  metrics_.SetModels(static_cast<double>(store_.size()));
  return grpc::Status::OK;
}

grpc::Status ModelsService::ExportModel(grpc::ServerContext*, const v1::ExportModelRequest* request,
                                        grpc::ServerWriter<v1::ExportModelChunk>* writer) {
  auto bytes = store_.Export(request->id());
  if (!bytes.ok()) return ToGrpcStatus(bytes.status());
  constexpr size_t kChunk = 1 << 20;
  for (size_t offset = 0; offset < bytes->size(); offset += kChunk) {
    v1::ExportModelChunk chunk;
    if (offset == 0) chunk.set_total_bytes(static_cast<int64_t>(bytes->size()));
    chunk.set_data(bytes->substr(offset, kChunk));
    if (!writer->Write(chunk)) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  return grpc::Status::OK;
}

}  // namespace graft::server
