#include "server/metrics.h"

#include <grpcpp/server_context.h>
#include <prometheus/text_serializer.h>
#include <torch/version.h>

#include <cctype>
#include <chrono>

#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/util/device.h"
#include "core/util/ids.h"
#include "core/util/torch_status.h"
#include "core/zoo/zoo.h"
#include "server/model_monitoring.h"
#include "server/status_util.h"
#include "graft_version.h"

namespace graft::server {
namespace {

const char* CodeName(grpc::StatusCode code) {
  static const char* kNames[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return (i >= 0 && i <= 16) ? kNames[i] : "UNKNOWN";
}

class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(grpc::experimental::ServerRpcInfo* info, Metrics* metrics)
      : info_(info),
        metrics_(metrics),
        method_(info->method() ? info->method() : ""),
        start_(std::chrono::steady_clock::now()) {
    if (!method_.empty() && method_[0] == '/') method_.erase(0, 1);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    // A unary request whose bytes do not parse as the method's message: gRPC
    // answers INTERNAL with no message, which would count as graftd's fault
    // (and fire the error-ratio alert on a hostile client). It is the
    // client's: INVALID_ARGUMENT, saying so.
    // (Only where one request message is all there is: a stream's end also
    // comes as no message.)
    const auto type = info_->type();
    if ((type == grpc::experimental::ServerRpcInfo::Type::UNARY ||
         type == grpc::experimental::ServerRpcInfo::Type::SERVER_STREAMING) &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      unparsed_ = true;
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) && unparsed_ &&
        methods->GetSendStatus().error_code() == grpc::StatusCode::INTERNAL) {
      methods->ModifySendStatus(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          "the request's bytes are not a valid message of " + method_ + "'s request type (they do not parse)"));
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      grpc::StatusCode code = methods->GetSendStatus().error_code();
      // A call the client cancelled is CANCELLED, whatever status the handler
      // still sends (gRPC's built-in Health.Watch finishes with UNKNOWN
      // "OnCancel()"). graft's services are sync or callback ones, for which
      // IsCancelled may be asked once the handler is done.
      if (code != grpc::StatusCode::OK && info_->server_context() != nullptr &&
          info_->server_context()->IsCancelled()) {
        code = grpc::StatusCode::CANCELLED;
      }
      metrics_->ObserveRpc(method_, CodeName(code), seconds, LimitFlagOf(methods->GetSendStatus()));
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  Metrics* metrics_;
  std::string method_;
  std::chrono::steady_clock::time_point start_;
  bool unparsed_ = false;
};

class MetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(Metrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(info, metrics_);
  }

