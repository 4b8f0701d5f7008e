#pragma once

#include "core/zoo/zoo.h"
#include "graft/v1/backbones.grpc.pb.h"

namespace graft::server {

class BackbonesService final : public v1::Backbones::Service {
 public:
  explicit BackbonesService(const core::Zoo& zoo) : zoo_(zoo) {}

  grpc::Status ListBackbones(grpc::ServerContext*, const v1::ListBackbonesRequest*, v1::ListBackbonesResponse*) override;
  grpc::Status GetBackbone(grpc::ServerContext*, const v1::GetBackboneRequest*, v1::Backbone*) override;
  grpc::Status RegisterBackbone(grpc::ServerContext*, const v1::RegisterBackboneRequest*, v1::Backbone*) override;
  grpc::Status UnregisterBackbone(grpc::ServerContext*, const v1::UnregisterBackboneRequest*,
                                  v1::UnregisterBackboneResponse*) override;
  grpc::Status PullBackbone(grpc::ServerContext*, const v1::PullBackboneRequest*,
                            grpc::ServerWriter<v1::PullBackboneProgress>*) override;

 private:
  const core::Zoo& zoo_;
};

}  // namespace graft::server
