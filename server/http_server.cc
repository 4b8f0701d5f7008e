#include "server/http_server.h"

#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/util/log.h"

namespace graft::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr size_t kMaxTargetBytes = 4096;     // longer targets: 414, before any regex runs
constexpr int64_t kLingerBytes = 1 << 20;    // read and dropped after a refusal, so the client sees the answer
constexpr double kLingerSeconds = 1;
constexpr double kRefuseSeconds = 1;         // to write the 503 of a connection over the cap

std::chrono::steady_clock::duration Seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

std::string Str(beast::string_view s) { return std::string(s.data(), s.size()); }

struct RouteEntry {
  std::string method;
  std::regex path;
  HttpServer::Handler handler;
  bool takes_body = false;
};

// Undoes a gzip or zlib ("deflate") Content-Encoding into at most `limit`
// bytes. Concatenated gzip members are read one after another.
enum class Inflated { kOk, kTooLarge, kCorrupt };
Inflated Inflate(const std::string& in, int64_t limit, std::string* out) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 32) != Z_OK) return Inflated::kCorrupt;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  char chunk[64 << 10];
  Inflated result = Inflated::kOk;
  for (;;) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof(chunk);
    const int rc = inflate(&z, Z_NO_FLUSH);
    const size_t produced = sizeof(chunk) - z.avail_out;
    if (static_cast<int64_t>(out->size() + produced) > limit) {
      result = Inflated::kTooLarge;
      break;
    }
    out->append(chunk, produced);
    if (rc == Z_STREAM_END) {
      if (z.avail_in == 0) break;
      if (inflateReset(&z) != Z_OK) {
        result = Inflated::kCorrupt;
        break;
      }
      continue;
    }
    if (rc != Z_OK || (produced == 0 && z.avail_in == 0)) {  // an error, or the input ends mid-stream
      result = Inflated::kCorrupt;
      break;
    }
  }
  inflateEnd(&z);
  return result;
}

}  // namespace

const std::string* HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, absl::string_view(name.data(), name.size()))) return &value;
  }
  return nullptr;
}

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  explicit Impl(HttpServerOptions o) : options(std::move(o)) {}

  HttpServerOptions options;
  std::vector<RouteEntry> routes;
  Handler not_found;
  RefusalFn on_refusal;
  ErrorFormatFn error_format;

  asio::io_context io;
  std::optional<asio::ssl::context> tls;
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::steady_timer> accept_retry;
  std::optional<asio::thread_pool> workers;
  std::thread io_thread;
  std::atomic<int> connections{0};
  std::atomic<int64_t> body_bytes{0};
  int port = -1;
  bool stopped = false;
  std::atomic<bool> stopping{false};

  // Live connections, so that Stop can close them (touched on any thread).
  struct Live {
    virtual ~Live() = default;
    virtual void Shutdown(bool force) = 0;  // runs on the I/O thread
  };
  std::mutex live_mu;
  std::map<const Live*, std::weak_ptr<Live>> live;
  void Register(const std::shared_ptr<Live>& session) {
    std::lock_guard<std::mutex> lock(live_mu);
    live[session.get()] = session;
  }
  void Unregister(const Live* session) {
    std::lock_guard<std::mutex> lock(live_mu);
    live.erase(session);
  }
  void ShutdownAll(bool force) {
    std::vector<std::weak_ptr<Live>> all;
    {
      std::lock_guard<std::mutex> lock(live_mu);
      for (const auto& [key, session] : live) all.push_back(session);
    }
    for (const auto& weak : all) {
      if (auto session = weak.lock()) session->Shutdown(force);
    }
  }

  // `flag`: the limit's flag ("--max_message_bytes") when a limit refused it.
  void Refused(int status, const std::string& message, const std::string& flag = "") const {
    if (on_refusal) on_refusal(status, message, std::string(absl::StripPrefix(flag, "--")));
  }

  bool ReserveBody(int64_t bytes) {
    int64_t in_use = body_bytes.load();
    do {
      if (in_use + bytes > options.body_budget_bytes) return false;
    } while (!body_bytes.compare_exchange_weak(in_use, in_use + bytes));
    return true;
  }
  void ReleaseBody(int64_t bytes) { body_bytes -= bytes; }

  // The route for method and path; `path_known`: some route has the path.
  const RouteEntry* Find(const std::string& method, const std::string& path, std::vector<std::string>* matches,
                    bool* path_known) const {
    const std::string& m = method == "HEAD" ? std::string("GET") : method;
    *path_known = false;
    for (const RouteEntry& r : routes) {
      std::smatch found;
      if (!std::regex_match(path, found, r.path)) continue;
      *path_known = true;
      if (r.method != m) continue;
      matches->clear();
      for (const auto& g : found) matches->push_back(g.str());
      return &r;
    }
    return nullptr;
  }

  void Accept();
  void RefuseConnection(tcp::socket socket);
};