 private:
  Metrics* metrics_;
};

// The values of the `precision` label (core::PrecisionName).
constexpr const char* kPrecisionLabels[] = {"fp32", "bf16", "int8"};

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  rpc_total_ = &BuildCounter()
                    .Name("graft_rpc_requests_total")
                    .Help("RPCs handled, by method and status code")
                    .Register(*registry_);
  rpc_latency_ = &BuildHistogram()
                      .Name("graft_rpc_latency_seconds")
                      .Help("RPC latency, by method and status code")
                      .Register(*registry_);
  images_predicted_ = &BuildCounter()
                           .Name("graft_images_predicted_total")
                           .Help("Images run through Predict, by backbone and the precision its trunk ran in (fp32, bf16)")
                           .Register(*registry_);
  prediction_records_ = &BuildCounter()
                             .Name("graft_prediction_records_total")
                             .Help("Predictions a model's record policy chose, by model (OWNER/NAME or id) and "
                                   "outcome: kept (sampled, low_confidence, low_margin) or not (over_quota, "
                                   "over_rate, no_image, failed)")
                             .Register(*registry_);
  prediction_feedback_ = &BuildCounter()
                              .Name("graft_prediction_feedback_total")
                              .Help("Feedback labels on prediction records, by model and whether the label agrees "
                                    "with the recorded top-1 answer")
                              .Register(*registry_);
  backbone_load_seconds_ = &BuildGauge()
                                .Name("graft_backbone_load_seconds")
                                .Help("Seconds the last load of a backbone took")
                                .Register(*registry_);
  backbone_evictions_ =
      &BuildCounter()
           .Name("graft_backbone_evictions_total")
           .Help("Backbones evicted from the device to make room, or unloaded, by backbone and device")
           .Register(*registry_);
  all_reduce_seconds_ =
      &BuildHistogram()
           .Name("graft_allreduce_seconds")
           .Help("Data-parallel all-reduces of this process's ranks (gradients every step, validation counts)")
           .Register(*registry_)
           .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                            0.5, 1, 2.5, 10});
  all_reduce_bytes_ = &BuildCounter()
                           .Name("graft_allreduce_bytes_total")
                           .Help("Bytes this process's ranks contributed to data-parallel all-reduces")
                           .Register(*registry_)
                           .Add({});
  groups_ = &BuildCounter()
                 .Name("graft_data_parallel_groups_total")
                 .Help(
                     "Data-parallel groups this process led (rank 0), by how they ended: done, failed (a rank died, "
                     "stalled or stopped), too_few_trainers, cancelled, stopped, job_error")
                 .Register(*registry_);
  promotions_ = &BuildCounter()
                     .Name("graft_promotions_total")
                     .Help("Promotion decisions of retrain jobs (spec.promotion) by alias (NAME@ALIAS) and outcome: "
                           "promoted, canary, kept (the challenger did not win), undecided (it could not be "
                           "evaluated; the job's events say why)")
                     .Register(*registry_);
  backbone_load_duration_ =
      &BuildHistogram()
           .Name("graft_backbone_load_duration_seconds")
           .Help("Loads of backbones onto the device (first use, after eviction, preload), by backbone")
           .Register(*registry_);
  device_memory_ =
      &BuildGauge()
           .Name("graft_device_memory_bytes")
           .Help("Device memory accounted against --device_memory_budget: kind budget, backbones, models, jobs")
           .Register(*registry_);
  backbone_resident_bytes_ = &BuildGauge()
                                  .Name("graft_backbone_resident_bytes")
                                  .Help("Bytes of backbone weights resident, by backbone and device")
                                  .Register(*registry_);
  build_info_ = &BuildGauge().Name("graft_build_info").Help("Build information; value is 1").Register(*registry_);
  build_info_
      ->Add({{"version", kGraftVersion},
             {"torch_version", TORCH_VERSION},
             {"cuda_compiled", core::CudaCompiled() ? "true" : "false"},
             {"cuda_available", core::CudaAvailable() ? "true" : "false"}})
      .Set(1);
  jobs_ = &BuildGauge().Name("graft_jobs").Help("Jobs by state").Register(*registry_);
  for (auto s : {core::JobState::kQueued, core::JobState::kRunning, core::JobState::kSucceeded, core::JobState::kFailed,
                 core::JobState::kCancelled}) {
    jobs_->Add({{"state", core::JobStateName(s)}}).Set(0);
  }
  epochs_ = &BuildCounter()
                 .Name("graft_training_epochs_total")
                 .Help("Training epochs finished, by backbone")
                 .Register(*registry_);
  training_images_ = &BuildCounter()
                          .Name("graft_training_images_total")
                          .Help("Training images processed, by backbone")
                          .Register(*registry_);
  training_rate_ = &BuildGauge()
                        .Name("graft_training_images_per_second")
                        .Help("Training throughput of the last epoch, by backbone")
                        .Register(*registry_);
  training_loss_ = &BuildGauge()
                        .Name("graft_training_loss")
                        .Help("Last epoch's loss of the running job, by backbone and split")
                        .Register(*registry_);
  training_accuracy_ = &BuildGauge()
                            .Name("graft_training_accuracy_ratio")
                            .Help("Last epoch's accuracy of the running job, by backbone and split")
                            .Register(*registry_);
  queue_images_ = &BuildGauge()
                       .Name("graft_inference_queue_images")
                       .Help("Images waiting in a backbone's dynamic batcher")
                       .Register(*registry_);
  batch_images_ = &BuildHistogram()
                       .Name("graft_inference_batch_images")
                       .Help("Images per batched forward pass, by backbone")
                       .Register(*registry_);
  batch_requests_ = &BuildHistogram()
                         .Name("graft_inference_batch_requests")
                         .Help("Requests sharing one batched forward pass, by backbone")
                         .Register(*registry_);
  upload_bytes_ = &BuildCounter()
                       .Name("graft_upload_bytes_total")
                       .Help("Dataset upload bytes received")
                       .Register(*registry_)
                       .Add({});
  upload_rejected_ = &BuildCounter()
                          .Name("graft_upload_rejected_files_total")
                          .Help("Uploaded files rejected")
                          .Register(*registry_)
                          .Add({});
  datasets_ = &BuildGauge().Name("graft_datasets").Help("Datasets stored").Register(*registry_).Add({});
  models_ = &BuildGauge().Name("graft_models").Help("Models published and servable").Register(*registry_).Add({});
  queue_seconds_ = &BuildHistogram()
                        .Name("graft_inference_queue_seconds")
                        .Help("Time a Predict/Embed request waited in its backbone's batcher for its batch to start")
                        .Register(*registry_);
  jobs_finished_ = &BuildCounter()
                        .Name("graft_jobs_finished_total")
                        .Help("Jobs that ended, by final state (SUCCEEDED, FAILED, CANCELLED)")
                        .Register(*registry_);
  limit_hits_ = &BuildCounter()
                     .Name("graft_limit_hits_total")
                     .Help("Calls refused by a configured limit, by the flag that sets it")
                     .Register(*registry_);
  weights_fetches_ = &BuildCounter()
                          .Name("graft_weights_fetches_total")
                          .Help("Official weights files fetched on first use, by result (ok, error)")
                          .Register(*registry_);
  weights_fetched_bytes_ = &BuildCounter()
                                .Name("graft_weights_fetched_bytes_total")
                                .Help("Bytes of weights files fetched and verified")
                                .Register(*registry_)
                                .Add({});
  max_batch_images_ = &BuildGauge()
                           .Name("graft_inference_max_batch_images")
                           .Help("Most images the dynamic batcher gathers into one forward pass (--max_batch_size)")
                           .Register(*registry_)
                           .Add({});
  auth_failures_ = &BuildCounter()
                        .Name("graft_auth_failures_total")
                        .Help(
                            "Calls refused UNAUTHENTICATED (no or a wrong token) or PERMISSION_DENIED (too small a "
                            "role, another principal's data), by code")
                        .Register(*registry_);
  // Present from the start, so that rate() and increase() see their first rise.
  for (const char* code : {"UNAUTHENTICATED", "PERMISSION_DENIED"}) auth_failures_->Add({{"code", code}});
  for (const std::string& flag : limit_flags_) limit_hits_->Add({{"flag", flag}});
  for (const char* state : {"SUCCEEDED", "FAILED", "CANCELLED"}) jobs_finished_->Add({{"state", state}});
  for (const char* result : {"ok", "error"}) weights_fetches_->Add({{"result", result}});
}

