#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"

namespace graft::server {

// Deadlines on what a streaming RPC waits for from its client: the next
// message of an upload (--upload_idle_timeout_s) and a response write that
// the client does not read (--stream_write_timeout_s). gRPC's synchronous
// Read and Write block without a deadline of their own, so one thread
// watches every armed stream and cancels the call (ServerContext::TryCancel)
// of one past its deadline: the blocked Read or Write returns false, the
// handler ends and its slot is freed. The client sees CANCELLED (gRPC sends
// no other status after a server-side cancel); graftd logs the reason and
// the handler returns DEADLINE_EXCEEDED naming the flag, which the metrics
// count in graft_limit_hits_total{flag}.
class StreamWatchdog {
 public:
  StreamWatchdog();
  ~StreamWatchdog();
  StreamWatchdog(const StreamWatchdog&) = delete;
  StreamWatchdog& operator=(const StreamWatchdog&) = delete;

  class Watch {
   public:
    ~Watch();
    // From now the stream has the timeout to reach Disarm() or the next Arm().
    void Arm();
    void Disarm();
    // The watchdog cancelled the call.
    bool expired() const { return expired_.load(); }
    // DEADLINE_EXCEEDED naming `waiting_for` and the flag.
    absl::Status Expired(const std::string& waiting_for) const;

   private:
    friend class StreamWatchdog;
    Watch(StreamWatchdog* dog, grpc::ServerContext* ctx, double timeout_s, std::string flag)
        : dog_(dog), ctx_(ctx), timeout_(std::chrono::duration<double>(timeout_s)), flag_(std::move(flag)) {}
    StreamWatchdog* dog_;
    grpc::ServerContext* ctx_;
    const std::chrono::duration<double> timeout_;
    const std::string flag_;
    std::atomic<int64_t> deadline_ns_{0};  // steady clock; 0: disarmed
    std::atomic<bool> expired_{false};
  };

  // Watches `ctx` while the returned object lives (timeout_s <= 0: never
  // expires). `flag` is the option that sets the timeout, for messages.
  std::unique_ptr<Watch> Start(grpc::ServerContext* ctx, double timeout_s, std::string flag);
  // A watch that never expires (no watchdog).
  static std::unique_ptr<Watch> None(grpc::ServerContext* ctx);

  // Writes `message`, cancelling the call if the write blocks past the
  // watch's timeout. False when the client went away or the write timed out.
  template <typename Writer, typename Message>
  static bool Write(Watch& watch, Writer* writer, const Message& message) {
    watch.Arm();
    const bool ok = writer->Write(message);
    watch.Disarm();
    return ok && !watch.expired();
  }

 private:
  void Loop();

  absl::Mutex mu_;
  absl::CondVar cv_;  // the loop: stop
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::set<Watch*> watches_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// What the services take: the watchdog (null: no deadlines) and the two timeouts.
struct StreamDeadlines {
  StreamWatchdog* watchdog = nullptr;
  double upload_idle_s = 60;  // --upload_idle_timeout_s
  double write_s = 60;        // --stream_write_timeout_s
  std::unique_ptr<StreamWatchdog::Watch> ForUpload(grpc::ServerContext* ctx) const {
    return watchdog ? watchdog->Start(ctx, upload_idle_s, "upload_idle_timeout_s") : StreamWatchdog::None(ctx);
  }
  std::unique_ptr<StreamWatchdog::Watch> ForWrites(grpc::ServerContext* ctx) const {
    return watchdog ? watchdog->Start(ctx, write_s, "stream_write_timeout_s") : StreamWatchdog::None(ctx);
  }
};

}  // namespace graft::server
