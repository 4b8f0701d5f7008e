#include "core/train/job_spec.h"
#include "core/util/json.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/util/names.h"
#include "core/util/status_macros.h"

namespace graft::core {

int JobSpec::TotalEpochs() const {
  int n = 0;
  for (const auto& s : stages) n += s.epochs;
  return n;
}

int TrainableBlocks(const std::string& train, int num_blocks) {
  if (train == "head" || train.empty()) return 0;
  if (train == "all") return num_blocks;
  if (train.rfind("top:", 0) == 0) {
    int n = 0;
    if (absl::SimpleAtoi(train.substr(4), &n) && n >= 1 && n <= num_blocks) return n;
  }
  return -1;
}

namespace {

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("spec.", field, ": ", what));
}

absl::Status NormalizeHead(HeadSpec& h, const std::string& f) {
  if (h.hidden_units.size() > 16) return Bad(f + ".hidden_units", "at most 16 hidden layers");
  for (size_t i = 0; i < h.hidden_units.size(); ++i) {
    if (h.hidden_units[i] < 1 || h.hidden_units[i] > 65536) {
      return Bad(absl::StrCat(f, ".hidden_units[", i, "]"), "must be 1..65536");
    }
  }
  if (!std::isfinite(h.dropout) || h.dropout < 0 || h.dropout >= 1) return Bad(f + ".dropout", "must be in [0, 1)");
  if (h.activation.empty()) h.activation = "relu";
  if (h.activation != "relu" && h.activation != "gelu") {
    return Bad(f + ".activation", absl::StrCat("must be relu or gelu, got '", h.activation, "'"));
  }
  return absl::OkStatus();
}

nlohmann::json HeadJson(const HeadSpec& h) {
  return {{"hidden_units", h.hidden_units}, {"dropout", h.dropout}, {"activation", h.activation}};
}

HeadSpec HeadFromJson(const nlohmann::json& h) {
  HeadSpec out;
  out.hidden_units = JsonInts<int>(h, "hidden_units");
  out.dropout = h.value("dropout", 0.0);
  out.activation = h.value("activation", "relu");
  return out;
}

constexpr int kMaxSearchValues = 64;  // per list
constexpr int kMaxTrials = 4096;      // kMaxSearchTrials (core/train/search.h)

}  // namespace

const char* MonitorName(Monitor m) {
  switch (m) {
    case Monitor::kValAccuracy:
      return "val_accuracy";
    case Monitor::kValMacroF1:
      return "val_macro_f1";
    case Monitor::kValLoss:
      break;
  }
  return "val_loss";
}

