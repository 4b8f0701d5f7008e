#pragma once

#include <grpcpp/support/status.h>

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace graft::server {

// Error messages sent to clients are cut to this many bytes.
inline constexpr size_t kMaxErrorMessageBytes = 2048;
inline constexpr char kLimitExceededReason[] = "LIMIT_EXCEEDED";

// `message`, cut to kMaxErrorMessageBytes (at a character boundary, marked).
std::string CappedMessage(absl::string_view message);

// The one place where absl::Status becomes a gRPC status. The canonical codes
// share their numbers; the message is kept (capped). A refusal at one of
// graftd's limits (core::LimitError) also carries a google.rpc.Status with an
// ErrorInfo {reason LIMIT_EXCEEDED, domain graft, metadata flag} as its
// details (the grpc-status-details-bin trailer).
grpc::Status ToGrpcStatus(const absl::Status& status);
// The flag of such a status's ErrorInfo; empty when it carries none.
std::string LimitFlagOf(const grpc::Status& status);
// The same codes as HTTP statuses (the REST endpoints), as the Open Inference
// Protocol's HTTP binding and Triton use them.
int HttpStatusOf(absl::StatusCode code);

}  // namespace graft::server
