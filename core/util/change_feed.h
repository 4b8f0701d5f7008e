#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/util/database.h"

namespace graft::core {

// How graftd processes that share one database learn that another changed
// what they cache (models and aliases, tokens): each topic has a version in
// the table `changes`, bumped by every write to it. A process's watcher
// thread reads the versions and calls the topic's subscribers when one moved.
// On PostgreSQL a bump also sends NOTIFY graft_changes (delivered at commit),
// which wakes the watchers at once; on SQLite they poll every
// `poll_interval_ms`. Either way a change reaches every process within one
// interval (the README promises 2 s).
class ChangeFeed {
 public:
  // `listen_target`: the --database the watcher opens its own connection to
  // (a LISTENing connection blocks while it waits).
  static absl::StatusOr<std::unique_ptr<ChangeFeed>> Open(Database& db, std::string listen_target,
                                                          int poll_interval_ms = 500);
  ~ChangeFeed();

  // Records that `topic` changed (on `db`, inside the caller's transaction
  // when it holds one).
  absl::Status Bump(const std::string& topic);
  // Calls `on_change` on the watcher thread whenever `topic` moves (also for
  // this process's own bumps: subscribers reload idempotently).
  void Subscribe(const std::string& topic, std::function<void()> on_change);
  // Starts the watcher thread (after the subscriptions).
  absl::Status Start();
  void Stop();

  static constexpr const char* kModels = "models";
  static constexpr const char* kTokens = "tokens";

 private:
  ChangeFeed(Database& db, std::string listen_target, int poll_interval_ms)
      : db_(db), listen_target_(std::move(listen_target)), poll_interval_ms_(poll_interval_ms) {}
  absl::StatusOr<std::map<std::string, int64_t>> Versions();
  void Watch();

  Database& db_;
  const std::string listen_target_;
  const int poll_interval_ms_;
  std::unique_ptr<Database> listener_;
  absl::Mutex mu_;
  std::map<std::string, std::vector<std::function<void()>>> subscribers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> seen_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace graft::core
