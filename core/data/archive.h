#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"

namespace graft::core {

// One entry of an upload, as read from an archive or a staged folder.
struct UploadEntry {
  std::string path;   // as given by the client or the archive
  bool regular = false;
  bool directory = false;
  std::string kind;   // for non-regular entries: "symlink", "hardlink", "device", ...
  int64_t size = 0;   // declared size
};

// Called per entry; `read` fetches the entry's bytes (regular files only) and
// fails beyond `max_bytes`.
using EntryVisitor =
    std::function<absl::Status(const UploadEntry& entry,
                               const std::function<absl::Status(std::string* data, int64_t max_bytes)>& read)>;

// What one walk may cost: entries, bytes decompressed (read or skipped:
// compressed archives decompress what they skip), and when to give up.
struct ArchiveWalkLimits {
  int64_t max_entries = 1'000'000;
  int64_t max_expanded_bytes = 8LL << 30;
  std::function<bool()> cancelled;  // checked every 64 KiB; null: never
  // Wall time the walk may take (--max_archive_seconds; 0: unbounded):
  // DEADLINE_EXCEEDED past it, checked every 64 KiB decompressed.
  double max_seconds = 0;
};

// Why a file over the per-file limit (--max_upload_file_bytes) was refused:
// one text wherever an upload's file is measured.
std::string FileTooLarge(int64_t max_bytes);

// Walks an archive (tar, tar.gz, zip; format detected by libarchive) entry by
// entry. INVALID_ARGUMENT when the file is not a readable archive;
// RESOURCE_EXHAUSTED past a limit; CANCELLED within a block of `cancelled`;
// DEADLINE_EXCEEDED past `max_seconds`.
absl::Status ForEachArchiveEntry(const std::string& archive_path, const EntryVisitor& visit,
                                 const ArchiveWalkLimits& limits = {});

}  // namespace graft::core
