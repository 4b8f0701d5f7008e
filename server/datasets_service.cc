#include "server/datasets_service.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/util/files.h"
#include "core/util/limit_error.h"
#include "core/util/status_macros.h"
#include "server/job_convert.h"
#include "server/paging.h"
#include "server/status_util.h"
#include "server/request_check.h"

namespace graft::server {
namespace fs = std::filesystem;

namespace {

// Most rejected files an upload's answer lists, so that it stays far below
// the message limit whatever the archive holds; Dataset.rejected_count counts all.
constexpr size_t kMaxRejectedListed = 1000;
constexpr size_t kMaxListedPathChars = 256;

// What the archive's first bytes say it is, to hold the header's format to.
absl::Status CheckArchiveFormat(v1::UploadFormat format, const std::string& path) {
  if (format == v1::UPLOAD_FORMAT_UNSPECIFIED) return absl::OkStatus();
  std::ifstream in(path, std::ios::binary);
  unsigned char magic[262] = {};
  in.read(reinterpret_cast<char*>(magic), sizeof magic);
  const auto got = in.gcount();
  const bool gzip = got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  const bool zip = got >= 4 && magic[0] == 'P' && magic[1] == 'K' && (magic[2] == 3 || magic[2] == 5);
  const bool tar = got >= 262 && std::string(reinterpret_cast<char*>(magic) + 257, 5) == "ustar";
  const bool matches = (format == v1::UPLOAD_FORMAT_ZIP && zip) || (format == v1::UPLOAD_FORMAT_TAR_GZ && gzip) ||
                       (format == v1::UPLOAD_FORMAT_TAR && tar);
  if (matches) return absl::OkStatus();
  const char* actual = gzip ? "a gzip stream" : zip ? "a zip archive" : tar ? "a tar archive" : "no known archive";
  return absl::InvalidArgumentError(absl::StrCat("header.format: declared ", v1::UploadFormat_Name(format),
                                                 " but the data is ", actual,
                                                 "; declare the right format or leave it unspecified"));
}

// Removes the staging directory however the upload ends.
class StagingGuard {
 public:
  StagingGuard(core::DatasetStore& store, std::string dir) : store_(store), dir_(std::move(dir)) {}
  ~StagingGuard() { store_.DiscardStaging(dir_); }

