#include "core/util/change_feed.h"

#include "core/util/log.h"
#include "core/util/migrations.h"
#include "core/util/status_macros.h"

namespace graft::core {
namespace {
constexpr char kChannel[] = "graft_changes";
}

absl::StatusOr<std::unique_ptr<ChangeFeed>> ChangeFeed::Open(Database& db, std::string listen_target,
                                                             int poll_interval_ms) {
  RETURN_IF_ERROR(
      Migrate(db, "changes", {"CREATE TABLE IF NOT EXISTS changes(topic TEXT PRIMARY KEY, version INTEGER NOT NULL)"}));
  return std::unique_ptr<ChangeFeed>(new ChangeFeed(db, std::move(listen_target), poll_interval_ms));
}

ChangeFeed::~ChangeFeed() { Stop(); }

absl::Status ChangeFeed::Bump(const std::string& topic) {
  ASSIGN_OR_RETURN(auto up, db_.Prepare("INSERT INTO changes VALUES (?, 1) ON CONFLICT(topic) DO UPDATE SET "
                                        "version = changes.version + 1"));
  up.Bind(1, topic);
  RETURN_IF_ERROR(up.Run());
  if (db_.kind() == Database::Kind::kPostgres) RETURN_IF_ERROR(db_.Exec(std::string("NOTIFY ") + kChannel));
  return absl::OkStatus();
}

void ChangeFeed::Subscribe(const std::string& topic, std::function<void()> on_change) {
  absl::MutexLock lock(&mu_);
  subscribers_[topic].push_back(std::move(on_change));
}

absl::StatusOr<std::map<std::string, int64_t>> ChangeFeed::Versions() {
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT topic, version FROM changes"));
  std::map<std::string, int64_t> out;
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    out[q.Text(0)] = q.Int(1);
  }
  return out;
}

absl::Status ChangeFeed::Start() {
  ASSIGN_OR_RETURN(auto versions, Versions());  // what this process loaded at start is current
  {
    absl::MutexLock lock(&mu_);
    seen_ = std::move(versions);
  }
  if (db_.kind() == Database::Kind::kPostgres) {
    ASSIGN_OR_RETURN(listener_, Database::Open(listen_target_));
    // LISTEN before the first wait, so that nothing between is missed.
    RETURN_IF_ERROR(listener_->WaitForNotification(kChannel, 0).status());
  }
  stop_ = false;
  thread_ = std::thread([this] { Watch(); });
  return absl::OkStatus();
}

void ChangeFeed::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void ChangeFeed::Watch() {
  while (!stop_) {
    // A notification wakes the watcher early; the versions decide. Waits are
    // short so that Stop() returns promptly.
    if (listener_ != nullptr) {
      auto woke = listener_->WaitForNotification(kChannel, std::min(poll_interval_ms_, 250));
      if (!woke.ok()) {
        ABSL_LOG(WARNING) << "change feed: " << woke.status().message() << "; polling";
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(poll_interval_ms_, 250)));
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(poll_interval_ms_, 250)));
    }
    auto now = Versions();
    if (!now.ok()) {
      ABSL_LOG(WARNING) << "change feed: " << now.status().message();
      continue;
    }
    std::vector<std::function<void()>> calls;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [topic, version] : *now) {
        if (seen_[topic] == version) continue;
        seen_[topic] = version;
        for (const auto& fn : subscribers_[topic]) calls.push_back(fn);
      }
    }
    for (const auto& fn : calls) fn();
  }
}

}  // namespace graft::core
