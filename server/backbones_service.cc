#include "server/paging.h"
#include "server/backbones_service.h"

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/util/status_macros.h"
#include "core/zoo/download.h"
#include "server/proto_convert.h"
#include "server/status_util.h"
#include "server/request_check.h"

namespace graft::server {

namespace {

// `path` with symlinks and ".." resolved; NOT_FOUND when it does not exist.
absl::StatusOr<std::filesystem::path> Canonical(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::canonical(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("'", path, "': ", ec.message()));
  return p;
}

bool Under(const std::filesystem::path& path, const std::filesystem::path& dir) {
  auto d = dir.begin();
  auto p = path.begin();
  for (; d != dir.end(); ++d, ++p) {
    if (d->empty()) continue;  // a trailing separator
    if (p == path.end() || *p != *d) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> BackbonesService::TorchScriptSource(const v1::RegisterBackboneRequest& request,
                                                                std::string* staged) {
  if (!request.torchscript().empty() && !request.torchscript_path().empty()) {
    return absl::InvalidArgumentError("set torchscript or torchscript_path, not both");
  }
  if (!request.torchscript().empty()) {
    std::error_code ec;
    std::filesystem::create_directories(register_.staging_dir, ec);
    std::string path = (std::filesystem::path(register_.staging_dir) / "register-XXXXXX").string();
    const int fd = ::mkstemp(path.data());
    if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot stage the module in ", register_.staging_dir));
    *staged = path;
    const std::string& bytes = request.torchscript();
    const bool written = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
    ::close(fd);
    if (!written) return absl::UnavailableError(absl::StrCat("cannot stage the module in ", register_.staging_dir));
    return path;
  }
  if (request.torchscript_path().empty()) {
    return absl::InvalidArgumentError("torchscript (the module's bytes) or torchscript_path is required");
  }
  if (register_.import_dir.empty()) {
    return absl::PermissionDeniedError(
        "torchscript_path: graftd has no --backbone_import_dir; send the module's bytes instead (graft backbones "
        "register sends them unless --server_path)");
  }
  ASSIGN_OR_RETURN(const auto import_dir, Canonical(register_.import_dir));
  auto canonical = Canonical(request.torchscript_path());
  if (!canonical.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TorchScript file '", request.torchscript_path(), "' does not exist on the server"));
  }
  const std::filesystem::path file = *canonical;
  if (!Under(file, import_dir)) {
    return absl::PermissionDeniedError(absl::StrCat("torchscript_path: '", request.torchscript_path(),
                                                    "' is not under --backbone_import_dir ", import_dir.string()));
  }
  if (!register_.data_dir.empty()) {
    if (auto data_dir = Canonical(register_.data_dir); data_dir.ok() && Under(file, *data_dir)) {
      return absl::PermissionDeniedError(absl::StrCat("torchscript_path: '", request.torchscript_path(),
                                                      "' is inside graftd's data directory, which clients write"));
    }
  }
  return file.string();
}

grpc::Status BackbonesService::ListBackbones(grpc::ServerContext* context, const v1::ListBackbonesRequest* request,
                                             v1::ListBackbonesResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Backbones/ListBackbones");
  GRAFT_CHECK_STRINGS(*request);
  const auto next = Paginate(zoo_.List(), request->page_size(), request->page_token(),
                             [&](const core::BackboneStatus& b) {
                               v1::Backbone* out = response->add_backbones();
                               ToProto(b, out);
                               if (!who.admin()) out->mutable_weights()->clear_path();  // the server's file system
                               return out->ByteSizeLong();
                             });
  if (!next.ok()) return ToGrpcStatus(next.status());
  response->set_next_page_token(*next);
  ToProto(zoo_.Memory(), response->mutable_memory());
  return grpc::Status::OK;
}

grpc::Status BackbonesService::GetBackbone(grpc::ServerContext* context, const v1::GetBackboneRequest* request,
                                           v1::Backbone* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Backbones/GetBackbone");
  GRAFT_CHECK_STRINGS(*request);
  const auto status = zoo_.Get(request->name());
  if (!status.ok()) return ToGrpcStatus(status.status());
  ToProto(*status, response);
  if (!who.admin()) response->mutable_weights()->clear_path();  // the server's file system
  return grpc::Status::OK;
}

grpc::Status BackbonesService::RegisterBackbone(grpc::ServerContext* context, const v1::RegisterBackboneRequest* request,
                                                v1::Backbone* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Backbones/RegisterBackbone");
  GRAFT_CHECK_STRINGS(*request);
  std::string staged;
  const auto registered = [&]() -> absl::StatusOr<core::BackboneStatus> {
    if (request->name().empty()) return absl::InvalidArgumentError("name is required");
    core::CustomBackboneDef def;
    def.name = request->name();
    ASSIGN_OR_RETURN(def.torchscript_path, TorchScriptSource(*request, &staged));
    def.feature_dim = request->feature_dim();
    const v1::Preprocessing& p = request->preprocessing();
    def.preprocessing.height = p.height();
    def.preprocessing.width = p.width();
    def.preprocessing.resize_size = p.resize_size();
    def.preprocessing.interpolation = p.interpolation();
    const bool mean_std_set = p.mean_size() > 0 || p.std_size() > 0;
    if (mean_std_set) {
      if (p.mean_size() != 3 || p.std_size() != 3) {
        return absl::InvalidArgumentError(absl::StrCat("preprocessing.mean and .std need 3 values each, got ",
                                                       p.mean_size(), " and ", p.std_size()));
      }
      for (int c = 0; c < 3; ++c) {
        def.preprocessing.mean[static_cast<size_t>(c)] = p.mean(c);
        def.preprocessing.std[static_cast<size_t>(c)] = p.std(c);
      }
    }
    ASSIGN_OR_RETURN(def.preprocessing, core::CompletePreprocessing(def.preprocessing, mean_std_set));
    return zoo_.Register(std::move(def));
  }();
  if (!staged.empty()) ::unlink(staged.c_str());
  if (!registered.ok()) return ToGrpcStatus(registered.status());
  if (hooks_.changed) hooks_.changed();
  ToProto(*registered, response);
  return grpc::Status::OK;
}

grpc::Status BackbonesService::UnregisterBackbone(grpc::ServerContext* context,
                                                  const v1::UnregisterBackboneRequest* request,
                                                  v1::UnregisterBackboneResponse*) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Backbones/UnregisterBackbone");
  GRAFT_CHECK_STRINGS(*request);
  const auto status = zoo_.Get(request->name());
  if (!status.ok()) return ToGrpcStatus(status.status());
  const std::string& name = status->spec->name;
  if (status->spec->custom && hooks_.users) {
    const std::vector<std::string> users = hooks_.users(name);
    if (!users.empty()) {
      return ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
          "backbone '", name, "' is still used by ", absl::StrJoin(users, ", "), "; delete or cancel them first")));
    }
  }
  if (auto removed = zoo_.Unregister(name); !removed.ok()) return ToGrpcStatus(removed);
  if (hooks_.changed) hooks_.changed();
  return grpc::Status::OK;
}

