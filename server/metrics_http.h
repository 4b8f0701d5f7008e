#pragma once

#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace graft::server {

// Serves a prometheus-cpp registry as text on GET /metrics with cpp-httplib
// (Debian's libcpp-httplib): a pool of worker threads and read/write
// timeouts, so a slow or stalled client holds one worker for at most the
// timeout and never delays another scrape.
//
// Why not prometheus::Exposer: its civetweb server starts threads with a small
// fixed stack, and inside a process that links LibTorch (whose libraries carry
// a large static TLS block) that pthread_create fails with EINVAL.
class MetricsHttpServer {
 public:
  static constexpr int kWorkers = 8;
  static constexpr int kTimeoutSeconds = 2;

  // Binds host:port (0 picks a free port) and starts serving.
  // `text`: the exposition a scrape gets (called on the server's threads).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host, int port,
                                                                    std::function<std::string()> text);
  ~MetricsHttpServer();

  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;

  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace graft::server
