#pragma once

#include <grpcpp/support/status.h>

#include <string>

namespace graft::server {

// The answer of an RPC that is part of the API but not built yet.
inline grpc::Status Unimplemented(const std::string& rpc, const std::string& what) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      rpc + " is not implemented yet in this graftd: " + what + " arrives in a later release.");
}

}  // namespace graft::server
