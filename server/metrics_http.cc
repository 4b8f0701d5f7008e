#include "server/metrics_http.h"

#include "absl/strings/str_cat.h"

namespace graft::server {

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, std::function<std::string()> text,
    std::function<void(const std::string&)> refused) {
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer());
  HttpServerOptions options;
  options.what = "metrics";
  options.host = host;
  options.port = port;
  options.workers = kWorkers;
  options.max_body_bytes = 0;  // no route takes a body
  options.max_header_bytes = 8 << 10;
  options.max_connections = kMaxConnections;
  options.connections_flag = "a fixed cap of the metrics port";
  options.request_timeout_s = kTimeoutSeconds;
  options.idle_timeout_s = kTimeoutSeconds;
  options.write_timeout_s = kTimeoutSeconds;
  s->http_ = std::make_unique<HttpServer>(options);
  s->http_->Route("GET", "/metrics", [text = std::move(text)](const HttpRequest&, HttpResponse& response) {
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = text();
  });
  s->http_->OnNotFound([](const HttpRequest&, HttpResponse& response) {
    response.status = 404;
    response.body = "graftd serves /metrics\n";
  });
  if (refused) {
    s->http_->OnRefusal(
        [refused = std::move(refused)](int, const std::string&, const std::string& flag) { refused(flag); });
  }
  if (absl::Status started = s->http_->Start(); !started.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", host, ":", port, ": ", started.message()));
  }
  s->port_ = s->http_->port();
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (http_) http_->Stop();
}

}  // namespace graft::server
