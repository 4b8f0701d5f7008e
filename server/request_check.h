#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/server_context.h>

#include <cstdint>

#include "absl/status/status.h"

namespace graft::server {

// Every string field a client sends, at any depth of its request message
// (map keys and values, repeated elements, nested messages), is at most
// --max_string_field_bytes long: checked once, before a handler uses any
// of them (a 4 MB job name became gigabytes of events). `bytes` fields
// (images, archives, tensors, TorchScript) have limits of their own.
// INVALID_ARGUMENT names the field's path ("spec.search.backbones[2]").
absl::Status CheckStringFields(const google::protobuf::Message& message, int64_t max_bytes);

// The process's limit (graftd sets it from the flag at start; 4 KiB until then).
void SetMaxStringFieldBytes(int64_t max_bytes);
int64_t MaxStringFieldBytes();

// The canary routing key a gRPC call carries in its x-graft-routing-key
// metadata (empty: none). Only hashed, never kept: bounded by gRPC's
// metadata limit.
inline constexpr char kRoutingKeyHeader[] = "x-graft-routing-key";
std::string RoutingKeyOf(const grpc::ServerContext& context);

}  // namespace graft::server

// In a gRPC handler, after GRAFT_AUTHORIZE: returns INVALID_ARGUMENT when a
// string field of `message` is too long.
#define GRAFT_CHECK_STRINGS(message)                                                                          \
  do {                                                                                                        \
    const ::absl::Status graft_strings_ =                                                                     \
        ::graft::server::CheckStringFields((message), ::graft::server::MaxStringFieldBytes());               \
    if (!graft_strings_.ok()) return ::graft::server::ToGrpcStatus(graft_strings_);                          \
  } while (0)
