#include "server/status_util.h"

#include <string>

#include "core/util/limit_error.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace graft::server {

std::string CappedMessage(absl::string_view message) {
  if (message.size() <= kMaxErrorMessageBytes) return std::string(message);
  size_t cut = kMaxErrorMessageBytes - 20;
  while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 character
  return std::string(message.substr(0, cut)) + " … (message cut)";
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  const auto grpc_code = (code > 0 && code <= static_cast<int>(grpc::StatusCode::UNAUTHENTICATED))
                             ? static_cast<grpc::StatusCode>(code)
                             : grpc::StatusCode::UNKNOWN;
  const std::string message = CappedMessage(status.message());
  const std::string flag = core::LimitFlagOf(status);
  if (flag.empty()) return grpc::Status(grpc_code, message);
  // The rich error model: clients find the limit's flag without reading the text.
  google::rpc::ErrorInfo info;
  info.set_reason(kLimitExceededReason);
  info.set_domain("graft");
  (*info.mutable_metadata())["flag"] = flag;
  google::rpc::Status details;
  details.set_code(static_cast<int>(grpc_code));
  details.set_message(message);
  details.add_details()->PackFrom(info);
  return grpc::Status(grpc_code, message, details.SerializeAsString());
}

std::string LimitFlagOf(const grpc::Status& status) {
  if (status.error_details().empty()) return "";
  google::rpc::Status details;
  if (!details.ParseFromString(status.error_details())) return "";
  for (const auto& any : details.details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info) && info.reason() == kLimitExceededReason && info.domain() == "graft") {
      const auto it = info.metadata().find("flag");
      return it == info.metadata().end() ? "" : it->second;
    }
  }
  return "";
}

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

}  // namespace graft::server
