// The precision a published model serves in, and the checks that chose it
// (graft models optimize): part of ModelStore.

#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/serve/model_store.h"
#include "core/util/files.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace fs = std::filesystem;

PrecisionGate DefaultGate(Precision p) {
  PrecisionGate gate;
  gate.min_agreement = p == Precision::kInt8 ? 0.98 : 0.99;
  return gate;
}

absl::Status ValidateGate(const PrecisionGate& gate) {
  for (const auto& [name, value] : {std::pair<const char*, double>{"min_agreement", gate.min_agreement},
                                    {"max_accuracy_drop", gate.max_accuracy_drop},
                                    {"max_probability_difference", gate.max_probability_difference}}) {
    if (!(value >= 0 && value <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(name, " is ", value, "; it must lie in [0, 1]"));
    }
  }
  return absl::OkStatus();
}

std::string GateFailures(const PrecisionCheck& c) {
  std::vector<std::string> out;
  if (c.images == 0) out.push_back("no images were measured");
  if (c.top1_agreement < c.gate.min_agreement) {
    out.push_back(absl::StrFormat("top-1 agreement with fp32 %.4f is below --min_agreement %.4f", c.top1_agreement,
                                  c.gate.min_agreement));
  }
  const double drop = c.fp32_accuracy - c.accuracy;
  if (drop > c.gate.max_accuracy_drop) {
    out.push_back(absl::StrFormat("accuracy %.4f against fp32's %.4f drops %.4f, above --max_accuracy_drop %.4f",
                                  c.accuracy, c.fp32_accuracy, drop, c.gate.max_accuracy_drop));
  }
  if (c.max_probability_difference > c.gate.max_probability_difference) {
    out.push_back(absl::StrFormat("largest probability difference %.6f is above --max_probability_difference %.6f",
                                  c.max_probability_difference, c.gate.max_probability_difference));
  }
  std::string joined;
  for (const std::string& s : out) joined += (joined.empty() ? "" : "; ") + s;
  return joined;
}

nlohmann::json PrecisionCheckToJson(const PrecisionCheck& c) {
  return {{"precision", PrecisionName(c.precision)},
          {"dataset", c.dataset},
          {"split", c.split},
          {"images", c.images},
          {"top1_agreement", c.top1_agreement},
          {"fp32_accuracy", c.fp32_accuracy},
          {"accuracy", c.accuracy},
          {"max_probability_difference", c.max_probability_difference},
          {"mean_probability_difference", c.mean_probability_difference},
          {"fp32_seconds", c.fp32_seconds},
          {"seconds", c.seconds},
          {"min_agreement", c.gate.min_agreement},
          {"max_accuracy_drop", c.gate.max_accuracy_drop},
          {"max_probability_difference_bound", c.gate.max_probability_difference},
          {"passed", c.passed},
          {"created_at", c.created_at},
          {"calibration_images", c.calibration_images}};
}

absl::StatusOr<PrecisionCheck> PrecisionCheckFromJson(const nlohmann::json& j) {
  return GuardExceptions(absl::StatusCode::kDataLoss, "precision check", [&]() -> absl::StatusOr<PrecisionCheck> {
    PrecisionCheck c;
    auto precision = ParsePrecision(j.at("precision").get<std::string>());
    if (!precision.ok()) return absl::DataLossError(precision.status().message());
    c.precision = *precision;
    c.dataset = j.value("dataset", "");
    c.split = j.value("split", "");
    c.images = j.value("images", int64_t{0});
    c.top1_agreement = j.value("top1_agreement", 0.0);
    c.fp32_accuracy = j.value("fp32_accuracy", 0.0);
    c.accuracy = j.value("accuracy", 0.0);
    c.max_probability_difference = j.value("max_probability_difference", 0.0);
    c.mean_probability_difference = j.value("mean_probability_difference", 0.0);
    c.fp32_seconds = j.value("fp32_seconds", 0.0);
    c.seconds = j.value("seconds", 0.0);
    c.gate.min_agreement = j.value("min_agreement", 0.0);
    c.gate.max_accuracy_drop = j.value("max_accuracy_drop", 0.0);
    c.gate.max_probability_difference = j.value("max_probability_difference_bound", 1.0);
    c.passed = j.value("passed", false);
    c.created_at = j.value("created_at", 0.0);
    c.calibration_images = j.value("calibration_images", int64_t{0});
    return c;
  });
}