void Metrics::AddUploadBytes(double n) { upload_bytes_->Increment(n); }
void Metrics::AddRejectedFiles(double n) { upload_rejected_->Increment(n); }
void Metrics::SetDatasets(double n) { datasets_->Set(n); }
void Metrics::SetModels(double n) { models_->Set(n); }

void Metrics::WatchJobs(core::JobStore* jobs) {
  absl::MutexLock lock(&backbone_gauges_mu_);
  job_store_ = jobs;
}

void Metrics::OnJobState(std::optional<core::JobState> from, core::JobState to) {
  // Each end is counted once, by the process that ended the job.
  if (from && core::IsTerminal(to)) jobs_finished_->Add({{"state", core::JobStateName(to)}}).Increment();
}

void Metrics::WatchModels(core::ModelStore* models, int max_classes) {
  absl::MutexLock lock(&backbone_gauges_mu_);
  model_store_ = models;
  monitor_max_classes_ = max_classes;
}

void Metrics::WatchProcess(const std::string& data_dir) {
  absl::MutexLock lock(&backbone_gauges_mu_);
  process_ = std::make_unique<ProcessCollector>(data_dir);
}

void Metrics::SetMaxBatchImages(int64_t n) { max_batch_images_->Set(static_cast<double>(n)); }

void Metrics::OnAllReduce(double seconds, int64_t bytes) {
  all_reduce_seconds_->Observe(seconds);
  all_reduce_bytes_->Increment(static_cast<double>(bytes));
}

void Metrics::OnGroupEnded(const std::string& outcome) { groups_->Add({{"outcome", outcome}}).Increment(); }

void Metrics::OnPromotion(const core::PromotionResult& result) {
  const char* outcome = result.promoted ? (result.canary_percent > 0 ? "canary" : "promoted")
                        : result.compared ? "kept"
                                          : "undecided";
  promotions_->Add({{"alias", result.alias}, {"outcome", outcome}}).Increment();
}

void Metrics::OnWeightsFetched(bool ok, int64_t bytes) {
  weights_fetches_->Add({{"result", ok ? "ok" : "error"}}).Increment();
  if (ok) weights_fetched_bytes_->Increment(static_cast<double>(bytes));
}

void Metrics::OnQueueWait(const std::string& backbone, double seconds) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                                   0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
  queue_seconds_->Add({{"backbone", backbone}}, kBuckets).Observe(seconds);
}

