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
class PredictionRecords;
class ChangeFeed;
}  // namespace graft::core

namespace graft::server {

class Metrics;
class Auth;
class OpenInferenceHttp;

// graftd's options (server/options.inc: each one's type, default and help,
// the same as its flag's).
struct ServerOptions {
#define GRAFT_OPTION(type, name, default_value, help) type name = default_value;
#define GRAFT_OPTION_IN_PROCESS(type, name, in_process_default, graftd_default, help) type name = in_process_default;
#include "server/options.inc"
#undef GRAFT_OPTION
#undef GRAFT_OPTION_IN_PROCESS
  std::map<std::string, std::string> weights_files;  // backbone -> torchvision file name (--weights_file)
};

// INVALID_ARGUMENT naming the flag of the first option out of its range
// (server/options.cc); GraftServer::Start checks this first.
absl::Status CheckServerOptions(const ServerOptions& options);

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
  std::unique_ptr<core::PredictionRecords> records_;
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
