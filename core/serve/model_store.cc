#include "core/serve/model_store.h"
#include "core/util/json.h"

#include <c10/core/InferenceMode.h>

#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/util/files.h"
#include "core/util/log.h"
#include "core/util/migrations.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace fs = std::filesystem;

std::string ModelInfoToJson(const ModelInfo& m) {
  const Preprocessing& p = m.preprocessing;
  nlohmann::json j = {{"id", m.id},
                      {"job_id", m.job_id},
                      {"owner", m.owner},
                      {"name", m.name},
                      {"version", m.version},
                      {"backbone", m.backbone},
                      {"class_names", m.class_names},
                      {"preprocessing", {{"height", p.height}, {"width", p.width}, {"resize_size", p.resize_size},
                                         {"mean", p.mean}, {"std", p.std}, {"interpolation", p.interpolation}}},
                      {"final_metrics", EpochMetricsToJson(m.final_metrics)},
                      {"best_metrics", EpochMetricsToJson(m.best_metrics)},
                      {"spec", m.spec},
                      {"created_at", m.created_at},
                      {"bytes", m.bytes},
                      {"trained_blocks", m.trained_blocks},
                      {"first_trained_block", m.first_trained_block}};
  nlohmann::json history = nlohmann::json::array();
  for (const EpochMetrics& e : m.history) history.push_back(EpochMetricsToJson(e));
  j["history"] = std::move(history);
  j["restored_epochs"] = m.restored_epochs;
  if (m.report) j["report"] = EvaluationReportToJson(*m.report);
  j["precision"] = PrecisionName(m.precision);
  nlohmann::json checks = nlohmann::json::array();
  for (const PrecisionCheck& c : m.precision_checks) checks.push_back(PrecisionCheckToJson(c));
  j["precision_checks"] = std::move(checks);
  if (m.int8_calibration) j["int8_calibration"] = Int8CalibrationToJson(*m.int8_calibration);
  return j.dump();
}

absl::StatusOr<ModelInfo> ModelInfoFromJson(const std::string& text) {
  return GuardExceptions(absl::StatusCode::kDataLoss, "model metadata", [&]() -> absl::StatusOr<ModelInfo> {
    const auto j = nlohmann::json::parse(text);
    ModelInfo m;
    m.id = j.at("id").get<std::string>();
    m.job_id = j.value("job_id", "");
    m.owner = j.value("owner", "");
    m.name = j.value("name", "");
    m.version = JsonInt(j, "version", int64_t{0});
    m.backbone = j.at("backbone").get<std::string>();
    m.class_names = j.at("class_names").get<std::vector<std::string>>();
    const auto& p = j.at("preprocessing");
    m.preprocessing.height = JsonInt<int>(p.at("height"));
    m.preprocessing.width = JsonInt<int>(p.at("width"));
    m.preprocessing.resize_size = JsonInt<int>(p.at("resize_size"));
    m.preprocessing.mean = JsonFloat3(p.at("mean"));
    m.preprocessing.std = JsonFloat3(p.at("std"));
    m.preprocessing.interpolation = p.value("interpolation", "bilinear");
    m.final_metrics = EpochMetricsFromJson(j.at("final_metrics"));
    m.best_metrics = EpochMetricsFromJson(j.at("best_metrics"));
    m.spec = j.at("spec").get<JobSpec>();
    m.created_at = j.value("created_at", 0.0);
    m.bytes = JsonInt(j, "bytes", int64_t{0});
    m.trained_blocks = j.value("trained_blocks", std::vector<std::string>{});
    m.first_trained_block = JsonInt<int>(j.at("first_trained_block"));
    if (const auto it = j.find("history"); it != j.end()) {
      for (const auto& e : *it) m.history.push_back(EpochMetricsFromJson(e));
    }
    if (const auto it = j.find("restored_epochs"); it != j.end()) {
      for (const auto& e : *it) m.restored_epochs.push_back(JsonInt<int>(e));
    }
    if (const auto it = j.find("report"); it != j.end()) {
      ASSIGN_OR_RETURN(EvaluationReport report, EvaluationReportFromJson(*it));
      if (report.classes.size() != m.class_names.size()) {
        return absl::DataLossError("the report's classes are not the model's");
      }
      m.report = std::move(report);
    }
    if (const auto it = j.find("precision"); it != j.end()) {
      auto precision = ParsePrecision(it->get<std::string>());
      if (!precision.ok()) return absl::DataLossError(precision.status().message());
      m.precision = *precision;
    }
    if (const auto it = j.find("precision_checks"); it != j.end()) {
      for (const auto& c : *it) {
        ASSIGN_OR_RETURN(PrecisionCheck check, PrecisionCheckFromJson(c));
        m.precision_checks.push_back(std::move(check));
      }
    }
    if (const auto it = j.find("int8_calibration"); it != j.end()) {
      ASSIGN_OR_RETURN(m.int8_calibration, Int8CalibrationFromJson(*it));
    }
    return m;
  });
}

