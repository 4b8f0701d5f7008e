#include "server/models_service.h"

#include "absl/strings/str_cat.h"
#include "server/job_convert.h"
#include "server/paging.h"
#include "server/status_util.h"

namespace graft::server {

bool MayUseModel(const core::Principal& who, const std::string& owner) {
  return who.role == core::Role::kInference || Owns(who, owner);
}

grpc::Status ModelsService::ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, core::Role::kInference, "ListModels");
  std::vector<core::ModelInfo> usable;
  for (auto& m : store_.List()) {
    if (MayUseModel(who, m.owner)) usable.push_back(std::move(m));
  }
  const auto next = PageInto(*request, usable, response->mutable_models());
  if (!next.ok()) return ToGrpcStatus(next.status());
  response->set_next_page_token(*next);
  return grpc::Status::OK;
}

grpc::Status ModelsService::GetModel(grpc::ServerContext* context, const v1::GetModelRequest* request,
                                     v1::Model* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, core::Role::kInference, "GetModel");
  auto m = store_.Get(request->id());
  if (!m.ok()) return ToGrpcStatus(m.status());
  if (!MayUseModel(who, (*m)->info().owner)) {
    return ToGrpcStatus(CheckOwner(who, (*m)->info().owner, absl::StrCat("model '", request->id(), "'")));
  }
  ToProto((*m)->info(), response);
  return grpc::Status::OK;
}

grpc::Status ModelsService::DeleteModel(grpc::ServerContext* context, const v1::DeleteModelRequest* request,
                                        v1::DeleteModelResponse*) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, core::Role::kTrain, "DeleteModel");
  auto m = store_.Get(request->id());
  if (!m.ok()) return ToGrpcStatus(m.status());
  if (auto s = CheckOwner(who, (*m)->info().owner, absl::StrCat("model '", request->id(), "'")); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (auto s = store_.Delete(request->id()); !s.ok()) return ToGrpcStatus(s);
  metrics_.SetModels(static_cast<double>(store_.size()));
  return grpc::Status::OK;
}

grpc::Status ModelsService::ExportModel(grpc::ServerContext* context, const v1::ExportModelRequest* request,
                                        grpc::ServerWriter<v1::ExportModelChunk>* writer) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, core::Role::kTrain, "ExportModel");
  auto m = store_.Get(request->id());
  if (!m.ok()) return ToGrpcStatus(m.status());
  if (auto s = CheckOwner(who, (*m)->info().owner, absl::StrCat("model '", request->id(), "'")); !s.ok()) {
    return ToGrpcStatus(s);
  }
  auto bytes = store_.Export(request->id());
  if (!bytes.ok()) return ToGrpcStatus(bytes.status());
  constexpr size_t kChunk = 1 << 20;
  for (size_t offset = 0; offset < bytes->size(); offset += kChunk) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    v1::ExportModelChunk chunk;
    if (offset == 0) chunk.set_total_bytes(static_cast<int64_t>(bytes->size()));
    chunk.set_data(bytes->substr(offset, kChunk));
    if (!writer->Write(chunk)) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  return grpc::Status::OK;
}

}  // namespace graft::server
