#include "server/http_server.h"

#include "server/http_server_impl.h"
#include "server/http_session.h"

namespace graft::server {

const std::string* HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, absl::string_view(name.data(), name.size()))) return &value;
  }
  return nullptr;
}

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
