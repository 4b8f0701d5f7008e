#pragma once

#include <grpcpp/server.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace graft::core {
class Zoo;
class Predictor;
class Database;
class DatasetStore;
class JobStore;
class JobRunner;
class ModelStore;
}  // namespace graft::core

namespace graft::server {

class Metrics;

struct ServerOptions {
  std::string host = "0.0.0.0";
  int port = 50051;           // 0 picks a free port
  int metrics_port = 9464;    // 0 picks a free port; -1 disables the endpoint
  std::string data_dir;       // required
  std::string zoo_dir;        // empty: <data_dir>/zoo
  std::string device = "auto";
  int64_t max_image_pixels = 40'000'000;
  int64_t max_batch_size = 32;
  int64_t max_queue_delay_us = 500;
  std::string decode_on = "auto";  // auto | batcher | callers: core::PredictorOptions::DecodeOn
  int intra_op_threads = 0;   // 0: LibTorch's default (one per core)
  int64_t max_message_bytes = 64 << 20;
  int max_concurrent_jobs = 1;
  int max_queued_jobs = 16;
  int64_t max_upload_file_bytes = 64LL << 20;
  int64_t max_dataset_bytes = 8LL << 30;
  int64_t feature_cache_bytes = 2LL << 30;
  bool feature_cache_fp16 = true;
  bool feature_cache_spill = true;
  bool mixed_precision = true;  // CUDA only: float16 inference, bfloat16 training autocast
  int idle_rpc_threads = 64;  // gRPC handler threads kept waiting between bursts
  bool retain_host_memory = true;  // core::RetainHostMemory (process-wide, set at Start)
  bool allow_download = false;  // PullBackbone fetches official weights
  std::string weights_base_url = "https://download.pytorch.org/models/";  // spill beyond the budget to <data_dir>/cache
};

// graftd: the zoo, the services, health, reflection and metrics.
class GraftServer {
 public:
  // Prepares the data directory, loads the zoo, binds and starts serving.
  static absl::StatusOr<std::unique_ptr<GraftServer>> Start(const ServerOptions& options);
  ~GraftServer();

  int port() const { return port_; }
  int metrics_port() const;
  const std::string& zoo_dir() const { return zoo_dir_; }
  Metrics& metrics() { return *metrics_; }

  void Wait();
  void Shutdown();

 private:
  GraftServer();
  struct Services;

  std::string zoo_dir_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<core::Zoo> zoo_;
  std::unique_ptr<core::Database> db_;
  std::unique_ptr<core::DatasetStore> datasets_;
  std::unique_ptr<core::JobStore> jobs_;
  std::unique_ptr<core::ModelStore> models_;
  std::unique_ptr<core::JobRunner> runner_;
  std::unique_ptr<core::Predictor> predictor_;
  std::unique_ptr<Services> services_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace graft::server
