#include "server/metrics_http.h"

#include <httplib.h>

#include "absl/strings/str_cat.h"

namespace graft::server {

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, std::function<std::string()> text) {
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer());
  s->http_ = std::make_unique<httplib::Server>();
  httplib::Server& http = *s->http_;
  http.new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
  http.set_read_timeout(kTimeoutSeconds, 0);
  http.set_write_timeout(kTimeoutSeconds, 0);
  http.set_keep_alive_timeout(kTimeoutSeconds);
  http.set_keep_alive_max_count(16);
  http.set_payload_max_length(1 << 16);
  http.Get("/metrics", [text = std::move(text)](const httplib::Request&, httplib::Response& response) {
    response.set_content(text(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.set_error_handler([](const httplib::Request&, httplib::Response& response) {
    if (response.status == 404) response.set_content("graftd serves /metrics\n", "text/plain");
  });
  s->port_ = port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, port) ? port : -1);
  if (s->port_ <= 0) return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", host, ":", port));
  s->thread_ = std::thread([server = s.get()] { server->http_->listen_after_bind(); });
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace graft::server
