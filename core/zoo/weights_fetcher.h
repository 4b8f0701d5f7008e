#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/zoo/download.h"

namespace graft::core {

struct FetchOptions {
  std::string base_url = "https://download.pytorch.org/models/";  // --weights_base_url
  bool offline = false;                                           // --offline: never download
  int64_t max_bytes = kMaxDownloadBytes;
  // After a failed fetch, the same file is not tried again for this long
  // (callers get the failure meanwhile), doubled after each further failure
  // of that file up to `retry_after_max`: a file that keeps failing is not
  // downloaded again and again by whoever keeps asking.
  std::chrono::seconds retry_after{30};
  std::chrono::seconds retry_after_max{3600};
  // Called as each fetch ends: whether the file was written, and its bytes.
  std::function<void(bool ok, int64_t bytes)> on_done;
};

struct FetchProgress {
  bool running = false;
  int64_t bytes_done = 0;
  int64_t bytes_total = 0;  // 0 while unknown
  absl::Status result;      // of the last fetch that ended (OK before any)
  int percent() const { return bytes_total > 0 ? static_cast<int>(100 * bytes_done / bytes_total) : 0; }
};

// Official weights files fetched on first use, in the background, into the
// zoo directory (DownloadVerified: SHA-256 checked against the file name's
// hash prefix, written whole or not at all). One fetch per file at a time;
// callers poll or wait for it.
class WeightsFetcher {
 public:
  WeightsFetcher(std::string dir, FetchOptions options) : dir_(std::move(dir)), options_(std::move(options)) {}
  ~WeightsFetcher();  // aborts running fetches and waits for them

  const FetchOptions& options() const { return options_; }
  std::string Url(const std::string& file) const { return options_.base_url + file; }
  // Starts fetching `file` unless that is running or failed within
  // retry_after; answers its progress.
  FetchProgress Start(const std::string& file);
  FetchProgress Progress(const std::string& file) const;
  // Until `file`'s fetch is not running, `cancelled` says so, or `timeout`.
  FetchProgress Wait(const std::string& file, const std::function<bool()>& cancelled,
                     std::chrono::milliseconds timeout) const;

 private:
  struct Fetch {
    FetchProgress progress;
    int failures = 0;  // in a row
    std::chrono::steady_clock::time_point ended;
    std::thread thread;
  };
  const std::string dir_;
  const FetchOptions options_;
  mutable absl::Mutex mu_;
  mutable absl::CondVar changed_;
  std::map<std::string, Fetch> fetches_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stopping_{false};
};

}  // namespace graft::core