absl::Status NormalizeSearchSpec(SearchSpec& s) {
  const auto too_many = [](const char* field, size_t n) {
    return n > kMaxSearchValues ? Bad(absl::StrCat("search.", field), absl::StrCat("at most ", kMaxSearchValues,
                                                                                  " values, got ", n))
                                : absl::OkStatus();
  };
  RETURN_IF_ERROR(too_many("backbones", s.backbones.size()));
  RETURN_IF_ERROR(too_many("learning_rates", s.learning_rates.size()));
  RETURN_IF_ERROR(too_many("optimizers", s.optimizers.size()));
  RETURN_IF_ERROR(too_many("weight_decays", s.weight_decays.size()));
  RETURN_IF_ERROR(too_many("heads", s.heads.size()));
  RETURN_IF_ERROR(too_many("label_smoothings", s.label_smoothings.size()));
  for (size_t i = 0; i < s.backbones.size(); ++i) {
    if (s.backbones[i].empty() || s.backbones[i].size() > 128) {
      return Bad(absl::StrCat("search.backbones[", i, "]"), "must be a backbone name of 1..128 characters");
    }
  }
  for (size_t i = 0; i < s.learning_rates.size(); ++i) {
    if (!(s.learning_rates[i] > 0 && s.learning_rates[i] <= 10)) {
      return Bad(absl::StrCat("search.learning_rates[", i, "]"), "must be in (0, 10]");
    }
  }
  const bool range = s.lr_min != 0 || s.lr_max != 0 || s.lr_count != 0;
  if (range) {
    if (!s.learning_rates.empty()) return Bad("search.lr_min", "give learning_rates or lr_min/lr_max/lr_count, not both");
    if (!(s.lr_min > 0 && s.lr_max <= 10 && s.lr_min < s.lr_max)) {
      return Bad("search.lr_min", "lr_min and lr_max must satisfy 0 < lr_min < lr_max <= 10");
    }
    if (s.strategy != SearchStrategy::kRandom && (s.lr_count < 2 || s.lr_count > kMaxSearchValues)) {
      return Bad("search.lr_count", absl::StrCat("must be 2..", kMaxSearchValues, " (log-spaced rates), got ", s.lr_count));
    }
    if (s.lr_count < 0 || s.lr_count > kMaxSearchValues) {
      return Bad("search.lr_count", absl::StrCat("must be 0..", kMaxSearchValues));
    }
  }
  for (size_t i = 0; i < s.optimizers.size(); ++i) {
    const int k = static_cast<int>(s.optimizers[i]);
    if (k < 1 || k > 4) return Bad(absl::StrCat("search.optimizers[", i, "]"), "must be sgd, adam, adamw or rmsprop");
  }
  for (size_t i = 0; i < s.weight_decays.size(); ++i) {
    if (!std::isfinite(s.weight_decays[i]) || s.weight_decays[i] < 0 || s.weight_decays[i] > 1) {
      return Bad(absl::StrCat("search.weight_decays[", i, "]"), "must be in [0, 1]");
    }
  }
  for (size_t i = 0; i < s.heads.size(); ++i) RETURN_IF_ERROR(NormalizeHead(s.heads[i], absl::StrCat("search.heads[", i, "]")));
  for (size_t i = 0; i < s.label_smoothings.size(); ++i) {
    if (!std::isfinite(s.label_smoothings[i]) || s.label_smoothings[i] < 0 || s.label_smoothings[i] >= 1) {
      return Bad(absl::StrCat("search.label_smoothings[", i, "]"), "must be in [0, 1)");
    }
  }
  if (s.metric != Monitor::kValLoss && s.metric != Monitor::kValAccuracy && s.metric != Monitor::kValMacroF1) {
    return Bad("search.metric", "must be val_loss, val_accuracy or val_macro_f1");
  }
  const int strategy = static_cast<int>(s.strategy);
  if (strategy < 1 || strategy > 3) return Bad("search.strategy", "must be grid, random or successive_halving");
  if (s.eta == 0) s.eta = 3;
  if (s.eta < 2 || s.eta > 16) return Bad("search.eta", absl::StrCat("must be 2..16, got ", s.eta));
  if (s.max_trials < 0 || s.max_trials > kMaxTrials) {
    return Bad("search.max_trials", absl::StrCat("must be 0..", kMaxTrials, ", got ", s.max_trials));
  }
  if (s.strategy == SearchStrategy::kRandom && s.max_trials == 0) s.max_trials = 16;
  if (!std::isfinite(s.budget_seconds) || s.budget_seconds < 0 || s.budget_seconds > 7 * 86400) {
    return Bad("search.budget_seconds", "must be 0 (none) .. 604800");
  }
  return absl::OkStatus();
}

