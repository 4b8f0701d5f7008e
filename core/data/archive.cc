#include "core/data/archive.h"

#include "core/util/limit_error.h"
#include "core/util/status_macros.h"

#include <archive.h>
#include <archive_entry.h>

#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"

namespace graft::core {

std::string FileTooLarge(int64_t max_bytes) {
  return absl::StrCat("larger than the per-file limit of ", max_bytes, " bytes (--max_upload_file_bytes)");
}

absl::Status ForEachArchiveEntry(const std::string& archive_path, const EntryVisitor& visit,
                                 const ArchiveWalkLimits& limits) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), &archive_read_free);
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_bzip2(a.get());
  archive_read_support_filter_xz(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  archive_read_support_format_zip(a.get());
  if (archive_read_open_filename(a.get(), archive_path.c_str(), 1 << 16) != ARCHIVE_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("the upload is not a readable tar, tar.gz or zip archive: ", archive_error_string(a.get())));
  }
  archive_entry* entry = nullptr;
  int64_t entries = 0;
  int64_t expanded = 0;
  const auto cancelled = [&] { return limits.cancelled && limits.cancelled(); };
  const auto started = std::chrono::steady_clock::now();
  const auto late = [&]() -> absl::Status {
    if (limits.max_seconds <= 0 ||
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() <= limits.max_seconds) {
      return absl::OkStatus();
    }
    return LimitError(absl::StatusCode::kDeadlineExceeded,
                      absl::StrCat("reading the archive took longer than ", limits.max_seconds, " s after ", entries,
                                   " entries and ", expanded, " bytes (--max_archive_seconds)"),
                      "max_archive_seconds");
  };
  // Every block decompressed counts, whether an entry is read or skipped.
  const auto count = [&](la_ssize_t n) -> absl::Status {
    expanded += n;
    if (expanded > limits.max_expanded_bytes) {
      return LimitError(absl::StatusCode::kResourceExhausted,
                        absl::StrCat("the archive expands beyond ", limits.max_expanded_bytes,
                                     " bytes (--max_dataset_bytes)"),
                        "max_dataset_bytes");
    }
    if (cancelled()) return absl::CancelledError("the upload was cancelled while its archive was read");
    return late();
  };
  while (true) {
    if (cancelled()) return absl::CancelledError("the upload was cancelled while its archive was read");
    if (auto s = late(); !s.ok()) return s;
    const int rc = archive_read_next_header(a.get(), &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      return absl::InvalidArgumentError(absl::StrCat("archive is corrupt or truncated after ", entries,
                                                     " entries: ", archive_error_string(a.get())));
    }
    if (++entries > limits.max_entries) {
      return LimitError(absl::StatusCode::kResourceExhausted,
                        absl::StrCat("the archive holds more than ", limits.max_entries, " entries (--max_archive_entries)"),
                        "max_archive_entries");
    }
    UploadEntry e;
    const char* name = archive_entry_pathname(entry);
    e.path = name ? name : "";
    e.size = archive_entry_size_is_set(entry) ? archive_entry_size(entry) : -1;
    const mode_t type = archive_entry_filetype(entry);
    if (archive_entry_hardlink(entry) != nullptr) {
      e.kind = "hard link";
    } else if (type == AE_IFREG) {
      e.regular = true;
    } else if (type == AE_IFDIR) {
      e.directory = true;
    } else if (type == AE_IFLNK) {
      e.kind = "symbolic link";
    } else if (type == AE_IFCHR || type == AE_IFBLK) {
      e.kind = "device file";
    } else if (type == AE_IFIFO) {
      e.kind = "named pipe";
    } else {
      e.kind = "special file";
    }
    bool consumed = false;
    auto read = [&](std::string* data, int64_t max_bytes) -> absl::Status {
      consumed = true;
      data->clear();
      char buf[1 << 16];
      while (true) {
        const la_ssize_t n = archive_read_data(a.get(), buf, sizeof(buf));
        if (n == 0) return absl::OkStatus();
        if (n < 0) {
          return absl::InvalidArgumentError(absl::StrCat("archive data is corrupt: ", archive_error_string(a.get())));
        }
        RETURN_IF_ERROR(count(n));
        if (static_cast<int64_t>(data->size()) + n > max_bytes) {
          return absl::ResourceExhaustedError(FileTooLarge(max_bytes));
        }
        data->append(buf, static_cast<size_t>(n));
      }
    };
    if (auto s = visit(e, read); !s.ok()) return s;
    // What the visitor left unread is drained here, block by block, so that
    // it counts and a cancelled upload stops within a block.
    char buf[1 << 16];
    while (true) {
      const la_ssize_t n = archive_read_data(a.get(), buf, sizeof(buf));
      if (n <= 0) break;
      RETURN_IF_ERROR(count(n));
    }
  }
  return absl::OkStatus();
}

}  // namespace graft::core
