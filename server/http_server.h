#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace graft::server {

// One HTTP request as a handler sees it: the body is whole, bounded and
// decoded (Content-Encoding undone) before the handler runs.
struct HttpRequest {
  std::string method;
  std::string path;                  // the target before any '?'
  std::vector<std::string> matches;  // the route's regex groups; [0] is the path
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Case-insensitive; null when absent.
  const std::string* Header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpServerOptions {
  std::string what = "HTTP";  // names the port in messages ("REST", "metrics")
  std::string host = "127.0.0.1";
  int port = 0;  // 0 picks a free port
  // PEM files: both set, HTTPS; client_ca set, clients must present a
  // certificate it signed.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  int workers = 4;  // threads that run handlers; reading and writing never holds one
  // The largest body a route that takes one accepts, after decoding, and the
  // flag that sets it (named in the 413 answer).
  int64_t max_body_bytes = 0;
  std::string body_flag = "--max_message_bytes";
  // Request bodies being read or handled at once, all connections together:
  // a body reserves its Content-Length (a chunked one: max_body_bytes) before
  // a byte of it is read, and a decoded one as much again.
  int64_t body_budget_bytes = 1LL << 30;
  std::string body_budget_flag = "--max_http_body_budget_bytes";
  int64_t max_header_bytes = 16 << 10;  // request line and headers together
  int max_connections = 256;
  std::string connections_flag = "--max_http_connections";
  // A request's header, then its body, must each arrive within this; a
  // kept-alive connection waits idle_timeout_s for the next request; an
  // answer must be taken within write_timeout_s.
  double request_timeout_s = 30;
  double idle_timeout_s = 5;
  double write_timeout_s = 30;
};

// A small HTTP/1.1 server on Boost.Beast (Debian's libboost-dev), for the REST
// port and /metrics. It replaced cpp-httplib 0.11, which reads a request's
// headers without a count limit and its chunked, length-less and compressed
// bodies without a size limit, whole, before any handler (or token check) runs,
// and holds a worker thread per connection for as long as a client keeps it.
// Here: one I/O thread reads and writes every connection asynchronously under
// deadlines; the header is bounded (max_header_bytes); a body is read only
// for a route that takes one, after its size is reserved in a server-wide
// budget, bounded while it is read for every transfer encoding, and its
// gzip/deflate decoding bounded too; connections beyond max_connections are
// answered 503 and closed; handlers run on `workers` threads.
class HttpServer {
 public:
  using Handler = std::function<void(const HttpRequest&, HttpResponse&)>;
  // Every request refused before a handler ran: its HTTP status, the message
  // sent and, when one of graftd's limits refused it, that flag's name
  // (without "--"; empty otherwise).
  using RefusalFn = std::function<void(int status, const std::string& message, const std::string& flag)>;
  // Writes a refusal's answer in the port's own form (default: the message
  // as plain text).
  using ErrorFormatFn = std::function<void(const std::string& message, HttpResponse& response)>;

  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Before Start. `path_regex` matches the whole path; HEAD is served by GET
  // routes. A body sent to a route that does not take one is refused unread.
  void Route(const std::string& method, const std::string& path_regex, Handler handler, bool takes_body = false);
  // Answers requests no route matches (default: 404, plain text).
  void OnNotFound(Handler handler);
  void OnRefusal(RefusalFn refusal);
  void FormatErrors(ErrorFormatFn format);

  absl::Status Start();
  int port() const;
  // Stops accepting, closes every connection and waits for running handlers.
  void Stop();
  int open_connections() const;

  struct Impl;  // the Beast side, in http_server.cc

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace graft::server
