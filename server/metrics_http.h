#pragma once

#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace graft::server {

// Serves a prometheus-cpp registry as text on GET /metrics.
//
// Why not prometheus::Exposer: its civetweb server starts threads with a small
// fixed stack, and inside a process that links LibTorch (whose libraries carry
// a large static TLS block) that pthread_create fails with EINVAL, so the
// exposer cannot start in graftd. Scrapes are rare and small; one thread
// answering one connection at a time is enough.
class MetricsHttpServer {
 public:
  // Binds host:port (0 picks a free port) and starts serving.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host, int port,
                                                                    std::shared_ptr<prometheus::Registry> registry);
  ~MetricsHttpServer();

  int port() const { return port_; }

 private:
  MetricsHttpServer(int fd, int port, std::shared_ptr<prometheus::Registry> registry);
  void Serve();
  void Answer(int client);

  int fd_;
  int port_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace graft::server
