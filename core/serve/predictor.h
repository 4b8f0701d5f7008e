#pragma once

#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "core/data/image_codec.h"
#include "core/serve/batcher.h"
#include "core/serve/model_store.h"
#include "core/serve/shadow.h"
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
  int64_t batch_images = 0;  // images in the (largest) batch the request rode in
};

struct PredictResult {
  std::vector<std::vector<ClassScore>> images;  // top-k per image, best first
  Timing timing;
};

struct ModelPredictions {
  std::string model;
  std::string backbone;
  Precision precision = Precision::kFp32;  // what its trunk ran in
  std::vector<std::vector<ClassScore>> images;
};

struct MultiPredictResult {
  std::vector<ModelPredictions> models;  // request order
  Timing timing;
};

// One model's outputs for a batch of images.
struct ModelOutputs {
  torch::Tensor probabilities;  // [N, classes] float32 on CPU
  torch::Tensor embeddings;     // [N, dim] float32 on CPU: the pooled features its head sees
};

struct EmbedResult {
  torch::Tensor embeddings;  // [N, dim] float32 on CPU
  Timing timing;
};

struct PredictorOptions {
  // Where encoded images are decoded and preprocessed. kBatcher: by the
  // backbone's batcher on its compute threads, in parallel, just before the
  // batch's forward; on a CPU the forward needs every core, and decoding on
  // the callers' threads meanwhile preempts its OpenMP team and stalls it at
  // each barrier (measured: 16 clients 0.74 -> 0.9 of the batched forward).
  // kCallers: on each caller's thread before it queues, overlapping the
  // forward of a GPU. kAuto: kBatcher for CPU backbones, kCallers otherwise.
  enum class DecodeOn { kAuto, kCallers, kBatcher };
  DecodeOn decode_on = DecodeOn::kAuto;
  DecodeLimits limits;
  BatcherOptions batching;    // max_batch_size also chunks large requests
  int64_t max_images = 256;   // per request
  // Images that may wait for shadow versions (--shadow_queue_images); a
  // request that finds no room is not mirrored (counted as dropped). 0: no
  // shadowing.
  int64_t shadow_queue_images = 256;
};

// Each served model id's shadow version's id (ServingRoute).
using ShadowMap = std::map<std::string, std::string>;

// top_k unset: 5, or the number of classes when fewer; INVALID_ARGUMENT
// outside [1, classes].
absl::StatusOr<int> ResolveTopK(std::optional<int> top_k, int64_t classes);
// The k best classes of each row of `probs` ([N, C] on CPU), best first.
std::vector<std::vector<ClassScore>> TopKOfProbabilities(const torch::Tensor& probs, int k,
                                                         const std::vector<std::string>& labels);

// Polled while a request waits; true once its caller has gone.
using CancelledFn = std::function<bool()>;

// Who asks, for the batcher's fair turns: requests of the tenant served least
// recently ride first, so one principal's heavy requests (large images to
// decode) delay another's by one batch, not by the whole queue.
struct Caller {
  Caller() = default;
  Caller(CancelledFn cancelled, std::string tenant = {})  // NOLINT: a bare CancelledFn is a tenant-less caller
      : cancelled(std::move(cancelled)), tenant(std::move(tenant)) {}
  CancelledFn cancelled;
  std::string tenant;
  bool background = false;  // nobody waits for the answer (TrunkRequest::background)
};

// Predictions and embeddings from resident pretrained backbones and from
// published models.
class Predictor {
 public:
  Predictor(const Zoo& zoo, ModelStore* models, PredictorOptions options, BatcherObserver* observer = nullptr);
  ~Predictor();

  const Zoo& zoo() const { return zoo_; }

