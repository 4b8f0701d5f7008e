#pragma once

#include <grpcpp/server_context.h>

#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/auth/policy.h"
#include "core/auth/token_store.h"

namespace graft::server {

// The smallest role of every RPC graftd serves, by full gRPC method name
// ("graft.v1.Inference/Predict"): the one table the gRPC handlers, the REST
// routes (their methods' twins) and the security test read. A method that is
// not in it is refused to everyone. Health checks (gRPC's own service) and
// the Open Inference Protocol's ServerLive and ServerReady stay open.
const std::map<std::string, core::Role>& MethodRoles();

// Who may call: every RPC handler starts with Authorize of its method.
class Auth {
 public:
  // `tokens` null: --auth none, every caller is the admin "anonymous".
  explicit Auth(core::TokenStore* tokens) : tokens_(tokens) {}

  // The caller of `method` (a full name in MethodRoles) from its
  // "authorization: Bearer <token>" metadata: UNAUTHENTICATED without a known
  // token, PERMISSION_DENIED below the method's role.
  absl::StatusOr<core::Principal> Authorize(const grpc::ServerContext& context, const std::string& method) const;
  // The same from an HTTP request's Authorization header value (null: none sent).
  absl::StatusOr<core::Principal> AuthorizeHeader(const std::string* authorization, const std::string& method) const;
  bool enabled() const { return tokens_ != nullptr; }

 private:
  core::TokenStore* tokens_;
};

// PERMISSION_DENIED naming `what` unless core::Owns (core/auth/policy.h).
absl::Status CheckOwner(const core::Principal& p, const std::string& owner, const std::string& what);

}  // namespace graft::server

// In a gRPC handler: `lhs` (a declaration) becomes the caller, or the handler
// returns the refusal.
#define GRAFT_AUTHORIZE(lhs, auth, context, method) \
  GRAFT_AUTHORIZE_IMPL_(GRAFT_AUTH_CONCAT_(graft_principal_, __LINE__), lhs, auth, context, method)
#define GRAFT_AUTH_CONCAT_INNER_(a, b) a##b
#define GRAFT_AUTH_CONCAT_(a, b) GRAFT_AUTH_CONCAT_INNER_(a, b)
#define GRAFT_AUTHORIZE_IMPL_(var, lhs, auth, context, method)                \
  auto var = (auth).Authorize(*(context), method);                            \
  if (!var.ok()) return ::graft::server::ToGrpcStatus(var.status());          \
  lhs = std::move(var).value()
