#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/data/preprocessing.h"
#include "core/serve/evaluation_report.h"
#include "core/serve/model_monitor.h"
#include "core/serve/precision_check.h"
#include "core/serve/shadow.h"
#include "core/train/head.h"
#include "core/train/job_spec.h"
#include "core/train/trainer.h"
#include "core/util/change_feed.h"
#include "core/util/database.h"
#include "core/zoo/zoo.h"

namespace graft::core {

struct ModelInfo {
  std::string id;
  std::string job_id;
  std::string owner;  // the principal whose job made it
  std::string name;     // the job's model_name; empty: none
  int64_t version = 0;  // 1, 2, ... among the owner's models of that name; 0 without a name
  std::string backbone;
  std::vector<std::string> class_names;
  Preprocessing preprocessing;
  EpochMetrics final_metrics;
  EpochMetrics best_metrics;
  // Every epoch the job ran, in order (its learning curves), and the epochs
  // whose weights were restored at the end of a stage.
  std::vector<EpochMetrics> history;
  std::vector<int> restored_epochs;
  JobSpec spec;
  double created_at = 0;
  int64_t bytes = 0;
  std::vector<std::string> trained_blocks;
  int first_trained_block = 0;
  // Made at the end of the job on its validation split (absent for models
  // published before graft made reports).
  std::optional<EvaluationReport> report;
  // How the model did on its validation split, for monitoring what it
  // serves (core/serve/model_monitor.h): made with the report, stored beside
  // model.json as profile.json (not in it: model.json is read for every
  // listing). Null for models published before profiles.
  std::shared_ptr<const ReferenceProfile> profile;
  // The number format its backbone's trunk serves it in (graft models
  // optimize; its own blocks and head stay float32), and the latest check of
  // each other precision, passed or not.
  Precision precision = Precision::kFp32;
  std::vector<PrecisionCheck> precision_checks;
  // The ranges its int8 trunk is quantized with (set by graft models
  // optimize --precision int8 on its training split; Zoo::Trunk).
  std::optional<Int8Calibration> int8_calibration;
};

// The trunk a model's precision (and calibration) selects: one key per
// trunk variant, so that models with equal keys share a trunk pass.
std::string TrunkKey(const ModelInfo& info);

// A canary of an alias: `percent` of the requests through the alias go to
// `version` instead of the alias's own version.
struct CanaryRoute {
  int64_t version = 0;
  double percent = 0;  // (0, 100); an alias's canaries sum to under 100
};
inline constexpr int kMaxCanaries = 4;

// What an alias points to: its version, the canaries that take a share of
// its requests, and the version that shadows them (0: none).
struct AliasTarget {
  int64_t version = 0;
  std::vector<CanaryRoute> canaries;
  int64_t shadow = 0;
};

// What a prediction through a model reference is served by: the model id
// (an alias's canaries take their shares), and the id of the alias's shadow
// version (empty: none), which sees the request off its path.
struct ServingRoute {
  std::string id;
  std::string shadow;
};

// A published model ready to serve: blocks [0, k) come from its backbone
// (resident in the zoo, looked up per request: models do not keep backbones
// resident), its own copies of blocks [k, n) when it trained any, and its
// head. Its own weights are charged to the device memory budget while it
// lives. Immutable once built; requests hold a shared_ptr, so deleting a
// model lets requests already in flight finish on it.
class ServingModel {
 public:
  const ModelInfo& info() const { return info_; }
  const BackboneSpec& spec() const { return *spec_; }
  int first_block() const { return info_.first_trained_block; }
  int num_blocks() const { return num_blocks_; }
  // Logits from the activations at block k (pooled features when k == n).
  torch::Tensor Forward(const torch::Tensor& at_k) const;
  // The pooled features the head sees and the logits, from the activations
  // at block k (pooled features when k == n).
  struct Outputs {
    torch::Tensor features;
    torch::Tensor logits;
  };
  Outputs Classify(const torch::Tensor& at_k) const;
  // Pooled features of the model's own backbone from the activations at k.
  torch::Tensor Embed(const torch::Tensor& at_k) const;
  // The full network's weights with torchvision names (ExportModel): the
  // frozen blocks from `backbone` (this model's, resident).
  StateDict FullStateDict(const ResidentBackbone& backbone) const;
  // Bytes of its own weights (head and fine-tuned blocks) on the device.
  int64_t own_bytes() const;
  // What this process serves with it (Predict feeds it; evaluations do not).
  // Replaced, with a fresh window, when the model is profiled again.
  std::shared_ptr<ModelMonitor> monitor() const;
  // As a shadow version: how its answers compare with those of `served`,
  // made on first use (one per version it has shadowed in this process).
  std::shared_ptr<ShadowAgreement> AgreementWith(const ModelInfo& served) const;
  struct ShadowedVersion {
    std::string model_id;
    int64_t version = 0;
    AgreementSnapshot agreement;
  };
  // Every version it has shadowed in this process, by model id.
  std::vector<ShadowedVersion> Agreements() const;

