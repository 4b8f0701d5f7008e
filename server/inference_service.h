#pragma once

#include "core/serve/predictor.h"
#include "graft/v1/inference.grpc.pb.h"
#include "server/metrics.h"

namespace graft::server {

class InferenceService final : public v1::Inference::Service {
 public:
  InferenceService(const core::Predictor& predictor, Metrics& metrics) : predictor_(predictor), metrics_(metrics) {}

  grpc::Status Predict(grpc::ServerContext*, const v1::PredictRequest*, v1::PredictResponse*) override;
  grpc::Status Embed(grpc::ServerContext*, const v1::EmbedRequest*, v1::EmbedResponse*) override;

 private:
  const core::Predictor& predictor_;
  Metrics& metrics_;
};

}  // namespace graft::server
