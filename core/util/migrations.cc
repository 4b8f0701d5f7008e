#include "core/util/migrations.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace graft::core {
namespace {

double Now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

}  // namespace

absl::StatusOr<int> SchemaVersion(Database& db, const std::string& component) {
  RETURN_IF_ERROR(
      db.Exec("CREATE TABLE IF NOT EXISTS schema_migrations(component TEXT NOT NULL, version INTEGER NOT NULL, "
              "applied_at REAL NOT NULL, PRIMARY KEY(component, version))"));
  ASSIGN_OR_RETURN(auto q, db.Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?"));
  q.Bind(1, component);
  ASSIGN_OR_RETURN(const bool row, q.Step());
  return row ? static_cast<int>(q.Int(0)) : 0;
}

absl::Status Migrate(Database& db, const std::string& component, const std::vector<std::string>& steps) {
  if (db.kind() == Database::Kind::kPostgres) {
    // CREATE TABLE IF NOT EXISTS itself races between sessions on PostgreSQL.
    Transaction tx(db);
    RETURN_IF_ERROR(tx.status());
    RETURN_IF_ERROR(db.Exec("SELECT pg_advisory_xact_lock(7163324557812346)"));
    RETURN_IF_ERROR(SchemaVersion(db, component).status());
    RETURN_IF_ERROR(tx.Commit());
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const int version = static_cast<int>(i) + 1;
    Transaction tx(db);
    RETURN_IF_ERROR(tx.status());
    if (db.kind() == Database::Kind::kPostgres)
      RETURN_IF_ERROR(db.Exec("SELECT pg_advisory_xact_lock(7163324557812346)"));
    ASSIGN_OR_RETURN(const int applied, SchemaVersion(db, component));
    if (applied >= version) continue;
    if (auto s = db.Exec(steps[i]); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("schema migration ", component, " v", version, ": ", s.message()));
    }
    ASSIGN_OR_RETURN(auto rec, db.Prepare("INSERT INTO schema_migrations VALUES (?, ?, ?)"));
    rec.Bind(1, component).Bind(2, static_cast<int64_t>(version)).Bind(3, Now());
    RETURN_IF_ERROR(rec.Run());
    RETURN_IF_ERROR(tx.Commit());
  }
  return absl::OkStatus();
}

}  // namespace graft::core
