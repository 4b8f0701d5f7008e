#include "server/job_convert.h"

#include <google/protobuf/util/time_util.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "server/proto_convert.h"

namespace graft::server {
namespace {

using google::protobuf::Timestamp;

absl::Status UnknownEnum(const std::string& field, int value) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": unknown value ", value));
}

// Enum values this server does not know are refused, never read as the default.
absl::Status CheckEnums(const v1::JobSpec& in) {
  for (int i = 0; i < in.stages_size(); ++i) {
    const v1::StageSpec& st = in.stages(i);
    const std::string stage = absl::StrCat("spec.stages[", i, "]");
    if (!v1::OptimizerKind_IsValid(st.optimizer().kind())) {
      return UnknownEnum(stage + ".optimizer.kind", st.optimizer().kind());
    }
    if (!v1::ScheduleKind_IsValid(st.schedule().kind())) {
      return UnknownEnum(stage + ".schedule.kind", st.schedule().kind());
    }
    if (!v1::BatchNorm_IsValid(st.batch_norm())) return UnknownEnum(stage + ".batch_norm", st.batch_norm());
  }
  if (!v1::RestoreBest_IsValid(in.early_stopping().restore_best())) {
    return UnknownEnum("spec.early_stopping.restore_best", in.early_stopping().restore_best());
  }
  for (int i = 0; i < in.search().optimizers_size(); ++i) {
    if (!v1::OptimizerKind_IsValid(in.search().optimizers(i)) || in.search().optimizers(i) == v1::OPTIMIZER_UNSPECIFIED) {
      return UnknownEnum(absl::StrCat("spec.search.optimizers[", i, "]"), in.search().optimizers(i));
    }
  }
  if (!v1::Monitor_IsValid(in.search().metric())) return UnknownEnum("spec.search.metric", in.search().metric());
  if (!v1::SearchStrategy_IsValid(in.search().strategy())) {
    return UnknownEnum("spec.search.strategy", in.search().strategy());
  }
  for (int i = 1; i < in.stages_size(); ++i) {
    if (in.stages(i).optimizer().auto_learning_rate()) {
      return absl::InvalidArgumentError(absl::StrCat("spec.stages[", i,
                                                     "].optimizer.auto_learning_rate: only the first stage's rate is "
                                                     "found (it trains the head)"));
    }
  }
  if (!v1::Monitor_IsValid(in.early_stopping().monitor())) {
    return UnknownEnum("spec.early_stopping.monitor", in.early_stopping().monitor());
  }
  if (!v1::MonitorMode_IsValid(in.early_stopping().mode())) {
    return UnknownEnum("spec.early_stopping.mode", in.early_stopping().mode());
  }
  return absl::OkStatus();
}

core::OptimizerKind FromProto(v1::OptimizerKind kind) {
  switch (kind) {
    case v1::OPTIMIZER_SGD: return core::OptimizerKind::kSgd;
    case v1::OPTIMIZER_ADAMW: return core::OptimizerKind::kAdamW;
    case v1::OPTIMIZER_RMSPROP: return core::OptimizerKind::kRmsprop;
    default: return core::OptimizerKind::kAdam;
  }
}

core::Monitor FromProto(v1::Monitor m, core::Monitor unspecified) {
  switch (m) {
    case v1::MONITOR_VAL_LOSS: return core::Monitor::kValLoss;
    case v1::MONITOR_VAL_ACCURACY: return core::Monitor::kValAccuracy;
    case v1::MONITOR_VAL_MACRO_F1: return core::Monitor::kValMacroF1;
    default: return unspecified;
  }
}

v1::Monitor ToProto(core::Monitor m) {
  return m == core::Monitor::kValAccuracy ? v1::MONITOR_VAL_ACCURACY
         : m == core::Monitor::kValMacroF1 ? v1::MONITOR_VAL_MACRO_F1
                                           : v1::MONITOR_VAL_LOSS;
}

core::HeadSpec FromProto(const v1::HeadSpec& h) {
  core::HeadSpec out;
  out.hidden_units.assign(h.hidden_units().begin(), h.hidden_units().end());
  out.dropout = h.dropout();
  out.activation = h.activation();
  return out;
}

