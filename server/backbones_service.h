#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/zoo/zoo.h"
#include "graft/v1/backbones.grpc.pb.h"

namespace graft::server {

struct PullOptions {
  bool allow_download = false;
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
  BackbonesService(core::Zoo& zoo, PullOptions pull, BackboneHooks hooks = {})
      : zoo_(zoo), pull_(std::move(pull)), hooks_(std::move(hooks)) {}

  grpc::Status ListBackbones(grpc::ServerContext*, const v1::ListBackbonesRequest*, v1::ListBackbonesResponse*) override;
  grpc::Status GetBackbone(grpc::ServerContext*, const v1::GetBackboneRequest*, v1::Backbone*) override;
  grpc::Status RegisterBackbone(grpc::ServerContext*, const v1::RegisterBackboneRequest*, v1::Backbone*) override;
  grpc::Status UnregisterBackbone(grpc::ServerContext*, const v1::UnregisterBackboneRequest*,
                                  v1::UnregisterBackboneResponse*) override;
  grpc::Status PullBackbone(grpc::ServerContext*, const v1::PullBackboneRequest*,
                            grpc::ServerWriter<v1::PullBackboneProgress>*) override;

 private:
  core::Zoo& zoo_;
  const PullOptions pull_;
  const BackboneHooks hooks_;
};

}  // namespace graft::server
