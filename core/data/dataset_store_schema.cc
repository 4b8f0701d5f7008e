// DatasetStore's tables, on SQLite or PostgreSQL, and the upgrade of SQLite
// files from before owners.

#include "absl/strings/str_cat.h"
#include "core/data/dataset_store.h"
#include "core/util/migrations.h"
#include "core/util/status_macros.h"

namespace graft::core {
namespace {

// Data directories from before owners: names were unique across the server.
// The table is rebuilt with an owner column (existing datasets get the owner
// "", which only admins see) and names unique per owner.
absl::Status MigrateOwners(Database& db) {
  if (db.kind() != Database::Kind::kSqlite) return absl::OkStatus();  // PostgreSQL databases began with owners
  {
    ASSIGN_OR_RETURN(auto q, db.Prepare("SELECT 1 FROM pragma_table_info('datasets') WHERE name = 'owner'"));
    ASSIGN_OR_RETURN(const bool has_owner, q.Step());
    if (has_owner) return absl::OkStatus();
  }
  RETURN_IF_ERROR(db.Exec("PRAGMA foreign_keys=OFF;"));
  const absl::Status migrated = db.Exec(R"sql(
    BEGIN IMMEDIATE;
    CREATE TABLE datasets_owned(
      id TEXT PRIMARY KEY, name TEXT NOT NULL, layout INTEGER NOT NULL,
      split_fraction REAL NOT NULL, split_seed INTEGER NOT NULL, created_at REAL NOT NULL,
      bytes INTEGER NOT NULL, rejected TEXT NOT NULL, owner TEXT NOT NULL DEFAULT '',
      rejected_count INTEGER NOT NULL DEFAULT -1, UNIQUE(owner, name));
    INSERT INTO datasets_owned SELECT id, name, layout, split_fraction, split_seed, created_at, bytes, rejected, '', -1
      FROM datasets;
    DROP TABLE datasets;
    ALTER TABLE datasets_owned RENAME TO datasets;
    COMMIT;
  )sql");
  if (!migrated.ok()) (void)db.Exec("ROLLBACK;");
  RETURN_IF_ERROR(db.Exec("PRAGMA foreign_keys=ON;"));
  return migrated;
}

}  // namespace

absl::Status DatasetStore::CreateTables(Database& db) {
  // dataset_images keeps upload order: SQLite's implicit rowid, a BIGSERIAL
  // column of that name (the last, so that INSERT ... VALUES fills the others) on PostgreSQL.
  const std::string order = db.kind() == Database::Kind::kPostgres ? ", rowid BIGSERIAL" : "";
  RETURN_IF_ERROR(Migrate(db, "datasets", {absl::StrCat(R"sql(
    CREATE TABLE IF NOT EXISTS datasets(
      id TEXT PRIMARY KEY, name TEXT NOT NULL, layout INTEGER NOT NULL,
      split_fraction REAL NOT NULL, split_seed INTEGER NOT NULL, created_at REAL NOT NULL,
      bytes INTEGER NOT NULL, rejected TEXT NOT NULL, owner TEXT NOT NULL DEFAULT '',
      UNIQUE(owner, name));
    CREATE TABLE IF NOT EXISTS dataset_classes(
      dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
      name TEXT NOT NULL, PRIMARY KEY(dataset_id, idx));
    CREATE TABLE IF NOT EXISTS dataset_images(
      dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE, split INTEGER NOT NULL,
      label INTEGER NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL)sql",
                                       order, R"sql();
    CREATE INDEX IF NOT EXISTS dataset_images_by_dataset ON dataset_images(dataset_id);
    CREATE INDEX IF NOT EXISTS dataset_images_by_sha ON dataset_images(sha256);
  )sql"),
                                       // 2: the rejected files counted in a column; `rejected` keeps a
                                       // sample (DatasetStore::kMaxStoredRejected). -1: an older row,
                                       // counted from its whole list.
                                       R"sql(
    ALTER TABLE datasets ADD COLUMN rejected_count INTEGER NOT NULL DEFAULT -1;
  )sql"}));
  return MigrateOwners(db);
}

}  // namespace graft::core
