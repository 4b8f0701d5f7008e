#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace graft::core {

class Statement;

// One backend's prepared statement (database_sqlite.cc, database_postgres.cc).
class StatementImpl {
 public:
  virtual ~StatementImpl() = default;
  virtual void BindText(int index, const std::string& value) = 0;
  virtual void BindBlob(int index, const std::string& value) = 0;
  virtual void BindInt(int index, int64_t value) = 0;
  virtual void BindDouble(int index, double value) = 0;
  virtual void BindNull(int index) = 0;
  virtual absl::StatusOr<bool> Step() = 0;
  virtual void Reset() = 0;
  virtual std::string Text(int column) const = 0;
  virtual int64_t Int(int column) const = 0;
  virtual double Double(int column) const = 0;
  virtual bool IsNull(int column) const = 0;
};

// One backend's connection.
class DatabaseImpl {
 public:
  virtual ~DatabaseImpl() = default;
  virtual absl::Status Exec(const std::string& sql) = 0;
  virtual absl::StatusOr<std::unique_ptr<StatementImpl>> Prepare(const std::string& sql) = 0;
  // What opens a transaction that writes: SQLite's BEGIN IMMEDIATE takes the
  // write lock at once.
  virtual const char* BeginSql() const = 0;
  // Waits up to `timeout_ms` for a NOTIFY on `channel` (LISTENing from the
  // first call on); true when one came. Backends without notifications
  // (SQLite) sleep and return false: their readers poll.
  virtual absl::StatusOr<bool> WaitForNotification(const std::string& channel, int timeout_ms);
};

// The metadata database the stores share: SQLite (a file path, the default:
// WAL mode, synchronous=FULL, foreign keys on) or PostgreSQL (a
// postgresql:// or postgres:// connection URI, through libpq). The stores
// write one SQL for both: `?` placeholders, the types TEXT, INTEGER (64-bit),
// REAL (double), BLOB, and INSERT ... ON CONFLICT ... DO UPDATE upserts; the
// PostgreSQL backend translates placeholders to $n and the types to BIGINT,
// DOUBLE PRECISION and BYTEA. Every call holds the database mutex; a
// Transaction holds it for its lifetime.
class Database {
 public:
  enum class Kind { kSqlite, kPostgres };
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& target);
  static bool IsPostgresUri(const std::string& target);

  Kind kind() const { return kind_; }
  absl::Status Exec(const std::string& sql);
  absl::StatusOr<Statement> Prepare(const std::string& sql);
  std::recursive_mutex& mutex() { return mu_; }
  // See DatabaseImpl::WaitForNotification; blocks the connection while it
  // waits, so a listener opens a Database of its own.
  absl::StatusOr<bool> WaitForNotification(const std::string& channel, int timeout_ms);

 private:
  friend class Transaction;
  Database(Kind kind, std::unique_ptr<DatabaseImpl> impl) : kind_(kind), impl_(std::move(impl)) {}
  const Kind kind_;
  std::unique_ptr<DatabaseImpl> impl_;
  std::recursive_mutex mu_;
};

absl::StatusOr<std::unique_ptr<DatabaseImpl>> OpenSqlite(const std::string& path);
// The stores' SQL for PostgreSQL (see Database); exposed for its tests.
std::string TranslateForPostgres(const std::string& sql);
absl::StatusOr<std::unique_ptr<DatabaseImpl>> OpenPostgres(const std::string& uri);

// A prepared statement. Bind with 1-based indexes; Step() returns true while
// rows come back.
class Statement {
 public:
  Statement(Statement&& other) noexcept = default;
  Statement& operator=(Statement&&) = delete;
  ~Statement();

  Statement& Bind(int index, const std::string& value);
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, double value);
  Statement& BindBlob(int index, const std::string& value);
  Statement& BindNull(int index);

  absl::StatusOr<bool> Step() { return impl_->Step(); }
  // Steps until done (for INSERT/UPDATE/DELETE).
  absl::Status Run();
  // Clears bindings and rewinds, to run again.
  void Reset() { impl_->Reset(); }

  std::string Text(int column) const { return impl_->Text(column); }
  int64_t Int(int column) const { return impl_->Int(column); }
  double Double(int column) const { return impl_->Double(column); }
  bool IsNull(int column) const { return impl_->IsNull(column); }

 private:
  friend class Database;
  Statement(std::unique_ptr<StatementImpl> impl, std::unique_lock<std::recursive_mutex> lock)
      : impl_(std::move(impl)), lock_(std::move(lock)) {}
  std::unique_ptr<StatementImpl> impl_;
  std::unique_lock<std::recursive_mutex> lock_;
};

// BEGIN ... COMMIT; rolls back when destroyed uncommitted.
class Transaction {
 public:
  explicit Transaction(Database& db);
  ~Transaction();
  absl::Status status() const { return status_; }
  absl::Status Commit();

 private:
  Database& db_;
  std::unique_lock<std::recursive_mutex> lock_;
  absl::Status status_;
  bool done_ = false;
};

}  // namespace graft::core