absl::Status NormalizeJobSpec(JobSpec& s, int num_blocks) {
  if (s.stages.size() > 16) return Bad("stages", "at most 16 stages");
  // Every real-valued field is finite first: NaN passes any range check
  // written as `x < lo || x > hi` (found by fuzzing: a NaN
  // validation_fraction was accepted and stored), and infinity is no rate.
  std::vector<std::pair<std::string, double>> reals = {
      {"validation_fraction", s.validation_fraction},          {"head.dropout", s.head.dropout},
      {"augmentation.crop_scale_min", s.augmentation.crop_scale_min}, {"augmentation.color_jitter", s.augmentation.color_jitter},
      {"label_smoothing", s.label_smoothing},                  {"early_stopping.min_delta", s.early_stopping.min_delta}};
  for (size_t i = 0; i < s.stages.size(); ++i) {
    const StageSpec& st = s.stages[i];
    const std::string f = absl::StrCat("stages[", i, "]");
    reals.insert(reals.end(), {{f + ".optimizer.learning_rate", st.optimizer.learning_rate},
                               {f + ".optimizer.momentum", st.optimizer.momentum},
                               {f + ".optimizer.weight_decay", st.optimizer.weight_decay},
                               {f + ".optimizer.beta1", st.optimizer.beta1},
                               {f + ".optimizer.beta2", st.optimizer.beta2},
                               {f + ".schedule.gamma", st.schedule.gamma},
                               {f + ".schedule.min_lr", st.schedule.min_lr}});
  }
  for (const auto& [field, value] : reals) {
    if (!std::isfinite(value)) return Bad(field, absl::StrCat("must be a finite number, got ", value));
  }
  if (s.backbone.empty() && !s.has_search) return Bad("backbone", "required (a name from graft backbones)");
  if (!s.model_name.empty()) RETURN_IF_ERROR(ValidateModelName(s.model_name, "model_name"));
  if (s.dataset.empty()) return Bad("dataset", "required (a dataset id or name)");
  if (s.validation_fraction < 0 || s.validation_fraction >= 1) {
    return Bad("validation_fraction", "must be 0 (the dataset's split) or in (0, 1)");
  }
  if (s.input_size != 0 && (s.input_size < 32 || s.input_size > 1024)) {
    return Bad("input_size", absl::StrCat("must be 0 (the backbone's) or 32..1024, got ", s.input_size));
  }
  if (s.batch_size == 0) s.batch_size = 32;
  if (s.batch_size < 1 || s.batch_size > 4096) return Bad("batch_size", absl::StrCat("must be 1..4096, got ", s.batch_size));
  RETURN_IF_ERROR(NormalizeHead(s.head, "head"));
  if (s.stages.empty()) s.stages.push_back(StageSpec{});
  for (size_t i = 0; i < s.stages.size(); ++i) {
    StageSpec& st = s.stages[i];
    const std::string f = absl::StrCat("stages[", i, "]");
    if (st.epochs < 1 || st.epochs > 10000) return Bad(f + ".epochs", absl::StrCat("must be 1..10000, got ", st.epochs));
    if (st.train.empty()) st.train = "head";
    if (TrainableBlocks(st.train, num_blocks) < 0) {
      return Bad(f + ".train", absl::StrCat("must be head, all or top:N with N in 1..", num_blocks, ", got '", st.train, "'"));
    }
    OptimizerSpec& o = st.optimizer;
    if (o.learning_rate == 0) o.learning_rate = o.kind == OptimizerKind::kSgd ? 1e-2 : 1e-3;
    if (!(o.learning_rate > 0 && o.learning_rate <= 10)) return Bad(f + ".optimizer.learning_rate", "must be in (0, 10]");
    if (o.momentum < 0 || o.momentum >= 1) return Bad(f + ".optimizer.momentum", "must be in [0, 1)");
    if (o.nesterov && (o.kind != OptimizerKind::kSgd || o.momentum <= 0)) {
      return Bad(f + ".optimizer.nesterov", "needs the SGD optimizer with momentum > 0");
    }
    if (o.weight_decay < 0) return Bad(f + ".optimizer.weight_decay", "must be >= 0");
    if (o.beta1 == 0) o.beta1 = 0.9;
    if (o.beta2 == 0) o.beta2 = 0.999;
    if (o.beta1 < 0 || o.beta1 >= 1 || o.beta2 < 0 || o.beta2 >= 1) return Bad(f + ".optimizer.beta1/beta2", "must be in [0, 1)");
    ScheduleSpec& sc = st.schedule;
    if (sc.gamma == 0) sc.gamma = 0.1;
    if (sc.gamma < 0 || sc.gamma > 1) return Bad(f + ".schedule.gamma", "must be in (0, 1]");
    if (sc.kind == ScheduleKind::kStep && sc.step_epochs < 1) return Bad(f + ".schedule.step_epochs", "must be >= 1 for the step schedule");
    if (sc.warmup_epochs < 0 || sc.warmup_epochs >= st.epochs + 1) return Bad(f + ".schedule.warmup_epochs", "must be 0..epochs");
    if (sc.min_lr < 0) return Bad(f + ".schedule.min_lr", "must be >= 0");
  }
  AugmentationSpec& a = s.augmentation;
  if (a.crop_scale_min == 0) a.crop_scale_min = 0.08;
  if (a.crop_scale_min < 0 || a.crop_scale_min > 1) return Bad("augmentation.crop_scale_min", "must be in (0, 1]");
  if (a.color_jitter < 0 || a.color_jitter > 1) return Bad("augmentation.color_jitter", "must be in [0, 1]");
  if (a.cached_views < 0 || a.cached_views > kMaxCachedViews) {
    return Bad("augmentation.cached_views", absl::StrCat("must be 0..", kMaxCachedViews));
  }
  if (a.cached_views > 0 && !a.any()) {
    return Bad("augmentation.cached_views", "needs an augmentation to vary (horizontal_flip, random_resized_crop or "
                                            "color_jitter); without one the features are cached anyway");
  }
  if (s.label_smoothing < 0 || s.label_smoothing >= 1) return Bad("label_smoothing", "must be in [0, 1)");
  if (s.balanced_sampling && s.class_weighting) {
    return Bad("balanced_sampling", "and class_weighting both correct for class imbalance; choose one");
  }
  EarlyStoppingSpec& e = s.early_stopping;
  if (e.monitor != Monitor::kValLoss && e.monitor != Monitor::kValAccuracy && e.monitor != Monitor::kValMacroF1) {
    return Bad("early_stopping.monitor", "must be val_loss, val_accuracy or val_macro_f1");
  }
  if (e.mode != MonitorMode::kAuto && e.mode != MonitorMode::kMin && e.mode != MonitorMode::kMax) {
    return Bad("early_stopping.mode", "must be auto, min or max");
  }
  if (e.patience == 0 && e.enabled) e.patience = 5;
  if (e.patience < 0) return Bad("early_stopping.patience", "must be >= 0");
  if (e.min_delta < 0) return Bad("early_stopping.min_delta", "must be >= 0");
  if ((s.has_search || s.auto_learning_rate) && TrainableBlocks(s.stages[0].train, num_blocks) != 0) {
    return Bad("stages[0].train", s.has_search ? "a search trains heads: its first stage must be train: head"
                                               : "learning_rate auto is found for a head: the first stage must be train: head");
  }
  if (s.has_search && s.auto_learning_rate) {
    return Bad("search", "searches its own learning rates; drop learning_rate auto");
  }
  if (s.workers == 0) s.workers = 1;
  if (s.workers < 1 || s.workers > kMaxJobWorkers) return Bad("workers", absl::StrCat("must be 1..", kMaxJobWorkers));
  if (s.workers > 1 && s.has_search) return Bad("workers", "a search runs on one trainer; drop workers");
  if (s.workers > 1 && s.auto_learning_rate) {
    return Bad("workers", "learning_rate auto runs on one trainer; give the rate, or drop workers");
  }
  if (s.has_search) RETURN_IF_ERROR(NormalizeSearchSpec(s.search));
  if (s.add_datasets.size() > static_cast<size_t>(kMaxAddedDatasets)) {
    return Bad("add_datasets", absl::StrCat("at most ", kMaxAddedDatasets, " datasets"));
  }
  if (!s.add_datasets.empty() && s.has_search) return Bad("add_datasets", "not with a search; retrain its model instead");
  for (size_t i = 0; i < s.add_datasets.size(); ++i) {
    if (s.add_datasets[i].empty()) return Bad(absl::StrCat("add_datasets[", i, "]"), "empty (a dataset id or name)");
  }
  if (s.has_promotion) {
    PromotionSpec& p = s.promotion;
    if (s.model_name.empty()) return Bad("promotion", "needs model_name: the alias moved is one of the model's name");
    RETURN_IF_ERROR(ValidateAliasName(p.alias, "spec.promotion.alias"));
    if (p.holdout.empty()) return Bad("promotion.holdout", "required (a dataset id or name never trained on)");
    if (p.metric != Monitor::kValLoss && p.metric != Monitor::kValAccuracy && p.metric != Monitor::kValMacroF1) {
      return Bad("promotion.metric", "must be val_accuracy, val_macro_f1 or val_loss");
    }
    if (!std::isfinite(p.min_gain) || p.min_gain < 0 || p.min_gain > 1) return Bad("promotion.min_gain", "must be in [0, 1]");
    if (!std::isfinite(p.canary_percent) || p.canary_percent < 0 || p.canary_percent >= 100) {
      return Bad("promotion.canary_percent", "must be 0 (move the alias) or in (0, 100)");
    }
    if (s.has_search) return Bad("promotion", "a search's winner is not promoted; retrain its model instead");
  }
  return absl::OkStatus();
}

