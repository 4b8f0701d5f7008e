#pragma once

#include "inference/grpc_predict_v2.grpc.pb.h"
#include "server/auth.h"
#include "server/open_inference.h"

namespace graft::server {

// inference.GRPCInferenceService on graftd's gRPC port. ServerLive and
// ServerReady are open (probes, like gRPC health); the rest needs the role
// inference.
class OpenInferenceService final : public inference::GRPCInferenceService::Service {
 public:
  OpenInferenceService(const OpenInference& oip, const Auth& auth) : oip_(oip), auth_(auth) {}

  grpc::Status ServerLive(grpc::ServerContext*, const inference::ServerLiveRequest*,
                          inference::ServerLiveResponse*) override;
  grpc::Status ServerReady(grpc::ServerContext*, const inference::ServerReadyRequest*,
                           inference::ServerReadyResponse*) override;
  grpc::Status ModelReady(grpc::ServerContext*, const inference::ModelReadyRequest*,
                          inference::ModelReadyResponse*) override;
  grpc::Status ServerMetadata(grpc::ServerContext*, const inference::ServerMetadataRequest*,
                              inference::ServerMetadataResponse*) override;
  grpc::Status ModelMetadata(grpc::ServerContext*, const inference::ModelMetadataRequest*,
                             inference::ModelMetadataResponse*) override;
  grpc::Status ModelInfer(grpc::ServerContext*, const inference::ModelInferRequest*,
                          inference::ModelInferResponse*) override;

 private:
  const OpenInference& oip_;
  const Auth& auth_;
};

}  // namespace graft::server
