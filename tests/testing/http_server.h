#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace graft::testing {

// A tiny HTTP/1.1 server on 127.0.0.1 for download tests: each path answers
// 200 with its body; a declared Content-Length larger than the body makes a
// truncated response (the connection closes early). Unknown paths are 404.
class HttpServer {
 public:
  HttpServer();
  ~HttpServer();
  int port() const { return port_; }
  std::string Url(const std::string& path) const;
  void Serve(const std::string& path, std::string body, int64_t declared_length = -1);
  // Sends bodies in 64 KiB pieces with this pause between them (0: at once),
  // so that a download lasts long enough to be watched.
  void set_pause_per_piece_ms(int ms) { pause_ms_ = ms; }
  // Requests received so far.
  int requests() const { return requests_.load(); }

 private:
  struct Response {
    std::string body;
    int64_t declared_length;
  };
  void Loop();

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> pause_ms_{0};
  std::atomic<int> requests_{0};
  std::mutex mu_;
  std::map<std::string, Response> responses_;
  std::thread thread_;
};

}  // namespace graft::testing
