#pragma once

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "core/jobs/job_runner.h"
#include "core/serve/batcher.h"
#include "server/metrics_http.h"
#include "server/process_metrics.h"

namespace graft::core {
class ModelStore;
class Zoo;
}

namespace graft::server {

// All of graftd's Prometheus metrics. Built once in main and passed down;
// labels are low-cardinality only (method, code, backbone).
class Metrics : public core::JobObserver, public core::BatcherObserver, public core::ZooObserver {
 public:
  // Serves /metrics on host:port (port 0 picks a free port).
  static absl::StatusOr<std::unique_ptr<Metrics>> Create(const std::string& host, int port);
  // Metrics without an HTTP endpoint (tests, --metrics_port=-1).
  static std::unique_ptr<Metrics> CreateUnexposed();

  // The /metrics port, -1 when not exposed.
  int port() const { return http_ ? http_->port() : -1; }
  prometheus::Registry& registry() { return *registry_; }

  // `method` is "package.Service/Method"; one not registered (SetKnownMethods)
  // is counted as "unknown", so clients cannot add label values.
  // A refusal whose message names a limit's flag ("--max_images_per_request")
  // also counts in graft_limit_hits_total{flag}; only graftd's limit flags
  // (LimitFlags) become label values. UNAUTHENTICATED and PERMISSION_DENIED
  // also count in graft_auth_failures_total{code}.
  // `limit_flag`: the flag of the limit that refused the call (a
  // core::LimitError's payload; empty when none did).
  void ObserveRpc(const std::string& method, const std::string& code, double seconds,
                  const std::string& limit_flag = "");
  void SetKnownMethods(std::set<std::string> methods);
  void AddImagesPredicted(const std::string& backbone, const std::string& precision, double n);
  // A prediction its model's record policy chose (graft_prediction_records_total{model, outcome}:
  // kept as sampled/low_confidence/low_margin, or dropped as over_quota/over_rate/no_image/failed).
  void OnRecord(const std::string& model_key, const char* outcome);
  // Feedback on a record (graft_prediction_feedback_total{model, agrees}).
  void OnFeedback(const std::string& model_key, bool agrees);
  void SetBackbones(const core::Zoo& zoo);
  // Residency and device memory are read from `zoo` at each scrape (null:
  // no longer; the server's shutdown).
  void WatchZoo(const core::Zoo* zoo);
  void AddUploadBytes(double n);
  void AddRejectedFiles(double n);
  void SetDatasets(double n);
  void SetModels(double n);
  // graft_jobs{state} is read from the job store at each scrape: the
  // database's counts, the same from every process that shares it (a
  // dashboard takes the max over instances). Null: no longer (shutdown).
  void WatchJobs(core::JobStore* jobs);
  // Each served model version's monitoring statistics
  // (server/model_metrics.h), read at each scrape; `max_classes`:
  // --monitor_max_classes. Null: no longer (shutdown).
  void WatchModels(core::ModelStore* models, int max_classes);
  // Process metrics and the data directory's filesystem, read at each scrape.
  void WatchProcess(const std::string& data_dir);
  // --max_batch_size, for "the queue stays full" (graft_inference_max_batch_images).
  void SetMaxBatchImages(int64_t n);
  // A weights fetch ended (graft_weights_fetches_total{result}).
  void OnWeightsFetched(bool ok, int64_t bytes);

  // core::JobObserver
  void OnJobState(std::optional<core::JobState> from, core::JobState to) override;
  void OnEpoch(const core::JobRecord& job, const core::EpochMetrics& m, int64_t train_images) override;
  void OnModelsChanged(size_t count) override { SetModels(static_cast<double>(count)); }
  void OnAllReduce(double seconds, int64_t bytes) override;
  void OnGroupEnded(const std::string& outcome) override;
  void OnPromotion(const core::PromotionResult& result) override;

  // core::ZooObserver
  void OnLoad(const std::string& backbone, const std::string& device, double seconds) override;
  void OnEvict(const std::string& backbone, const std::string& device) override;