torch::Tensor ServingModel::Embed(const torch::Tensor& at_k) const {
  if (own_ == nullptr) return at_k;  // already pooled: k == n
  absl::MutexLock lock(forward_mu_.get());
  return BackboneImpl::Pool(
      own_->ForwardTrunk(at_k, static_cast<size_t>(info_.first_trained_block), static_cast<size_t>(num_blocks_)));
}

torch::Tensor ServingModel::Forward(const torch::Tensor& at_k) const { return Classify(at_k).logits; }

ServingModel::Outputs ServingModel::Classify(const torch::Tensor& at_k) const {
  Outputs out;
  out.features = Embed(at_k);
  absl::MutexLock lock(forward_mu_.get());
  out.logits = head_.ptr()->forward(out.features);
  return out;
}

std::shared_ptr<ModelMonitor> ServingModel::monitor() const {
  absl::MutexLock lock(&monitor_mu_);
  return monitor_;
}

std::shared_ptr<ShadowAgreement> ServingModel::AgreementWith(const ModelInfo& served) const {
  absl::MutexLock lock(&monitor_mu_);
  auto& slot = agreements_[served.id];
  if (slot.second == nullptr) {
    slot = {served.version, std::make_shared<ShadowAgreement>(served.class_names, info_.class_names)};
  }
  return slot.second;
}

std::vector<ServingModel::ShadowedVersion> ServingModel::Agreements() const {
  std::vector<ShadowedVersion> out;
  absl::MutexLock lock(&monitor_mu_);
  for (const auto& [id, slot] : agreements_) out.push_back({id, slot.first, slot.second->Read()});
  return out;
}

int64_t ServingModel::own_bytes() const {
  int64_t bytes = own_ != nullptr ? own_->StateBytes() : 0;
  for (const auto& p : head_->parameters()) bytes += p.numel() * static_cast<int64_t>(p.element_size());
  for (const auto& b : head_->buffers()) bytes += b.numel() * static_cast<int64_t>(b.element_size());
  return bytes;
}

