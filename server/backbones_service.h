#pragma once

#include "core/zoo/zoo.h"
#include "graft/v1/backbones.grpc.pb.h"

namespace graft::server {

struct PullOptions {
  bool allow_download = false;
  std::string base_url = "https://download.pytorch.org/models/";  // + the official file name
};

class BackbonesService final : public v1::Backbones::Service {
 public:
  BackbonesService(core::Zoo& zoo, PullOptions pull) : zoo_(zoo), pull_(std::move(pull)) {}

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
};

}  // namespace graft::server
