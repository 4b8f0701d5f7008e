#include "core/serve/prediction_records.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/serve/model_store.h"
#include "core/util/files.h"
#include "core/util/ids.h"
#include "core/util/log.h"
#include "core/util/migrations.h"
#include "core/util/status_macros.h"

namespace graft::core {
namespace fs = std::filesystem;

namespace {

constexpr double kPolicyCacheSeconds = 2;
constexpr double kExpiryEverySeconds = 60;
constexpr const char* kColumns =
    "id, model_id, model_key, owner, version, principal, created_at, top_json, reason, image_sha256, image_bytes, "
    "feedback_label, feedback_author, feedback_at";

std::string TopToJson(const std::vector<ClassScore>& top) {
  nlohmann::json j = nlohmann::json::array();
  for (const ClassScore& s : top) j.push_back({s.index, s.label, s.probability});
  return j.dump();
}

std::vector<ClassScore> TopFromJson(const std::string& text) {
  std::vector<ClassScore> out;
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return out;
  for (const auto& e : j) {
    if (!e.is_array() || e.size() != 3 || !e[0].is_number_integer() || !e[1].is_string() || !e[2].is_number()) continue;
    out.push_back({static_cast<int>(e[0].get<int64_t>()), e[1].get<std::string>(), e[2].get<float>()});
  }
  return out;
}

PredictionRecord RowToRecord(const Statement& s) {
  PredictionRecord r;
  r.id = s.Text(0);
  r.model_id = s.Text(1);
  r.model_key = s.Text(2);
  r.owner = s.Text(3);
  r.version = s.Int(4);
  r.principal = s.Text(5);
  r.created_at = s.Double(6);
  r.top = TopFromJson(s.Text(7));
  r.reason = s.Text(8);
  r.image_sha256 = s.Text(9);
  r.image_bytes = s.Int(10);
  if (!s.IsNull(11)) {
    r.feedback_label = s.Text(11);
    r.feedback_author = s.Text(12);
    r.feedback_at = s.Double(13);
  }
  return r;
}

}  // namespace

const char* RecordOutcomeName(RecordOutcome outcome) {
  switch (outcome) {
    case RecordOutcome::kNotChosen: return "not_chosen";
    case RecordOutcome::kSampled: return "sampled";
    case RecordOutcome::kLowConfidence: return "low_confidence";
    case RecordOutcome::kLowMargin: return "low_margin";
    case RecordOutcome::kOverQuota: return "over_quota";
    case RecordOutcome::kOverRate: return "over_rate";
    case RecordOutcome::kNoImage: return "no_image";
    case RecordOutcome::kFailed: return "failed";
  }
  return "unknown";
}

PredictionRecords::PredictionRecords(Database& db, std::string root, RecordsOptions options, const WallClock& clock)
    : db_(db), root_(std::move(root)), options_(options), clock_(clock),
      rng_(options.seed != 0 ? options.seed : std::random_device{}()) {}

absl::StatusOr<std::unique_ptr<PredictionRecords>> PredictionRecords::Open(Database& db, const std::string& root,
                                                                          RecordsOptions options,
                                                                          const WallClock& clock) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", root, ": ", ec.message()));
  RETURN_IF_ERROR(Migrate(db, "prediction_records",
                          {"CREATE TABLE record_policies ("
                           " model_key TEXT PRIMARY KEY, owner TEXT NOT NULL, sample_rate REAL NOT NULL,"
                           " below_confidence REAL NOT NULL, below_margin REAL NOT NULL, quota_bytes INTEGER NOT NULL,"
                           " max_per_minute REAL NOT NULL, allow_new_classes INTEGER NOT NULL);"
                           "CREATE TABLE prediction_records ("
                           " id TEXT PRIMARY KEY, model_id TEXT NOT NULL, model_key TEXT NOT NULL, owner TEXT NOT NULL,"
                           " version INTEGER NOT NULL, principal TEXT NOT NULL, created_at REAL NOT NULL,"
                           " top_json TEXT NOT NULL, reason TEXT NOT NULL, image_sha256 TEXT NOT NULL,"
                           " image_bytes INTEGER NOT NULL, feedback_label TEXT, feedback_author TEXT,"
                           " feedback_at REAL);"
                           "CREATE INDEX prediction_records_by_key ON prediction_records (model_key, created_at);"
                           "CREATE INDEX prediction_records_by_model ON prediction_records (model_id);"
                           "CREATE INDEX prediction_records_by_time ON prediction_records (created_at);"
                           "CREATE INDEX prediction_records_by_image ON prediction_records (image_sha256);"}));
  std::unique_ptr<PredictionRecords> store(new PredictionRecords(db, root, options, clock));
  if (auto expired = store->Expire(); !expired.ok()) return expired.status();
  return store;
}