  // top_k unset: 5 (or the number of classes when fewer).
  absl::StatusOr<PredictResult> Predict(const std::string& backbone, const std::vector<ImageInput>& inputs,
                                        std::optional<int> top_k, const Caller& caller = {}) const;
  // Several models of one backbone: the shared frozen part runs once (once
  // per precision the models serve in).
  // `shadows`: each model's shadow version, which gets the same images off
  // the request path (ShadowLane), its answers compared with the model's
  // (ServingModel::AgreementWith). A shadow that shares the model's trunk
  // and input preprocessing, stopping no deeper than the request already
  // runs, takes its activations from this request's pass (only its own
  // blocks and head run, on the lane's thread); any other runs the whole
  // network as background work of its backbone's batcher.
  absl::StatusOr<MultiPredictResult> PredictModels(const std::vector<std::string>& model_ids,
                                                   const std::vector<ImageInput>& inputs,
                                                   std::optional<int> top_k,
                                                   const Caller& caller = {},
                                                   const ShadowMap& shadows = {}) const;
  // Blocks until the shadow work queued so far is done (tests, benchmarks).
  void DrainShadows() const;
  // Class probabilities ([N, classes] float32 on CPU) of one model, computed
  // as Predict computes them (same batcher, same preprocessing); the model
  // need not be published yet (a job's report is made before it is).
  absl::StatusOr<torch::Tensor> Probabilities(const std::shared_ptr<const ServingModel>& model,
                                              const std::vector<ImageInput>& inputs,
                                              const Caller& caller = {}) const;
  // The same with the pooled features the head saw (a reference profile's
  // embeddings).
  // `precision`: the trunk's number format (unset: the model's own).
  absl::StatusOr<ModelOutputs> Outputs(const std::shared_ptr<const ServingModel>& model,
                                       const std::vector<ImageInput>& inputs, const Caller& caller = {},
                                       std::optional<Precision> precision = std::nullopt) const;
  // The inputs preprocessed as `p` says, joined [N, 3, H, W] float32 (what
  // the trunk takes): int8 calibration images. Each input is checked as
  // Predict checks it.
  absl::StatusOr<torch::Tensor> Preprocess(const Preprocessing& p, const std::vector<ImageInput>& inputs) const;
  // `block` empty: pooled output of the whole trunk; else pooled output of
  // the named block.
  absl::StatusOr<EmbedResult> Embed(const std::string& backbone, const std::vector<ImageInput>& inputs,
                                    const std::string& block, const Caller& caller = {}) const;
  absl::StatusOr<EmbedResult> EmbedModel(const std::string& model_id, const std::vector<ImageInput>& inputs,
                                         const Caller& caller = {}) const;

 private:
  // Validates the inputs and runs the resident trunk over them through the
  // backbone's dynamic batcher (decoding them here or in the batcher, see
  // PredictorOptions::decode_on); returns the activations at each requested
  // block boundary (unpooled).
  // `classify`: also the backbone's classifier, batched (TrunkResult::logits).
  // `precision`: the trunk's number format, `calibration` int8's (Zoo::Trunk).
  absl::StatusOr<TrunkResult> RunTrunk(const std::shared_ptr<ResidentBackbone>& backbone, const Preprocessing& p,
                                       const std::vector<ImageInput>& inputs, const std::vector<int>& stops,
                                       bool classify, Timing& timing, const Caller& caller,
                                       Precision precision = Precision::kFp32,
                                       const Int8Calibration* calibration = nullptr) const;
  // The inputs as a trunk request: each a deferred input; made here and
  // joined into `images` unless `defer`.
  absl::StatusOr<TrunkRequest> MakeRequest(const Preprocessing& p, const std::vector<ImageInput>& inputs, bool defer,
                                           Timing& timing) const;
  TrunkBatcher& BatcherFor(const std::shared_ptr<ResidentBackbone>& backbone) const;
  // Queues `shadow`'s answer for the images `served` answered with
  // `served_probabilities`: from `at_k` (this pass's activations at the
  // shadow's first block) when defined, else from `inputs` in the background.
  void Mirror(const std::shared_ptr<const ServingModel>& served, const std::shared_ptr<const ServingModel>& shadow,
              const torch::Tensor& served_probabilities, const std::vector<ImageInput>& inputs,
              const torch::Tensor& at_k, int num_blocks) const;

  const Zoo& zoo_;
  ModelStore* models_;
  PredictorOptions options_;
  BatcherObserver* observer_;
  mutable absl::Mutex batchers_mu_;
  // One per backbone (its spec); a backbone evicted and loaded again gets a
  // new one.
  mutable std::map<const BackboneSpec*, std::unique_ptr<TrunkBatcher>> batchers_ ABSL_GUARDED_BY(batchers_mu_);
  // Last: its worker uses the batchers, so it goes first. Null: no shadowing.
  std::unique_ptr<ShadowLane> shadow_lane_;
};

}  // namespace graft::core