namespace {

// A body's share of HttpServerOptions::body_budget_bytes, released when the
// request is done.
class BodyReservation {
 public:
  BodyReservation() = default;
  BodyReservation(std::shared_ptr<HttpServer::Impl> server, int64_t bytes) : server_(std::move(server)), bytes_(bytes) {}
  BodyReservation(BodyReservation&& o) noexcept : server_(std::move(o.server_)), bytes_(o.bytes_) { o.bytes_ = 0; }
  BodyReservation& operator=(BodyReservation&& o) noexcept {
    Reset();
    server_ = std::move(o.server_);
    bytes_ = o.bytes_;
    o.bytes_ = 0;
    return *this;
  }
  ~BodyReservation() { Reset(); }
  void Reset() {
    if (server_ && bytes_ > 0) server_->ReleaseBody(bytes_);
    server_.reset();
    bytes_ = 0;
  }

 private:
  std::shared_ptr<HttpServer::Impl> server_;
  int64_t bytes_ = 0;
};

template <class Stream>
class Session : public HttpServer::Impl::Live, public std::enable_shared_from_this<Session<Stream>> {
 public:
  template <class... Args>
  Session(std::shared_ptr<HttpServer::Impl> server, Args&&... args)
      : server_(std::move(server)), stream_(std::forward<Args>(args)...) {
    ++server_->connections;
  }
  ~Session() override {
    server_->Unregister(this);
    --server_->connections;
  }

  // Stop: a connection waiting for its next request closes now; one whose
  // request runs closes after its answer; `force` closes any.
  void Shutdown(bool force) override {
    keep_alive_ = false;
    if (force || state_ == State::kReading) {
      beast::error_code ignored;
      Lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
      Lowest().close();
    }
  }

