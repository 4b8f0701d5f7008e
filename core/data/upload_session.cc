#include "core/data/upload_session.h"

#include <cerrno>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/data/archive.h"
#include "core/util/files.h"
#include "core/util/limit_error.h"
#include "core/util/status_macros.h"

namespace graft::core {
namespace fs = std::filesystem;

namespace {

const char* FormatName(UploadFormat format) {
  switch (format) {
    case UploadFormat::kZip: return "UPLOAD_FORMAT_ZIP";
    case UploadFormat::kTarGz: return "UPLOAD_FORMAT_TAR_GZ";
    case UploadFormat::kTar: return "UPLOAD_FORMAT_TAR";
    case UploadFormat::kFolder: return "UPLOAD_FORMAT_FOLDER";
    case UploadFormat::kDetect: break;
  }
  return "UPLOAD_FORMAT_UNSPECIFIED";
}

absl::Status TooManyBytes(int64_t limit) {
  return LimitError(absl::StatusCode::kResourceExhausted,
                    absl::StrCat("the upload exceeds the limit of ", limit, " bytes (--max_dataset_bytes)"),
                    "max_dataset_bytes");
}

absl::Status Interrupted() { return absl::CancelledError("the upload was interrupted; nothing was kept"); }

// The format a stream's first bytes show ("a gzip stream", "a zip archive",
// "a tar archive", "no known archive"), and whether it is `format`.
bool ArchiveMatches(UploadFormat format, const std::string& path, std::string* actual) {
  std::ifstream in(path, std::ios::binary);
  unsigned char magic[262] = {};
  in.read(reinterpret_cast<char*>(magic), sizeof magic);
  const auto got = in.gcount();
  const bool gzip = got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  const bool zip = got >= 4 && magic[0] == 'P' && magic[1] == 'K' && (magic[2] == 3 || magic[2] == 5);
  const bool tar = got >= 262 && std::string(reinterpret_cast<char*>(magic) + 257, 5) == "ustar";
  *actual = gzip ? "a gzip stream" : zip ? "a zip archive" : tar ? "a tar archive" : "no known archive";
  switch (format) {
    case UploadFormat::kZip: return zip;
    case UploadFormat::kTarGz: return gzip;
    case UploadFormat::kTar: return tar;
    case UploadFormat::kDetect: return true;
    case UploadFormat::kFolder: return false;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::unique_ptr<UploadSession>> UploadSession::Begin(DatasetStore& store, UploadHeader header,
                                                                    std::function<bool()> cancelled) {
  RETURN_IF_ERROR(DatasetStore::CheckName(header.name));
  const int64_t max_bytes = store.limits().max_dataset_bytes;
  if (header.total_bytes < 0) return absl::InvalidArgumentError("header.total_bytes: must not be negative");
  if (header.total_bytes > max_bytes) {
    return LimitError(absl::StatusCode::kResourceExhausted,
                      absl::StrCat("header.total_bytes: ", header.total_bytes, " bytes exceed the limit of ", max_bytes,
                                   " (--max_dataset_bytes)"),
                      "max_dataset_bytes");
  }
  if (!(header.split_fraction >= 0 && header.split_fraction < 1)) {
    return absl::InvalidArgumentError("header.split.fraction must be in [0, 1)");
  }
  ASSIGN_OR_RETURN(std::string staging, store.NewStagingDir());
  return std::unique_ptr<UploadSession>(
      new UploadSession(store, std::move(header), std::move(cancelled), std::move(staging)));
}

UploadSession::UploadSession(DatasetStore& store, UploadHeader header, std::function<bool()> cancelled,
                             std::string staging)
    : store_(store),
      header_(std::move(header)),
      cancelled_(std::move(cancelled)),
      staging_(std::move(staging)),
      archive_path_((fs::path(staging_) / "upload.archive").string()) {
  if (header_.format != UploadFormat::kFolder) archive_.open(archive_path_, std::ios::binary);
}

UploadSession::~UploadSession() {
  archive_.close();
  current_.close();
  store_.DiscardStaging(staging_);
}

absl::Status UploadSession::CloseFile() {
  if (current_.is_open()) {
    current_.close();
    // A full disk is RESOURCE_EXHAUSTED naming it, never a truncated file
    // that later reads as a corrupt image.
    if (current_.fail()) return WriteError("upload", current_staged_, errno);
  }
  current_path_.clear();
  current_refused_ = false;
  current_bytes_ = 0;
  return absl::OkStatus();
}

absl::Status UploadSession::StartFile(absl::string_view path) {
  RETURN_IF_ERROR(CloseFile());
  const auto& limits = store_.limits();
  if (static_cast<int64_t>(files_.size() + rejected_.size()) >= limits.max_archive_entries) {
    return LimitError(absl::StatusCode::kResourceExhausted,
                      absl::StrCat("the upload holds more than ", limits.max_archive_entries,
                                   " files (--max_archive_entries)"),
                      "max_archive_entries");
  }
  current_path_ = std::string(path);
  if (auto s = DatasetStore::CheckRelativePath(current_path_); !s.ok()) {
    rejected_.push_back({current_path_, std::string(s.message())});
    current_refused_ = true;
    return absl::OkStatus();
  }
  current_staged_ = (fs::path(staging_) / std::to_string(files_.size())).string();
  current_.open(current_staged_, std::ios::binary);
  if (!current_) return WriteError("upload", current_staged_, errno);
  files_.push_back({current_path_, current_staged_});
  return absl::OkStatus();
}

absl::Status UploadSession::Append(absl::string_view path, absl::string_view data, bool last) {
  const auto& limits = store_.limits();
  received_ += static_cast<int64_t>(data.size());
  if (received_ > limits.max_dataset_bytes) return TooManyBytes(limits.max_dataset_bytes);
  if (header_.total_bytes > 0 && received_ > header_.total_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("the upload sent more than the ", header_.total_bytes,
                                                   " bytes its header.total_bytes declared"));
  }
  if (Cancelled()) return Interrupted();
  if (header_.format != UploadFormat::kFolder) {
    archive_.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!archive_) return WriteError("upload", archive_path_, errno);
    return absl::OkStatus();
  }
  if (!path.empty() && path != current_path_) {
    RETURN_IF_ERROR(StartFile(path));
  } else if (current_path_.empty()) {
    return absl::InvalidArgumentError("a folder upload's chunk must name its file in 'path'");
  }
  if (!current_refused_) {
    current_bytes_ += static_cast<int64_t>(data.size());
    if (current_bytes_ > limits.max_file_bytes) {
      rejected_.push_back({current_path_, FileTooLarge(limits.max_file_bytes)});
      current_.close();
      files_.pop_back();
      current_refused_ = true;
    } else {
      current_.write(data.data(), static_cast<std::streamsize>(data.size()));
      if (!current_) return WriteError("upload", current_staged_, errno);
    }
  }
  if (last) RETURN_IF_ERROR(CloseFile());
  return absl::OkStatus();
}

absl::StatusOr<IngestResult> UploadSession::Finish() {
  RETURN_IF_ERROR(CloseFile());
  if (Cancelled()) return Interrupted();
  UploadRequest request;
  request.name = header_.name;
  request.owner = header_.owner;
  request.cancelled = cancelled_;
  request.split_fraction = header_.split_fraction;
  request.split_seed = header_.split_seed;
  if (header_.format == UploadFormat::kFolder) return store_.IngestFolder(request, files_, std::move(rejected_));
  archive_.close();
  if (archive_.fail()) return WriteError("upload", archive_path_, errno);
  if (received_ == 0) return absl::InvalidArgumentError("the upload holds no data");
  std::string actual;
  if (!ArchiveMatches(header_.format, archive_path_, &actual)) {
    return absl::InvalidArgumentError(absl::StrCat("header.format: declared ", FormatName(header_.format),
                                                   " but the data is ", actual,
                                                   "; declare the right format or leave it unspecified"));
  }
  return store_.IngestArchive(request, archive_path_);
}

}  // namespace graft::core
