#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace graft::server {

// The one place where absl::Status becomes a gRPC status. The canonical codes
// share their numbers; the message is kept verbatim.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace graft::server