  void Start() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      ReadHeader();
    } else {
      Lowest().expires_after(Seconds(server_->options.request_timeout_s));
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (!ec) self->ReadHeader();
                              });
    }
  }

 private:
  auto& Lowest() { return beast::get_lowest_layer(stream_); }
  const HttpServerOptions& options() const { return server_->options; }

  void ReadHeader() {
    if (server_->stopping) return Close();
    state_ = State::kReading;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(options().max_header_bytes));
    // The body's limit is set once its route is known (a limit here would
    // fail the header on its Content-Length). Not boost::none: Beast 1.74
    // compares a Content-Length with an empty optional as larger.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    Lowest().expires_after(Seconds(first_ ? options().request_timeout_s : options().idle_timeout_s));
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec == http::error::header_limit) {
      return Refuse(431, absl::StrCat("the request's header is larger than ", options().max_header_bytes, " bytes"));
    }
    if (ec == beast::error::timeout) {
      if (first_ || buffer_.size() > 0) {
        server_->Refused(408, absl::StrCat("a request's header did not arrive within ", options().request_timeout_s,
                                           " s (--http_request_timeout_s)"));
      }
      return Close();
    }
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::operation_aborted ||
        ec == asio::error::connection_reset) {
      return Close();
    }
    if (ec) return Refuse(400, absl::StrCat("malformed HTTP request: ", ec.message()));
    first_ = false;
    const auto& header = parser_->get();
    request_ = HttpRequest();
    request_.method = Str(header.method_string());
    const beast::string_view target = header.target();
    if (target.size() > kMaxTargetBytes) {
      return Refuse(414, absl::StrCat("the request target is longer than ", kMaxTargetBytes, " bytes"));
    }
    const size_t query = target.find('?');
    request_.path = Str(target.substr(0, query));
    for (const auto& field : header) request_.headers.emplace_back(Str(field.name_string()), Str(field.value()));
    keep_alive_ = header.keep_alive();
    head_ = request_.method == "HEAD";

    bool path_known = false;
    route_ = server_->Find(request_.method, request_.path, &request_.matches, &path_known);
    const bool has_body = !parser_->is_done();
    if (route_ == nullptr) {
      HttpResponse response;
      if (path_known) {
        response.status = 405;
        response.body = absl::StrCat(request_.method, " is not allowed on ", request_.path, "\n");
      } else if (server_->not_found) {
        request_.matches = {request_.path};
        server_->not_found(request_, response);
      } else {
        response.status = 404;
        response.body = absl::StrCat("no endpoint ", request_.method, " ", request_.path, "\n");
      }
      if (has_body) keep_alive_ = false;  // the body is not read
      return Write(std::move(response), has_body);
    }
    if (!has_body) return Dispatch();
    if (!route_->takes_body) return Refuse(413, absl::StrCat(request_.method, " ", request_.path, " takes no body"));
    const auto length = parser_->content_length();
    const int64_t limit = options().max_body_bytes;
    if (length && static_cast<uint64_t>(*length) > static_cast<uint64_t>(limit)) {
      return Refuse(413,
                    absl::StrCat("the request body (", *length, " bytes) is larger than ", limit, " bytes (",
                                 options().body_flag, ")"),
                    options().body_flag);
    }
    const std::string* encoding = request_.Header("Content-Encoding");
    const bool encoded = encoding != nullptr && !absl::EqualsIgnoreCase(*encoding, "identity");
    if (encoded && !absl::EqualsIgnoreCase(*encoding, "gzip") && !absl::EqualsIgnoreCase(*encoding, "x-gzip") &&
        !absl::EqualsIgnoreCase(*encoding, "deflate")) {
      return Refuse(415, absl::StrCat("Content-Encoding ", encoding->substr(0, 64),
                                      " is not supported (gzip, deflate or none)"));
    }
    // Reserved before a byte is read: the length sent, or the most a chunked
    // body may be; a decoded body as much again.
    const int64_t bytes = (length ? static_cast<int64_t>(*length) : limit) + (encoded ? limit : 0);
    if (!server_->ReserveBody(bytes)) {
      return Refuse(503, absl::StrCat("the server is reading ", server_->body_bytes.load(),
                                      " bytes of request bodies already; a body of up to ", bytes,
                                      " more does not fit (", options().body_budget_flag, "); retry later"),
                    options().body_budget_flag);
    }
    reservation_ = BodyReservation(server_, bytes);
    const std::string* expect = request_.Header("Expect");
    if (expect != nullptr && absl::EqualsIgnoreCase(*expect, "100-continue")) {
      continue_.emplace(http::status::continue_, header.version());
      Lowest().expires_after(Seconds(options().write_timeout_s));
      http::async_write(stream_, *continue_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
        if (ec) return self->Close();
        self->ReadBody();
      });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    parser_->body_limit(static_cast<std::uint64_t>(std::max<int64_t>(options().max_body_bytes, 0)));
    Lowest().expires_after(Seconds(options().request_timeout_s));
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->OnBody(ec); });
  }

  void OnBody(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      return Refuse(413,
                    absl::StrCat("the request body is larger than ", options().max_body_bytes, " bytes (",
                                 options().body_flag, ")"),
                    options().body_flag);
    }
    if (ec == beast::error::timeout) {
      server_->Refused(408, absl::StrCat("a request body did not arrive within ", options().request_timeout_s,
                                         " s (--http_request_timeout_s)"));
      return Close();
    }
    if (ec) return Close();
    request_.body = std::move(parser_->get().body());
    const std::string* encoding = request_.Header("Content-Encoding");
    if (encoding != nullptr && !absl::EqualsIgnoreCase(*encoding, "identity")) {
      std::string decoded;
      switch (Inflate(request_.body, options().max_body_bytes, &decoded)) {
        case Inflated::kOk:
          break;
        case Inflated::kTooLarge:
          return Refuse(413,
                        absl::StrCat("the request body decompresses to more than ", options().max_body_bytes,
                                     " bytes (", options().body_flag, ")"),
                        options().body_flag);
        case Inflated::kCorrupt:
          return Refuse(400, absl::StrCat("the request body is not valid ", *encoding, " data"));
      }
      request_.body = std::move(decoded);
    }
    Dispatch();
  }

  // Runs the route's handler on a worker thread; the answer is written from
  // the I/O thread.
  void Dispatch() {
    state_ = State::kHandling;
    parser_.reset();
    Lowest().expires_never();
    asio::post(*server_->workers, [self = this->shared_from_this()] {
      HttpResponse response;
      try {
        self->route_->handler(self->request_, response);
      } catch (const std::exception& e) {
        response = HttpResponse();
        response.status = 500;
        response.body = absl::StrCat("internal error: ", e.what(), "\n");
      }
      self->request_.body.clear();
      self->request_.body.shrink_to_fit();
      self->reservation_.Reset();
      asio::post(self->stream_.get_executor(),
                 [self, response = std::move(response)]() mutable { self->Write(std::move(response), false); });
    });
  }

  // Answers `status` before any handler ran, and closes: the rest of the
  // request is not read.
  void Refuse(int status, const std::string& message, const std::string& flag = "") {
    server_->Refused(status, message, flag);
    reservation_.Reset();
    keep_alive_ = false;
    HttpResponse response;
    response.status = status;
    if (server_->error_format) {
      server_->error_format(message, response);
    } else {
      response.body = message + "\n";
    }
    Write(std::move(response), /*linger=*/true);
  }

  void Write(HttpResponse response, bool linger) {
    state_ = State::kWriting;
    linger_ = linger;
    if (server_->stopping) keep_alive_ = false;
    auto res = std::make_unique<http::response<http::string_body>>(static_cast<http::status>(response.status), 11);
    res->set(http::field::content_type, response.content_type);
    for (const auto& [name, value] : response.headers) res->set(name, value);
    res->keep_alive(keep_alive_);
    if (head_) {
      res->content_length(response.body.size());
    } else {
      res->body() = std::move(response.body);
      res->prepare_payload();
    }
    response_ = std::move(res);
    Lowest().expires_after(Seconds(options().write_timeout_s));
    http::async_write(stream_, *response_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      self->response_.reset();
      if (ec) return self->Close();
      if (!self->keep_alive_) return self->linger_ ? self->Linger() : self->Close();
      self->route_ = nullptr;
      self->ReadHeader();
    });
  }

  // After a refusal: reads and drops what the client is still sending, for a
  // moment, so that closing with unread data does not reset the connection
  // before the client has read the answer.
  void Linger() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      beast::error_code ignored;
      Lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
      Lowest().expires_after(Seconds(kLingerSeconds));
      DrainSome();
    } else {
      Close();
    }
  }
  void DrainSome() {
    scratch_.resize(16 << 10);
    Lowest().async_read_some(asio::buffer(scratch_),
                             [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                               self->drained_ += static_cast<int64_t>(n);
                               if (ec || self->drained_ > kLingerBytes) return self->Close();
                               self->DrainSome();
                             });
  }

  void Close() {
    beast::error_code ignored;
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream_.close();
    } else {
      Lowest().expires_after(Seconds(kLingerSeconds));
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) { self->Lowest().close(); });
    }
  }

  std::shared_ptr<HttpServer::Impl> server_;
  Stream stream_;
  beast::flat_buffer buffer_{64 << 10};
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::empty_body>> continue_;
  std::unique_ptr<http::response<http::string_body>> response_;
  HttpRequest request_;
  const RouteEntry* route_ = nullptr;
  BodyReservation reservation_;
  std::string scratch_;
  int64_t drained_ = 0;
  bool first_ = true;
  bool keep_alive_ = true;
  bool head_ = false;
  bool linger_ = false;
  enum class State { kReading, kHandling, kWriting };
  State state_ = State::kReading;
};

}  // namespace

