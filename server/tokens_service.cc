#include "server/paging.h"
#include "server/tokens_service.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/status_util.h"
#include "server/request_check.h"

namespace graft::server {
namespace {

const absl::Status kAuthOff =
    absl::FailedPreconditionError("graftd runs with --auth none: there are no tokens to manage");

void ToProto(const core::TokenInfo& t, v1::TokenInfo* out) {
  out->set_name(t.name);
  out->set_role(static_cast<v1::Role>(t.role));
  out->mutable_created_at()->set_seconds(static_cast<int64_t>(t.created_at));
  out->mutable_created_at()->set_nanos(static_cast<int32_t>((t.created_at - std::floor(t.created_at)) * 1e9));
}

}  // namespace

grpc::Status TokensService::CreateToken(grpc::ServerContext* context, const v1::CreateTokenRequest* request,
                                        v1::CreateTokenResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Tokens/CreateToken");
  GRAFT_CHECK_STRINGS(*request);
  if (tokens_ == nullptr) return ToGrpcStatus(kAuthOff);
  if (request->role() < v1::ROLE_INFERENCE || request->role() > v1::ROLE_ADMIN) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("role: must be ROLE_INFERENCE, ROLE_TRAIN or ROLE_ADMIN, got ", request->role())));
  }
  const auto role = static_cast<core::Role>(request->role());
  auto token = tokens_->Create(request->name(), role);
  if (!token.ok()) return ToGrpcStatus(token.status());
  for (const core::TokenInfo& t : tokens_->List()) {
    if (t.name == request->name()) ToProto(t, response->mutable_info());
  }
  response->set_token(*token);
  return grpc::Status::OK;
}

grpc::Status TokensService::ListTokens(grpc::ServerContext* context, const v1::ListTokensRequest* request,
                                       v1::ListTokensResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Tokens/ListTokens");
  GRAFT_CHECK_STRINGS(*request);
  if (tokens_ == nullptr) return ToGrpcStatus(kAuthOff);
  const auto next = Paginate(tokens_->List(), request->page_size(), request->page_token(),
                             [&](const core::TokenInfo& t) {
                               v1::TokenInfo* out = response->add_tokens();
                               ToProto(t, out);
                               return out->ByteSizeLong();
                             });
  if (!next.ok()) return ToGrpcStatus(next.status());
  response->set_next_page_token(*next);
  return grpc::Status::OK;
}

grpc::Status TokensService::RevokeToken(grpc::ServerContext* context, const v1::RevokeTokenRequest* request,
                                        v1::RevokeTokenResponse*) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Tokens/RevokeToken");
  GRAFT_CHECK_STRINGS(*request);
  if (tokens_ == nullptr) return ToGrpcStatus(kAuthOff);
  return ToGrpcStatus(tokens_->Revoke(request->name()));
}

grpc::Status TokensService::WhoAmI(grpc::ServerContext* context, const v1::WhoAmIRequest*, v1::TokenInfo* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Tokens/WhoAmI");
  response->set_name(who.name);
  response->set_role(static_cast<v1::Role>(who.role));
  return grpc::Status::OK;
}

}  // namespace graft::server
