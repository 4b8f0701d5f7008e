#include "tests/testing/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

namespace graft::testing {

HttpServer::HttpServer() {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::listen(fd_, 16);
  socklen_t len = sizeof(addr);
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { Loop(); });
}

HttpServer::~HttpServer() {
  stop_ = true;
  thread_.join();
  ::close(fd_);
}

std::string HttpServer::Url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void HttpServer::Serve(const std::string& path, std::string body, int64_t declared_length) {
  std::lock_guard<std::mutex> lock(mu_);
  responses_[path] = {std::move(body), declared_length};
}

void HttpServer::Loop() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const int c = ::accept(fd_, nullptr, nullptr);
    if (c < 0) continue;
    ++requests_;
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    const size_t sp1 = request.find(' '), sp2 = request.find(' ', sp1 + 1);
    const std::string path = sp1 == std::string::npos ? "" : request.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string out;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const auto it = responses_.find(path);
      if (it == responses_.end()) {
        out = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      } else {
        const int64_t length =
            it->second.declared_length >= 0 ? it->second.declared_length : static_cast<int64_t>(it->second.body.size());
        out = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(length) +
              "\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n" + it->second.body;
      }
    }
    const int pause = pause_ms_;
    const size_t piece = pause > 0 ? size_t{64} << 10 : out.size();
    for (size_t sent = 0; sent < out.size() && !stop_;) {
      const ssize_t n = ::send(c, out.data() + sent, std::min(piece, out.size() - sent), MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
      if (pause > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause));
    }
    ::close(c);
  }
}

}  // namespace graft::testing
