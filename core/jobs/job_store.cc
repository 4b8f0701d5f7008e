#include "core/jobs/job_store.h"

#include <algorithm>
#include <map>
#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/util/json.h"
#include "core/util/migrations.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace {

constexpr char kColumns[] =
    "id, spec, state, created_at, started_at, finished_at, error, model_id, epochs_done, epochs_total, last, best, owner";

std::string OptionalMetrics(const std::optional<EpochMetrics>& m) { return m ? EpochMetricsToJson(*m).dump() : ""; }

std::optional<EpochMetrics> ParseMetrics(const std::string& text) {
  if (text.empty()) return std::nullopt;
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return EpochMetricsFromJson(j);
}

void BindRecord(Statement& s, const JobRecord& j) {
  s.Bind(1, j.id).Bind(2, nlohmann::json(j.spec).dump()).Bind(3, static_cast<int64_t>(j.state)).Bind(4, j.created_at)
      .Bind(5, j.started_at).Bind(6, j.finished_at).Bind(7, j.error).Bind(8, j.model_id)
      .Bind(9, static_cast<int64_t>(j.epochs_done)).Bind(10, static_cast<int64_t>(j.epochs_total))
      .Bind(11, OptionalMetrics(j.last)).Bind(12, OptionalMetrics(j.best)).Bind(13, j.owner);
}

absl::StatusOr<JobRecord> ReadRecord(const Statement& s) {
  JobRecord j;
  j.id = s.Text(0);
  auto spec = GuardExceptions(absl::StatusCode::kDataLoss, "job " + j.id, [&]() -> absl::StatusOr<JobSpec> {
    return nlohmann::json::parse(s.Text(1)).get<JobSpec>();
  });
  if (!spec.ok()) return spec.status();
  j.spec = *spec;
  j.state = static_cast<JobState>(s.Int(2));
  j.created_at = s.Double(3);
  j.started_at = s.Double(4);
  j.finished_at = s.Double(5);
  j.error = s.Text(6);
  j.model_id = s.Text(7);
  j.epochs_done = static_cast<int>(s.Int(8));
  j.epochs_total = static_cast<int>(s.Int(9));
  j.last = ParseMetrics(s.Text(10));
  j.best = ParseMetrics(s.Text(11));
  j.owner = s.Text(12);
  j.worker = s.Text(13);
  return j;
}

}  // namespace

bool IsTerminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled;
}

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kQueued: return "QUEUED";
    case JobState::kRunning: return "RUNNING";
    case JobState::kSucceeded: return "SUCCEEDED";
    case JobState::kFailed: return "FAILED";
    case JobState::kCancelled: return "CANCELLED";
  }
  return "UNKNOWN";
}

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(Database& db) {
  if (db.kind() == Database::Kind::kSqlite) {
    // Data directories from before owners: their jobs get the owner "", which
    // only admins see. (From before versioned migrations, hence by pragma.)
    ASSIGN_OR_RETURN(auto t, db.Prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"));
    ASSIGN_OR_RETURN(const bool has_jobs, t.Step());
    ASSIGN_OR_RETURN(auto q, db.Prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'owner'"));
    ASSIGN_OR_RETURN(const bool has_owner, q.Step());
    if (has_jobs && !has_owner) RETURN_IF_ERROR(db.Exec("ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';"));
  }
  RETURN_IF_ERROR(Migrate(db, "jobs", {
      // 1: the tables as they stood when versioning began.
      R"sql(
    CREATE TABLE IF NOT EXISTS jobs(
      id TEXT PRIMARY KEY, spec TEXT NOT NULL, state INTEGER NOT NULL, created_at REAL NOT NULL,
      started_at REAL NOT NULL, finished_at REAL NOT NULL, error TEXT NOT NULL, model_id TEXT NOT NULL,
      epochs_done INTEGER NOT NULL, epochs_total INTEGER NOT NULL, last TEXT NOT NULL, best TEXT NOT NULL,
      owner TEXT NOT NULL DEFAULT '');
    CREATE TABLE IF NOT EXISTS job_events(
      job_id TEXT NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL, event TEXT NOT NULL,
      PRIMARY KEY(job_id, seq));
  )sql",
      // 2: the shared queue (claims, heartbeats, cancels across processes).
      R"sql(
    ALTER TABLE jobs ADD COLUMN worker TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN heartbeat_at REAL NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, created_at);
  )sql",
      // 3: data-parallel groups (rank 0's rendezvous, the ranks that joined).
      R"sql(
    ALTER TABLE jobs ADD COLUMN group_address TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN group_generation INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN group_size INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE IF NOT EXISTS job_ranks(
      job_id TEXT NOT NULL, generation INTEGER NOT NULL, rank INTEGER NOT NULL, worker TEXT NOT NULL,
      PRIMARY KEY(job_id, generation, rank));
  )sql",
      // 4: the crash-loop guard (JobRunner: --max_job_restarts).
      R"sql(
    ALTER TABLE jobs ADD COLUMN abnormal_ends INTEGER NOT NULL DEFAULT 0;
  )sql",
  }));
  return std::unique_ptr<JobStore>(new JobStore(db));
}