void to_json(nlohmann::json& j, const JobSpec& s) {
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& st : s.stages) {
    const auto& o = st.optimizer;
    const auto& sc = st.schedule;
    stages.push_back({{"epochs", st.epochs},
                      {"train", st.train},
                      {"batch_norm", static_cast<int>(st.batch_norm)},
                      {"optimizer", {{"kind", static_cast<int>(o.kind)}, {"learning_rate", o.learning_rate},
                                     {"momentum", o.momentum}, {"nesterov", o.nesterov},
                                     {"weight_decay", o.weight_decay}, {"beta1", o.beta1}, {"beta2", o.beta2}}},
                      {"schedule", {{"kind", static_cast<int>(sc.kind)}, {"step_epochs", sc.step_epochs},
                                    {"gamma", sc.gamma}, {"warmup_epochs", sc.warmup_epochs}, {"min_lr", sc.min_lr}}}});
  }
  const auto& a = s.augmentation;
  const auto& e = s.early_stopping;
  j = {{"name", s.name},
       {"model_name", s.model_name},
       {"backbone", s.backbone},
       {"dataset", s.dataset},
       {"validation_fraction", s.validation_fraction},
       {"input_size", s.input_size},
       {"head", HeadJson(s.head)},
       {"stages", stages},
       {"batch_size", s.batch_size},
       {"augmentation", {{"horizontal_flip", a.horizontal_flip}, {"random_resized_crop", a.random_resized_crop},
                         {"crop_scale_min", a.crop_scale_min}, {"color_jitter", a.color_jitter},
                         {"cached_views", a.cached_views}}},
       {"label_smoothing", s.label_smoothing},
       {"class_weighting", s.class_weighting},
       {"balanced_sampling", s.balanced_sampling},
       {"early_stopping", {{"enabled", e.enabled}, {"monitor", static_cast<int>(e.monitor)},
                           {"mode", static_cast<int>(e.mode)}, {"patience", e.patience},
                           {"min_delta", e.min_delta}, {"restore_best", e.restore_best},
                           {"restore_per_stage", e.restore_per_stage}}},
       {"seed", s.seed},
       {"auto_learning_rate", s.auto_learning_rate},
       {"workers", s.workers},
       {"precision", s.precision ? PrecisionName(*s.precision) : "auto"}};
  if (!s.add_datasets.empty()) j["add_datasets"] = s.add_datasets;
  if (s.has_promotion) {
    const PromotionSpec& p = s.promotion;
    j["promotion"] = {{"alias", p.alias}, {"holdout", p.holdout}, {"metric", static_cast<int>(p.metric)},
                      {"min_gain", p.min_gain}, {"canary_percent", p.canary_percent}};
  }
  if (s.has_search) {
    const SearchSpec& q = s.search;
    nlohmann::json heads = nlohmann::json::array(), optimizers = nlohmann::json::array();
    for (const auto& h : q.heads) heads.push_back(HeadJson(h));
    for (const auto k : q.optimizers) optimizers.push_back(static_cast<int>(k));
    j["search"] = {{"backbones", q.backbones},           {"learning_rates", q.learning_rates},
                   {"lr_min", q.lr_min},                 {"lr_max", q.lr_max},
                   {"lr_count", q.lr_count},             {"optimizers", optimizers},
                   {"weight_decays", q.weight_decays},   {"heads", heads},
                   {"label_smoothings", q.label_smoothings}, {"metric", static_cast<int>(q.metric)},
                   {"strategy", static_cast<int>(q.strategy)}, {"eta", q.eta},
                   {"max_trials", q.max_trials},         {"budget_seconds", q.budget_seconds},
                   {"seed", q.seed}};
  }
}