 private:
  core::DatasetStore& store_;
  std::string dir_;
};

}  // namespace

absl::StatusOr<core::IngestResult> DatasetsService::Receive(grpc::ServerContext* ctx,
                                                            grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                                                            const v1::UploadHeader& header, const std::string& staging,
                                                            const std::string& owner, StreamWatchdog::Watch& idle) {
  const auto& limits = store_.limits();
  const bool folder = header.format() == v1::UPLOAD_FORMAT_FOLDER;
  const std::string archive_path = (fs::path(staging) / "upload.archive").string();
  std::ofstream archive;
  if (!folder) archive.open(archive_path, std::ios::binary);

  std::vector<core::StagedFile> files;
  std::vector<core::RejectedFile> rejected;
  std::ofstream current;
  std::string current_path;
  bool current_bad = false;
  int64_t current_bytes = 0;
  int64_t received = 0;
  // Staged bytes are checked as they go: a full disk is RESOURCE_EXHAUSTED
  // naming it, never a truncated file that later reads as a corrupt image.
  std::string current_staged;
  auto finish_file = [&]() -> absl::Status {
    if (current.is_open()) {
      current.close();
      if (current.fail()) return core::WriteError("upload", current_staged, errno);
    }
    current_path.clear();
    current_bad = false;
    current_bytes = 0;
    return absl::OkStatus();
  };

  v1::UploadDatasetRequest msg;
  const auto next = [&] {  // the next message, within --upload_idle_timeout_s
    idle.Arm();
    const bool got = reader->Read(&msg);
    idle.Disarm();
    return got;
  };
  while (next()) {
    if (!msg.has_chunk()) return absl::InvalidArgumentError("only the first message may be a header");
    const v1::FileChunk& chunk = msg.chunk();
    received += static_cast<int64_t>(chunk.data().size());
    metrics_.AddUploadBytes(static_cast<double>(chunk.data().size()));
    if (received > limits.max_dataset_bytes) {
      return core::LimitError(absl::StatusCode::kResourceExhausted,
                              absl::StrCat("the upload exceeds the limit of ", limits.max_dataset_bytes,
                                           " bytes (--max_dataset_bytes)"),
                              "max_dataset_bytes");
    }
    if (header.total_bytes() > 0 && received > header.total_bytes()) {
      return absl::InvalidArgumentError(absl::StrCat("the upload sent more than the ", header.total_bytes(),
                                                     " bytes its header.total_bytes declared"));
    }
    if (ctx->IsCancelled()) return absl::CancelledError("the upload was interrupted; nothing was kept");
    if (!folder) {
      archive.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
      if (!archive) return core::WriteError("upload", archive_path, errno);
      continue;
    }
    if (!chunk.path().empty() && chunk.path() != current_path) {
      RETURN_IF_ERROR(finish_file());
      if (static_cast<int64_t>(files.size() + rejected.size()) >= limits.max_archive_entries) {
        return core::LimitError(absl::StatusCode::kResourceExhausted,
                                absl::StrCat("the upload holds more than ", limits.max_archive_entries,
                                             " files (--max_archive_entries)"),
                                "max_archive_entries");
      }
      current_path = chunk.path();
      if (auto s = core::DatasetStore::CheckRelativePath(current_path); !s.ok()) {
        rejected.push_back({current_path, std::string(s.message())});
        current_bad = true;
      } else {
        const std::string staged = (fs::path(staging) / std::to_string(files.size())).string();
        current.open(staged, std::ios::binary);
        if (!current) return core::WriteError("upload", staged, errno);
        current_staged = staged;
        files.push_back({current_path, staged});
      }
    } else if (current_path.empty()) {
      return absl::InvalidArgumentError("a folder upload's chunk must name its file in 'path'");
    }
    if (!current_bad) {
      current_bytes += static_cast<int64_t>(chunk.data().size());
      if (current_bytes > limits.max_file_bytes) {
        rejected.push_back({current_path, absl::StrCat("larger than the per-file limit of ", limits.max_file_bytes, " bytes")});
        current.close();
        files.pop_back();
        current_bad = true;
      } else {
        current.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
        if (!current) return core::WriteError("upload", current_staged, errno);
      }
    }
    if (chunk.last()) RETURN_IF_ERROR(finish_file());
  }
  if (idle.expired()) return idle.Expired("upload message");
  RETURN_IF_ERROR(finish_file());
  if (ctx->IsCancelled()) return absl::CancelledError("the upload was interrupted; nothing was kept");
  core::UploadRequest request;
  request.name = header.name();
  request.owner = owner;
  request.cancelled = [ctx] { return ctx->IsCancelled(); };
  request.split_fraction = header.split().fraction();
  request.split_seed = header.split().seed();
  if (request.split_fraction < 0 || request.split_fraction >= 1) {
    return absl::InvalidArgumentError("header.split.fraction must be in [0, 1)");
  }
  // The loop refused a folder past --max_archive_entries file by file.
  if (folder) return store_.IngestFolder(request, files, std::move(rejected));
  archive.close();
  if (archive.fail()) return core::WriteError("upload", archive_path, errno);
  if (received == 0) return absl::InvalidArgumentError("the upload holds no data");
  RETURN_IF_ERROR(CheckArchiveFormat(header.format(), archive_path));
  return store_.IngestArchive(request, archive_path);
}

grpc::Status DatasetsService::UploadDataset(grpc::ServerContext* ctx, grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                                            v1::UploadDatasetResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, ctx, "graft.v1.Datasets/UploadDataset");
  auto slot = uploads_.Acquire(who.name);
  if (!slot.ok()) return ToGrpcStatus(slot.status());
  const auto idle = deadlines_.ForUpload(ctx);
  v1::UploadDatasetRequest first;
  idle->Arm();
  const bool got = reader->Read(&first);
  idle->Disarm();
  if (idle->expired()) return ToGrpcStatus(idle->Expired("upload header"));
  if (!got || !first.has_header()) {
    return ToGrpcStatus(absl::InvalidArgumentError("the first message of an upload must be its header"));
  }
  GRAFT_CHECK_STRINGS(first);
  const v1::UploadHeader& header = first.header();
  if (auto s = core::DatasetStore::CheckName(header.name()); !s.ok()) return ToGrpcStatus(s);
  if (!v1::UploadFormat_IsValid(header.format())) {
    return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat("header.format: unknown value ", header.format())));
  }
  if (header.total_bytes() < 0) return ToGrpcStatus(absl::InvalidArgumentError("header.total_bytes: must not be negative"));
  if (header.total_bytes() > store_.limits().max_dataset_bytes) {
    return ToGrpcStatus(core::LimitError(absl::StatusCode::kResourceExhausted,
                                         absl::StrCat("header.total_bytes: ", header.total_bytes(),
                                                      " bytes exceed the limit of ", store_.limits().max_dataset_bytes,
                                                      " (--max_dataset_bytes)"),
                                         "max_dataset_bytes"));
  }
  auto staging = store_.NewStagingDir();
  if (!staging.ok()) return ToGrpcStatus(staging.status());
  StagingGuard guard(store_, *staging);
  auto result = Receive(ctx, reader, header, *staging, who.name, *idle);
  if (!result.ok()) return ToGrpcStatus(result.status());
  metrics_.AddRejectedFiles(static_cast<double>(result->rejected.size()));
  metrics_.SetDatasets(static_cast<double>(store_.List().size()));
  ToProto(result->dataset, response->mutable_dataset());
  for (const auto& r : result->rejected) {
    if (static_cast<size_t>(response->rejected_size()) >= kMaxRejectedListed) break;
    auto* out = response->add_rejected();
    out->set_path(r.path.size() > kMaxListedPathChars ? r.path.substr(0, kMaxListedPathChars) + "..." : r.path);
    out->set_reason(r.reason.substr(0, kMaxListedPathChars));
  }
  return grpc::Status::OK;
}