void HttpServer::Impl::Accept() {
  acceptor->async_accept(io, [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !self->acceptor->is_open()) return;
    if (ec) {
      // Out of descriptors, say: try again shortly instead of spinning.
      static std::atomic<int64_t> last_logged{0};
      const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::steady_clock::now().time_since_epoch()).count();
      if (now - last_logged.exchange(now) >= 10) {
        ABSL_LOG(WARNING) << self->options.what << " port: accept failed: " << ec.message();
      }
      self->accept_retry->expires_after(std::chrono::milliseconds(100));
      self->accept_retry->async_wait([self](beast::error_code wait) {
        if (!wait) self->Accept();
      });
      return;
    }
    if (self->connections.load() >= self->options.max_connections) {
      self->RefuseConnection(std::move(socket));
    } else if (self->tls) {
      auto session = std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(self, std::move(socket), *self->tls);
      self->Register(session);
      session->Start();
    } else {
      auto session = std::make_shared<Session<beast::tcp_stream>>(self, std::move(socket));
      self->Register(session);
      session->Start();
    }
    self->Accept();
  });
}

void HttpServer::Impl::RefuseConnection(tcp::socket socket) {
  const std::string message = absl::StrCat(options.what, " port: ", options.max_connections,
                                           " connections are open already (", options.connections_flag, ")");
  Refused(503, message, options.connections_flag);
  if (tls) return;  // closed as it goes: a plain answer means nothing inside TLS
  auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
  auto text = std::make_shared<std::string>(absl::StrCat(
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ",
      message.size() + 1, "\r\n\r\n", message, "\n"));
  stream->expires_after(Seconds(kRefuseSeconds));
  asio::async_write(*stream, asio::buffer(*text), [stream, text](beast::error_code, std::size_t) {
    beast::error_code ignored;
    stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream->close();
  });
}