StateDict ServingModel::FullStateDict(const ResidentBackbone& backbone) const {
  const BackboneSpec& spec = *spec_;
  std::map<std::string, torch::Tensor> own;
  if (own_ != nullptr) {
    for (const auto& [name, t] : ModuleStateDict(*own_)) own[name] = t;
  }
  const auto& blocks = backbone.module->blocks();
  auto trained = [&](const std::string& name) {
    for (size_t b = static_cast<size_t>(info_.first_trained_block); b < blocks.size(); ++b) {
      for (const auto& prefix : blocks[b].param_prefixes) {
        if (name.rfind(prefix, 0) == 0) return true;
      }
    }
    return false;
  };
  StateDict out;
  for (const auto& [name, t] : ModuleStateDict(*backbone.module)) {
    if (name.rfind(spec.classifier_prefix, 0) == 0) continue;  // the ImageNet head is replaced
    out.emplace_back(name, own_ != nullptr && trained(name) ? own.at(name) : t);
  }
  const auto head = ModuleStateDict(*head_);
  const bool linear = head_->num_linear() == 1 && !spec.linear_classifier.empty();
  for (const auto& [name, t] : head) {
    // A linear head takes the torchvision classifier's place ("fc.weight").
    const std::string param = name.substr(name.find('.') + 1);
    out.emplace_back(linear ? spec.linear_classifier + "." + param : "head." + name, t);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<ModelStore>> ModelStore::Open(Database& db, const std::string& root, const Zoo& zoo,
                                                             MonitorOptions monitor) {
  std::unique_ptr<ModelStore> store(new ModelStore(db, root, zoo, monitor));
  std::error_code ec;
  fs::create_directories(root, ec);
  RETURN_IF_ERROR(Migrate(db, "models", {"CREATE TABLE IF NOT EXISTS models(id TEXT PRIMARY KEY, job_id TEXT, "
                                          "created_at REAL, info TEXT NOT NULL)"}));
  // Half-written model directories from a crash.
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (entry.path().extension() == ".tmp") fs::remove_all(entry.path(), ec);
  }
  RETURN_IF_ERROR(store->OpenNames());
  std::vector<ModelInfo> infos = store->List();
  {
    absl::MutexLock lock(&store->mu_);
    for (const ModelInfo& info : infos) store->IndexLocked(info);
  }
  for (const ModelInfo& info : infos) {
    auto weights = ReadSafetensors((fs::path(root) / info.id / "weights.safetensors").string());
    if (!weights.ok()) {
      ABSL_LOG(ERROR) << "model " << info.id << " cannot be served: " << weights.status().message();
      continue;
    }
    auto model = store->Load(info, *weights);
    if (!model.ok()) {
      ABSL_LOG(ERROR) << "model " << info.id << " cannot be served: " << model.status().message();
      continue;
    }
    absl::MutexLock lock(&store->mu_);
    store->models_[info.id] = *model;
  }
  return store;
}

absl::StatusOr<std::shared_ptr<ServingModel>> ModelStore::Load(const ModelInfo& info, const StateDict& weights) {
  // The backbone's spec only: the model's own blocks come from its weights
  // (blocks it did not train are never run from its copy).
  ASSIGN_OR_RETURN(const BackboneStatus backbone, zoo_.Get(info.backbone));
  const BackboneSpec* spec = backbone.spec;
  const torch::Device device = zoo_.device();
  ASSIGN_OR_RETURN(auto m, GuardInternal("loading model " + info.id, [&]() -> absl::StatusOr<std::shared_ptr<ServingModel>> {
    auto m = std::make_shared<ServingModel>();
    m->info_ = info;
    m->spec_ = spec;
    m->num_blocks_ = static_cast<int>(backbone.blocks.size());
    m->head_ = ClassifierHead(spec->feature_dim, info.spec.head, static_cast<int64_t>(info.class_names.size()));
    StateDict head, blocks;
    for (const auto& [name, t] : weights) {
      if (name.rfind("head.", 0) == 0) {
        head.emplace_back(name.substr(5), t);
      } else {
        blocks.emplace_back(name, t);
      }
    }
    RETURN_IF_ERROR(LoadStateDict(*m->head_, head));
    m->head_->eval();
    m->head_->to(device);
    if (!blocks.empty()) {
      m->own_ = spec->make();
      StateDict full = ModuleStateDict(*m->own_);
      std::map<std::string, torch::Tensor> overrides(blocks.begin(), blocks.end());
      for (auto& [name, t] : full) {
        if (overrides.count(name)) t = overrides[name];
      }
      RETURN_IF_ERROR(LoadStateDict(*m->own_, full));
      PrepareForInference(*m->own_, device);
    }
    for (auto& p : m->head_->parameters()) p.set_requires_grad(false);
    return m;
  }));
  m->charge_ = zoo_.Charge(DeviceLedger::Kind::kModel, m->own_bytes());
  if (m->info_.profile == nullptr) {
    // A published model's profile (none before it is published, or for a
    // model published before profiles). A damaged one costs monitoring, not
    // serving.
    const fs::path file = fs::path(root_) / info.id / "profile.json";
    std::error_code ec;
    if (fs::exists(file, ec)) {
      auto profile = ReadFile(file.string());
      auto parsed = profile.ok() ? ReferenceProfileFromText(*profile) : absl::StatusOr<ReferenceProfile>(profile.status());
      if (parsed.ok()) {
        m->info_.profile = std::make_shared<const ReferenceProfile>(std::move(*parsed));
      } else {
        ABSL_LOG(ERROR) << "model " << info.id << " is served without drift monitoring: " << file.string() << ": "
                        << parsed.status().message();
      }
    }
  }
  auto monitor = NewMonitor(m->info_);
  absl::MutexLock lock(&m->monitor_mu_);
  m->monitor_ = std::move(monitor);
  return m;
}

std::shared_ptr<ModelMonitor> ModelStore::NewMonitor(const ModelInfo& info) const {
  return std::make_shared<ModelMonitor>(info.profile, static_cast<int64_t>(info.class_names.size()),
                                        monitor_options_);
}

absl::StatusOr<std::shared_ptr<const ServingModel>> ModelStore::Prepare(const ModelInfo& info,
                                                                        const StateDict& weights) {
  ASSIGN_OR_RETURN(auto model, Load(info, weights));
  return std::shared_ptr<const ServingModel>(std::move(model));
}

absl::StatusOr<ModelInfo> ModelStore::Publish(ModelInfo info, const StateDict& weights,
                                              std::shared_ptr<const ServingModel> prepared) {
  ASSIGN_OR_RETURN(const std::string bytes, SerializeSafetensors(weights));
  info.bytes = static_cast<int64_t>(bytes.size());
  if (!info.name.empty()) {
    ASSIGN_OR_RETURN(info.version, ReserveVersion(info.owner, info.name));
  }
  std::shared_ptr<ServingModel> model;
  if (prepared != nullptr) {
    // The prepared model's modules, with the final metadata (bytes, report).
    model = std::make_shared<ServingModel>();
    model->info_ = info;
    model->spec_ = prepared->spec_;
    model->num_blocks_ = prepared->num_blocks_;
    model->charge_ = prepared->charge_;
    model->own_ = prepared->own_;
    model->head_ = prepared->head_;
    auto monitor = NewMonitor(info);
    absl::MutexLock lock(&model->monitor_mu_);
    model->monitor_ = std::move(monitor);
  } else {
    ASSIGN_OR_RETURN(model, Load(info, weights));
  }
  const fs::path tmp = fs::path(root_) / (info.id + ".tmp");
  const fs::path dir = fs::path(root_) / info.id;
  // A failed publish (a full disk, most often) keeps nothing of the model.
  auto discard = [&](absl::Status why) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    fs::remove_all(dir, ignored);
    return why;
  };
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (ec) return discard(WriteError("model", tmp.string(), ec.value()));
  if (auto s = WriteFileAtomic((tmp / "weights.safetensors").string(), bytes); !s.ok()) return discard(s);
  if (auto s = WriteFileAtomic((tmp / "model.json").string(), ModelInfoToJson(info)); !s.ok()) return discard(s);
  if (info.profile != nullptr) {
    if (auto s = WriteFileAtomic((tmp / "profile.json").string(), ReferenceProfileToText(*info.profile)); !s.ok()) {
      return discard(s);
    }
  }
  fs::rename(tmp, dir, ec);
  if (ec) return discard(WriteError("model", dir.string(), ec.value()));
  // Serialized with Refresh: its snapshot of the database never misses a
  // change this process makes while it runs.
  absl::MutexLock serial(&refresh_mu_);
  auto ins = db_.Prepare("INSERT INTO models VALUES (?, ?, ?, ?)");
  if (!ins.ok()) return discard(ins.status());
  ins->Bind(1, info.id).Bind(2, info.job_id).Bind(3, info.created_at).Bind(4, ModelInfoToJson(info));
  if (auto s = ins->Run(); !s.ok()) return discard(s);
  {
    absl::MutexLock lock(&mu_);
    models_[info.id] = model;
    IndexLocked(info);
  }
  Changed();
  return info;
}