std::string TrunkKey(const ModelInfo& info) {
  if (info.precision == Precision::kInt8 && info.int8_calibration) {
    return absl::StrCat(PrecisionName(info.precision), ":", info.int8_calibration->Fingerprint());
  }
  return PrecisionName(info.precision);
}

bool SamePrecision(const ModelInfo& a, const ModelInfo& b) {
  if (TrunkKey(a) != TrunkKey(b)) return false;
  if (a.precision != b.precision || a.precision_checks.size() != b.precision_checks.size()) return false;
  for (size_t i = 0; i < a.precision_checks.size(); ++i) {
    const PrecisionCheck& x = a.precision_checks[i];
    const PrecisionCheck& y = b.precision_checks[i];
    if (x.precision != y.precision || x.created_at != y.created_at || x.passed != y.passed) return false;
  }
  return true;
}

std::shared_ptr<ServingModel> ModelStore::WithInfo(const ServingModel& model, ModelInfo info) {
  auto copy = std::make_shared<ServingModel>();
  if (info.profile == nullptr) info.profile = model.info_.profile;
  copy->info_ = std::move(info);
  copy->spec_ = model.spec_;
  copy->num_blocks_ = model.num_blocks_;
  copy->own_ = model.own_;
  copy->head_ = model.head_;
  copy->charge_ = model.charge_;
  copy->forward_mu_ = model.forward_mu_;
  std::shared_ptr<ModelMonitor> monitor;
  decltype(model.agreements_) agreements;
  {
    absl::MutexLock lock(&model.monitor_mu_);
    monitor = model.monitor_;
    agreements = model.agreements_;
  }
  absl::MutexLock lock(&copy->monitor_mu_);
  copy->monitor_ = std::move(monitor);
  copy->agreements_ = std::move(agreements);
  return copy;
}

absl::StatusOr<ModelInfo> ModelStore::UpdatePrecision(const std::string& id, Precision serve,
                                                      const std::optional<PrecisionCheck>& check,
                                                      const std::optional<Int8Calibration>& calibration) {
  absl::MutexLock serial(&refresh_mu_);  // see Publish
  ASSIGN_OR_RETURN(const std::shared_ptr<const ServingModel> model, Get(id));
  ModelInfo info = model->info();
  info.precision = serve;
  if (calibration) info.int8_calibration = calibration;
  if (check) {
    auto& checks = info.precision_checks;
    checks.erase(std::remove_if(checks.begin(), checks.end(),
                                [&](const PrecisionCheck& c) { return c.precision == check->precision; }),
                 checks.end());
    checks.push_back(*check);
  }
  const std::string json = ModelInfoToJson(info);
  ASSIGN_OR_RETURN(auto update, db_.Prepare("UPDATE models SET info = ? WHERE id = ?"));
  update.Bind(1, json).Bind(2, id);
  RETURN_IF_ERROR(update.Run());
  // The copy beside the weights (what an operator reads); the database is
  // what graftd reads.
  if (auto s = WriteFileAtomic((fs::path(root_) / id / "model.json").string(), json); !s.ok()) {
    ABSL_LOG(WARNING) << "model " << id << ": model.json not updated: " << s.message();
  }
  auto copy = WithInfo(*model, info);
  {
    absl::MutexLock lock(&mu_);
    if (models_.count(id) > 0) models_[id] = std::move(copy);
  }
  Changed();
  ABSL_LOG(INFO) << "model " << id << " serves in " << PrecisionName(serve);
  return info;
}

}  // namespace graft::core
