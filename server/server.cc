#include "server/server.h"
#include "server/stream_watchdog.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <map>
#include <set>

#include <google/protobuf/descriptor.h>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/util/change_feed.h"
#include "core/serve/predictor.h"
#include "core/util/compute_threads.h"
#include "core/util/host_memory.h"
#include "core/util/log.h"
#include "core/zoo/zoo.h"
#include "server/backbones_service.h"
#include "server/copy_options.h"
#include "server/inference_service.h"
#include "server/metrics.h"
#include "core/data/dataset_store.h"
#include "core/jobs/job_runner.h"
#include "core/jobs/job_store.h"
#include "core/serve/model_store.h"
#include "core/util/database.h"
#include "server/datasets_service.h"
#include "server/models_service.h"
#include "server/predictions_service.h"
#include "server/open_inference.h"
#include "server/open_inference_http.h"
#include "server/request_check.h"
#include "server/open_inference_service.h"
#include "server/tokens_service.h"
#include "server/training_service.h"
#include "grpc/health/v1/health.pb.h"
#include "core/auth/token_store.h"
#include "core/data/decode_budget.h"
#include "core/util/status_macros.h"
#include "server/auth.h"

namespace graft::server {
namespace fs = std::filesystem;

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read '", path, "'"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Plaintext, TLS, or mutual TLS from the --tls_* flags.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& o) {
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (o.tls_cert.empty()) {
    if (!o.tls_client_ca.empty()) return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl(o.tls_client_ca.empty()
                                            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(o.tls_cert, "--tls_cert"));
  ASSIGN_OR_RETURN(pair.private_key, ReadPem(o.tls_key, "--tls_key"));
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!o.tls_client_ca.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(o.tls_client_ca, "--tls_client_ca"));
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

std::string GraftServer::AdminTokenPath(const std::string& data_dir) {
  return (fs::path(data_dir) / "admin.token").string();
}

struct GraftServer::Services {
  // First: destroyed after every service whose calls it watches.
  std::unique_ptr<StreamWatchdog> watchdog;
  std::unique_ptr<TokensService> tokens;
  std::unique_ptr<BackbonesService> backbones;
  std::unique_ptr<InferenceService> inference;
  std::unique_ptr<DatasetsService> datasets;
  std::unique_ptr<TrainingService> training;
  std::unique_ptr<ModelsService> models;
  std::unique_ptr<PredictionsService> predictions;
  std::unique_ptr<OpenInference> oip;
  std::unique_ptr<OpenInferenceService> oip_grpc;
};

GraftServer::GraftServer() = default;

GraftServer::~GraftServer() {
  if (changes_) changes_->Stop();  // its thread calls into the stores
  if (metrics_) metrics_->WatchZoo(nullptr);
  if (metrics_) metrics_->WatchJobs(nullptr);
  if (metrics_) metrics_->WatchModels(nullptr, 0);
  Shutdown();
  if (runner_) runner_->Stop();
}

int GraftServer::metrics_port() const { return metrics_->port(); }

int GraftServer::http_port() const { return http_ ? http_->port() : -1; }

absl::StatusOr<std::unique_ptr<GraftServer>> GraftServer::Start(const ServerOptions& options) {
  RETURN_IF_ERROR(CheckServerOptions(options));
  SetMaxStringFieldBytes(options.max_string_field_bytes);
  ASSIGN_OR_RETURN(const auto credentials, Credentials(options));
  using DecodeOn = core::PredictorOptions::DecodeOn;
  const std::map<std::string, DecodeOn> decode_on = {
      {"auto", DecodeOn::kAuto}, {"batcher", DecodeOn::kBatcher}, {"callers", DecodeOn::kCallers}};
  if (options.retain_host_memory && !core::RetainHostMemory()) {
    ABSL_LOG(WARNING) << "--retain_host_memory: this C library offers no control over returning memory; ignored";
  }
  std::unique_ptr<GraftServer> s(new GraftServer());
  s->shutdown_grace_s_ = options.shutdown_grace_s;
  std::error_code ec;
  for (const char* sub : {"", "datasets", "models", "checkpoints", "zoo", "cache"}) {
    fs::create_directories(fs::path(options.data_dir) / sub, ec);
    if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create ", (fs::path(options.data_dir) / sub).string(), ": ", ec.message()));
  }
  s->zoo_dir_ = options.zoo_dir.empty() ? (fs::path(options.data_dir) / "zoo").string() : options.zoo_dir;
  // LibTorch's own default is its count of physical cores, which some
  // virtual machines report as 1 (this project's 2-vCPU CI machine): graftd
  // then computed on one core of two. 0 means every CPU graftd may run on.
  // Only the job threads and the batchers compute with a team of that many
  // (core/util/compute_threads.h): an RPC thread that loads a backbone, the
  // thread starting the server and the decode pools compute alone, so the
  // process never holds more OpenMP team threads than a job and a batcher need.
  core::SetComputeThreads(options.intra_op_threads > 0 ? options.intra_op_threads : core::AvailableCpus());
  core::UseSingleThreadedBlas();

  if (options.metrics_port >= 0) {
    auto metrics = Metrics::Create(options.host, options.metrics_port);
    if (!metrics.ok()) return metrics.status();
    s->metrics_ = std::move(*metrics);
  } else {
    s->metrics_ = Metrics::CreateUnexposed();
  }

  auto zoo_options = WithOptions<core::ZooOptions>(options);
  zoo_options.zoo_dir = s->zoo_dir_;
  zoo_options.custom_dir = (fs::path(options.data_dir) / "backbones").string();
  auto fetch = WithOptions<core::FetchOptions>(options);
  fetch.on_done = [metrics = s->metrics_.get()](bool ok, int64_t bytes) { metrics->OnWeightsFetched(ok, bytes); };
  s->fetcher_ = std::make_unique<core::WeightsFetcher>(s->zoo_dir_, fetch);
  zoo_options.fetcher = s->fetcher_.get();
  zoo_options.weights_files = options.weights_files;
  zoo_options.observer = s->metrics_.get();
  auto zoo = core::Zoo::Create(zoo_options);
  if (!zoo.ok()) return zoo.status();
  s->zoo_ = std::move(*zoo);
  s->metrics_->SetBackbones(*s->zoo_);
  s->metrics_->WatchZoo(s->zoo_.get());
  s->metrics_->WatchProcess(options.data_dir);
  s->metrics_->SetMaxBatchImages(options.max_batch_size);

  auto db = core::Database::Open(options.database.empty() ? (fs::path(options.data_dir) / "graft.db").string()
                                                          : options.database);
  if (!db.ok()) return db.status();
  s->db_ = std::move(*db);
  // Processes on one PostgreSQL database share it, and the artifact
  // directory: the change feed tells each what the others changed.
  const bool shared = s->db_->kind() == core::Database::Kind::kPostgres;
  const std::string artifact_dir = options.artifact_dir.empty() ? options.data_dir : options.artifact_dir;
  {
    std::error_code ec;
    fs::create_directories(artifact_dir, ec);
    if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create --artifact_dir ", artifact_dir, ": ", ec.message()));
  }
  std::string worker_id = options.worker_id;
  if (worker_id.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    worker_id = options.port != 0 ? absl::StrCat(host, ":", options.port) : absl::StrCat(host, ":pid", ::getpid());
  }
  if (worker_id.size() > 200 || worker_id.find_first_of("/\\\n") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--worker_id: at most 200 characters, no '/', got '", worker_id, "'"));
  }
  std::string dist_host = options.dist_host;
  if (dist_host.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    dist_host = host;
  }
  ASSIGN_OR_RETURN(s->changes_, core::ChangeFeed::Open(*s->db_, options.database));
  if (options.auth == "tokens") {
    ASSIGN_OR_RETURN(s->tokens_, core::TokenStore::Open(*s->db_));
    const std::string token_path = AdminTokenPath(artifact_dir);
    ASSIGN_OR_RETURN(const bool created, s->tokens_->Bootstrap(token_path));
    if (created) ABSL_LOG(INFO) << "no token existed: created the admin token in " << token_path << " (mode 0600)";
  } else {
    ABSL_LOG(WARNING) << "--auth none: every client that reaches graftd is an admin; use it only behind your own "
                         "authentication";
  }
  s->auth_ = std::make_unique<Auth>(s->tokens_.get());
  s->decode_budget_ = std::make_unique<core::DecodeBudget>(options.max_decode_bytes);
  auto limits = WithOptions<core::UploadLimits>(options);
  limits.decode_budget = s->decode_budget_.get();
  core::StorageSharing sharing;
  if (shared) {
    sharing.staging = absl::StrReplaceAll(worker_id, {{":", "_"}});
    sharing.gc_grace_s = 6 * 3600;
  }
  auto datasets = core::DatasetStore::Open(*s->db_, (fs::path(artifact_dir) / "datasets").string(), limits, sharing);
  if (!datasets.ok()) return datasets.status();
  s->datasets_ = std::move(*datasets);
  auto jobs = core::JobStore::Open(*s->db_);
  if (!jobs.ok()) return jobs.status();
  s->jobs_ = std::move(*jobs);
  auto models = core::ModelStore::Open(*s->db_, (fs::path(artifact_dir) / "models").string(), *s->zoo_,
                                       WithOptions<core::MonitorOptions>(options));
  if (!models.ok()) return models.status();
  s->models_ = std::move(*models);
  auto records = core::PredictionRecords::Open(*s->db_, (fs::path(artifact_dir) / "predictions").string(),
                                               WithOptions<core::RecordsOptions>(options));
  if (!records.ok()) return records.status();
  s->records_ = std::move(*records);
  s->models_->SetDefaultOwner(options.default_model_owner);
  s->models_->SetChangeFeed(s->changes_.get());
  s->changes_->Subscribe(core::ChangeFeed::kModels, [server = s.get()] {
    auto changed = server->models_->Refresh();
    if (!changed.ok()) {
      ABSL_LOG(WARNING) << "reloading models another graftd changed: " << changed.status().message();
    } else if (*changed > 0) {
      server->metrics_->SetModels(static_cast<double>(server->models_->size()));
    }
  });
  if (s->tokens_ != nullptr) {
    s->tokens_->SetChangeFeed(s->changes_.get());
    s->changes_->Subscribe(core::ChangeFeed::kTokens, [tokens = s->tokens_.get()] {
      if (auto r = tokens->Reload(); !r.ok()) ABSL_LOG(WARNING) << "reloading tokens: " << r.message();
    });
  }
  s->metrics_->WatchJobs(s->jobs_.get());
  s->metrics_->WatchModels(s->models_.get(), options.monitor_max_classes);
  s->metrics_->SetDatasets(static_cast<double>(s->datasets_->List().size()));
  s->metrics_->SetModels(static_cast<double>(s->models_->size()));

  auto predictor_options = WithOptions<core::PredictorOptions>(options);
  predictor_options.limits.budget = s->decode_budget_.get();
  predictor_options.decode_on = decode_on.at(options.decode_on);
  s->predictor_ = std::make_unique<core::Predictor>(*s->zoo_, s->models_.get(), predictor_options, s->metrics_.get());

  auto runner_options = WithOptions<core::RunnerOptions>(options);
  runner_options.predictor = s->predictor_.get();
  runner_options.checkpoint_dir = (fs::path(artifact_dir) / "checkpoints").string();
  runner_options.shared = shared;
  runner_options.worker_id = worker_id;
  runner_options.dist_host = dist_host;
  if (options.feature_cache_spill) runner_options.feature_spill_dir = (fs::path(options.data_dir) / "cache").string();
  s->runner_ = std::make_unique<core::JobRunner>(*s->jobs_, *s->datasets_, *s->models_, *s->zoo_, runner_options,
                                                 s->metrics_.get());

  s->services_ = std::make_unique<Services>();
  BackboneHooks hooks;
  hooks.users = [server = s.get()](const std::string& backbone) {
    std::vector<std::string> users;
    for (const core::ModelInfo& m : server->models_->List()) {
      if (m.backbone == backbone) users.push_back("model " + m.id);
    }
    if (auto jobs = server->jobs_->List(); jobs.ok()) {
      for (const core::JobRecord& j : *jobs) {
        if (!core::IsTerminal(j.state) && j.spec.backbone == backbone) users.push_back("job " + j.id);
      }
    }
    return users;
  };
  hooks.changed = [server = s.get()] { server->metrics_->SetBackbones(*server->zoo_); };
  const Auth& auth = *s->auth_;
  auto register_options = WithOptions<RegisterOptions>(options);
  register_options.staging_dir = (fs::path(options.data_dir) / "cache" / "register").string();
  s->services_->tokens = std::make_unique<TokensService>(s->tokens_.get(), auth);
  s->services_->backbones = std::make_unique<BackbonesService>(
      *s->zoo_, auth, register_options, PullOptions{!options.offline, options.weights_base_url}, std::move(hooks));
  s->services_->inference = std::make_unique<InferenceService>(
      *s->predictor_, *s->metrics_, auth, s->models_.get(),
      RequestLimits{options.max_images_per_request, options.max_request_pixels, options.max_image_pixels,
                    options.max_models_per_predict}, s->decode_budget_.get());
  s->services_->inference->SetRecords(s->records_.get());
  s->services_->predictions =
      std::make_unique<PredictionsService>(*s->records_, *s->models_, *s->datasets_, *s->metrics_, auth);
  s->services_->watchdog = std::make_unique<StreamWatchdog>();
  const StreamDeadlines deadlines{s->services_->watchdog.get(), options.upload_idle_timeout_s,
                                  options.stream_write_timeout_s};
  s->services_->datasets =
      std::make_unique<DatasetsService>(*s->datasets_, *s->runner_, *s->metrics_, auth, options.max_concurrent_uploads,
                                        options.max_uploads_per_principal, deadlines);
  s->services_->training =
      std::make_unique<TrainingService>(*s->runner_, auth, options.max_watch_streams_per_principal, deadlines);
  s->services_->models = std::make_unique<ModelsService>(
      *s->models_, *s->metrics_, auth, s->predictor_.get(), s->datasets_.get(), options.max_concurrent_evaluations,
      options.max_evaluations_per_principal, deadlines);
  s->services_->models->SetRecords(s->records_.get());
  s->services_->oip = std::make_unique<OpenInference>(
      *s->predictor_, *s->zoo_, s->models_.get(), *s->metrics_,
      RequestLimits{options.max_images_per_request, options.max_request_pixels, options.max_image_pixels,
                    options.max_models_per_predict},
      s->decode_budget_.get(), [server = s.get()] { return server->serving_.load(); });
  s->services_->oip->SetRecords(s->records_.get());
  s->services_->oip_grpc = std::make_unique<OpenInferenceService>(*s->services_->oip, auth);

  grpc::EnableDefaultHealthCheckService(true);
  if (options.reflection) {
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    // gRPC's built-in health service has no protobuf descriptor of its own;
    // touching graft's generated grpc.health.v1 classes links theirs in, so
    // reflection resolves the service it lists.
    (void)grpc::health::v1::HealthCheckRequest::descriptor();
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(options.host, ":", options.port), credentials, &s->port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  // gRPC's sync server otherwise ends all but two idle handler threads and
  // starts new ones for the next burst; each new thread costs its creation
  // and a rebuild of LibTorch's thread pool on its first op (measured: 16
  // clients 54 -> 96 images/s when they are kept).
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, options.idle_rpc_threads);
  const auto add = [&](grpc::Service* service, const char* full_name) {
    builder.RegisterService(service);
    s->service_names_.push_back(full_name);
  };
  add(s->services_->tokens.get(), v1::Tokens::service_full_name());
  add(s->services_->backbones.get(), v1::Backbones::service_full_name());
  if (options.serve) add(s->services_->inference.get(), v1::Inference::service_full_name());
  add(s->services_->datasets.get(), v1::Datasets::service_full_name());
  add(s->services_->training.get(), v1::Training::service_full_name());
  add(s->services_->models.get(), v1::Models::service_full_name());
  add(s->services_->predictions.get(), v1::Predictions::service_full_name());
  if (options.serve) add(s->services_->oip_grpc.get(), inference::GRPCInferenceService::service_full_name());
  s->service_names_.push_back("grpc.health.v1.Health");
  if (options.reflection) s->service_names_.push_back("grpc.reflection.v1alpha.ServerReflection");
  std::set<std::string> methods;
  for (const std::string& name : s->service_names_) {
    const auto* service = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
    for (int i = 0; service != nullptr && i < service->method_count(); ++i) {
      methods.insert(absl::StrCat(name, "/", service->method(i)->name()));
    }
  }
  for (const std::string& label : OpenInferenceHttp::MetricLabels()) methods.insert(label);
  methods.insert("metrics (refused)");
  s->metrics_->SetKnownMethods(std::move(methods));
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(s->metrics_->InterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.host, ":", options.port));
  }
  if (auto started = s->runner_->Start(); !started.ok()) return started;
  if (auto started = s->changes_->Start(); !started.ok()) return started;
  ABSL_LOG(INFO) << "worker " << worker_id << ": " << (options.serve ? "serving" : "not serving")
                 << (options.train ? ", training" : ", not training") << (shared ? " (shared database)" : "");
  if (options.http_port >= 0 && options.serve) {
    const auto http = WithOptions<HttpOptions>(options);
    ASSIGN_OR_RETURN(s->http_, OpenInferenceHttp::Start(http, *s->services_->oip, auth, *s->metrics_,
                                                        s->decode_budget_.get()));
  }
  s->serving_ = true;
  // Weights are loaded before the server starts: it is SERVING from here on.
  s->server_->GetHealthCheckService()->SetServingStatus(true);
  return s;
}

void GraftServer::Wait() {
  if (server_) server_->Wait();
}

void GraftServer::Shutdown() {
  if (server_) {
    if (auto* health = server_->GetHealthCheckService()) health->SetServingStatus(false);
    serving_ = false;
    if (http_) http_->Stop();
    // Running jobs checkpoint at their next batch while the RPCs in flight
    // finish; watchers end at once (UNAVAILABLE), new calls are refused.
    if (runner_) runner_->RequestStop();
    const auto grace = std::chrono::milliseconds(static_cast<int64_t>(std::max(0.0, shutdown_grace_s_) * 1000));
    server_->Shutdown(std::chrono::system_clock::now() + grace);
  }
}

}  // namespace graft::server
