#include "core/zoo/weights_fetcher.h"

#include <algorithm>

#include "core/util/log.h"

namespace graft::core {

WeightsFetcher::~WeightsFetcher() {
  stopping_ = true;
  std::map<std::string, Fetch> fetches;
  {
    absl::MutexLock lock(&mu_);
    fetches.swap(fetches_);
  }
  for (auto& [file, fetch] : fetches) {
    if (fetch.thread.joinable()) fetch.thread.join();
  }
}

FetchProgress WeightsFetcher::Start(const std::string& file) {
  absl::MutexLock lock(&mu_);
  Fetch& f = fetches_[file];
  if (f.progress.running) return f.progress;
  if (!f.progress.result.ok()) {
    auto wait = options_.retry_after;
    for (int i = 1; i < f.failures && wait < options_.retry_after_max; ++i) wait *= 2;
    if (std::chrono::steady_clock::now() - f.ended < std::min(wait, std::max(options_.retry_after, options_.retry_after_max))) {
      return f.progress;
    }
  }
  if (f.thread.joinable()) f.thread.join();  // ended: its thread has returned
  f.progress = FetchProgress{};
  f.progress.running = true;
  ABSL_LOG(INFO) << "fetching weights " << Url(file) << " on first use";
  f.thread = std::thread([this, file] {
    const auto done = DownloadVerified(
        Url(file), dir_, file,
        [this, &file](const DownloadProgress& p) {
          absl::MutexLock lock(&mu_);
          Fetch& f = fetches_[file];
          f.progress.bytes_done = p.bytes_done;
          f.progress.bytes_total = p.bytes_total;
          changed_.SignalAll();
        },
        [this] { return !stopping_.load(); }, options_.max_bytes);
    absl::MutexLock lock(&mu_);
    Fetch& f = fetches_[file];
    f.progress.running = false;
    f.progress.result = done.status();
    f.failures = done.ok() ? 0 : f.failures + 1;
    f.ended = std::chrono::steady_clock::now();
    if (!done.ok()) ABSL_LOG(WARNING) << "fetching " << Url(file) << ": " << done.status().message();
    if (options_.on_done) options_.on_done(done.ok(), f.progress.bytes_done);
    changed_.SignalAll();
  });
  return f.progress;
}

FetchProgress WeightsFetcher::Progress(const std::string& file) const {
  absl::MutexLock lock(&mu_);
  const auto found = fetches_.find(file);
  return found == fetches_.end() ? FetchProgress{} : found->second.progress;
}

FetchProgress WeightsFetcher::Wait(const std::string& file, const std::function<bool()>& cancelled,
                                   std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  absl::MutexLock lock(&mu_);
  while (true) {
    const auto found = fetches_.find(file);
    if (found == fetches_.end() || !found->second.progress.running) {
      return found == fetches_.end() ? FetchProgress{} : found->second.progress;
    }
    if ((cancelled && cancelled()) || std::chrono::steady_clock::now() >= deadline) return found->second.progress;
    // Short waits: `cancelled` is polled (a client's deadline, a job's cancel).
    changed_.WaitWithTimeout(&mu_, absl::Milliseconds(100));
  }
}

}  // namespace graft::core