absl::StatusOr<std::optional<JobStore::Claim>> JobStore::ClaimNext(const std::string& worker, double now,
                                                                    double stale_before, int max_held_per_owner) {
  Transaction tx(db_);
  RETURN_IF_ERROR(tx.status());
  // Released RUNNING jobs first (they resume from a checkpoint), then the
  // queued jobs of the owner holding the fewest, then by age.
  const std::string held_by_owner =
      "(SELECT COUNT(*) FROM jobs h WHERE h.owner = j.owner AND h.state IN (1, 2) AND h.worker <> '' AND h.id <> j.id)";
  const std::string pick = absl::StrCat(
      "SELECT j.id, j.worker, j.heartbeat_at, j.state, j.abnormal_ends FROM jobs j WHERE j.state IN (1, 2) AND "
      "(j.worker = '' OR (j.worker <> ? AND j.heartbeat_at < ?))",
      max_held_per_owner > 0 ? absl::StrCat(" AND (j.state = 2 OR ", held_by_owner, " < ?)") : "",
      " ORDER BY j.state DESC, ", held_by_owner, ", j.created_at LIMIT 1",
      db_.kind() == Database::Kind::kPostgres ? " FOR UPDATE OF j SKIP LOCKED" : "");
  ASSIGN_OR_RETURN(auto q, db_.Prepare(pick));
  q.Bind(1, worker).Bind(2, stale_before);
  if (max_held_per_owner > 0) q.Bind(3, static_cast<int64_t>(max_held_per_owner));
  ASSIGN_OR_RETURN(const bool row, q.Step());
  if (!row) return std::optional<Claim>();
  Claim claim{q.Text(0), q.Text(1), q.Double(2), static_cast<int>(q.Int(4))};
  // Taking a RUNNING job from a trainer that went silent: its run ended abnormally.
  if (!claim.previous_worker.empty() && q.Int(3) == 2) ++claim.abnormal_ends;
  ASSIGN_OR_RETURN(auto up, db_.Prepare("UPDATE jobs SET worker = ?, heartbeat_at = ?, abnormal_ends = ? WHERE id = ?"));
  up.Bind(1, worker).Bind(2, now).Bind(3, static_cast<int64_t>(claim.abnormal_ends)).Bind(4, claim.id);
  RETURN_IF_ERROR(up.Run());
  RETURN_IF_ERROR(tx.Commit());
  return std::optional<Claim>(std::move(claim));
}

absl::StatusOr<bool> JobStore::ClaimUnheld(const std::string& id, const std::string& worker, double now) {
  ASSIGN_OR_RETURN(auto up, db_.Prepare("UPDATE jobs SET worker = ?, heartbeat_at = ? WHERE id = ? AND state IN (1, 2) "
                                        "AND worker = '' RETURNING id"));
  up.Bind(1, worker).Bind(2, now).Bind(3, id);
  ASSIGN_OR_RETURN(const bool row, up.Step());
  if (row) RETURN_IF_ERROR(up.Run());  // steps to the end: the statement completes
  return row;
}

