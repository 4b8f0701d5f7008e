#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace graft::core {

class Statement;

// One SQLite database in WAL mode, shared by the stores. Every call holds the
// database mutex; a Transaction holds it for its lifetime.
class Database {
 public:
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path);
  ~Database();

  absl::Status Exec(const std::string& sql);
  absl::StatusOr<Statement> Prepare(const std::string& sql);

  std::recursive_mutex& mutex() { return mu_; }

 private:
  explicit Database(sqlite3* db) : db_(db) {}
  friend class Statement;
  sqlite3* db_;
  std::recursive_mutex mu_;
};

// A prepared statement. Bind with 1-based indexes; Step() returns true while
// rows come back.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  ~Statement();

  Statement& Bind(int index, const std::string& value);
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, double value);
  Statement& BindBlob(int index, const std::string& value);
  Statement& BindNull(int index);

  absl::StatusOr<bool> Step();
  // Steps until done (for INSERT/UPDATE/DELETE).
  absl::Status Run();
  // Clears bindings and rewinds, to run again.
  void Reset();

  std::string Text(int column) const;
  int64_t Int(int column) const;
  double Double(int column) const;
  bool IsNull(int column) const;

 private:
  friend class Database;
  Statement(Database* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Database* db_;
  sqlite3_stmt* stmt_;
  std::unique_lock<std::recursive_mutex> lock_;
};

// BEGIN IMMEDIATE ... COMMIT; rolls back when destroyed uncommitted.
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
