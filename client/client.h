#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include <functional>

#include "graft/v1/backbones.grpc.pb.h"
#include "graft/v1/datasets.grpc.pb.h"
#include "graft/v1/inference.grpc.pb.h"
#include "graft/v1/models.grpc.pb.h"
#include "graft/v1/predictions.grpc.pb.h"
#include "graft/v1/tokens.grpc.pb.h"
#include "graft/v1/training.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace graft::client {

// How to reach graftd: a bearer token (sent with every call) and, for TLS,
// PEM contents (not paths): the CA to trust, and a client certificate and key
// for mutual TLS.
struct ClientOptions {
  std::string token;
  bool tls = false;
  std::string tls_ca;    // empty with tls: the system's roots
  std::string tls_cert;
  std::string tls_key;
};

// A typed client for graftd. gRPC errors come back as absl::Status with the
// server's code and message.
class GraftClient {
 public:
  explicit GraftClient(const std::string& target, ClientOptions options = {});

  absl::StatusOr<v1::ListBackbonesResponse> ListBackbones();
  absl::StatusOr<v1::Backbone> GetBackbone(const std::string& name);
  // Has graftd fetch and verify a backbone's official weights (needs graftd
  // no --offline); `progress` sees every progress message.
  absl::StatusOr<v1::Backbone> PullBackbone(const std::string& name,
                                            const std::function<void(const v1::PullBackboneProgress&)>& progress);
  absl::StatusOr<v1::Backbone> RegisterBackbone(const v1::RegisterBackboneRequest& request);
  absl::Status UnregisterBackbone(const std::string& name);
  // Residency (admin): load now, evict now, pin or unpin.
  absl::StatusOr<v1::Backbone> LoadBackbone(const std::string& name);
  absl::StatusOr<v1::Backbone> UnloadBackbone(const std::string& name);
  absl::StatusOr<v1::Backbone> PinBackbone(const std::string& name, bool pinned);
  absl::StatusOr<v1::PredictResponse> Predict(const v1::PredictRequest& request);
  absl::StatusOr<v1::EmbedResponse> Embed(const v1::EmbedRequest& request);
  absl::StatusOr<::grpc::health::v1::HealthCheckResponse> Health(const std::string& service = "");

  struct UploadProgress {
    int64_t bytes_sent = 0;
    int64_t bytes_total = 0;
    int files_sent = 0;
    int files_total = 0;
  };
  // Uploads a folder (file by file) or an archive (tar, tar.gz, zip).
  absl::StatusOr<v1::UploadDatasetResponse> UploadDataset(
      const std::string& path, const std::string& name, float split_fraction = 0, uint64_t split_seed = 0,
      const std::function<void(const UploadProgress&)>& progress = nullptr);
  absl::StatusOr<v1::ListDatasetsResponse> ListDatasets();
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& id);
  absl::Status DeleteDataset(const std::string& id);

  absl::StatusOr<v1::Job> CreateJob(const v1::JobSpec& spec);
  absl::StatusOr<v1::Job> Retrain(const v1::RetrainRequest& request);
  // The range test; runs while the call lasts (up to `seconds`).
  absl::StatusOr<v1::LearningRateCurve> FindLearningRate(const v1::FindLearningRateRequest& request, int seconds = 1800);
  absl::StatusOr<v1::Job> GetJob(const std::string& id);
  absl::StatusOr<v1::ListJobsResponse> ListJobs(v1::JobState state = v1::JOB_STATE_UNSPECIFIED);
  absl::StatusOr<v1::Job> CancelJob(const std::string& id);
  // Calls `on_event` for every event (replayed, then live) until the job
  // ends or `on_event` returns false.
  // Streams the job's events after `from_seq` (0: all) until it ends or
  // `on_event` returns false.
  absl::Status WatchJob(const std::string& id, bool progress, const std::function<bool(const v1::JobEvent&)>& on_event,
                        int64_t from_seq = 0);

  absl::StatusOr<v1::ListModelsResponse> ListModels();
  absl::StatusOr<v1::Model> GetModel(const std::string& id);
  absl::Status DeleteModel(const std::string& id);
  // The model as one safetensors file's bytes.
  absl::StatusOr<std::string> ExportModel(const std::string& id);
  // Runs the model over a stored dataset; `progress` sees each progress
  // message (images done of total); returns the report.
  // Streams a model's predictions over a stored dataset; `on_batch` sees each
  // message in order (false: stop and cancel the call).
  absl::Status PredictDataset(const v1::PredictDatasetRequest& request,
                              const std::function<bool(const v1::PredictDatasetResponse&)>& on_batch);
  // `canaries`: (version, percent) pairs that take a share of the alias's
  // predictions; `shadow`: a version mirrored every prediction (0: none).
  absl::StatusOr<v1::Model> SetModelAlias(const std::string& name, const std::string& alias, int64_t version,
                                          const std::vector<std::pair<int64_t, double>>& canaries = {},
                                          int64_t shadow = 0);
  absl::Status DeleteModelAlias(const std::string& name, const std::string& alias);
  absl::StatusOr<v1::EvaluationReport> Evaluate(const v1::EvaluateRequest& request,
                                                const std::function<void(const v1::EvaluateProgress&)>& progress = {});
  // The last message: the check (absent when returning to fp32) and the model.
  absl::StatusOr<v1::OptimizeModelProgress> OptimizeModel(
      const v1::OptimizeModelRequest& request,
      const std::function<void(const v1::OptimizeModelProgress&)>& progress = {});

  // Prediction records and feedback (graft.v1.Predictions).
  absl::StatusOr<v1::RecordPolicy> SetRecordPolicy(const std::string& model, const v1::RecordPolicy& policy);
  absl::StatusOr<v1::RecordPolicy> GetRecordPolicy(const std::string& model);
  absl::StatusOr<v1::ListPredictionsResponse> ListPredictions(const v1::ListPredictionsRequest& request);
  absl::StatusOr<v1::PredictionRecord> GetPrediction(const std::string& prediction_id, bool include_image);
  absl::StatusOr<v1::PredictionRecord> Feedback(const std::string& prediction_id, const std::string& label);
  absl::StatusOr<int64_t> PurgePredictions(const std::string& model);
  absl::StatusOr<v1::CreateDatasetFromPredictionsResponse> CreateDatasetFromPredictions(
      const v1::CreateDatasetFromPredictionsRequest& request);

  // Tokens (admin), and who the token is (any role).
  absl::StatusOr<v1::CreateTokenResponse> CreateToken(const std::string& name, v1::Role role);
  absl::StatusOr<v1::ListTokensResponse> ListTokens();
  absl::Status RevokeToken(const std::string& name);
  absl::StatusOr<v1::TokenInfo> WhoAmI();

  const std::string& target() const { return target_; }
  // A context with a deadline `seconds` away and the token.
  std::unique_ptr<grpc::ClientContext> NewContext(int seconds) const;

 private:
  std::string target_;
  std::string token_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Backbones::Stub> backbones_;
  std::unique_ptr<v1::Inference::Stub> inference_;
  std::unique_ptr<::grpc::health::v1::Health::Stub> health_;
  std::unique_ptr<v1::Datasets::Stub> datasets_;
  std::unique_ptr<v1::Training::Stub> training_;
  std::unique_ptr<v1::Models::Stub> models_;
  std::unique_ptr<v1::Predictions::Stub> predictions_;
  std::unique_ptr<v1::Tokens::Stub> tokens_;
};

// gRPC status -> absl::Status (same codes); the message names the server.
absl::Status FromGrpc(const grpc::Status& status, const std::string& target);

}  // namespace graft::client
