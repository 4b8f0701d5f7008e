#pragma once

#include "core/auth/token_store.h"
#include "graft/v1/tokens.grpc.pb.h"
#include "server/auth.h"

namespace graft::server {

// Token management (admin) and WhoAmI (any role).
class TokensService final : public v1::Tokens::Service {
 public:
  // `tokens` null with --auth none: management answers FAILED_PRECONDITION.
  TokensService(core::TokenStore* tokens, const Auth& auth) : tokens_(tokens), auth_(auth) {}

  grpc::Status CreateToken(grpc::ServerContext*, const v1::CreateTokenRequest*, v1::CreateTokenResponse*) override;
  grpc::Status ListTokens(grpc::ServerContext*, const v1::ListTokensRequest*, v1::ListTokensResponse*) override;
  grpc::Status RevokeToken(grpc::ServerContext*, const v1::RevokeTokenRequest*, v1::RevokeTokenResponse*) override;
  grpc::Status WhoAmI(grpc::ServerContext*, const v1::WhoAmIRequest*, v1::TokenInfo*) override;

 private:
  core::TokenStore* tokens_;
  const Auth& auth_;
};

}  // namespace graft::server