void from_json(const nlohmann::json& j, JobSpec& s) {
  s = JobSpec{};
  s.name = j.value("name", "");
  s.model_name = j.value("model_name", "");
  s.backbone = j.value("backbone", "");
  s.dataset = j.value("dataset", "");
  s.validation_fraction = j.value("validation_fraction", 0.0);
  s.input_size = JsonInt(j, "input_size", 0);
  if (j.contains("head")) s.head = HeadFromJson(j["head"]);
  for (const auto& st : j.value("stages", nlohmann::json::array())) {
    StageSpec stage;
    stage.epochs = JsonInt(st, "epochs", 10);
    stage.train = st.value("train", "head");
    // Jobs stored before the key existed trained batch norm: a resumed one
    // goes on as it began.
    stage.batch_norm = static_cast<int>(JsonInt(st, "batch_norm", 2)) == 1 ? BatchNormMode::kFrozen : BatchNormMode::kTrain;
    const auto o = st.value("optimizer", nlohmann::json::object());
    stage.optimizer.kind = static_cast<OptimizerKind>(JsonInt(o, "kind", 2));
    stage.optimizer.learning_rate = o.value("learning_rate", 1e-3);
    stage.optimizer.momentum = o.value("momentum", 0.0);
    stage.optimizer.nesterov = o.value("nesterov", false);
    stage.optimizer.weight_decay = o.value("weight_decay", 0.0);
    stage.optimizer.beta1 = o.value("beta1", 0.9);
    stage.optimizer.beta2 = o.value("beta2", 0.999);
    const auto sc = st.value("schedule", nlohmann::json::object());
    stage.schedule.kind = static_cast<ScheduleKind>(JsonInt(sc, "kind", 1));
    stage.schedule.step_epochs = JsonInt(sc, "step_epochs", 0);
    stage.schedule.gamma = sc.value("gamma", 0.1);
    stage.schedule.warmup_epochs = JsonInt(sc, "warmup_epochs", 0);
    stage.schedule.min_lr = sc.value("min_lr", 0.0);
    s.stages.push_back(stage);
  }
  s.batch_size = JsonInt(j, "batch_size", 32);
  const auto a = j.value("augmentation", nlohmann::json::object());
  s.augmentation.horizontal_flip = a.value("horizontal_flip", false);
  s.augmentation.random_resized_crop = a.value("random_resized_crop", false);
  s.augmentation.crop_scale_min = a.value("crop_scale_min", 0.08);
  s.augmentation.color_jitter = a.value("color_jitter", 0.0);
  s.augmentation.cached_views = JsonInt(a, "cached_views", 0);
  s.label_smoothing = j.value("label_smoothing", 0.0);
  s.class_weighting = j.value("class_weighting", false);
  s.balanced_sampling = j.value("balanced_sampling", false);
  const auto e = j.value("early_stopping", nlohmann::json::object());
  s.early_stopping.enabled = e.value("enabled", false);
  s.early_stopping.monitor = static_cast<Monitor>(JsonInt(e, "monitor", 1));
  s.early_stopping.mode = static_cast<MonitorMode>(JsonInt(e, "mode", 0));
  s.early_stopping.patience = JsonInt(e, "patience", 5);
  s.early_stopping.min_delta = e.value("min_delta", 0.0);
  s.early_stopping.restore_best = e.value("restore_best", true);
  s.early_stopping.restore_per_stage = e.value("restore_per_stage", true);  // as jobs stored before it did
  s.seed = JsonInt(j, "seed", uint64_t{0});
  s.auto_learning_rate = j.value("auto_learning_rate", false);
  // Specs stored before precision existed trained in fp32, and resume so.
  if (const std::string p = j.value("precision", "fp32"); p != "auto") s.precision = ParsePrecision(p).value_or(Precision::kFp32);
  s.workers = JsonInt(j, "workers", 1);
  s.add_datasets = j.value("add_datasets", std::vector<std::string>{});
  if (j.contains("promotion")) {
    const auto& p = j["promotion"];
    s.has_promotion = true;
    s.promotion.alias = p.value("alias", "");
    s.promotion.holdout = p.value("holdout", "");
    s.promotion.metric = static_cast<Monitor>(JsonInt(p, "metric", 2));
    s.promotion.min_gain = p.value("min_gain", 0.005);
    s.promotion.canary_percent = p.value("canary_percent", 0.0);
  }
  if (j.contains("search")) {
    const auto& q = j["search"];
    s.has_search = true;
    s.search.backbones = q.value("backbones", std::vector<std::string>{});
    s.search.learning_rates = q.value("learning_rates", std::vector<double>{});
    s.search.lr_min = q.value("lr_min", 0.0);
    s.search.lr_max = q.value("lr_max", 0.0);
    s.search.lr_count = JsonInt(q, "lr_count", 0);
    for (int k : JsonInts<int>(q, "optimizers")) s.search.optimizers.push_back(static_cast<OptimizerKind>(k));
    s.search.weight_decays = q.value("weight_decays", std::vector<double>{});
    for (const auto& h : q.value("heads", nlohmann::json::array())) s.search.heads.push_back(HeadFromJson(h));
    s.search.label_smoothings = q.value("label_smoothings", std::vector<double>{});
    s.search.metric = static_cast<Monitor>(JsonInt(q, "metric", 2));
    s.search.strategy = static_cast<SearchStrategy>(JsonInt(q, "strategy", 1));
    s.search.eta = JsonInt(q, "eta", 3);
    s.search.max_trials = JsonInt(q, "max_trials", 0);
    s.search.budget_seconds = q.value("budget_seconds", 0.0);
    s.search.seed = JsonInt(q, "seed", uint64_t{0});
  }
}

}  // namespace graft::core
