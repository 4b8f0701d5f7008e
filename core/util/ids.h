#pragma once

#include <atomic>
#include <string>

#include "absl/status/statusor.h"

namespace graft::core {

// "<prefix>-<12 random hex digits>", e.g. "job-3f9a0c1b22de".
std::string NewId(const std::string& prefix);

// 1 to `max_chars` of letters, digits, '-', '_' and '.': what names of
// datasets, tokens and custom backbones may hold.
bool IsPlainName(const std::string& text, size_t max_chars);

// True for text in NewId's form: lowercase letters, '-', 12 hex digits.
// Names users choose may never take this form, so ids and names never clash.
bool LooksLikeId(const std::string& text);

// Hex SHA-256 of `data`.
std::string Sha256Hex(const std::string& data);

// Seconds since the Unix epoch, with microseconds.
double NowSeconds();

// Cooperative cancellation, checked between batches.
class CancellationToken {
 public:
  // The user's cancel: the work ends, nothing is kept.
  void Cancel() { cancelled_ = true; }
  // A shutdown: every cancellation point stops as for Cancel, and training
  // first writes a checkpoint at its batch boundary so the job resumes there.
  void Stop() {
    stop_ = true;
    cancelled_ = true;
  }
  bool cancelled() const { return cancelled_; }
  bool stop_requested() const { return stop_; }

 private:
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> stop_{false};
};

}  // namespace graft::core