  // core::BatcherObserver
  void OnQueueDepth(const std::string& backbone, int64_t images) override;
  void OnBatch(const std::string& backbone, const std::string& precision, int64_t images, int64_t requests) override;
  void OnQueueWait(const std::string& backbone, double seconds) override;

  // A gRPC interceptor factory recording every RPC's count and latency.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();
  // The exposition text a scrape gets.
  std::string Text() const;

 private:
  // graftd's flags that set limits (max_*, the memory budgets): their
  // graft_limit_hits_total series exist from the start.
  static std::set<std::string> LimitFlags();
  const std::set<std::string> limit_flags_ = LimitFlags();
  std::set<std::string> known_methods_;  // set once at start, before serving
  Metrics();
  void SetBackbonesLocked(const core::Zoo& zoo) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(backbone_gauges_mu_);

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsHttpServer> http_;
  prometheus::Family<prometheus::Counter>* rpc_total_;
  prometheus::Family<prometheus::Histogram>* rpc_latency_;
  prometheus::Family<prometheus::Counter>* images_predicted_;
  prometheus::Family<prometheus::Counter>* prediction_records_;
  prometheus::Family<prometheus::Counter>* prediction_feedback_;
  prometheus::Family<prometheus::Gauge>* backbone_load_seconds_;
  prometheus::Family<prometheus::Gauge>* backbone_resident_bytes_;
  // Taken by every scrape (Text), which refreshes the residency gauges.
  mutable absl::Mutex backbone_gauges_mu_;
  // The gauges SetBackbones set last, so that unregistered backbones drop out.
  mutable std::vector<prometheus::Gauge*> backbone_gauges_ ABSL_GUARDED_BY(backbone_gauges_mu_);
  mutable std::set<std::string> known_backbones_ ABSL_GUARDED_BY(backbone_gauges_mu_);  // at the last SetBackbones
  const core::Zoo* zoo_ ABSL_GUARDED_BY(backbone_gauges_mu_) = nullptr;
  core::JobStore* job_store_ ABSL_GUARDED_BY(backbone_gauges_mu_) = nullptr;
  core::ModelStore* model_store_ ABSL_GUARDED_BY(backbone_gauges_mu_) = nullptr;
  int monitor_max_classes_ ABSL_GUARDED_BY(backbone_gauges_mu_) = 0;
  prometheus::Family<prometheus::Counter>* backbone_evictions_;
  prometheus::Family<prometheus::Histogram>* backbone_load_duration_;
  prometheus::Family<prometheus::Gauge>* device_memory_;
  prometheus::Family<prometheus::Gauge>* build_info_;
  prometheus::Family<prometheus::Gauge>* jobs_;
  prometheus::Family<prometheus::Counter>* epochs_;
  prometheus::Family<prometheus::Counter>* training_images_;
  prometheus::Family<prometheus::Gauge>* training_rate_;
  prometheus::Family<prometheus::Gauge>* training_loss_;
  prometheus::Family<prometheus::Gauge>* training_accuracy_;
  prometheus::Family<prometheus::Gauge>* queue_images_;
  prometheus::Family<prometheus::Histogram>* batch_images_;
  prometheus::Family<prometheus::Histogram>* batch_requests_;
  prometheus::Family<prometheus::Histogram>* queue_seconds_;
  prometheus::Family<prometheus::Counter>* jobs_finished_;
  prometheus::Histogram* all_reduce_seconds_;
  prometheus::Counter* all_reduce_bytes_;
  prometheus::Family<prometheus::Counter>* groups_;
  prometheus::Family<prometheus::Counter>* promotions_;
  prometheus::Family<prometheus::Counter>* limit_hits_;
  prometheus::Family<prometheus::Counter>* auth_failures_;
  prometheus::Family<prometheus::Counter>* weights_fetches_;
  prometheus::Counter* weights_fetched_bytes_;
  prometheus::Gauge* max_batch_images_;
  std::unique_ptr<ProcessCollector> process_ ABSL_GUARDED_BY(backbone_gauges_mu_);
  prometheus::Counter* upload_bytes_;
  prometheus::Counter* upload_rejected_;
  prometheus::Gauge* datasets_;
  prometheus::Gauge* models_;
};

}  // namespace graft::server
