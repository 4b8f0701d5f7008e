#pragma once

#include <grpcpp/server.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace graft::core {
class Zoo;
class WeightsFetcher;
class Predictor;
class Database;
class DatasetStore;
class JobStore;
class JobRunner;
class TokenStore;
class DecodeBudget;
class ModelStore;
class ChangeFeed;
}  // namespace graft::core

namespace graft::server {

class Metrics;
class Auth;
class OpenInferenceHttp;

struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback; --host 0.0.0.0 to serve other machines
  int port = 50051;           // 0 picks a free port
  int metrics_port = 9464;    // 0 picks a free port; -1 disables the endpoint
  int http_port = -1;         // Open Inference Protocol REST; 0 picks a free port; -1: off (graftd's flag: 8000)
  std::string data_dir;       // required
  // The metadata database: empty for <data_dir>/graft.db (SQLite), another
  // file path, or a postgresql:// URI (artifacts stay under data_dir).
  std::string database;
  std::string zoo_dir;        // empty: <data_dir>/zoo
  // Scale-out (README "Scaling out"): datasets, models and checkpoints under
  // artifact_dir (empty: data_dir), shared by processes on one PostgreSQL.
  std::string artifact_dir;
  bool serve = true;          // the Inference and Open Inference services
  bool train = true;          // runs jobs from the shared queue
  std::string worker_id;      // empty: HOSTNAME:PORT
  double job_heartbeat_s = 2;
  double job_takeover_s = 15;
  std::string dist_host;  // empty: this host's name
  int dist_port = 0;
  double dist_timeout_s = 300;
  std::string device = "auto";
  int64_t max_image_pixels = 40'000'000;
  int64_t max_batch_size = 32;
  int64_t max_queue_delay_us = 500;
  std::string decode_on = "auto";  // auto | batcher | callers: core::PredictorOptions::DecodeOn
  int intra_op_threads = 0;   // 0: LibTorch's default (one per core)
  int max_models_per_predict = 16;
  std::string default_model_owner = "admin";  // whose models a bare name reaches beyond the caller's own
  int64_t max_string_field_bytes = 4096;  // every string field of every request
  int64_t max_dataset_classes = 10'000;
  int max_job_restarts = 2;
  int64_t max_message_bytes = 64 << 20;  // gRPC messages and REST bodies
  // The REST port (HttpServer): bodies being read at once, connections,
  // the deadline of a request's header, body and answer, the idle wait.
  int64_t max_http_body_budget_bytes = 1LL << 30;
  int max_http_connections = 256;
  int http_request_timeout_s = 30;
  int http_idle_timeout_s = 5;
  int max_concurrent_jobs = 1;
  int max_queued_jobs = 16;
  int64_t max_upload_file_bytes = 64LL << 20;
  int64_t max_dataset_bytes = 8LL << 30;
  int64_t feature_cache_bytes = 2LL << 30;
  double checkpoint_interval_s = 300;  // mid-epoch checkpoints; 0: at epoch ends only
  double shutdown_grace_s = 30;        // in-flight RPCs may finish this long after a SIGTERM
  bool feature_cache_fp16 = true;
  int decode_prefetch_batches = 2;
  int search_trials_at_once = 0;  // RunnerOptions::search_trials_at_once
  bool feature_cache_spill = true;
  bool mixed_precision = true;  // CUDA only: float16 inference, bfloat16 training autocast
  int idle_rpc_threads = 64;  // gRPC handler threads kept waiting between bursts
  bool retain_host_memory = true;  // core::RetainHostMemory (process-wide, set at Start)
  // No downloads: neither official weights on first use nor PullBackbone.
  // graftd's --offline defaults to false; in-process servers (tests) stay off the network.
  bool offline = true;
  std::string weights_base_url = "https://download.pytorch.org/models/";
  std::map<std::string, std::string> weights_files;  // backbone -> torchvision file name (--weights_file)
  std::string device_memory_budget = "auto";  // ZooOptions::memory_budget
  std::vector<std::string> preload;           // pinned backbones loaded at start; "all"
  // Security (README "Security").
  std::string auth = "tokens";      // tokens | none
  std::string tls_cert;             // PEM files; both set: TLS on the gRPC port
  std::string tls_key;
  std::string tls_client_ca;        // set: clients must present a certificate it signed (mTLS)
  std::string backbone_import_dir;  // RegisterBackbone may load torchscript_path only under it
  bool reflection = false;          // gRPC server reflection (unauthenticated: lists the API)
  int max_images_per_request = 64;
  int64_t max_request_pixels = 100'000'000;  // all encoded images of one Predict/Embed, from their headers
  int64_t max_decode_bytes = 2LL << 30;       // image decodes in flight, uploads and serving together
  int64_t max_archive_entries = 2'000'000;
  double max_archive_seconds = 1800;  // an archive's walk (decompression, checks)
  int max_concurrent_uploads = 4;
  int max_uploads_per_principal = 2;
  int max_concurrent_evaluations = 2;  // Evaluate and PredictDataset streams at once
  int max_evaluations_per_principal = 1;
  int max_lr_finds_per_principal = 1;
  int max_running_jobs_per_principal = 0;  // 0: no cap beyond --max_concurrent_jobs
  double upload_idle_timeout_s = 60;       // an upload's next message
  double stream_write_timeout_s = 60;      // a response the client does not read
  int max_queued_jobs_per_principal = 4;
  int64_t max_job_memory_bytes = 8LL << 30;  // a job's estimated cost at CreateJob
  int max_watch_streams_per_principal = 16;
};

// graftd: the zoo, the services, health, reflection and metrics.
class GraftServer {
 public:
  // Prepares the data directory, loads the zoo, binds and starts serving.
  static absl::StatusOr<std::unique_ptr<GraftServer>> Start(const ServerOptions& options);
  ~GraftServer();

  int port() const { return port_; }
  int metrics_port() const;
  int http_port() const;  // -1: off
  const std::string& zoo_dir() const { return zoo_dir_; }
  Metrics& metrics() { return *metrics_; }
  // Full names of the gRPC services registered (graft.v1.* and health).
  const std::vector<std::string>& service_names() const { return service_names_; }
  // <data_dir>/admin.token: where the first start wrote the admin token.
  static std::string AdminTokenPath(const std::string& data_dir);

  void Wait();
  // Stops serving: health NOT_SERVING, running jobs checkpoint at their next
  // batch, in-flight RPCs get --shutdown_grace_s to finish, new ones are
  // refused. Idempotent.
  void Shutdown();

 private:
  GraftServer();
  struct Services;

  std::string zoo_dir_;
  double shutdown_grace_s_ = 30;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<core::WeightsFetcher> fetcher_;  // before zoo_: outlives it
  std::unique_ptr<core::Zoo> zoo_;
  std::unique_ptr<core::Database> db_;
  std::unique_ptr<core::ChangeFeed> changes_;
  std::unique_ptr<core::TokenStore> tokens_;
  std::unique_ptr<core::DecodeBudget> decode_budget_;
  std::unique_ptr<Auth> auth_;
  std::unique_ptr<core::DatasetStore> datasets_;
  std::unique_ptr<core::JobStore> jobs_;
  std::unique_ptr<core::ModelStore> models_;
  std::unique_ptr<core::Predictor> predictor_;  // before runner_: jobs evaluate through it
  std::unique_ptr<core::JobRunner> runner_;
  std::unique_ptr<Services> services_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<OpenInferenceHttp> http_;  // after services_: stops before them
  std::atomic<bool> serving_{false};
  int port_ = 0;
  std::vector<std::string> service_names_;
};

}  // namespace graft::server
