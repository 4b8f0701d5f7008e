#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/util/database.h"

namespace graft::core {

// Versioned schema migrations, one numbered list per component (a store).
// `steps[i]` is version i + 1: SQL in the stores' dialect (see Database),
// possibly several statements. The versions applied are recorded in
// schema_migrations(component, version, applied_at); the ones missing run in
// order, each in one transaction with its record. Processes that start at
// once on one PostgreSQL database take turns (a transaction-level advisory
// lock), so each step runs exactly once. Steps are only ever appended: a
// released step is never edited, since databases have already run it.
absl::Status Migrate(Database& db, const std::string& component, const std::vector<std::string>& steps);

// The highest version of `component` applied (0: none).
absl::StatusOr<int> SchemaVersion(Database& db, const std::string& component);

}  // namespace graft::core
