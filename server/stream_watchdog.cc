#include "server/stream_watchdog.h"

#include "absl/strings/str_cat.h"
#include "core/util/limit_error.h"
#include "core/util/log.h"

namespace graft::server {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

StreamWatchdog::StreamWatchdog() : thread_([this] { Loop(); }) {}

StreamWatchdog::~StreamWatchdog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  thread_.join();
}

std::unique_ptr<StreamWatchdog::Watch> StreamWatchdog::Start(grpc::ServerContext* ctx, double timeout_s,
                                                             std::string flag) {
  std::unique_ptr<Watch> watch(new Watch(timeout_s > 0 ? this : nullptr, ctx, timeout_s, std::move(flag)));
  if (watch->dog_ != nullptr) {
    absl::MutexLock lock(&mu_);
    watches_.insert(watch.get());
  }
  return watch;
}

std::unique_ptr<StreamWatchdog::Watch> StreamWatchdog::None(grpc::ServerContext* ctx) {
  return std::unique_ptr<Watch>(new Watch(nullptr, ctx, 0, ""));
}

StreamWatchdog::Watch::~Watch() {
  if (dog_ == nullptr) return;
  absl::MutexLock lock(&dog_->mu_);
  dog_->watches_.erase(this);
}

void StreamWatchdog::Watch::Arm() {
  if (dog_ == nullptr) return;
  deadline_ns_.store(NowNs() + std::chrono::duration_cast<std::chrono::nanoseconds>(timeout_).count());
}

void StreamWatchdog::Watch::Disarm() { deadline_ns_.store(0); }

absl::Status StreamWatchdog::Watch::Expired(const std::string& waiting_for) const {
  return core::LimitError(absl::StatusCode::kDeadlineExceeded,
                          absl::StrCat("no ", waiting_for, " within ", timeout_.count(), " s (--", flag_,
                                       "); the call was cancelled"),
                          flag_);
}

void StreamWatchdog::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    cv_.WaitWithTimeout(&mu_, absl::Milliseconds(200));
    const int64_t now = NowNs();
    for (Watch* w : watches_) {
      const int64_t deadline = w->deadline_ns_.load();
      if (deadline == 0 || now < deadline || w->expired_.load()) continue;
      w->expired_.store(true);
      // The watch is registered, so its call (and context) is still alive.
      ABSL_LOG(WARNING) << "cancelling a streaming call: its client stalled past --" << w->flag_ << " ("
                        << w->timeout_.count() << " s)";
      w->ctx_->TryCancel();
    }
  }
}

}  // namespace graft::server
