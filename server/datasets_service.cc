#include "server/datasets_service.h"

#include "absl/strings/str_cat.h"
#include "core/data/upload_session.h"
#include "core/util/status_macros.h"
#include "server/job_convert.h"
#include "server/paging.h"
#include "server/status_util.h"
#include "server/request_check.h"

namespace graft::server {

namespace {

// Most rejected files an upload's answer lists, so that it stays far below
// the message limit whatever the archive holds; Dataset.rejected_count counts all.
constexpr size_t kMaxRejectedListed = 1000;
constexpr size_t kMaxListedPathChars = 256;

core::UploadFormat ToCore(v1::UploadFormat format) {
  switch (format) {
    case v1::UPLOAD_FORMAT_ZIP: return core::UploadFormat::kZip;
    case v1::UPLOAD_FORMAT_TAR_GZ: return core::UploadFormat::kTarGz;
    case v1::UPLOAD_FORMAT_TAR: return core::UploadFormat::kTar;
    case v1::UPLOAD_FORMAT_FOLDER: return core::UploadFormat::kFolder;
    default: return core::UploadFormat::kDetect;
  }
}

}  // namespace

absl::StatusOr<core::IngestResult> DatasetsService::Receive(grpc::ServerContext* ctx,
                                                            grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                                                            const v1::UploadHeader& header, const std::string& owner,
                                                            StreamWatchdog::Watch& idle) {
  if (!v1::UploadFormat_IsValid(header.format())) {
    return absl::InvalidArgumentError(absl::StrCat("header.format: unknown value ", header.format()));
  }
  core::UploadHeader h;
  h.name = header.name();
  h.owner = owner;
  h.format = ToCore(header.format());
  h.total_bytes = header.total_bytes();
  h.split_fraction = header.split().fraction();
  h.split_seed = header.split().seed();
  ASSIGN_OR_RETURN(auto session, core::UploadSession::Begin(store_, std::move(h), [ctx] { return ctx->IsCancelled(); }));
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
    metrics_.AddUploadBytes(static_cast<double>(chunk.data().size()));
    RETURN_IF_ERROR(session->Append(chunk.path(), chunk.data(), chunk.last()));
  }
  if (idle.expired()) return idle.Expired("upload message");
  return session->Finish();
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
  auto result = Receive(ctx, reader, first.header(), who.name, *idle);
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
