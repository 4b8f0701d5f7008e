#include "server/auth.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace graft::server {

absl::StatusOr<core::Principal> Auth::Authorize(const grpc::ServerContext& context, core::Role min,
                                                const char* method) const {
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find("authorization");
  if (found == metadata.end()) return AuthorizeHeader(nullptr, min, method);
  const std::string value(found->second.data(), found->second.size());
  return AuthorizeHeader(&value, min, method);
}

absl::StatusOr<core::Principal> Auth::AuthorizeHeader(const std::string* authorization, core::Role min,
                                                      const char* method) const {
  if (tokens_ == nullptr) return core::Principal{"anonymous", core::Role::kAdmin};
  if (authorization == nullptr) {
    return absl::UnauthenticatedError(absl::StrCat(
        method, ": no token; send 'authorization: Bearer <token>' (graft --token, $GRAFT_TOKEN or "
        "--token_file; graftd wrote the first admin token to <data_dir>/admin.token)"));
  }
  absl::string_view value(*authorization);
  if (!absl::ConsumePrefix(&value, "Bearer ") && !absl::ConsumePrefix(&value, "bearer ")) {
    return absl::UnauthenticatedError(
        absl::StrCat(method, ": the authorization must be 'Bearer <token>'"));
  }
  const std::optional<core::Principal> principal = tokens_->Authenticate(std::string_view(value.data(), value.size()));
  if (!principal) return absl::UnauthenticatedError(absl::StrCat(method, ": unknown or revoked token"));
  if (static_cast<int>(principal->role) < static_cast<int>(min)) {
    return absl::PermissionDeniedError(absl::StrCat(method, " needs the role ", core::RoleName(min), "; '",
                                                    principal->name, "' has the role ",
                                                    core::RoleName(principal->role)));
  }
  return *principal;
}

bool Owns(const core::Principal& p, const std::string& owner) { return p.admin() || p.name == owner; }

absl::Status CheckOwner(const core::Principal& p, const std::string& owner, const std::string& what) {
  if (Owns(p, owner)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(what, " belongs to another principal; '", p.name,
                                                  "' may only use its own"));
}

}  // namespace graft::server
