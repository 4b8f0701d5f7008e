#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/data/image_codec.h"
#include "core/zoo/zoo.h"

namespace graft::core {

// One request input: encoded image bytes, or a preprocessed float tensor of
// shape [3, H, W] or [N, 3, H, W].
struct ImageInput {
  std::string encoded;
  torch::Tensor tensor;  // defined => use it instead of `encoded`
};

struct ClassScore {
  int index = 0;
  std::string label;
  float probability = 0;
};

struct Timing {
  int64_t decode_us = 0;
  int64_t queue_us = 0;
  int64_t compute_us = 0;
  int64_t total_us = 0;
};

struct PredictResult {
  std::vector<std::vector<ClassScore>> images;  // top-k per image, best first
  Timing timing;
};

struct EmbedResult {
  torch::Tensor embeddings;  // [N, dim] float32 on CPU
  Timing timing;
};

struct PredictorOptions {
  DecodeLimits limits;
  int64_t max_batch_size = 32;   // forward passes are chunked to this
  int64_t max_images = 256;      // per request
};

// Predictions and embeddings from resident pretrained backbones.
class Predictor {
 public:
  Predictor(const Zoo& zoo, PredictorOptions options) : zoo_(zoo), options_(options) {}

  absl::StatusOr<PredictResult> Predict(const std::string& backbone, const std::vector<ImageInput>& inputs,
                                        int top_k) const;
  // `block` empty: pooled output of the whole trunk; else pooled output of
  // the named block.
  absl::StatusOr<EmbedResult> Embed(const std::string& backbone, const std::vector<ImageInput>& inputs,
                                    const std::string& block) const;

 private:
  // Decodes/validates all inputs into one [N, 3, H, W] CPU batch.
  absl::StatusOr<torch::Tensor> BuildBatch(const ResidentBackbone& backbone, const std::vector<ImageInput>& inputs,
                                           Timing& timing) const;

  const Zoo& zoo_;
  PredictorOptions options_;
};

}  // namespace graft::core
