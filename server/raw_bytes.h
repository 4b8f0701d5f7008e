#pragma once

// The Open Inference Protocol's raw form of BYTES tensors (gRPC
// raw_input_contents, REST binary data): each element preceded by its length
// as a 4-byte little-endian unsigned integer.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace graft::server {

// `expected` elements exactly, or INVALID_ARGUMENT naming `what`.
absl::StatusOr<std::vector<std::string>> SplitRawBytes(const std::string& raw, int64_t expected,
                                                       const std::string& what);
void AppendRawBytes(const std::string& element, std::string* raw);

}  // namespace graft::server