void ModelStore::Changed() {
  if (feed_ == nullptr) return;
  if (auto s = feed_->Bump(ChangeFeed::kModels); !s.ok()) {
    ABSL_LOG(WARNING) << "other graftd processes will see this model change at their next poll: " << s.message();
  }
}

absl::StatusOr<int> ModelStore::Refresh() {
  absl::MutexLock one(&refresh_mu_);
  const std::vector<ModelInfo> infos = List();
  ASSIGN_OR_RETURN(auto aliases, ReadAliases());
  std::set<std::string> ids;
  std::vector<ModelInfo> missing;
  {
    absl::MutexLock lock(&mu_);
    for (const ModelInfo& info : infos) {
      ids.insert(info.id);
      if (models_.count(info.id) == 0) missing.push_back(info);
    }
  }
  // Loading reads weights from the shared artifact directory, outside the
  // lock: serving goes on meanwhile.
  std::map<std::string, std::shared_ptr<const ServingModel>> loaded;
  for (const ModelInfo& info : missing) {
    auto weights = ReadSafetensors((fs::path(root_) / info.id / "weights.safetensors").string());
    if (!weights.ok()) {
      ABSL_LOG(ERROR) << "model " << info.id << " cannot be served: " << weights.status().message();
      continue;
    }
    auto model = Load(info, *weights);
    if (!model.ok()) {
      ABSL_LOG(ERROR) << "model " << info.id << " cannot be served: " << model.status().message();
      continue;
    }
    loaded[info.id] = *model;
  }
  absl::MutexLock lock(&mu_);
  int changed = static_cast<int>(loaded.size());
  for (auto it = models_.begin(); it != models_.end();) {
    if (ids.count(it->first) == 0) {
      it = models_.erase(it);
      ++changed;
    } else {
      ++it;
    }
  }
  for (auto& [id, model] : loaded) models_.emplace(id, std::move(model));
  // Precisions set by another process (UpdatePrecision there).
  for (const ModelInfo& info : infos) {
    const auto it = models_.find(info.id);
    if (it == models_.end() || SamePrecision(it->second->info(), info)) continue;
    it->second = WithInfo(*it->second, info);
    ++changed;
  }
  versions_.clear();
  for (const ModelInfo& info : infos) IndexLocked(info);
  aliases_ = std::move(aliases);
  return changed;
}