absl::StatusOr<core::DatasetInfo> DatasetsService::Find(const core::Principal& who, const std::string& id_or_name) {
  ASSIGN_OR_RETURN(core::DatasetInfo d, store_.Resolve(id_or_name, who.name, core::SeesEveryOwner(who)));
  RETURN_IF_ERROR(CheckOwner(who, d.owner, absl::StrCat("dataset '", id_or_name, "'")));
  return d;
}

grpc::Status DatasetsService::ListDatasets(grpc::ServerContext* ctx, const v1::ListDatasetsRequest* request,
                                           v1::ListDatasetsResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, ctx, "graft.v1.Datasets/ListDatasets");
  GRAFT_CHECK_STRINGS(*request);
  const auto next = PageInto(*request, store_.List(core::SeesEveryOwner(who) ? std::nullopt : std::optional<std::string>(who.name)),
                             response->mutable_datasets());
  if (!next.ok()) return ToGrpcStatus(next.status());
  response->set_next_page_token(*next);
  return grpc::Status::OK;
}

grpc::Status DatasetsService::GetDataset(grpc::ServerContext* ctx, const v1::GetDatasetRequest* request,
                                         v1::Dataset* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, ctx, "graft.v1.Datasets/GetDataset");
  GRAFT_CHECK_STRINGS(*request);
  auto d = Find(who, request->id());
  if (!d.ok()) return ToGrpcStatus(d.status());
  ToProto(*d, response);
  return grpc::Status::OK;
}

grpc::Status DatasetsService::DeleteDataset(grpc::ServerContext* ctx, const v1::DeleteDatasetRequest* request,
                                            v1::DeleteDatasetResponse*) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, ctx, "graft.v1.Datasets/DeleteDataset");
  GRAFT_CHECK_STRINGS(*request);
  auto d = Find(who, request->id());
  if (!d.ok()) return ToGrpcStatus(d.status());
  if (runner_.DatasetInUse(d->id)) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        absl::StrCat("dataset '", d->name, "' is used by a queued or running job; cancel it first")));
  }
  if (auto s = store_.Delete(d->id); !s.ok()) return ToGrpcStatus(s);
  metrics_.SetDatasets(static_cast<double>(store_.List().size()));
  return grpc::Status::OK;
}

}  // namespace graft::server