grpc::Status BackbonesService::PullBackbone(grpc::ServerContext* context, const v1::PullBackboneRequest* request,
                                            grpc::ServerWriter<v1::PullBackboneProgress>* writer) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Backbones/PullBackbone");
  GRAFT_CHECK_STRINGS(*request);
  const auto status = zoo_.Get(request->name());
  if (!status.ok()) return ToGrpcStatus(status.status());
  const core::BackboneSpec& spec = *status->spec;
  const std::string file = zoo_.OfficialFile(spec);
  v1::PullBackboneProgress last;
  if (!status->weights_present) {
    if (file.empty()) {
      return ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
          "'", spec.name, "' has no official torchvision weights file to download; put ", spec.name,
          "-imagenet.safetensors or ", spec.name, "-imagenet.pth (", spec.reference, " names) into ", zoo_.zoo_dir(),
          "; it is used without a restart")));
    }
    if (!pull_.downloads) {
      return ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
          "downloads are off (graftd --offline): put ", file, " into ", zoo_.zoo_dir(),
          "; it is used without a restart")));
    }
    auto last_sent = std::chrono::steady_clock::time_point{};
    const auto downloaded = core::DownloadVerified(
        pull_.base_url + file, zoo_.zoo_dir(), file,
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
  if (hooks_.changed) hooks_.changed();
  last.set_verified(true);
  ToProto(*loaded, last.mutable_backbone());
  writer->Write(last);
  return grpc::Status::OK;
}

grpc::Status BackbonesService::LoadBackbone(grpc::ServerContext* context, const v1::LoadBackboneRequest* request,
                                            v1::Backbone* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Backbones/LoadBackbone");
  GRAFT_CHECK_STRINGS(*request);
  if (const auto loaded = zoo_.Resident(request->name(), [context] { return context->IsCancelled(); }); !loaded.ok()) {
    return ToGrpcStatus(loaded.status());
  }
  const auto status = zoo_.Get(request->name());
  if (!status.ok()) return ToGrpcStatus(status.status());
  ToProto(*status, response);
  return grpc::Status::OK;
}

grpc::Status BackbonesService::UnloadBackbone(grpc::ServerContext* context, const v1::UnloadBackboneRequest* request,
                                              v1::Backbone* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Backbones/UnloadBackbone");
  GRAFT_CHECK_STRINGS(*request);
  const auto status = zoo_.Unload(request->name());
  if (!status.ok()) return ToGrpcStatus(status.status());
  ToProto(*status, response);
  return grpc::Status::OK;
}

grpc::Status BackbonesService::PinBackbone(grpc::ServerContext* context, const v1::PinBackboneRequest* request,
                                           v1::Backbone* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Backbones/PinBackbone");
  GRAFT_CHECK_STRINGS(*request);
  const auto status = zoo_.Pin(request->name(), request->pinned());
  if (!status.ok()) return ToGrpcStatus(status.status());
  ToProto(*status, response);
  return grpc::Status::OK;
}

}  // namespace graft::server