absl::Status JobStore::Heartbeat(const std::string& worker, double now) {
  ASSIGN_OR_RETURN(auto up, db_.Prepare("UPDATE jobs SET heartbeat_at = ? WHERE worker = ? AND state IN (1, 2)"));
  up.Bind(1, now).Bind(2, worker);
  return up.Run();
}

absl::Status JobStore::Release(const std::string& worker, bool abnormal) {
  if (abnormal) {
    ASSIGN_OR_RETURN(auto count, db_.Prepare("UPDATE jobs SET abnormal_ends = abnormal_ends + 1 "
                                             "WHERE worker = ? AND state = 2"));
    count.Bind(1, worker);
    RETURN_IF_ERROR(count.Run());
  }
  ASSIGN_OR_RETURN(auto up, db_.Prepare("UPDATE jobs SET worker = '' WHERE worker = ? AND state IN (1, 2)"));
  up.Bind(1, worker);
  return up.Run();
}

absl::Status JobStore::ReleaseAll(bool abnormal) {
  if (abnormal) {
    RETURN_IF_ERROR(db_.Exec("UPDATE jobs SET abnormal_ends = abnormal_ends + 1 WHERE worker <> '' AND state = 2"));
  }
  return db_.Exec("UPDATE jobs SET worker = '' WHERE state IN (1, 2)");
}

absl::StatusOr<std::string> JobStore::WorkerOf(const std::string& id) {
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT worker FROM jobs WHERE id = ?"));
  q.Bind(1, id);
  ASSIGN_OR_RETURN(const bool row, q.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("no job '", id, "'"));
  return q.Text(0);
}

absl::Status JobStore::RequestCancel(const std::string& id) {
  ASSIGN_OR_RETURN(auto up, db_.Prepare("UPDATE jobs SET cancel_requested = 1 WHERE id = ?"));
  up.Bind(1, id);
  return up.Run();
}

absl::StatusOr<std::vector<std::string>> JobStore::CancelRequested(const std::string& worker) {
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT id FROM jobs WHERE worker = ? AND cancel_requested = 1 AND "
                                       "state IN (1, 2)"));
  q.Bind(1, worker);
  std::vector<std::string> out;
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    out.push_back(q.Text(0));
  }
  return out;
}

absl::StatusOr<std::map<JobState, int64_t>> JobStore::CountByState() {
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state"));
  std::map<JobState, int64_t> out;
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    out[static_cast<JobState>(q.Int(0))] = q.Int(1);
  }
  return out;
}

absl::StatusOr<std::pair<int, int>> JobStore::CountQueued(const std::string& owner) {
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT COUNT(*), COALESCE(SUM(CASE WHEN owner = ? THEN 1 ELSE 0 END), 0) "
                                       "FROM jobs WHERE state = 1"));
  q.Bind(1, owner);
  ASSIGN_OR_RETURN(const bool row, q.Step());
  if (!row) return std::make_pair(0, 0);
  return std::make_pair(static_cast<int>(q.Int(0)), static_cast<int>(q.Int(1)));
}

