#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace graft::testing {

// A real PostgreSQL server from Debian's `postgresql` package, for the tests:
// initdb in a fresh temporary directory (trust authentication, fsync off),
// started with pg_ctl on a free loopback port and a private socket directory,
// stopped and removed on destruction. As root, the server runs as the
// `postgres` user (initdb refuses root).
class PostgresServer {
 public:
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start();
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // postgresql://graft@127.0.0.1:PORT/DB; CreateDatabase first for a DB of one's own.
  std::string Uri(const std::string& database = "postgres") const;
  absl::Status CreateDatabase(const std::string& name);
  int port() const { return port_; }

 private:
  PostgresServer() = default;
  absl::Status Run(const std::string& command) const;  // as the server's user
  std::string bin_;                                    // /usr/lib/postgresql/<version>/bin
  std::string root_;                                   // data and socket directories, the log
  bool as_postgres_ = false;
  int port_ = 0;
  bool started_ = false;
};

// One server per test process, started on first use (stopped and removed at
// exit); null (with a test failure) when it cannot start.
PostgresServer* ProcessPostgres();
// A database of its own on ProcessPostgres(): its URI, or "" (with a test
// failure).
std::string FreshPostgresDatabase();

}  // namespace graft::testing
