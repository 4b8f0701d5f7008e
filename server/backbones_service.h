#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/zoo/zoo.h"
#include "graft/v1/backbones.grpc.pb.h"
#include "server/auth.h"

namespace graft::server {

// Where RegisterBackbone may read TorchScript from: files under `import_dir`
// (canonical, symlinks resolved; empty: only bytes sent in the request), never
// under `data_dir`; streamed bytes are staged in `staging_dir`.
struct RegisterOptions {
  std::string import_dir;
  std::string data_dir;
  std::string staging_dir;
};

struct PullOptions {
  bool downloads = false;  // off with graftd --offline
  std::string base_url = "https://download.pytorch.org/models/";  // + the official file name
};

// What the rest of the server tells the backbone service: who still uses a
// backbone (models, unfinished jobs), and that the list of backbones changed.
struct BackboneHooks {
  std::function<std::vector<std::string>(const std::string& backbone)> users;
  std::function<void()> changed;
};

class BackbonesService final : public v1::Backbones::Service {
 public:
  BackbonesService(core::Zoo& zoo, const Auth& auth, RegisterOptions register_options, PullOptions pull,
                   BackboneHooks hooks = {})
      : zoo_(zoo), auth_(auth), register_(std::move(register_options)), pull_(std::move(pull)),
        hooks_(std::move(hooks)) {}

  grpc::Status ListBackbones(grpc::ServerContext*, const v1::ListBackbonesRequest*, v1::ListBackbonesResponse*) override;
  grpc::Status GetBackbone(grpc::ServerContext*, const v1::GetBackboneRequest*, v1::Backbone*) override;
  grpc::Status RegisterBackbone(grpc::ServerContext*, const v1::RegisterBackboneRequest*, v1::Backbone*) override;
  grpc::Status UnregisterBackbone(grpc::ServerContext*, const v1::UnregisterBackboneRequest*,
                                  v1::UnregisterBackboneResponse*) override;
  grpc::Status PullBackbone(grpc::ServerContext*, const v1::PullBackboneRequest*,
                            grpc::ServerWriter<v1::PullBackboneProgress>*) override;
  grpc::Status LoadBackbone(grpc::ServerContext*, const v1::LoadBackboneRequest*, v1::Backbone*) override;
  grpc::Status UnloadBackbone(grpc::ServerContext*, const v1::UnloadBackboneRequest*, v1::Backbone*) override;
  grpc::Status PinBackbone(grpc::ServerContext*, const v1::PinBackboneRequest*, v1::Backbone*) override;

 private:
  // The file to load for `request`: an import-dir path checked, or its bytes staged.
  absl::StatusOr<std::string> TorchScriptSource(const v1::RegisterBackboneRequest& request, std::string* staged);

  core::Zoo& zoo_;
  const Auth& auth_;
  const RegisterOptions register_;
  const PullOptions pull_;
  const BackboneHooks hooks_;
};

}  // namespace graft::server
