#include "client/client.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <chrono>

#include "absl/strings/str_cat.h"

namespace graft::client {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;

std::unique_ptr<grpc::ClientContext> Context(int seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

}  // namespace

absl::Status FromGrpc(const grpc::Status& status, const std::string& target) {
  if (status.ok()) return absl::OkStatus();
  std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    message = absl::StrCat("graftd at ", target, " is unavailable: ", message);
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), message);
}

GraftClient::GraftClient(const std::string& target) : target_(target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  backbones_ = v1::Backbones::NewStub(channel_);
  inference_ = v1::Inference::NewStub(channel_);
  health_ = ::grpc::health::v1::Health::NewStub(channel_);
}

absl::StatusOr<v1::ListBackbonesResponse> GraftClient::ListBackbones() {
  v1::ListBackbonesResponse response;
  auto ctx = Context(30);
  const grpc::Status s = backbones_->ListBackbones(ctx.get(), {}, &response);
  if (!s.ok()) return FromGrpc(s, target_);
  return response;
}

absl::StatusOr<v1::Backbone> GraftClient::GetBackbone(const std::string& name) {
  v1::GetBackboneRequest request;
  request.set_name(name);
  v1::Backbone response;
  auto ctx = Context(30);
  const grpc::Status s = backbones_->GetBackbone(ctx.get(), request, &response);
  if (!s.ok()) return FromGrpc(s, target_);
  return response;
}

absl::StatusOr<v1::PredictResponse> GraftClient::Predict(const v1::PredictRequest& request) {
  v1::PredictResponse response;
  auto ctx = Context(300);
  const grpc::Status s = inference_->Predict(ctx.get(), request, &response);
  if (!s.ok()) return FromGrpc(s, target_);
  return response;
}

absl::StatusOr<v1::EmbedResponse> GraftClient::Embed(const v1::EmbedRequest& request) {
  v1::EmbedResponse response;
  auto ctx = Context(300);
  const grpc::Status s = inference_->Embed(ctx.get(), request, &response);
  if (!s.ok()) return FromGrpc(s, target_);
  return response;
}

absl::StatusOr<::grpc::health::v1::HealthCheckResponse> GraftClient::Health(const std::string& service) {
  ::grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  ::grpc::health::v1::HealthCheckResponse response;
  auto ctx = Context(10);
  const grpc::Status s = health_->Check(ctx.get(), request, &response);
  if (!s.ok()) return FromGrpc(s, target_);
  return response;
}

}  // namespace graft::client
