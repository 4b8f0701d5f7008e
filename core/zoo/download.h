#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace graft::core {

// Larger than any official weights file (ViT-H/14 is 2.5 GB).
inline constexpr int64_t kMaxDownloadBytes = 4LL << 30;

struct DownloadProgress {
  int64_t bytes_done = 0;
  int64_t bytes_total = 0;  // 0 while unknown
};

// The hash prefix torchvision puts in its file names ("resnet50-0676ba61.pth"
// -> "0676ba61"): the first hex digits of the file's SHA-256. Empty if none.
std::string HashPrefix(const std::string& file_name);

// Fetches `url` into `<dir>/<file_name>` with libcurl: written to a hidden
// partial file while the SHA-256 is computed, checked against the hash
// prefix in `file_name`, and only then renamed into place. A failed, short
// or mismatched download leaves nothing behind; the error says which.
// `progress` is called as bytes arrive; returning false from `keep_going`
// aborts (CANCELLED). One download of a file at a time in the process (a
// second is UNAVAILABLE); a file past `max_bytes` is RESOURCE_EXHAUSTED.
// Returns the final path.
absl::StatusOr<std::string> DownloadVerified(const std::string& url, const std::string& dir,
                                             const std::string& file_name,
                                             const std::function<void(const DownloadProgress&)>& progress = {},
                                             const std::function<bool()>& keep_going = {},
                                             int64_t max_bytes = kMaxDownloadBytes);

}  // namespace graft::core