std::string PredictionRecords::KeyOf(const ModelInfo& model) {
  return model.name.empty() ? model.id : absl::StrCat(model.owner, "/", model.name);
}

double PredictionRecords::Now() const {
  return std::chrono::duration<double>(clock_.Now().time_since_epoch()).count();
}

std::string PredictionRecords::ImagePath(const std::string& sha) const {
  return (fs::path(root_) / sha.substr(0, 2) / sha).string();
}

absl::Status PredictionRecords::SetPolicy(const std::string& key, const std::string& owner,
                                          const RecordPolicy& p) {
  const auto fraction = [](double v) { return v >= 0 && v <= 1; };
  if (!fraction(p.sample_rate) || !fraction(p.below_confidence) || !fraction(p.below_margin)) {
    return absl::InvalidArgumentError("sample_rate, below_confidence and below_margin must lie in [0, 1]");
  }
  if (p.quota_bytes < 0 || !(p.max_per_minute >= 0 && p.max_per_minute <= 1e6)) {
    return absl::InvalidArgumentError("quota_bytes must be >= 0 and max_per_minute in [0, 1e6]");
  }
  if (!p.KeepsAny()) {
    ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM record_policies WHERE model_key = ?"));
    RETURN_IF_ERROR(del.Bind(1, key).Run());
  } else {
    ASSIGN_OR_RETURN(auto put, db_.Prepare(
                                   "INSERT INTO record_policies (model_key, owner, sample_rate, below_confidence,"
                                   " below_margin, quota_bytes, max_per_minute, allow_new_classes)"
                                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model_key) DO UPDATE SET"
                                   " owner = excluded.owner, sample_rate = excluded.sample_rate,"
                                   " below_confidence = excluded.below_confidence, below_margin = excluded.below_margin,"
                                   " quota_bytes = excluded.quota_bytes, max_per_minute = excluded.max_per_minute,"
                                   " allow_new_classes = excluded.allow_new_classes"));
    RETURN_IF_ERROR(put.Bind(1, key)
                        .Bind(2, owner)
                        .Bind(3, p.sample_rate)
                        .Bind(4, p.below_confidence)
                        .Bind(5, p.below_margin)
                        .Bind(6, p.quota_bytes)
                        .Bind(7, p.max_per_minute)
                        .Bind(8, static_cast<int64_t>(p.allow_new_classes))
                        .Run());
  }
  absl::MutexLock lock(&mu_);
  policies_.erase(key);
  return absl::OkStatus();
}