 private:
  friend class ModelStore;
  ModelInfo info_;
  const BackboneSpec* spec_ = nullptr;
  int num_blocks_ = 0;
  BackbonePtr own_;  // null when only the head was trained
  ClassifierHead head_{nullptr};
  std::shared_ptr<DeviceLedger::Charge> charge_;
  mutable absl::Mutex monitor_mu_;
  mutable std::shared_ptr<ModelMonitor> monitor_ ABSL_GUARDED_BY(monitor_mu_);  // replaced by SetProfile
  // served model id -> (its version, the agreement)
  mutable std::map<std::string, std::pair<int64_t, std::shared_ptr<ShadowAgreement>>> agreements_
      ABSL_GUARDED_BY(monitor_mu_);
  // One forward pass at a time through the model's own modules (shared by
  // the copies UpdatePrecision makes of it).
  std::shared_ptr<absl::Mutex> forward_mu_ = std::make_shared<absl::Mutex>();
};

// Models under <root>/<id>/ (weights.safetensors + model.json), listed in SQLite.
class ModelStore {
 public:
  // `monitor`: the window each served model's ModelMonitor keeps.
  static absl::StatusOr<std::unique_ptr<ModelStore>> Open(Database& db, const std::string& root, const Zoo& zoo,
                                                          MonitorOptions monitor = {});

  // A servable model from its metadata and weights, not yet published (what
  // a job evaluates before it publishes).
  absl::StatusOr<std::shared_ptr<const ServingModel>> Prepare(const ModelInfo& info, const StateDict& weights);
  // Writes the model's files atomically, records it and makes it servable.
  // `prepared`: what Prepare made of the same info and weights (else loaded here).
  absl::StatusOr<ModelInfo> Publish(ModelInfo info, const StateDict& weights,
                                    std::shared_ptr<const ServingModel> prepared = nullptr);
  std::vector<ModelInfo> List();
  absl::StatusOr<std::shared_ptr<const ServingModel>> Get(const std::string& id);
  // Every model this process serves, by id.
  std::vector<std::shared_ptr<const ServingModel>> Serving();
  // Stores `profile` as the model's reference (a model published before
  // profiles, or one profiled again): written beside its weights, and what
  // its monitor compares with from now on (the window starts afresh).
  absl::Status SetProfile(const std::string& id, std::shared_ptr<const ReferenceProfile> profile);
  // Serves the model in `serve` from now on (requests in flight finish as
  // they began; other graftd processes on the database follow at their next
  // Refresh) and records `check` as its precision's latest.
  // `calibration`: stored as the model's int8 calibration when set.
  // `model` with `info` (its profile kept when `info` has none): the same
  // weights, monitor and shadow agreements. Not stored: UpdatePrecision
  // stores; a candidate (an int8 calibration measured before it is kept)
  // is served through Predictor::Outputs only.
  static std::shared_ptr<ServingModel> WithInfo(const ServingModel& model, ModelInfo info);
  absl::StatusOr<ModelInfo> UpdatePrecision(const std::string& id, Precision serve,
                                            const std::optional<PrecisionCheck>& check,
                                            const std::optional<Int8Calibration>& calibration = std::nullopt);
  absl::Status Delete(const std::string& id);
  // One safetensors file: the whole network (torchvision names) and the
  // metadata (JSON) under "graft.model" in its header.
  absl::StatusOr<std::string> Export(const std::string& id);
  size_t size();

