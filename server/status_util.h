#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace graft::server {

// The one place where absl::Status becomes a gRPC status. The canonical codes
// share their numbers; the message is kept verbatim.
grpc::Status ToGrpcStatus(const absl::Status& status);
// The same codes as HTTP statuses (the REST endpoints), as the Open Inference
// Protocol's HTTP binding and Triton use them.
int HttpStatusOf(absl::StatusCode code);

}  // namespace graft::server