std::optional<RecordPolicy> PredictionRecords::Policy(const std::string& key) {
  const double now = Now();
  {
    absl::MutexLock lock(&mu_);
    const auto it = policies_.find(key);
    if (it != policies_.end() && now - it->second.read_at < kPolicyCacheSeconds && now >= it->second.read_at) {
      return it->second.policy;
    }
  }
  std::optional<RecordPolicy> policy;
  auto q = db_.Prepare(
      "SELECT sample_rate, below_confidence, below_margin, quota_bytes, max_per_minute, allow_new_classes"
      " FROM record_policies WHERE model_key = ?");
  if (!q.ok()) {
    ABSL_LOG(WARNING) << "reading the record policy of " << key << ": " << q.status().message();
    return std::nullopt;
  }
  q->Bind(1, key);
  if (auto row = q->Step(); row.ok() && *row) {
    RecordPolicy p;
    p.sample_rate = q->Double(0);
    p.below_confidence = q->Double(1);
    p.below_margin = q->Double(2);
    p.quota_bytes = q->Int(3);
    p.max_per_minute = q->Double(4);
    p.allow_new_classes = q->Int(5) != 0;
    policy = p;
  }
  absl::MutexLock lock(&mu_);
  policies_[key] = {policy, now};
  return policy;
}

bool PredictionRecords::TakeRateToken(const std::string& key, double per_minute) {
  const double now = Now();
  Bucket& b = buckets_[key];
  if (b.at == 0) {
    b.tokens = per_minute;  // a full minute's worth to start
  } else if (now > b.at) {
    b.tokens = std::min(per_minute, b.tokens + (now - b.at) * per_minute / 60.0);
  }
  b.at = std::max(b.at, now);
  b.tokens = std::min(b.tokens, per_minute);  // a lowered cap holds at once
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

RecordOutcome PredictionRecords::Consider(const RecordCandidate& c) {
  if (c.model == nullptr) return RecordOutcome::kNotChosen;
  const std::string key = KeyOf(*c.model);
  const std::optional<RecordPolicy> policy = Policy(key);
  if (!policy || !policy->KeepsAny() || c.top.empty()) return RecordOutcome::kNotChosen;
  const float top1 = c.top[0].probability;
  const float margin = c.top.size() > 1 ? top1 - c.top[1].probability : top1;
  RecordOutcome chosen = RecordOutcome::kNotChosen;
  {
    absl::MutexLock lock(&mu_);
    // One draw per candidate whatever else decides, so a seeded store keeps
    // the same predictions for the same sequence.
    const double draw = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
    if (policy->below_confidence > 0 && top1 < policy->below_confidence) {
      chosen = RecordOutcome::kLowConfidence;
    } else if (policy->below_margin > 0 && margin < policy->below_margin) {
      chosen = RecordOutcome::kLowMargin;
    } else if (draw < policy->sample_rate) {
      chosen = RecordOutcome::kSampled;
    }
    if (chosen == RecordOutcome::kNotChosen) return chosen;
    if (c.image == nullptr) return RecordOutcome::kNoImage;
    const double per_minute = policy->max_per_minute > 0 ? policy->max_per_minute : options_.default_max_per_minute;
    if (!TakeRateToken(key, per_minute)) return RecordOutcome::kOverRate;
  }
  const double now = Now();
  bool expire = false;
  {
    absl::MutexLock lock(&mu_);
    if (now - last_expiry_ >= kExpiryEverySeconds || now < last_expiry_) {
      last_expiry_ = now;
      expire = true;
    }
  }
  if (expire) {
    if (auto e = Expire(); !e.ok()) ABSL_LOG(WARNING) << "expiring prediction records: " << e.status().message();
  }
  const int64_t quota = policy->quota_bytes > 0 ? policy->quota_bytes : options_.default_quota_bytes;
  const int64_t size = static_cast<int64_t>(c.image->size());
  // The check and the insert share the database lock, so two requests
  // cannot both fit in the last of the quota.
  std::unique_lock<std::recursive_mutex> db_lock(db_.mutex());
  auto used = BytesOf(key);
  if (!used.ok()) {
    ABSL_LOG(WARNING) << "prediction records of " << key << ": " << used.status().message();
    return RecordOutcome::kFailed;
  }
  if (*used + size > quota) return RecordOutcome::kOverQuota;
  const std::string sha = Sha256Hex(*c.image);
  const std::string path = ImagePath(sha);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    fs::create_directories(fs::path(path).parent_path(), ec);
    if (auto w = WriteFileAtomic(path, *c.image); !w.ok()) {
      ABSL_LOG(WARNING) << "keeping a prediction record of " << key << ": " << w.message();
      return RecordOutcome::kFailed;
    }
  }
  auto put = db_.Prepare(absl::StrCat("INSERT INTO prediction_records (", kColumns,
                                      ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)"));
  absl::Status s = put.status();
  if (s.ok()) {
    s = put->Bind(1, c.prediction_id)
            .Bind(2, c.model->id)
            .Bind(3, key)
            .Bind(4, c.model->owner)
            .Bind(5, c.model->version)
            .Bind(6, c.principal)
            .Bind(7, now)
            .Bind(8, TopToJson(c.top))
            .Bind(9, std::string(RecordOutcomeName(chosen)))
            .Bind(10, sha)
            .Bind(11, size)
            .Run();
  }
  if (!s.ok()) {
    ABSL_LOG(WARNING) << "keeping a prediction record of " << key << ": " << s.message();
    DropUnreferenced({sha});
    return RecordOutcome::kFailed;
  }
  return chosen;
}

absl::StatusOr<int64_t> PredictionRecords::BytesOf(const std::string& key) {
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT COALESCE(SUM(image_bytes), 0) FROM prediction_records WHERE model_key = ?"));
  q.Bind(1, key);
  ASSIGN_OR_RETURN(const bool row, q.Step());
  return row ? q.Int(0) : 0;
}

absl::StatusOr<RecordPage> PredictionRecords::List(const RecordQuery& query) {
  if (auto e = Expire(); !e.ok()) return e.status();
  std::string sql = absl::StrCat("SELECT ", kColumns, " FROM prediction_records WHERE model_key = ? AND created_at >= ?");
  if (query.low_confidence_only) absl::StrAppend(&sql, " AND reason <> 'sampled'");
  if (query.with_feedback.has_value()) {
    absl::StrAppend(&sql, *query.with_feedback ? " AND feedback_label IS NOT NULL" : " AND feedback_label IS NULL");
  }
  absl::StrAppend(&sql, " ORDER BY created_at DESC, id LIMIT ? OFFSET ?");
  ASSIGN_OR_RETURN(auto q, db_.Prepare(sql));
  const int64_t limit = std::clamp<int64_t>(query.limit, 1, 1000);
  q.Bind(1, query.model_key).Bind(2, query.since).Bind(3, limit + 1).Bind(4, std::max<int64_t>(0, query.offset));
  RecordPage page;
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    if (static_cast<int64_t>(page.records.size()) == limit) {
      page.next_offset = std::max<int64_t>(0, query.offset) + limit;
      break;
    }
    page.records.push_back(RowToRecord(q));
  }
  return page;
}

