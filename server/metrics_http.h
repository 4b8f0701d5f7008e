#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/http_server.h"

namespace graft::server {

// Serves a prometheus-cpp registry as text on GET /metrics with HttpServer
// (Boost.Beast): reads and writes are asynchronous under short deadlines and
// a request may carry no body, so slow, idle or body-sending clients hold no
// worker and never delay another scrape; connections beyond kMaxConnections
// are answered 503.
//
// Why not prometheus::Exposer: its civetweb server starts threads with a small
// fixed stack, and inside a process that links LibTorch (whose libraries carry
// a large static TLS block) that pthread_create fails with EINVAL.
class MetricsHttpServer {
 public:
  static constexpr int kWorkers = 2;
  static constexpr int kTimeoutSeconds = 2;
  static constexpr int kMaxConnections = 512;

  // Binds host:port (0 picks a free port) and starts serving.
  // `text`: the exposition a scrape gets (called on the server's threads).
  // `refused`: each request refused before it was served, with the flag of the limit that refused it.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, std::function<std::string()> text,
      std::function<void(const std::string&)> refused = nullptr);
  ~MetricsHttpServer();

  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;

  std::unique_ptr<HttpServer> http_;
  int port_ = 0;
};

}  // namespace graft::server
