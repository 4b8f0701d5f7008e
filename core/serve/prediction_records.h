#pragma once

// Prediction records: what a model's owner asked graft to keep of what the
// model served (the input image as received, the answer, who asked), and
// the true labels that come back as feedback. The start of the loop from
// serving back to training.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/serve/predictor.h"
#include "core/util/clock.h"
#include "core/util/database.h"

namespace graft::core {

struct ModelInfo;

// Which predictions of a model are kept. A prediction is kept when the draw
// falls under `sample_rate`, or its top-1 probability is under
// `below_confidence`, or the top-1 lead over the second is under
// `below_margin` (each 0: off). Set per model name (all its versions) or per
// unnamed model id, by its owner.
struct RecordPolicy {
  double sample_rate = 0;
  double below_confidence = 0;
  double below_margin = 0;
  int64_t quota_bytes = 0;    // images kept at once; 0: the store's default
  double max_per_minute = 0;  // records kept per minute in this process; 0: the store's default
  bool allow_new_classes = false;  // feedback may name a class the model lacks
  bool KeepsAny() const { return sample_rate > 0 || below_confidence > 0 || below_margin > 0; }
};

struct RecordsOptions {
  int64_t default_quota_bytes = 1LL << 30;  // --prediction_quota_bytes
  double default_max_per_minute = 600;      // --prediction_records_per_minute
  double retention_s = 30 * 86400.0;        // --prediction_retention_s
  uint64_t seed = 0;                        // the sampling draw's seed; 0: random
};

struct PredictionRecord {
  std::string id;        // the prediction_id the answer carried
  std::string model_id;  // the version that answered
  std::string model_key;  // OWNER/NAME, or the model id of an unnamed model
  std::string owner;      // the model's owner, who owns the record
  int64_t version = 0;
  std::string principal;  // who asked
  double created_at = 0;
  std::vector<ClassScore> top;
  std::string reason;  // "sampled", "low_confidence" or "low_margin"
  std::string image_sha256;
  int64_t image_bytes = 0;
  std::string feedback_label;  // empty: none yet
  std::string feedback_author;
  double feedback_at = 0;
  bool has_feedback() const { return !feedback_label.empty(); }
  bool disagrees() const { return has_feedback() && (top.empty() || top[0].label != feedback_label); }
};

// One answered image, offered for recording.
struct RecordCandidate {
  std::string prediction_id;
  const ModelInfo* model = nullptr;
  std::string principal;
  const std::string* image = nullptr;  // the encoded bytes as received; null: a tensor input
  std::vector<ClassScore> top;         // best first; two or more for the margin
};

enum class RecordOutcome {
  kNotChosen,      // the policy does not keep it (or there is no policy)
  kSampled,        // kept by the sample rate
  kLowConfidence,  // kept: top-1 under the threshold
  kLowMargin,      // kept: top-1 lead under the threshold
  kOverQuota,      // chosen, not kept: the model's records hold their quota
  kOverRate,       // chosen, not kept: the per-minute cap
  kNoImage,        // chosen, not kept: a tensor input has no image to keep
  kFailed,         // chosen, not kept: writing it failed (logged)
};
const char* RecordOutcomeName(RecordOutcome outcome);
inline bool Kept(RecordOutcome o) {
  return o == RecordOutcome::kSampled || o == RecordOutcome::kLowConfidence || o == RecordOutcome::kLowMargin;
}

struct RecordQuery {
  std::string model_key;
  bool low_confidence_only = false;  // kept for low confidence or margin
  std::optional<bool> with_feedback;
  double since = 0;  // created at or after (Unix seconds); 0: any
  int64_t offset = 0;
  int64_t limit = 100;
};

struct RecordPage {
  std::vector<PredictionRecord> records;
  int64_t next_offset = 0;  // 0: no more
};

// Records under <root> (images by content: <root>/<sha[0:2]>/<sha>) with
// their metadata in the shared database. Records expire after the
// retention; purge and model deletion remove them and images no record
// references.
class PredictionRecords {
 public:
  static absl::StatusOr<std::unique_ptr<PredictionRecords>> Open(Database& db, const std::string& root,
                                                                 RecordsOptions options,
                                                                 const WallClock& clock = WallClock::Real());

  // OWNER/NAME for a named model, its id otherwise.
  static std::string KeyOf(const ModelInfo& model);

  // Replaces the policy of `key`; a policy that keeps nothing removes it
  // (records already kept stay until purged or expired).
  absl::Status SetPolicy(const std::string& key, const std::string& owner, const RecordPolicy& policy);
  // The policy of `key` (read through a cache of a few seconds: another
  // process's change arrives within it).
  std::optional<RecordPolicy> Policy(const std::string& key);

  // Decides and, when chosen, keeps the record.
  RecordOutcome Consider(const RecordCandidate& candidate);

  absl::StatusOr<RecordPage> List(const RecordQuery& query);
  absl::StatusOr<PredictionRecord> Get(const std::string& id);
  absl::StatusOr<std::string> Image(const PredictionRecord& record);
  // Where the record's image file is, and its first `n` bytes.
  std::string ImagePathOf(const PredictionRecord& record) const { return ImagePath(record.image_sha256); }
  absl::StatusOr<std::string> ImageHead(const PredictionRecord& record, size_t n) const;
  // Attaches the true label (replacing an earlier one), by `author`: one of
  // `classes` (the model's), or a plain new name where the policy allows new
  // classes; INVALID_ARGUMENT naming allow_new_classes otherwise.
  absl::StatusOr<PredictionRecord> SetFeedback(const std::string& id, const std::string& label,
                                               const std::string& author, const std::vector<std::string>& classes);
  // Removes every record of `key` (its images too); returns how many.
  absl::StatusOr<int64_t> Purge(const std::string& key);
  // Removes the records one model version answered.
  absl::StatusOr<int64_t> DeleteForModel(const std::string& model_id);
  // Removes records older than the retention; returns how many.
  absl::StatusOr<int64_t> Expire();
  // Image bytes the records of `key` hold.
  absl::StatusOr<int64_t> BytesOf(const std::string& key);

  const RecordsOptions& options() const { return options_; }

 private:
  PredictionRecords(Database& db, std::string root, RecordsOptions options, const WallClock& clock);
  double Now() const;
  std::string ImagePath(const std::string& sha) const;
  // Removes the image files no record references among `shas`.
  void DropUnreferenced(const std::vector<std::string>& shas);
  // Deletes the rows `where` (one placeholder, bound by `bind`) selects.
  absl::StatusOr<int64_t> DeleteWhere(const std::string& where, const std::function<void(Statement&)>& bind);
  bool TakeRateToken(const std::string& key, double per_minute) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Database& db_;
  const std::string root_;
  const RecordsOptions options_;
  const WallClock& clock_;

  absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  struct CachedPolicy {
    std::optional<RecordPolicy> policy;
    double read_at = 0;
  };
  std::map<std::string, CachedPolicy> policies_ ABSL_GUARDED_BY(mu_);
  struct Bucket {
    double tokens = 0;
    double at = 0;
  };
  std::map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  double last_expiry_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace graft::core