absl::StatusOr<PredictionRecord> PredictionRecords::Get(const std::string& id) {
  ASSIGN_OR_RETURN(auto q, db_.Prepare(absl::StrCat("SELECT ", kColumns, " FROM prediction_records WHERE id = ?")));
  q.Bind(1, id);
  ASSIGN_OR_RETURN(const bool row, q.Step());
  std::optional<PredictionRecord> r;
  if (row) r = RowToRecord(q);
  if (!r || r->created_at < Now() - options_.retention_s) {
    return absl::NotFoundError(absl::StrCat("prediction '", id,
                                            "' was not recorded (its model keeps no records of it, the request "
                                            "said store: false, or it expired or was purged)"));
  }
  return *r;
}

absl::StatusOr<std::string> PredictionRecords::Image(const PredictionRecord& record) {
  auto bytes = ReadFile(ImagePath(record.image_sha256));
  if (!bytes.ok()) return absl::DataLossError(absl::StrCat("prediction '", record.id, "': its image is missing"));
  return bytes;
}

absl::StatusOr<std::string> PredictionRecords::ImageHead(const PredictionRecord& record, size_t n) const {
  std::ifstream in(ImagePath(record.image_sha256), std::ios::binary);
  if (!in) return absl::DataLossError(absl::StrCat("prediction '", record.id, "': its image is missing"));
  std::string head(n, '\0');
  in.read(head.data(), static_cast<std::streamsize>(n));
  head.resize(static_cast<size_t>(in.gcount()));
  return head;
}

