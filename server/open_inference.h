#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/auth/token_store.h"
#include "core/serve/model_store.h"
#include "core/serve/prediction_records.h"
#include "core/serve/predictor.h"
#include "core/zoo/zoo.h"
#include "inference/grpc_predict_v2.pb.h"
#include "server/admission.h"
#include "server/metrics.h"
#include "server/raw_bytes.h"

namespace graft::server {

// The Open Inference Protocol (KServe v2) over graft's predictor, in protocol
// messages, shared by the gRPC service and the REST endpoints (which convert
// JSON to and from the same messages). Every published model (by id, NAME,
// NAME:VERSION or NAME@ALIAS, or NAME with model_version) and every backbone
// (its ImageNet head) is a model.
//
// Inputs: exactly one tensor, either encoded images as BYTES [N] or [N,1], or
// preprocessed images as FP32 [N,3,H,W]; typed contents or raw contents,
// never both. Output "probabilities": FP32 [N,C]; with the output parameter
// "classification" = k, BYTES [N,k] of "score:index:label", best first (the
// classification extension as Triton defines it).
class OpenInference {
 public:
  static constexpr const char* kOutput = "probabilities";
  static constexpr const char* kImageInput = "image";
  static constexpr const char* kTensorInput = "tensor";

  // `ready`: whether the server serves (false while it shuts down).
  OpenInference(const core::Predictor& predictor, const core::Zoo& zoo, core::ModelStore* models, Metrics& metrics,
                RequestLimits limits, core::DecodeBudget* budget, std::function<bool()> ready)
      : predictor_(predictor),
        zoo_(zoo),
        models_(models),
        metrics_(metrics),
        limits_(limits),
        budget_(budget),
        ready_(std::move(ready)) {}

  // Keeps the prediction records model policies choose (null: none). An
  // answer of a fine-tuned model carries the response parameters
  // "prediction_ids" (comma-separated, in row order) and "recorded" (1 or 0
  // per row); the request parameter "store" = false keeps nothing.
  void SetRecords(core::PredictionRecords* records) { records_ = records; }

  bool Ready() const { return ready_(); }
  inference::ServerMetadataResponse ServerMetadata() const;
  // NOT_FOUND for a name that is neither a model `who` may use nor a backbone.
  absl::StatusOr<bool> ModelReady(const core::Principal& who, const std::string& name,
                                  const std::string& version) const;
  absl::StatusOr<inference::ModelMetadataResponse> ModelMetadata(const core::Principal& who, const std::string& name,
                                                                 const std::string& version) const;
  // `raw_outputs`: answer in raw_output_contents (else typed contents).
  // `routing_key`: an alias's canaries route by it (see
  // ModelStore::ResolveForServing); the answer's model_version says which
  // version served.
  absl::Status ModelInfer(const core::Principal& who, const inference::ModelInferRequest& request, bool raw_outputs,
                          const core::CancelledFn& cancelled, inference::ModelInferResponse* response,
                          const std::string& routing_key = "") const;

 private:
  struct Target {
    std::string name;                                 // as the caller named it
    std::string version;                              // the version answered
    std::shared_ptr<const core::ServingModel> model;  // null: a backbone
    std::string backbone;                             // canonical backbone name
    int64_t classes = 0;
    core::Preprocessing preprocessing;
    bool ready = false;
    std::string shadow;  // the alias's shadow version's id (served predictions only)
  };
  // `routing_key`: null for an alias's own version (metadata, readiness),
  // else the version a prediction is served by.
  absl::StatusOr<Target> Find(const core::Principal& who, const std::string& name, const std::string& version,
                              const std::string* routing_key = nullptr) const;

  const core::Predictor& predictor_;
  core::PredictionRecords* records_ = nullptr;
  const core::Zoo& zoo_;
  core::ModelStore* models_;
  Metrics& metrics_;
  const RequestLimits limits_;
  core::DecodeBudget* budget_;
  std::function<bool()> ready_;
};


}  // namespace graft::server
