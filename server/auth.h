#pragma once

#include <grpcpp/server_context.h>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/auth/token_store.h"

namespace graft::server {

// Who may call: every RPC handler starts with Authorize and the smallest role
// its method needs. Health checks are gRPC's own service and stay open.
class Auth {
 public:
  // `tokens` null: --auth none, every caller is the admin "anonymous".
  explicit Auth(core::TokenStore* tokens) : tokens_(tokens) {}

  // The caller of `method` from its "authorization: Bearer <token>" metadata:
  // UNAUTHENTICATED without a known token, PERMISSION_DENIED below `min`.
  absl::StatusOr<core::Principal> Authorize(const grpc::ServerContext& context, core::Role min,
                                            const char* method) const;
  // The same from an HTTP request's Authorization header value (null: none sent).
  absl::StatusOr<core::Principal> AuthorizeHeader(const std::string* authorization, core::Role min,
                                                  const char* method) const;
  bool enabled() const { return tokens_ != nullptr; }

 private:
  core::TokenStore* tokens_;
};

// Whether `p` may see and change what `owner` made: admins everything,
// others their own.
bool Owns(const core::Principal& p, const std::string& owner);
// PERMISSION_DENIED naming `what` unless Owns.
absl::Status CheckOwner(const core::Principal& p, const std::string& owner, const std::string& what);

}  // namespace graft::server

// In a gRPC handler: `lhs` (a declaration) becomes the caller, or the handler
// returns the refusal.
#define GRAFT_AUTHORIZE(lhs, auth, context, role, method) \
  GRAFT_AUTHORIZE_IMPL_(GRAFT_AUTH_CONCAT_(graft_principal_, __LINE__), lhs, auth, context, role, method)
#define GRAFT_AUTH_CONCAT_INNER_(a, b) a##b
#define GRAFT_AUTH_CONCAT_(a, b) GRAFT_AUTH_CONCAT_INNER_(a, b)
#define GRAFT_AUTHORIZE_IMPL_(var, lhs, auth, context, role, method)          \
  auto var = (auth).Authorize(*(context), role, method);                      \
  if (!var.ok()) return ::graft::server::ToGrpcStatus(var.status());          \
  lhs = std::move(var).value()