  // Names, versions and aliases (core/serve/model_names.cc). Publishing a
  // model with a name gives it the owner's next version of that name
  // (versions are never reused). Delete refuses a version an alias points to.
  //
  // The model id `ref` (ParseModelRef's grammar) means for `caller`: a bare
  // NAME is the caller's own; with `any_owner` (inference principals,
  // admins), when the caller has none of that name, the default owner's
  // (--default_model_owner) and never another principal's, so that nobody
  // can squat a name an application uses. OWNER/NAME names anyone's (with
  // `any_owner`).
  //
  // Resolve gives an alias's own version (what GetModel, Delete and the
  // other calls about a model mean); ResolveForServing, what a prediction
  // through the alias is served by: with canaries, a share of the requests go
  // to each canary version. A request with a routing key always reaches the
  // same version for the same weights (the key's hash picks the share, the
  // same in every process); one without a key is drawn at random. Raising a
  // canary's share keeps the keys it already had. The route also names the
  // alias's shadow version.
  absl::StatusOr<std::string> Resolve(const std::string& ref, const std::string& caller, bool any_owner);
  absl::StatusOr<ServingRoute> ResolveForServing(const std::string& ref, const std::string& caller, bool any_owner,
                                                 const std::string& routing_key);
  void SetDefaultOwner(std::string owner);
  // Points owner's NAME@ALIAS at VERSION (which must exist), atomically:
  // requests resolved before finish on the old version. Returns its model.
  // `canaries`: versions that take a share of the alias's requests (each
  // must exist, differ from `version` and each other; shares in (0, 100)
  // summing under 100; at most kMaxCanaries). Setting an alias without
  // canaries ends its canary. `shadow`: a version (which must exist; it may
  // be any, the alias's own one too: an A/A check of the comparison) that
  // sees every request through the alias off its path; 0: none.
  absl::StatusOr<ModelInfo> SetAlias(const std::string& owner, const std::string& name, const std::string& alias,
                                     int64_t version, const std::vector<CanaryRoute>& canaries = {},
                                     int64_t shadow = 0);
  // What the owner's NAME@ALIAS points to (NOT_FOUND without it).
  absl::StatusOr<AliasTarget> Alias(const std::string& owner, const std::string& name, const std::string& alias);
  absl::Status DeleteAlias(const std::string& owner, const std::string& name, const std::string& alias);
  // The aliases that point at the model, "latest" first when it is the newest.
  std::vector<std::string> Aliases(const ModelInfo& info);
  // The aliases the model is a canary of, with its share of each.
  std::vector<std::pair<std::string, double>> CanaryOf(const ModelInfo& info);
  // The aliases the model is the shadow of.
  std::vector<std::string> ShadowOf(const ModelInfo& info);
  // Every version of the model's name (its owner's), ascending; empty when
  // the model has no name.
  std::vector<int64_t> Versions(const ModelInfo& info);

  // Other graftd processes on the same database and artifact directory:
  // every change here is announced on `feed` (topic "models"), and Refresh
  // (subscribed to it) makes this process serve what the database says now:
  // models published elsewhere are loaded, deleted ones dropped, versions and
  // aliases re-read. Returns how many models it loaded or dropped.
  void SetChangeFeed(ChangeFeed* feed) { feed_ = feed; }
  absl::StatusOr<int> Refresh();

 private:
  void Changed();
  ModelStore(Database& db, std::string root, const Zoo& zoo, MonitorOptions monitor)
      : db_(db), root_(std::move(root)), zoo_(zoo), monitor_options_(monitor) {}
  std::shared_ptr<ModelMonitor> NewMonitor(const ModelInfo& info) const;
  absl::StatusOr<std::shared_ptr<ServingModel>> Load(const ModelInfo& info, const StateDict& weights);

  absl::Status OpenNames();
  // Every alias in the database.
  absl::StatusOr<std::map<std::pair<std::string, std::string>, std::map<std::string, AliasTarget>>> ReadAliases();
  // `routing_key`: null for the alias's own version, else routed.
  absl::StatusOr<ServingRoute> ResolveRef(const std::string& ref, const std::string& caller, bool any_owner,
                                          const std::string* routing_key);
  absl::StatusOr<int64_t> ReserveVersion(const std::string& owner, const std::string& name);
  void IndexLocked(const ModelInfo& info) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnindexLocked(const ModelInfo& info) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  using NameKey = std::pair<std::string, std::string>;  // owner, name
  Database& db_;
  std::string root_;
  const Zoo& zoo_;
  const MonitorOptions monitor_options_;
  // One Refresh at a time, none while this process writes (taken before mu_).
  absl::Mutex refresh_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const ServingModel>> models_ ABSL_GUARDED_BY(mu_);
  std::map<NameKey, std::map<int64_t, std::string>> versions_ ABSL_GUARDED_BY(mu_);  // -> version -> id
  std::map<NameKey, std::map<std::string, AliasTarget>> aliases_ ABSL_GUARDED_BY(mu_);  // -> alias -> target
  ChangeFeed* feed_ = nullptr;
  std::string default_owner_ ABSL_GUARDED_BY(mu_) = "admin";
};

std::string ModelInfoToJson(const ModelInfo& info);
// Whether the two serve in the same precision with the same checks.
bool SamePrecision(const ModelInfo& a, const ModelInfo& b);
absl::StatusOr<ModelInfo> ModelInfoFromJson(const std::string& json);

}  // namespace graft::core
