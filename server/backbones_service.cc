#include "server/backbones_service.h"

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/zoo/download.h"
#include "server/proto_convert.h"
#include "server/status_util.h"
#include "server/unimplemented.h"

namespace graft::server {

grpc::Status BackbonesService::ListBackbones(grpc::ServerContext*, const v1::ListBackbonesRequest*,
                                             v1::ListBackbonesResponse* response) {
  for (const core::BackboneStatus& b : zoo_.List()) ToProto(b, response->add_backbones());
  return grpc::Status::OK;
}

grpc::Status BackbonesService::GetBackbone(grpc::ServerContext*, const v1::GetBackboneRequest* request,
                                           v1::Backbone* response) {
  if (request->name().empty()) return ToGrpcStatus(absl::InvalidArgumentError("name is required"));
  const auto status = zoo_.Get(request->name());
  if (!status.ok()) return ToGrpcStatus(status.status());
  ToProto(*status, response);
  return grpc::Status::OK;
}

grpc::Status BackbonesService::RegisterBackbone(grpc::ServerContext*, const v1::RegisterBackboneRequest*,
                                                v1::Backbone*) {
  return Unimplemented("Backbones.RegisterBackbone", "registering custom TorchScript backbones");
}

grpc::Status BackbonesService::UnregisterBackbone(grpc::ServerContext*, const v1::UnregisterBackboneRequest*,
                                                  v1::UnregisterBackboneResponse*) {
  return Unimplemented("Backbones.UnregisterBackbone", "registering custom TorchScript backbones");
}

grpc::Status BackbonesService::PullBackbone(grpc::ServerContext* context, const v1::PullBackboneRequest* request,
                                            grpc::ServerWriter<v1::PullBackboneProgress>* writer) {
  if (request->name().empty()) return ToGrpcStatus(absl::InvalidArgumentError("name is required"));
  const auto status = zoo_.Get(request->name());
  if (!status.ok()) return ToGrpcStatus(status.status());
  const core::BackboneSpec& spec = *status->spec;
  v1::PullBackboneProgress last;
  if (!status->weights_present) {
    if (!pull_.allow_download) {
      return ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
          "downloads are off: start graftd with --allow_download, or put ", spec.weights_file, " into ",
          zoo_.zoo_dir(), " and restart")));
    }
    auto last_sent = std::chrono::steady_clock::time_point{};
    const auto downloaded = core::DownloadVerified(
        pull_.base_url + spec.weights_file, zoo_.zoo_dir(), spec.weights_file,
        [&](const core::DownloadProgress& p) {
          const auto now = std::chrono::steady_clock::now();
          if (now - last_sent < std::chrono::milliseconds(200)) return;
          last_sent = now;
          v1::PullBackboneProgress progress;
          progress.set_bytes_done(p.bytes_done);
          progress.set_bytes_total(p.bytes_total);
          writer->Write(progress);
        },
        [context] { return !context->IsCancelled(); });
    if (!downloaded.ok()) return ToGrpcStatus(downloaded.status());
    last.set_bytes_done(static_cast<int64_t>(std::filesystem::file_size(*downloaded)));
    last.set_bytes_total(last.bytes_done());
  }
  const auto loaded = zoo_.LoadNow(spec.name);
  if (!loaded.ok()) return ToGrpcStatus(loaded.status());
  last.set_verified(true);
  ToProto(*loaded, last.mutable_backbone());
  writer->Write(last);
  return grpc::Status::OK;
}

}  // namespace graft::server
