#pragma once

#include "core/serve/predictor.h"
#include "graft/v1/inference.grpc.pb.h"
#include "core/serve/model_store.h"
#include "server/auth.h"
#include "server/metrics.h"

namespace graft::server {

// What one Predict or Embed may ask for.
struct RequestLimits {
  int max_images = 64;               // tensor batches counted whole (--max_images_per_request)
  int64_t max_pixels = 100'000'000;  // encoded images, from their headers (--max_request_pixels)
};

class InferenceService final : public v1::Inference::Service {
 public:
  // `models` resolves model owners (null: backbones only);
  InferenceService(const core::Predictor& predictor, Metrics& metrics, const Auth& auth, core::ModelStore* models,
                   RequestLimits limits)
      : predictor_(predictor), metrics_(metrics), auth_(auth), models_(models), limits_(limits) {}

  grpc::Status Predict(grpc::ServerContext*, const v1::PredictRequest*, v1::PredictResponse*) override;
  grpc::Status Embed(grpc::ServerContext*, const v1::EmbedRequest*, v1::EmbedResponse*) override;

 private:
  const core::Predictor& predictor_;
  // INVALID_ARGUMENT / RESOURCE_EXHAUSTED for too many images, PERMISSION_DENIED
  // for a model `who` may not use.
  absl::Status Admit(const core::Principal& who, const google::protobuf::RepeatedPtrField<v1::ImageInput>& images,
                     const std::vector<std::string>& model_ids) const;

  Metrics& metrics_;
  const Auth& auth_;
  core::ModelStore* models_;
  const RequestLimits limits_;
};

}  // namespace graft::server
