#include "core/util/database.h"

#include <chrono>
#include <thread>

#include "absl/strings/match.h"

namespace graft::core {

bool Database::IsPostgresUri(const std::string& target) {
  return absl::StartsWith(target, "postgresql://") || absl::StartsWith(target, "postgres://");
}

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& target) {
  const Kind kind = IsPostgresUri(target) ? Kind::kPostgres : Kind::kSqlite;
  auto impl = kind == Kind::kPostgres ? OpenPostgres(target) : OpenSqlite(target);
  if (!impl.ok()) return impl.status();
  return std::unique_ptr<Database>(new Database(kind, std::move(*impl)));
}

absl::StatusOr<bool> DatabaseImpl::WaitForNotification(const std::string&, int timeout_ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
  return false;
}

absl::StatusOr<bool> Database::WaitForNotification(const std::string& channel, int timeout_ms) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  return impl_->WaitForNotification(channel, timeout_ms);
}

absl::Status Database::Exec(const std::string& sql) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  return impl_->Exec(sql);
}

absl::StatusOr<Statement> Database::Prepare(const std::string& sql) {
  std::unique_lock<std::recursive_mutex> lock(mu_);
  auto impl = impl_->Prepare(sql);
  if (!impl.ok()) return impl.status();
  return Statement(std::move(*impl), std::move(lock));
}

Statement::~Statement() { impl_.reset(); }  // before the lock goes

Statement& Statement::Bind(int index, const std::string& value) {
  impl_->BindText(index, value);
  return *this;
}
Statement& Statement::Bind(int index, int64_t value) {
  impl_->BindInt(index, value);
  return *this;
}
Statement& Statement::Bind(int index, double value) {
  impl_->BindDouble(index, value);
  return *this;
}
Statement& Statement::BindBlob(int index, const std::string& value) {
  impl_->BindBlob(index, value);
  return *this;
}
Statement& Statement::BindNull(int index) {
  impl_->BindNull(index);
  return *this;
}

absl::Status Statement::Run() {
  while (true) {
    auto more = Step();
    if (!more.ok()) return more.status();
    if (!*more) return absl::OkStatus();
  }
}

Transaction::Transaction(Database& db) : db_(db), lock_(db.mutex()) { status_ = db_.Exec(db_.impl_->BeginSql()); }

Transaction::~Transaction() {
  if (!done_ && status_.ok()) (void)db_.Exec("ROLLBACK");
}

absl::Status Transaction::Commit() {
  if (!status_.ok()) return status_;
  done_ = true;
  return db_.Exec("COMMIT");
}

}  // namespace graft::core
