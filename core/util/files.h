#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace graft::core {

// Reads a whole file. NOT_FOUND when it does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` atomically: a temporary file beside it, fsync,
// rename. A crash leaves either the old file or the new one, never half.
absl::Status WriteFileAtomic(const std::string& path, const std::string& contents);

}  // namespace graft::core