void Metrics::OnEpoch(const core::JobRecord& job, const core::EpochMetrics& m, int64_t train_images) {
  const std::string& b = job.spec.backbone;
  epochs_->Add({{"backbone", b}}).Increment();
  training_images_->Add({{"backbone", b}}).Increment(static_cast<double>(train_images));
  training_rate_->Add({{"backbone", b}}).Set(m.images_per_second);
  training_loss_->Add({{"backbone", b}, {"split", "train"}}).Set(m.train_loss);
  training_loss_->Add({{"backbone", b}, {"split", "val"}}).Set(m.val_loss);
  training_accuracy_->Add({{"backbone", b}, {"split", "train"}}).Set(m.train_accuracy);
  training_accuracy_->Add({{"backbone", b}, {"split", "val"}}).Set(m.val_accuracy);
}

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(const std::string& host, int port) {
  std::unique_ptr<Metrics> m(new Metrics());
  auto http = MetricsHttpServer::Start(
      host, port, [metrics = m.get()] { return metrics->Text(); },
      [metrics = m.get()](const std::string& flag) {
        metrics->ObserveRpc("metrics (refused)", "RESOURCE_EXHAUSTED", 0, flag);
      });
  if (!http.ok()) return http.status();
  m->http_ = std::move(*http);
  return m;
}

std::string Metrics::Text() const {
  std::vector<prometheus::MetricFamily> process;
  {
    // Residency changes with every load and eviction, models and jobs with their charges.
    absl::MutexLock lock(&backbone_gauges_mu_);
    if (zoo_ != nullptr) SetBackbonesLocked(*zoo_);
    if (process_ != nullptr) process = process_->Collect();
    if (model_store_ != nullptr) {
      for (auto& family : CollectModelMetrics(*model_store_, monitor_max_classes_, core::NowSeconds())) {
        process.push_back(std::move(family));
      }
    }
    if (job_store_ != nullptr) {
      if (auto counts = job_store_->CountByState(); counts.ok()) {
        for (const core::JobState s : {core::JobState::kQueued, core::JobState::kRunning, core::JobState::kSucceeded,
                                       core::JobState::kFailed, core::JobState::kCancelled}) {
          const auto it = counts->find(s);
          jobs_->Add({{"state", core::JobStateName(s)}})
              .Set(it == counts->end() ? 0 : static_cast<double>(it->second));
        }
      }
    }
  }
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (auto& family : process) families.push_back(std::move(family));
  return prometheus::TextSerializer().Serialize(families);
}

void Metrics::WatchZoo(const core::Zoo* zoo) {
  absl::MutexLock lock(&backbone_gauges_mu_);
  zoo_ = zoo;
}

void Metrics::OnLoad(const std::string& backbone, const std::string& device, double seconds) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  backbone_load_duration_->Add({{"backbone", backbone}}, kBuckets).Observe(seconds);
}

void Metrics::OnEvict(const std::string& backbone, const std::string& device) {
  backbone_evictions_->Add({{"backbone", backbone}, {"device", device}}).Increment();
}

std::unique_ptr<Metrics> Metrics::CreateUnexposed() { return std::unique_ptr<Metrics>(new Metrics()); }

namespace {
const std::string kUnknownMethod = "unknown";
}  // namespace

std::set<std::string> Metrics::LimitFlags() {
  std::set<std::string> limits;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::StartsWith(name, "max_") || name == "device_memory_budget" || name == "feature_cache_bytes" ||
        name == "upload_idle_timeout_s" || name == "stream_write_timeout_s") {
      limits.emplace(name);
    }
  }
  return limits;
}

void Metrics::ObserveRpc(const std::string& method, const std::string& code, double seconds,
                         const std::string& limit_flag) {
  if (code == "UNAUTHENTICATED" || code == "PERMISSION_DENIED") auth_failures_->Add({{"code", code}}).Increment();
  // The limit that refused it, when one of graftd's did. Label values stay
  // bounded: the flag comes from graftd's own code (core::LimitError), never
  // from a client's bytes.
  if (code != "OK" && !limit_flag.empty()) limit_hits_->Add({{"flag", limit_flag}}).Increment();
  static const prometheus::Histogram::BucketBoundaries kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                                   0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
  const std::string& label = known_methods_.count(method) > 0 ? method : kUnknownMethod;
  rpc_total_->Add({{"method", label}, {"code", code}}).Increment();
  rpc_latency_->Add({{"method", label}, {"code", code}}, kBuckets).Observe(seconds);
}