absl::StatusOr<PredictionRecord> PredictionRecords::SetFeedback(const std::string& id, const std::string& label,
                                                                const std::string& author,
                                                                const std::vector<std::string>& classes) {
  std::unique_lock<std::recursive_mutex> db_lock(db_.mutex());
  ASSIGN_OR_RETURN(PredictionRecord r, Get(id));
  if (std::find(classes.begin(), classes.end(), label) == classes.end()) {
    const std::optional<RecordPolicy> policy = Policy(r.model_key);
    if (!policy || !policy->allow_new_classes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "label '", label.substr(0, 128), "' is not one of model ", r.model_id,
          "'s classes, and its record policy does not allow new classes (allow_new_classes)"));
    }
    if (!IsPlainName(label, 128)) {
      return absl::InvalidArgumentError("a new class name must be 1 to 128 letters, digits, '-', '_' or '.'");
    }
  }
  ASSIGN_OR_RETURN(auto q, db_.Prepare(
                               "UPDATE prediction_records SET feedback_label = ?, feedback_author = ?, feedback_at = ?"
                               " WHERE id = ?"));
  const double now = Now();
  RETURN_IF_ERROR(q.Bind(1, label).Bind(2, author).Bind(3, now).Bind(4, id).Run());
  r.feedback_label = label;
  r.feedback_author = author;
  r.feedback_at = now;
  return r;
}

void PredictionRecords::DropUnreferenced(const std::vector<std::string>& shas) {
  for (const std::string& sha : std::set<std::string>(shas.begin(), shas.end())) {
    auto q = db_.Prepare("SELECT COUNT(*) FROM prediction_records WHERE image_sha256 = ?");
    if (!q.ok()) continue;
    q->Bind(1, sha);
    auto row = q->Step();
    if (!row.ok() || !*row || q->Int(0) > 0) continue;
    std::error_code ec;
    fs::remove(ImagePath(sha), ec);
  }
}

absl::StatusOr<int64_t> PredictionRecords::DeleteWhere(const std::string& where,
                                                      const std::function<void(Statement&)>& bind) {
  std::unique_lock<std::recursive_mutex> db_lock(db_.mutex());
  std::vector<std::string> shas;
  {
    ASSIGN_OR_RETURN(auto q, db_.Prepare(absl::StrCat("SELECT image_sha256 FROM prediction_records WHERE ", where)));
    bind(q);
    while (true) {
      ASSIGN_OR_RETURN(const bool row, q.Step());
      if (!row) break;
      shas.push_back(q.Text(0));
    }
  }
  if (shas.empty()) return 0;
  ASSIGN_OR_RETURN(auto del, db_.Prepare(absl::StrCat("DELETE FROM prediction_records WHERE ", where)));
  bind(del);
  RETURN_IF_ERROR(del.Run());
  DropUnreferenced(shas);
  return static_cast<int64_t>(shas.size());
}

absl::StatusOr<int64_t> PredictionRecords::Purge(const std::string& key) {
  return DeleteWhere("model_key = ?", [&key](Statement& q) { q.Bind(1, key); });
}

absl::StatusOr<int64_t> PredictionRecords::DeleteForModel(const std::string& model_id) {
  return DeleteWhere("model_id = ?", [&model_id](Statement& q) { q.Bind(1, model_id); });
}

absl::StatusOr<int64_t> PredictionRecords::Expire() {
  const double cutoff = Now() - options_.retention_s;
  return DeleteWhere("created_at < ?", [cutoff](Statement& q) { q.Bind(1, cutoff); });
}

}  // namespace graft::core
