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

// A failed write under `path` (errno `err`): RESOURCE_EXHAUSTED naming the
// disk when it is full (ENOSPC, EDQUOT, EFBIG, or the filesystem holding
// `path` has under 1 MiB left), else UNAVAILABLE. `what` says what was being
// written ("checkpoint", "upload", ...).
absl::Status WriteError(const std::string& what, const std::string& path, int err);

// True when the filesystem holding `path` (or its nearest existing parent)
// has less than `bytes` available to unprivileged writers.
bool DiskNearlyFull(const std::string& path, int64_t bytes = 1 << 20);

}  // namespace graft::core
