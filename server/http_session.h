#pragma once

// One connection of HttpServer (plain TCP or TLS): reads requests within the
// header, body and idle deadlines, holds each body's share of the body
// budget, routes, writes answers, and lingers after a refusal so that the
// client reads it. Private to server/http_server.cc.

#include "server/http_server_impl.h"

namespace graft::server {
namespace http_internal {

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

}  // namespace http_internal
}  // namespace graft::server