absl::Status JobStore::Insert(const JobRecord& job) {
  ASSIGN_OR_RETURN(auto s, db_.Prepare(absl::StrCat("INSERT INTO jobs(", kColumns, ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")));
  BindRecord(s, job);
  return s.Run();
}

absl::Status JobStore::Update(const JobRecord& job) {
  // An upsert both SQLite and PostgreSQL take (REPLACE INTO is SQLite's alone).
  static const std::string kUpsert = [] {
    std::string set;
    for (absl::string_view column : absl::StrSplit(kColumns, ',', absl::SkipWhitespace())) {
      column = absl::StripAsciiWhitespace(column);
      if (column == "id") continue;
      absl::StrAppend(&set, set.empty() ? "" : ", ", column, " = excluded.", column);
    }
    return absl::StrCat("INSERT INTO jobs(", kColumns, ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET ",
                        set);
  }();
  ASSIGN_OR_RETURN(auto s, db_.Prepare(kUpsert));
  BindRecord(s, job);
  return s.Run();
}

absl::StatusOr<JobRecord> JobStore::Get(const std::string& id) {
  ASSIGN_OR_RETURN(auto s, db_.Prepare(absl::StrCat("SELECT ", kColumns, ", worker FROM jobs WHERE id = ?")));
  s.Bind(1, id);
  ASSIGN_OR_RETURN(const bool found, s.Step());
  if (!found) return absl::NotFoundError(absl::StrCat("no job '", id, "'"));
  return ReadRecord(s);
}

absl::StatusOr<std::vector<JobRecord>> JobStore::List(std::optional<JobState> state) {
  ASSIGN_OR_RETURN(auto s, db_.Prepare(absl::StrCat("SELECT ", kColumns, ", worker FROM jobs WHERE ? = 0 OR state = ? "
                                                    "ORDER BY created_at DESC")));
  const int64_t filter = state ? static_cast<int64_t>(*state) : 0;
  s.Bind(1, filter).Bind(2, filter);
  std::vector<JobRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(const bool row, s.Step());
    if (!row) break;
    ASSIGN_OR_RETURN(JobRecord j, ReadRecord(s));
    out.push_back(std::move(j));
  }
  return out;
}

nlohmann::json PromotionResultToJson(const PromotionResult& p) {
  return {{"alias", p.alias},
          {"holdout", p.holdout},
          {"holdout_images", p.holdout_images},
          {"metric", static_cast<int>(p.metric)},
          {"min_gain", p.min_gain},
          {"champion", p.champion},
          {"champion_version", p.champion_version},
          {"champion_value", p.champion_value},
          {"challenger", p.challenger},
          {"challenger_version", p.challenger_version},
          {"challenger_value", p.challenger_value},
          {"promoted", p.promoted},
          {"compared", p.compared},
          {"canary_percent", p.canary_percent},
          {"reason", p.reason}};
}

PromotionResult PromotionResultFromJson(const nlohmann::json& j) {
  PromotionResult p;
  p.alias = j.value("alias", "");
  p.holdout = j.value("holdout", "");
  p.holdout_images = JsonInt(j, "holdout_images", int64_t{0});
  p.metric = static_cast<Monitor>(JsonInt(j, "metric", 2));
  p.min_gain = j.value("min_gain", 0.0);
  p.champion = j.value("champion", "");
  p.champion_version = JsonInt(j, "champion_version", int64_t{0});
  p.champion_value = j.value("champion_value", 0.0);
  p.challenger = j.value("challenger", "");
  p.challenger_version = JsonInt(j, "challenger_version", int64_t{0});
  p.challenger_value = j.value("challenger_value", 0.0);
  p.promoted = j.value("promoted", false);
  p.compared = j.value("compared", false);
  p.canary_percent = j.value("canary_percent", 0.0);
  p.reason = j.value("reason", "");
  return p;
}

absl::StatusOr<JobEvent> JobStore::Append(JobEvent e) {
  Transaction tx(db_);
  RETURN_IF_ERROR(tx.status());
  {
    ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT COALESCE(MAX(seq), 0) FROM job_events WHERE job_id = ?"));
    q.Bind(1, e.job_id);
    ASSIGN_OR_RETURN(const bool row, q.Step());
    e.seq = (row ? q.Int(0) : 0) + 1;
  }
  nlohmann::json j = {{"type", static_cast<int>(e.type)}, {"state", static_cast<int>(e.state)},
                      {"reason", e.reason}, {"epoch", EpochMetricsToJson(e.epoch)},
                      {"epoch_number", e.epoch_number}, {"best_epoch", e.best_epoch}, {"best_value", e.best_value}};
  if (e.stage > 0) j["stage"] = e.stage;
  if (e.across_stages) j["across_stages"] = true;
  if (e.type == JobEventType::kCheckpoint && e.batch > 0) j["batch"] = e.batch;
  if (e.type == JobEventType::kTrial) j["trial"] = TrialResultToJson(e.trial);
  if (e.type == JobEventType::kPromotion) j["promotion"] = PromotionResultToJson(e.promotion);
  if (e.type == JobEventType::kLearningRate) {
    const LrCurve& c = e.lr_curve;
    j["lr_curve"] = {{"learning_rates", c.learning_rates}, {"losses", c.losses}, {"smoothed", c.smoothed_losses},
                     {"suggested", c.suggested}, {"min_loss_lr", c.min_loss_lr},
                     {"diverged", c.diverged}};
  }
  ASSIGN_OR_RETURN(auto ins, db_.Prepare("INSERT INTO job_events VALUES (?, ?, ?, ?)"));
  ins.Bind(1, e.job_id).Bind(2, e.seq).Bind(3, e.time).Bind(4, j.dump());
  RETURN_IF_ERROR(ins.Run());
  RETURN_IF_ERROR(tx.Commit());
  return e;
}

absl::StatusOr<std::vector<JobEvent>> JobStore::Events(const std::string& job_id, int64_t after_seq) {
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT seq, time, event FROM job_events WHERE job_id = ? AND seq > ? "
                                       "ORDER BY seq"));
  q.Bind(1, job_id).Bind(2, after_seq);
  std::vector<JobEvent> out;
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    const auto j = nlohmann::json::parse(q.Text(2), nullptr, false);
    if (j.is_discarded()) return absl::DataLossError(absl::StrCat("job ", job_id, " event ", q.Int(0), " is corrupt"));
    JobEvent e;
    e.job_id = job_id;
    e.seq = q.Int(0);
    e.time = q.Double(1);
    e.type = static_cast<JobEventType>(j.value("type", 1));
    e.state = static_cast<JobState>(j.value("state", 1));
    e.reason = j.value("reason", "");
    e.epoch = EpochMetricsFromJson(j.value("epoch", nlohmann::json::object()));
    e.epoch_number = j.value("epoch_number", 0);
    e.best_epoch = j.value("best_epoch", 0);
    e.best_value = j.value("best_value", 0.0);
    e.stage = j.value("stage", 0);
    e.across_stages = j.value("across_stages", false);
    e.batch = j.value("batch", 0);
    if (j.contains("trial")) e.trial = TrialResultFromJson(j["trial"]);
    if (j.contains("promotion")) e.promotion = PromotionResultFromJson(j["promotion"]);
    if (j.contains("lr_curve")) {
      const auto& c = j["lr_curve"];
      e.lr_curve.learning_rates = c.value("learning_rates", std::vector<double>{});
      // A diverged step's loss was stored as null (JSON has no NaN).
      for (const auto& v : c.value("losses", nlohmann::json::array())) e.lr_curve.losses.push_back(v.is_number() ? v.get<double>() : NAN);
      for (const auto& v : c.value("smoothed", nlohmann::json::array())) {
        e.lr_curve.smoothed_losses.push_back(v.is_number() ? v.get<double>() : NAN);
      }
      e.lr_curve.suggested = c.value("suggested", 0.0);
      e.lr_curve.min_loss_lr = c.value("min_loss_lr", 0.0);
      e.lr_curve.diverged = c.value("diverged", false);
    }
    out.push_back(e);
  }
  return out;
}

LearningCurves LearningCurvesOf(const std::vector<JobEvent>& events) {
  std::map<int, EpochMetrics> epochs;
  LearningCurves out;
  for (const JobEvent& e : events) {
    if (e.type == JobEventType::kEpoch) epochs[e.epoch.epoch] = e.epoch;
    if (e.type == JobEventType::kBestRestored &&
        std::find(out.restored_epochs.begin(), out.restored_epochs.end(), e.epoch_number) == out.restored_epochs.end()) {
      out.restored_epochs.push_back(e.epoch_number);
    }
  }
  for (auto& [n, m] : epochs) out.epochs.push_back(std::move(m));
  return out;
}

}  // namespace graft::core