void Metrics::SetKnownMethods(std::set<std::string> methods) { known_methods_ = std::move(methods); }

void Metrics::AddImagesPredicted(const std::string& backbone, const std::string& precision, double n) {
  images_predicted_->Add({{"backbone", backbone}, {"precision", precision}}).Increment(n);
}

void Metrics::OnRecord(const std::string& model_key, const char* outcome) {
  prediction_records_->Add({{"model", model_key}, {"outcome", outcome}}).Increment();
}

void Metrics::OnFeedback(const std::string& model_key, bool agrees) {
  prediction_feedback_->Add({{"model", model_key}, {"agrees", agrees ? "true" : "false"}}).Increment();
}

void Metrics::SetBackbones(const core::Zoo& zoo) {
  absl::MutexLock lock(&backbone_gauges_mu_);
  SetBackbonesLocked(zoo);
}

void Metrics::SetBackbonesLocked(const core::Zoo& zoo) const {
  // Series of backbones that are gone (unregistered) go with them.
  std::set<std::string> names;
  for (const core::BackboneStatus& b : zoo.List()) names.insert(b.spec->name);
  for (const std::string& gone : known_backbones_) {
    if (names.count(gone) > 0) continue;
    const auto drop = [](auto* family, const std::map<std::string, std::string>& labels) {
      family->Remove(&family->Add(labels));
    };
    const std::map<std::string, std::string> b{{"backbone", gone}};
    for (const char* precision : kPrecisionLabels) drop(images_predicted_, {{"backbone", gone}, {"precision", precision}});
    drop(queue_images_, b);
    drop(epochs_, b);
    drop(training_images_, b);
    drop(training_rate_, b);
    for (const char* split : {"train", "val"}) {
      drop(training_loss_, {{"backbone", gone}, {"split", split}});
      drop(training_accuracy_, {{"backbone", gone}, {"split", split}});
    }
    for (const char* precision : kPrecisionLabels) {
      const std::map<std::string, std::string> bp{{"backbone", gone}, {"precision", precision}};
      batch_images_->Remove(&batch_images_->Add(bp, prometheus::Histogram::BucketBoundaries{}));
      batch_requests_->Remove(&batch_requests_->Add(bp, prometheus::Histogram::BucketBoundaries{}));
    }
    queue_seconds_->Remove(&queue_seconds_->Add(b, prometheus::Histogram::BucketBoundaries{}));
  }
  known_backbones_ = std::move(names);
  for (size_t i = 0; i < backbone_gauges_.size(); i += 2) {
    backbone_load_seconds_->Remove(backbone_gauges_[i]);
    backbone_resident_bytes_->Remove(backbone_gauges_[i + 1]);
  }
  backbone_gauges_.clear();
  for (const core::BackboneStatus& b : zoo.List()) {
    if (b.device.empty()) continue;  // not resident
    auto& load = backbone_load_seconds_->Add({{"backbone", b.spec->name}});
    load.Set(b.load_seconds);
    auto& bytes = backbone_resident_bytes_->Add({{"backbone", b.spec->name}, {"device", b.device}});
    bytes.Set(static_cast<double>(b.resident_bytes));
    backbone_gauges_.push_back(&load);
    backbone_gauges_.push_back(&bytes);
  }
  const core::DeviceMemoryUse use = zoo.Memory();
  for (const auto& [kind, bytes] : std::vector<std::pair<const char*, int64_t>>{
           {"budget", use.budget}, {"backbones", use.backbones}, {"models", use.models}, {"jobs", use.jobs}}) {
    device_memory_->Add({{"device", use.device}, {"kind", kind}}).Set(static_cast<double>(bytes));
  }
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> Metrics::InterceptorFactory() {
  return std::make_unique<MetricsInterceptorFactory>(this);
}

void Metrics::OnQueueDepth(const std::string& backbone, int64_t images) {
  queue_images_->Add({{"backbone", backbone}}).Set(static_cast<double>(images));
}

void Metrics::OnBatch(const std::string& backbone, const std::string& precision, int64_t images, int64_t requests) {
  static const prometheus::Histogram::BucketBoundaries kSizes = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  const std::map<std::string, std::string> labels{{"backbone", backbone}, {"precision", precision}};
  batch_images_->Add(labels, kSizes).Observe(static_cast<double>(images));
  batch_requests_->Add(labels, kSizes).Observe(static_cast<double>(requests));
}

}  // namespace graft::server
