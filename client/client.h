#pragma once

#include <grpcpp/channel.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "graft/v1/backbones.grpc.pb.h"
#include "graft/v1/inference.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace graft::client {

// A typed client for graftd. gRPC errors come back as absl::Status with the
// server's code and message.
class GraftClient {
 public:
  explicit GraftClient(const std::string& target);

  absl::StatusOr<v1::ListBackbonesResponse> ListBackbones();
  absl::StatusOr<v1::Backbone> GetBackbone(const std::string& name);
  absl::StatusOr<v1::PredictResponse> Predict(const v1::PredictRequest& request);
  absl::StatusOr<v1::EmbedResponse> Embed(const v1::EmbedRequest& request);
  absl::StatusOr<::grpc::health::v1::HealthCheckResponse> Health(const std::string& service = "");

  const std::string& target() const { return target_; }

 private:
  std::string target_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Backbones::Stub> backbones_;
  std::unique_ptr<v1::Inference::Stub> inference_;
  std::unique_ptr<::grpc::health::v1::Health::Stub> health_;
};

// gRPC status -> absl::Status (same codes); the message names the server.
absl::Status FromGrpc(const grpc::Status& status, const std::string& target);

}  // namespace graft::client