void ToProto(const core::HeadSpec& h, v1::HeadSpec* out) {
  for (int u : h.hidden_units) out->add_hidden_units(u);
  out->set_dropout(static_cast<float>(h.dropout));
  out->set_activation(h.activation);
}

// Whether the message holds anything (an empty SearchSpec means no search).
bool HasSearch(const v1::JobSpec& in) { return in.has_search(); }

absl::Status CheckAddedCount(const google::protobuf::RepeatedPtrField<std::string>& values, const std::string& field) {
  if (values.size() > core::kMaxAddedDatasets) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": at most ", core::kMaxAddedDatasets, " values"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<core::JobSpec> FromProto(const v1::JobSpec& in) {
  RETURN_IF_ERROR(CheckEnums(in));
  core::JobSpec s;
  s.name = in.name();
  s.model_name = in.model_name();
  s.backbone = in.backbone();
  s.dataset = in.dataset();
  s.validation_fraction = in.validation_fraction();
  s.input_size = in.input_size();
  s.head = FromProto(in.head());
  for (const v1::StageSpec& st : in.stages()) {
    core::StageSpec stage;
    stage.epochs = st.has_epochs() ? st.epochs() : 10;
    stage.train = st.train();
    stage.batch_norm = st.batch_norm() == v1::BATCH_NORM_TRAIN ? core::BatchNormMode::kTrain : core::BatchNormMode::kFrozen;
    const auto& o = st.optimizer();
    switch (o.kind()) {
      case v1::OPTIMIZER_SGD: stage.optimizer.kind = core::OptimizerKind::kSgd; break;
      case v1::OPTIMIZER_ADAMW: stage.optimizer.kind = core::OptimizerKind::kAdamW; break;
      case v1::OPTIMIZER_RMSPROP: stage.optimizer.kind = core::OptimizerKind::kRmsprop; break;
      default: stage.optimizer.kind = core::OptimizerKind::kAdam; break;
    }
    stage.optimizer.learning_rate = o.learning_rate();
    stage.optimizer.momentum = o.momentum();
    stage.optimizer.nesterov = o.nesterov();
    stage.optimizer.weight_decay = o.weight_decay();
    stage.optimizer.beta1 = o.beta1();
    stage.optimizer.beta2 = o.beta2();
    const auto& sc = st.schedule();
    switch (sc.kind()) {
      case v1::SCHEDULE_STEP: stage.schedule.kind = core::ScheduleKind::kStep; break;
      case v1::SCHEDULE_COSINE: stage.schedule.kind = core::ScheduleKind::kCosine; break;
      case v1::SCHEDULE_ONE_CYCLE: stage.schedule.kind = core::ScheduleKind::kOneCycle; break;
      default: stage.schedule.kind = core::ScheduleKind::kConstant; break;
    }
    stage.schedule.step_epochs = sc.step_epochs();
    stage.schedule.gamma = sc.gamma();
    stage.schedule.warmup_epochs = sc.warmup_epochs();
    stage.schedule.min_lr = sc.min_lr();
    s.stages.push_back(stage);
  }
  s.batch_size = in.batch_size();
  const auto& a = in.augmentation();
  s.augmentation.horizontal_flip = a.horizontal_flip();
  s.augmentation.random_resized_crop = a.random_resized_crop();
  s.augmentation.crop_scale_min = a.crop_scale_min();
  s.augmentation.color_jitter = a.color_jitter();
  s.augmentation.cached_views = a.cached_views();
  s.label_smoothing = in.label_smoothing();
  s.class_weighting = in.class_weighting();
  s.balanced_sampling = in.balanced_sampling();
  s.workers = in.workers();
  RETURN_IF_ERROR(CheckAddedCount(in.add_datasets(), "spec.add_datasets"));
  s.add_datasets.assign(in.add_datasets().begin(), in.add_datasets().end());
  if (in.has_promotion()) {
    ASSIGN_OR_RETURN(s.promotion, FromProto(in.promotion(), &s.has_promotion));
  }
  const auto& e = in.early_stopping();
  s.early_stopping.enabled = e.enabled();
  s.early_stopping.monitor = e.monitor() == v1::MONITOR_VAL_ACCURACY   ? core::Monitor::kValAccuracy
                             : e.monitor() == v1::MONITOR_VAL_MACRO_F1 ? core::Monitor::kValMacroF1
                                                                       : core::Monitor::kValLoss;
  s.early_stopping.mode = e.mode() == v1::MONITOR_MODE_MIN   ? core::MonitorMode::kMin
                          : e.mode() == v1::MONITOR_MODE_MAX ? core::MonitorMode::kMax
                                                             : core::MonitorMode::kAuto;
  s.early_stopping.patience = e.patience();
  s.early_stopping.min_delta = e.min_delta();
  s.early_stopping.restore_best = !e.disable_restore_best();
  s.early_stopping.restore_per_stage = e.restore_best() == v1::RESTORE_BEST_PER_STAGE;
  s.seed = in.seed();
  switch (in.precision()) {
    case v1::PRECISION_UNSPECIFIED:
      break;  // auto
    case v1::PRECISION_FP32:
      s.precision = core::Precision::kFp32;
      break;
    case v1::PRECISION_BF16:
      s.precision = core::Precision::kBf16;
      break;
    case v1::PRECISION_INT8:
      return absl::InvalidArgumentError(
          "spec.precision: int8 is not available for the frozen trunk's training pass; fp32, bf16 or unspecified (auto)");
    default:
      return UnknownEnum("spec.precision", in.precision());
  }
  if (in.stages_size() > 0) s.auto_learning_rate = in.stages(0).optimizer().auto_learning_rate();
  if (HasSearch(in)) {
    const v1::SearchSpec& q = in.search();
    s.has_search = true;
    s.search.backbones.assign(q.backbones().begin(), q.backbones().end());
    s.search.learning_rates.assign(q.learning_rates().begin(), q.learning_rates().end());
    s.search.lr_min = q.lr_min();
    s.search.lr_max = q.lr_max();
    s.search.lr_count = q.lr_count();
    for (int k : q.optimizers()) s.search.optimizers.push_back(FromProto(static_cast<v1::OptimizerKind>(k)));
    s.search.weight_decays.assign(q.weight_decays().begin(), q.weight_decays().end());
    for (const auto& h : q.heads()) s.search.heads.push_back(FromProto(h));
    s.search.label_smoothings.assign(q.label_smoothings().begin(), q.label_smoothings().end());
    s.search.metric = FromProto(q.metric(), core::Monitor::kValAccuracy);
    s.search.strategy = q.strategy() == v1::SEARCH_RANDOM                ? core::SearchStrategy::kRandom
                        : q.strategy() == v1::SEARCH_SUCCESSIVE_HALVING ? core::SearchStrategy::kSuccessiveHalving
                                                                        : core::SearchStrategy::kGrid;
    s.search.eta = q.eta();
    s.search.max_trials = q.max_trials();
    s.search.budget_seconds = q.budget_seconds();
    s.search.seed = q.seed();
  }
  return s;
}

void ToProto(const core::JobSpec& s, v1::JobSpec* out) {
  out->set_name(s.name);
  out->set_model_name(s.model_name);
  out->set_backbone(s.backbone);
  out->set_dataset(s.dataset);
  out->set_validation_fraction(static_cast<float>(s.validation_fraction));
  out->set_input_size(s.input_size);
  ToProto(s.head, out->mutable_head());
  for (const auto& st : s.stages) {
    auto* stage = out->add_stages();
    stage->set_epochs(st.epochs);
    stage->set_train(st.train);
    stage->set_batch_norm(st.batch_norm == core::BatchNormMode::kTrain ? v1::BATCH_NORM_TRAIN : v1::BATCH_NORM_FROZEN);
    auto* o = stage->mutable_optimizer();
    o->set_kind(static_cast<v1::OptimizerKind>(static_cast<int>(st.optimizer.kind)));
    o->set_learning_rate(st.optimizer.learning_rate);
    o->set_momentum(st.optimizer.momentum);
    o->set_nesterov(st.optimizer.nesterov);
    o->set_weight_decay(st.optimizer.weight_decay);
    o->set_beta1(st.optimizer.beta1);
    o->set_beta2(st.optimizer.beta2);
    auto* sc = stage->mutable_schedule();
    sc->set_kind(static_cast<v1::ScheduleKind>(static_cast<int>(st.schedule.kind)));
    sc->set_step_epochs(st.schedule.step_epochs);
    sc->set_gamma(st.schedule.gamma);
    sc->set_warmup_epochs(st.schedule.warmup_epochs);
    sc->set_min_lr(st.schedule.min_lr);
  }
  out->set_batch_size(s.batch_size);
  auto* a = out->mutable_augmentation();
  a->set_horizontal_flip(s.augmentation.horizontal_flip);
  a->set_random_resized_crop(s.augmentation.random_resized_crop);
  a->set_crop_scale_min(static_cast<float>(s.augmentation.crop_scale_min));
  a->set_color_jitter(static_cast<float>(s.augmentation.color_jitter));
  a->set_cached_views(s.augmentation.cached_views);
  out->set_label_smoothing(static_cast<float>(s.label_smoothing));
  out->set_class_weighting(s.class_weighting);
  out->set_balanced_sampling(s.balanced_sampling);
  out->set_workers(s.workers);
  for (const std::string& d : s.add_datasets) out->add_add_datasets(d);
  if (s.has_promotion) {
    auto* p = out->mutable_promotion();
    p->set_alias(s.promotion.alias);
    p->set_holdout(s.promotion.holdout);
    p->set_metric(ToProto(s.promotion.metric));
    p->set_min_gain(s.promotion.min_gain);
    p->set_canary_percent(s.promotion.canary_percent);
  }
  auto* e = out->mutable_early_stopping();
  e->set_enabled(s.early_stopping.enabled);
  e->set_monitor(s.early_stopping.monitor == core::Monitor::kValAccuracy   ? v1::MONITOR_VAL_ACCURACY
                 : s.early_stopping.monitor == core::Monitor::kValMacroF1 ? v1::MONITOR_VAL_MACRO_F1
                                                                          : v1::MONITOR_VAL_LOSS);
  e->set_mode(static_cast<v1::MonitorMode>(static_cast<int>(s.early_stopping.mode)));
  e->set_patience(s.early_stopping.patience);
  e->set_min_delta(s.early_stopping.min_delta);
  e->set_disable_restore_best(!s.early_stopping.restore_best);
  e->set_restore_best(s.early_stopping.restore_per_stage ? v1::RESTORE_BEST_PER_STAGE : v1::RESTORE_BEST_JOB);
  out->set_seed(s.seed);
  if (s.precision) out->set_precision(*s.precision == core::Precision::kBf16 ? v1::PRECISION_BF16 : v1::PRECISION_FP32);
  if (s.auto_learning_rate && out->stages_size() > 0) out->mutable_stages(0)->mutable_optimizer()->set_auto_learning_rate(true);
  if (s.has_search) {
    const core::SearchSpec& q = s.search;
    auto* o = out->mutable_search();
    for (const auto& b : q.backbones) o->add_backbones(b);
    for (double lr : q.learning_rates) o->add_learning_rates(lr);
    o->set_lr_min(q.lr_min);
    o->set_lr_max(q.lr_max);
    o->set_lr_count(q.lr_count);
    for (auto k : q.optimizers) o->add_optimizers(static_cast<v1::OptimizerKind>(static_cast<int>(k)));
    for (double wd : q.weight_decays) o->add_weight_decays(wd);
    for (const auto& h : q.heads) ToProto(h, o->add_heads());
    for (double ls : q.label_smoothings) o->add_label_smoothings(ls);
    o->set_metric(ToProto(q.metric));
    o->set_strategy(static_cast<v1::SearchStrategy>(static_cast<int>(q.strategy)));
    o->set_eta(q.eta);
    o->set_max_trials(q.max_trials);
    o->set_budget_seconds(q.budget_seconds);
    o->set_seed(q.seed);
  }
}

void ToProto(const core::TrialResult& t, v1::Trial* out) {
  const core::TrialConfig& c = t.config;
  out->set_index(c.index);
  out->set_backbone(c.backbone);
  out->set_optimizer(static_cast<v1::OptimizerKind>(static_cast<int>(c.optimizer)));
  out->set_learning_rate(c.learning_rate);
  out->set_weight_decay(c.weight_decay);
  ToProto(c.head, out->mutable_head());
  out->set_label_smoothing(c.label_smoothing);
  out->set_round(t.round);
  out->set_epochs_budget(t.epochs_budget);
  out->set_epochs(t.epochs);
  ToProto(t.best, out->mutable_best());
  out->set_score(t.score);
  out->set_seconds(t.seconds);
  out->set_error(t.error);
  out->set_fused_trials(t.fused_trials);
}

void ToProto(const core::LrCurve& c, v1::LearningRateCurve* out) {
  for (double lr : c.learning_rates) out->add_learning_rates(lr);
  for (double l : c.losses) out->add_losses(l);
  for (double l : c.smoothed_losses) out->add_smoothed_losses(l);
  out->set_suggested(c.suggested);
  out->set_min_loss_learning_rate(c.min_loss_lr);
  out->set_diverged(c.diverged);
}

absl::StatusOr<core::PromotionSpec> FromProto(const v1::PromotionSpec& in, bool* has) {
  if (!v1::Monitor_IsValid(in.metric())) return UnknownEnum("spec.promotion.metric", in.metric());
  core::PromotionSpec p;
  p.alias = in.alias();
  p.holdout = in.holdout();
  p.metric = FromProto(in.metric(), core::Monitor::kValAccuracy);
  if (in.has_min_gain()) p.min_gain = in.min_gain();
  p.canary_percent = in.canary_percent();
  *has = true;
  return p;
}

void ToProto(const core::PromotionResult& p, v1::Promotion* out) {
  out->set_alias(p.alias);
  out->set_holdout(p.holdout);
  out->set_holdout_images(p.holdout_images);
  out->set_metric(ToProto(p.metric));
  out->set_min_gain(p.min_gain);
  out->set_champion_model_id(p.champion);
  out->set_champion_version(p.champion_version);
  out->set_champion_value(p.champion_value);
  out->set_challenger_model_id(p.challenger);
  out->set_challenger_version(p.challenger_version);
  out->set_challenger_value(p.challenger_value);
  out->set_promoted(p.promoted);
  out->set_compared(p.compared);
  out->set_canary_percent(p.canary_percent);
  out->set_reason(p.reason);
}

void AddEventsOf(const core::JobRecord& job, const std::vector<core::JobEvent>& events, v1::Job* out) {
  std::vector<core::TrialResult> trials;
  for (const core::JobEvent& e : events) {
    if (e.type == core::JobEventType::kTrial) trials.push_back(e.trial);
    if (e.type == core::JobEventType::kFeatures) out->mutable_search()->add_features(e.reason);
    if (e.type == core::JobEventType::kLearningRate) out->set_found_learning_rate(e.lr_curve.suggested);
    if (e.type == core::JobEventType::kPromotion) ToProto(e.promotion, out->mutable_promotion());
  }
  if (!job.spec.has_search) return;
  auto* search = out->mutable_search();
  search->set_trials_planned(core::PlannedTrials(job.spec));
  search->set_trials_done(static_cast<int>(trials.size()));
  for (const auto& t : core::Leaderboard(std::move(trials), job.spec.search.metric)) ToProto(t, search->add_leaderboard());
}

void ToProto(const core::EpochMetrics& m, v1::EpochMetrics* out) {
  out->set_stage(m.stage);
  out->set_epoch(m.epoch);
  out->set_train_loss(m.train_loss);
  out->set_train_accuracy(m.train_accuracy);
  out->set_val_loss(m.val_loss);
  out->set_val_accuracy(m.val_accuracy);
  out->set_val_macro_f1(m.val_macro_f1);
  out->set_learning_rate(m.learning_rate);
  out->set_images_per_second(m.images_per_second);
  out->set_epoch_seconds(m.epoch_seconds);
  out->set_frozen_part_cached(m.frozen_part_cached);
  out->set_frozen_part_bf16(m.frozen_part_bf16);
}

v1::JobState ToProto(core::JobState state) { return static_cast<v1::JobState>(static_cast<int>(state)); }

absl::StatusOr<std::optional<core::JobState>> FromProto(v1::JobState state) {
  if (!v1::JobState_IsValid(state)) return UnknownEnum("state", state);
  if (state == v1::JOB_STATE_UNSPECIFIED) return std::optional<core::JobState>();
  return static_cast<core::JobState>(static_cast<int>(state));
}

void ToProto(const core::JobRecord& j, v1::Job* out) {
  out->set_id(j.id);
  out->set_owner(j.owner);
  out->set_worker(j.worker);
  ToProto(j.spec, out->mutable_spec());
  out->set_state(ToProto(j.state));
  SetTimestamp(j.created_at, out->mutable_created_at());
  SetTimestamp(j.started_at, out->mutable_started_at());
  SetTimestamp(j.finished_at, out->mutable_finished_at());
  out->set_error(j.error);
  out->set_model_id(j.model_id);
  out->set_epochs_done(j.epochs_done);
  out->set_epochs_total(j.epochs_total);
  if (j.last) ToProto(*j.last, out->mutable_last());
  if (j.best) ToProto(*j.best, out->mutable_best());
}

void ToProto(const core::JobEvent& e, v1::JobEvent* out) {
  out->set_job_id(e.job_id);
  out->set_seq(e.seq);
  SetTimestamp(e.time, out->mutable_time());
  switch (e.type) {
    case core::JobEventType::kState:
      out->mutable_state()->set_state(ToProto(e.state));
      out->mutable_state()->set_reason(e.reason);
      break;
    case core::JobEventType::kEpoch:
      ToProto(e.epoch, out->mutable_epoch());
      break;
    case core::JobEventType::kEarlyStop:
      out->mutable_early_stop()->set_epoch(e.epoch_number);
      out->mutable_early_stop()->set_best_epoch(e.best_epoch);
      out->mutable_early_stop()->set_best_value(e.best_value);
      break;
    case core::JobEventType::kBestRestored:
      out->mutable_best_restored()->set_epoch(e.epoch_number);
      out->mutable_best_restored()->set_stage(e.stage);
      out->mutable_best_restored()->set_across_stages(e.across_stages);
      out->mutable_best_restored()->set_value(e.best_value);
      break;
    case core::JobEventType::kCheckpoint:
      out->mutable_checkpoint()->set_epoch(e.epoch_number);
      out->mutable_checkpoint()->set_batch(e.batch);
      break;
    case core::JobEventType::kProgress:
      out->mutable_progress()->set_epoch(e.epoch_number);
      out->mutable_progress()->set_batch(e.batch);
      out->mutable_progress()->set_batches(e.batches);
      out->mutable_progress()->set_features_backbone(e.backbone);
      break;
    case core::JobEventType::kTrial:
      ToProto(e.trial, out->mutable_trial());
      break;
    case core::JobEventType::kFeatures:
      out->set_features(e.reason);
      break;
    case core::JobEventType::kLearningRate:
      ToProto(e.lr_curve, out->mutable_learning_rate());
      break;
    case core::JobEventType::kPromotion:
      ToProto(e.promotion, out->mutable_promotion());
      break;
  }
}

void ToProto(const core::DatasetInfo& d, v1::Dataset* out) {
  out->set_id(d.id);
  out->set_name(d.name);
  out->set_owner(d.owner);
  out->set_layout(d.layout == core::DatasetLayout::kTrainVal ? v1::DATASET_LAYOUT_TRAIN_VAL : v1::DATASET_LAYOUT_FLAT);
  for (const auto& c : d.classes) {
    auto* cc = out->add_classes();
    cc->set_name(c.name);
    cc->set_train(c.train);
    cc->set_val(c.val);
  }
  out->set_train_images(d.train_images);
  out->set_val_images(d.val_images);
  out->set_bytes(d.bytes);
  out->mutable_split()->set_fraction(static_cast<float>(d.split_fraction));
  out->mutable_split()->set_seed(d.split_seed);
  SetTimestamp(d.created_at, out->mutable_created_at());
  out->set_rejected_count(d.rejected_count);
}

}  // namespace graft::server
