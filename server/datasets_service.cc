#include "server/datasets_service.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "server/job_convert.h"
#include "server/status_util.h"

namespace graft::server {
namespace fs = std::filesystem;

namespace {

absl::Status CheckName(const std::string& name) {
  if (name.empty() || name.size() > 128) return absl::InvalidArgumentError("header.name: 1 to 128 characters required");
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return absl::InvalidArgumentError(absl::StrCat("header.name: '", name, "' may only hold letters, digits, '-', '_' and '.'"));
    }
  }
  return absl::OkStatus();
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
                                                            const v1::UploadHeader& header, const std::string& staging) {
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
  auto finish_file = [&]() {
    if (current.is_open()) current.close();
    current_path.clear();
    current_bad = false;
    current_bytes = 0;
  };

  v1::UploadDatasetRequest msg;
  while (reader->Read(&msg)) {
    if (!msg.has_chunk()) return absl::InvalidArgumentError("only the first message may be a header");
    const v1::FileChunk& chunk = msg.chunk();
    received += static_cast<int64_t>(chunk.data().size());
    metrics_.AddUploadBytes(static_cast<double>(chunk.data().size()));
    if (received > limits.max_dataset_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("the upload exceeds the limit of ", limits.max_dataset_bytes, " bytes"));
    }
    if (!folder) {
      archive.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
      continue;
    }
    if (!chunk.path().empty() && chunk.path() != current_path) {
      finish_file();
      current_path = chunk.path();
      if (auto s = core::DatasetStore::CheckRelativePath(current_path); !s.ok()) {
        rejected.push_back({current_path, std::string(s.message())});
        current_bad = true;
      } else {
        const std::string staged = (fs::path(staging) / std::to_string(files.size())).string();
        current.open(staged, std::ios::binary);
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
      }
    }
    if (chunk.last()) finish_file();
  }
  finish_file();
  if (ctx->IsCancelled()) return absl::CancelledError("the upload was interrupted; nothing was kept");
  core::UploadRequest request;
  request.name = header.name();
  request.split_fraction = header.split().fraction();
  request.split_seed = header.split().seed();
  if (request.split_fraction < 0 || request.split_fraction >= 1) {
    return absl::InvalidArgumentError("header.split.fraction must be in [0, 1)");
  }
  if (folder) return store_.IngestFolder(request, files, std::move(rejected));
  archive.close();
  if (received == 0) return absl::InvalidArgumentError("the upload holds no data");
  return store_.IngestArchive(request, archive_path);
}

grpc::Status DatasetsService::UploadDataset(grpc::ServerContext* ctx, grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                                            v1::UploadDatasetResponse* response) {
  v1::UploadDatasetRequest first;
  if (!reader->Read(&first) || !first.has_header()) {
    return ToGrpcStatus(absl::InvalidArgumentError("the first message of an upload must be its header"));
  }
  if (auto s = CheckName(first.header().name()); !s.ok()) return ToGrpcStatus(s);
  auto staging = store_.NewStagingDir();
  if (!staging.ok()) return ToGrpcStatus(staging.status());
  StagingGuard guard(store_, *staging);
  auto result = Receive(ctx, reader, first.header(), *staging);
  if (!result.ok()) return ToGrpcStatus(result.status());
  metrics_.AddRejectedFiles(static_cast<double>(result->rejected.size()));
  metrics_.SetDatasets(static_cast<double>(store_.List().size()));
  ToProto(result->dataset, response->mutable_dataset());
  for (const auto& r : result->rejected) {
    auto* out = response->add_rejected();
    out->set_path(r.path);
    out->set_reason(r.reason);
  }
  return grpc::Status::OK;
}

grpc::Status DatasetsService::ListDatasets(grpc::ServerContext*, const v1::ListDatasetsRequest*,
                                           v1::ListDatasetsResponse* response) {
  for (const auto& d : store_.List()) ToProto(d, response->add_datasets());
  return grpc::Status::OK;
}

grpc::Status DatasetsService::GetDataset(grpc::ServerContext*, const v1::GetDatasetRequest* request, v1::Dataset* response) {
  auto d = store_.Get(request->id());
  if (!d.ok()) return ToGrpcStatus(d.status());
  ToProto(*d, response);
  return grpc::Status::OK;
}

grpc::Status DatasetsService::DeleteDataset(grpc::ServerContext*, const v1::DeleteDatasetRequest* request,
                                            v1::DeleteDatasetResponse*) {
  auto d = store_.Get(request->id());
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
