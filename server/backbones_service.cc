#include "server/backbones_service.h"

#include "server/proto_convert.h"
#include "server/status_util.h"
#include "server/unimplemented.h"

namespace graft::server {

grpc::Status BackbonesService::ListBackbones(grpc::ServerContext*, const v1::ListBackbonesRequest*,
                                             v1::ListBackbonesResponse* response) {
  for (const core::BackboneStatus& b : zoo_.List()) ToProto(b, response->add_backbones());
  return grpc::Status::OK;
}

grpc::Status BackbonesService::GetBackbone(grpc::ServerContext*, const v1::GetBackboneRequest* request,
                                           v1::Backbone* response) {
  if (request->name().empty()) return ToGrpcStatus(absl::InvalidArgumentError("name is required"));
  const auto status = zoo_.Get(request->name());
  if (!status.ok()) return ToGrpcStatus(status.status());
  ToProto(*status, response);
  return grpc::Status::OK;
}

grpc::Status BackbonesService::RegisterBackbone(grpc::ServerContext*, const v1::RegisterBackboneRequest*,
                                                v1::Backbone*) {
  return Unimplemented("Backbones.RegisterBackbone", "registering custom TorchScript backbones");
}

grpc::Status BackbonesService::UnregisterBackbone(grpc::ServerContext*, const v1::UnregisterBackboneRequest*,
                                                  v1::UnregisterBackboneResponse*) {
  return Unimplemented("Backbones.UnregisterBackbone", "registering custom TorchScript backbones");
}

grpc::Status BackbonesService::PullBackbone(grpc::ServerContext*, const v1::PullBackboneRequest*,
                                            grpc::ServerWriter<v1::PullBackboneProgress>*) {
  return Unimplemented("Backbones.PullBackbone", "downloading official weights with hash checks");
}

}  // namespace graft::server
