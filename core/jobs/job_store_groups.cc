// JobStore's data-parallel groups: rank 0 opens a group for its job, other
// trainers claim its ranks (a primary key makes each rank one trainer's).

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/jobs/job_store.h"
#include "core/util/status_macros.h"

namespace graft::core {

absl::StatusOr<int64_t> JobStore::OpenGroup(const std::string& id, const std::string& worker,
                                            const std::string& address, int size) {
  ASSIGN_OR_RETURN(auto up, db_.Prepare("UPDATE jobs SET group_generation = group_generation + 1, group_address = ?, "
                                        "group_size = ? WHERE id = ? AND worker = ? RETURNING group_generation"));
  up.Bind(1, address).Bind(2, static_cast<int64_t>(size)).Bind(3, id).Bind(4, worker);
  ASSIGN_OR_RETURN(const bool row, up.Step());
  if (!row) return absl::FailedPreconditionError(absl::StrCat("job ", id, " is no longer held by ", worker));
  const int64_t generation = up.Int(0);
  RETURN_IF_ERROR(up.Run());
  return generation;
}

absl::Status JobStore::CloseGroup(const std::string& id) {
  ASSIGN_OR_RETURN(auto up, db_.Prepare("UPDATE jobs SET group_address = '' WHERE id = ?"));
  up.Bind(1, id);
  return up.Run();
}

absl::StatusOr<std::vector<std::string>> JobStore::GroupMembers(const std::string& id, int64_t generation) {
  ASSIGN_OR_RETURN(auto q,
                   db_.Prepare("SELECT worker FROM job_ranks WHERE job_id = ? AND generation = ? ORDER BY rank"));
  q.Bind(1, id).Bind(2, generation);
  std::vector<std::string> out;
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    out.push_back(q.Text(0));
  }
  return out;
}

absl::StatusOr<std::optional<JobStore::RankClaim>> JobStore::ClaimRank(const std::string& worker, double stale_before) {
  std::vector<RankClaim> open;
  {
    ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT id, group_generation, group_size, group_address FROM jobs "
                                         "WHERE state = 2 AND group_address <> '' AND worker <> '' AND worker <> ? "
                                         "AND heartbeat_at >= ? ORDER BY created_at"));
    q.Bind(1, worker).Bind(2, stale_before);
    while (true) {
      ASSIGN_OR_RETURN(const bool row, q.Step());
      if (!row) break;
      open.push_back(RankClaim{q.Text(0), q.Int(1), 0, static_cast<int>(q.Int(2)), q.Text(3)});
    }
  }
  for (RankClaim& c : open) {
    ASSIGN_OR_RETURN(const std::vector<std::string> members, GroupMembers(c.job_id, c.generation));
    if (static_cast<int>(members.size()) >= c.size - 1) continue;
    if (std::find(members.begin(), members.end(), worker) != members.end()) continue;
    // Two trainers may pick the same rank at once: the key keeps the first.
    ASSIGN_OR_RETURN(auto ins, db_.Prepare("INSERT INTO job_ranks(job_id, generation, rank, worker) VALUES(?, ?, ?, ?) "
                                           "ON CONFLICT DO NOTHING RETURNING rank"));
    c.rank = static_cast<int>(members.size()) + 1;
    ins.Bind(1, c.job_id).Bind(2, c.generation).Bind(3, static_cast<int64_t>(c.rank)).Bind(4, worker);
    ASSIGN_OR_RETURN(const bool inserted, ins.Step());
    if (inserted) {
      RETURN_IF_ERROR(ins.Run());
      return std::optional<RankClaim>(c);
    }
  }
  return std::optional<RankClaim>();
}

}  // namespace graft::core
