#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/metrics_http.h"

namespace graft::core {
class Zoo;
}

namespace graft::server {

// All of graftd's Prometheus metrics. Built once in main and passed down;
// labels are low-cardinality only (method, code, backbone).
class Metrics {
 public:
  // Serves /metrics on host:port (port 0 picks a free port).
  static absl::StatusOr<std::unique_ptr<Metrics>> Create(const std::string& host, int port);
  // Metrics without an HTTP endpoint (tests, --metrics_port=-1).
  static std::unique_ptr<Metrics> CreateUnexposed();

  // The /metrics port, -1 when not exposed.
  int port() const { return http_ ? http_->port() : -1; }
  prometheus::Registry& registry() { return *registry_; }

  void ObserveRpc(const std::string& method, const std::string& code, double seconds);
  void AddImagesPredicted(const std::string& backbone, double n);
  void SetBackbones(const core::Zoo& zoo);

  // A gRPC interceptor factory recording every RPC's count and latency.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

 private:
  Metrics();

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsHttpServer> http_;
  prometheus::Family<prometheus::Counter>* rpc_total_;
  prometheus::Family<prometheus::Histogram>* rpc_latency_;
  prometheus::Family<prometheus::Counter>* images_predicted_;
  prometheus::Family<prometheus::Gauge>* backbone_load_seconds_;
  prometheus::Family<prometheus::Gauge>* backbone_resident_bytes_;
  prometheus::Family<prometheus::Gauge>* build_info_;
};

}  // namespace graft::server