std::vector<ModelInfo> ModelStore::List() {
  std::vector<ModelInfo> out;
  auto q = db_.Prepare("SELECT info FROM models ORDER BY created_at");
  if (!q.ok()) return out;
  while (q->Step().value_or(false)) {
    if (auto info = ModelInfoFromJson(q->Text(0)); info.ok()) out.push_back(*info);
  }
  return out;
}

absl::StatusOr<std::shared_ptr<const ServingModel>> ModelStore::Get(const std::string& id) {
  absl::MutexLock lock(&mu_);
  const auto it = models_.find(id);
  if (it == models_.end()) return absl::NotFoundError(absl::StrCat("no model '", id, "'"));
  return it->second;
}

std::vector<std::shared_ptr<const ServingModel>> ModelStore::Serving() {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<const ServingModel>> out;
  out.reserve(models_.size());
  for (const auto& [id, m] : models_) out.push_back(m);
  return out;
}

absl::Status ModelStore::SetProfile(const std::string& id, std::shared_ptr<const ReferenceProfile> profile) {
  ASSIGN_OR_RETURN(auto model, Get(id));
  if (profile == nullptr) return absl::InvalidArgumentError("no profile");
  const fs::path file = fs::path(root_) / id / "profile.json";
  RETURN_IF_ERROR(WriteFileAtomic(file.string(), ReferenceProfileToText(*profile)));
  ModelInfo info = model->info();
  info.profile = std::move(profile);
  auto monitor = NewMonitor(info);
  absl::MutexLock lock(&model->monitor_mu_);
  model->monitor_ = std::move(monitor);
  return absl::OkStatus();
}

size_t ModelStore::size() {
  absl::MutexLock lock(&mu_);
  return models_.size();
}

absl::Status ModelStore::Delete(const std::string& id) {
  absl::MutexLock serial(&refresh_mu_);  // see Publish
  std::optional<ModelInfo> info;
  for (auto& m : List()) {
    if (m.id == id) info = std::move(m);  // also a model that failed to load
  }
  if (!info) return absl::NotFoundError(absl::StrCat("no model '", id, "'"));
  {
    absl::MutexLock lock(&mu_);
    if (!info->name.empty()) {
      const auto it = aliases_.find({info->owner, info->name});
      if (it != aliases_.end()) {
        for (const auto& [alias, target] : it->second) {
          if (target.version == info->version) {
            return absl::FailedPreconditionError(absl::StrCat(
                "version ", target.version, " of '", info->name, "' is what its alias '", alias,
                "' points to; move or delete the alias first (SetModelAlias / DeleteModelAlias)"));
          }
          for (const CanaryRoute& c : target.canaries) {
            if (c.version == info->version) {
              return absl::FailedPreconditionError(absl::StrCat(
                  "version ", c.version, " of '", info->name, "' is a canary of its alias '", alias,
                  "'; set the alias without it first (SetModelAlias)"));
            }
          }
          if (target.shadow == info->version) {
            return absl::FailedPreconditionError(absl::StrCat(
                "version ", target.shadow, " of '", info->name, "' is the shadow of its alias '", alias,
                "'; set the alias without it first (SetModelAlias)"));
          }
        }
      }
    }
    models_.erase(id);
    UnindexLocked(*info);
  }
  ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM models WHERE id = ?"));
  del.Bind(1, id);
  RETURN_IF_ERROR(del.Run());
  Changed();
  std::error_code ec;
  fs::remove_all(fs::path(root_) / id, ec);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ModelStore::Export(const std::string& id) {
  ASSIGN_OR_RETURN(auto model, Get(id));
  ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> backbone, zoo_.Resident(model->info().backbone));
  return SerializeSafetensors(model->FullStateDict(*backbone), {{"graft.model", ModelInfoToJson(model->info())}});
}

}  // namespace graft::core
