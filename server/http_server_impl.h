#pragma once

// HttpServer's Boost.Beast side, shared by http_server.cc (the acceptor and
// the server's life) and http_session.h (one connection): private to them.

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
#include <optional>
#include <regex>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "core/util/log.h"


#include "server/http_server.h"

namespace graft::server {
namespace http_internal {


namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr size_t kMaxTargetBytes = 4096;     // longer targets: 414, before any regex runs
constexpr int64_t kLingerBytes = 1 << 20;    // read and dropped after a refusal, so the client sees the answer
constexpr double kLingerSeconds = 1;
constexpr double kRefuseSeconds = 1;         // to write the 503 of a connection over the cap

inline std::chrono::steady_clock::duration Seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

inline std::string Str(beast::string_view s) { return std::string(s.data(), s.size()); }

struct RouteEntry {
  std::string method;
  std::regex path;
  HttpServer::Handler handler;
  bool takes_body = false;
};

// Undoes a gzip or zlib ("deflate") Content-Encoding into at most `limit`
// bytes. Concatenated gzip members are read one after another.
enum class Inflated { kOk, kTooLarge, kCorrupt };
inline Inflated Inflate(const std::string& in, int64_t limit, std::string* out) {
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

}  // namespace http_internal

using namespace http_internal;  // NOLINT: a private header of one translation unit

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
  absl::Mutex live_mu;
  std::map<const Live*, std::weak_ptr<Live>> live ABSL_GUARDED_BY(live_mu);
  void Register(const std::shared_ptr<Live>& session) {
    absl::MutexLock lock(&live_mu);
    live[session.get()] = session;
  }
  void Unregister(const Live* session) {
    absl::MutexLock lock(&live_mu);
    live.erase(session);
  }
  void ShutdownAll(bool force) {
    std::vector<std::weak_ptr<Live>> all;
    {
      absl::MutexLock lock(&live_mu);
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

}  // namespace graft::server
