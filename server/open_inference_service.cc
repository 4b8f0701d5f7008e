#include "server/open_inference_service.h"

#include "server/status_util.h"
#include "server/request_check.h"

namespace graft::server {

grpc::Status OpenInferenceService::ServerLive(grpc::ServerContext*, const inference::ServerLiveRequest*,
                                              inference::ServerLiveResponse* response) {
  response->set_live(true);
  return grpc::Status::OK;
}

grpc::Status OpenInferenceService::ServerReady(grpc::ServerContext*, const inference::ServerReadyRequest*,
                                               inference::ServerReadyResponse* response) {
  response->set_ready(oip_.Ready());
  return grpc::Status::OK;
}

grpc::Status OpenInferenceService::ModelReady(grpc::ServerContext* context, const inference::ModelReadyRequest* request,
                                              inference::ModelReadyResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "inference.GRPCInferenceService/ModelReady");
  GRAFT_CHECK_STRINGS(*request);
  const auto ready = oip_.ModelReady(who, request->name(), request->version());
  if (!ready.ok()) return ToGrpcStatus(ready.status());
  response->set_ready(*ready);
  return grpc::Status::OK;
}

grpc::Status OpenInferenceService::ServerMetadata(grpc::ServerContext* context, const inference::ServerMetadataRequest*,
                                                  inference::ServerMetadataResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "inference.GRPCInferenceService/ServerMetadata");
  *response = oip_.ServerMetadata();
  return grpc::Status::OK;
}

grpc::Status OpenInferenceService::ModelMetadata(grpc::ServerContext* context,
                                                 const inference::ModelMetadataRequest* request,
                                                 inference::ModelMetadataResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "inference.GRPCInferenceService/ModelMetadata");
  GRAFT_CHECK_STRINGS(*request);
  auto metadata = oip_.ModelMetadata(who, request->name(), request->version());
  if (!metadata.ok()) return ToGrpcStatus(metadata.status());
  *response = std::move(*metadata);
  return grpc::Status::OK;
}

grpc::Status OpenInferenceService::ModelInfer(grpc::ServerContext* context, const inference::ModelInferRequest* request,
                                              inference::ModelInferResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "inference.GRPCInferenceService/ModelInfer");
  GRAFT_CHECK_STRINGS(*request);
  // Raw answers to raw requests (what Triton's clients read), typed to typed.
  const bool raw = request->raw_input_contents_size() > 0;
  return ToGrpcStatus(oip_.ModelInfer(
      who, *request, raw, [context] { return context->IsCancelled(); }, response, RoutingKeyOf(*context)));
}

}  // namespace graft::server