HttpServer::HttpServer(HttpServerOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Route(const std::string& method, const std::string& path_regex, Handler handler, bool takes_body) {
  impl_->routes.push_back({method, std::regex(path_regex), std::move(handler), takes_body});
}

void HttpServer::OnNotFound(Handler handler) { impl_->not_found = std::move(handler); }
void HttpServer::OnRefusal(RefusalFn refusal) { impl_->on_refusal = std::move(refusal); }
void HttpServer::FormatErrors(ErrorFormatFn format) { impl_->error_format = std::move(format); }

absl::Status HttpServer::Start() {
  Impl& s = *impl_;
  const HttpServerOptions& o = s.options;
  try {
    if (!o.tls_cert.empty()) {
      s.tls.emplace(asio::ssl::context::tls_server);
      s.tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                         asio::ssl::context::no_tlsv1_1);
      s.tls->use_certificate_chain_file(o.tls_cert);
      s.tls->use_private_key_file(o.tls_key, asio::ssl::context::pem);
      if (!o.tls_client_ca.empty()) {
        s.tls->load_verify_file(o.tls_client_ca);
        s.tls->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
      }
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot serve HTTPS on the ", o.what, " port with --tls_cert ",
                                                   o.tls_cert, " and --tls_key ", o.tls_key, ": ", e.what()));
  }
  try {
    const auto address = asio::ip::make_address(o.host == "localhost" ? "127.0.0.1" : o.host);
    tcp::endpoint endpoint(address, static_cast<unsigned short>(o.port));
    s.acceptor.emplace(s.io);
    s.acceptor->open(endpoint.protocol());
    s.acceptor->set_option(asio::socket_base::reuse_address(true));
    s.acceptor->bind(endpoint);
    s.acceptor->listen(asio::socket_base::max_listen_connections);
    s.port = s.acceptor->local_endpoint().port();
  } catch (const std::exception& e) {
    s.acceptor.reset();
    return absl::UnavailableError(absl::StrCat("cannot serve ", o.what, " on ", o.host, ":", o.port, ": ", e.what()));
  }
  s.accept_retry.emplace(s.io);
  s.workers.emplace(static_cast<size_t>(std::max(1, o.workers)));
  s.Accept();
  s.io_thread = std::thread([impl = impl_] { impl->io.run(); });
  return absl::OkStatus();
}

int HttpServer::port() const { return impl_->port; }

int HttpServer::open_connections() const { return impl_->connections.load(); }

void HttpServer::Stop() {
  Impl& s = *impl_;
  if (s.stopped) return;
  s.stopped = true;
  if (!s.io_thread.joinable()) return;
  // No new connections or requests; idle connections close now.
  s.stopping = true;
  asio::post(s.io, [impl = impl_] {
    beast::error_code ignored;
    impl->acceptor->close(ignored);
    impl->accept_retry->cancel();
    impl->ShutdownAll(/*force=*/false);
  });
  // Requests being handled finish and their answers are written, for up to
  // two seconds; then every connection closes and the I/O thread ends with
  // its last operation.
  s.workers->join();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (s.connections.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  asio::post(s.io, [impl = impl_] { impl->ShutdownAll(/*force=*/true); });
  s.io_thread.join();
}

}  // namespace graft::server
