#include "server/job_convert.h"

#include <google/protobuf/util/time_util.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "server/proto_convert.h"

namespace graft::server {
namespace {

using google::protobuf::Timestamp;

void SetTime(double seconds, Timestamp* out) {
  if (seconds <= 0) return;
  out->set_seconds(static_cast<int64_t>(seconds));
  out->set_nanos(static_cast<int32_t>((seconds - std::floor(seconds)) * 1e9));
}

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
  }
  if (!v1::Monitor_IsValid(in.early_stopping().monitor())) {
    return UnknownEnum("spec.early_stopping.monitor", in.early_stopping().monitor());
  }
  if (!v1::MonitorMode_IsValid(in.early_stopping().mode())) {
    return UnknownEnum("spec.early_stopping.mode", in.early_stopping().mode());
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
  s.head.hidden_units.assign(in.head().hidden_units().begin(), in.head().hidden_units().end());
  s.head.dropout = in.head().dropout();
  s.head.activation = in.head().activation();
  for (const v1::StageSpec& st : in.stages()) {
    core::StageSpec stage;
    stage.epochs = st.epochs();
    stage.train = st.train();
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
  s.seed = in.seed();
  return s;
}

void ToProto(const core::JobSpec& s, v1::JobSpec* out) {
  out->set_name(s.name);
  out->set_model_name(s.model_name);
  out->set_backbone(s.backbone);
  out->set_dataset(s.dataset);
  out->set_validation_fraction(static_cast<float>(s.validation_fraction));
  out->set_input_size(s.input_size);
  for (int u : s.head.hidden_units) out->mutable_head()->add_hidden_units(u);
  out->mutable_head()->set_dropout(static_cast<float>(s.head.dropout));
  out->mutable_head()->set_activation(s.head.activation);
  for (const auto& st : s.stages) {
    auto* stage = out->add_stages();
    stage->set_epochs(st.epochs);
    stage->set_train(st.train);
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
  auto* e = out->mutable_early_stopping();
  e->set_enabled(s.early_stopping.enabled);
  e->set_monitor(s.early_stopping.monitor == core::Monitor::kValAccuracy   ? v1::MONITOR_VAL_ACCURACY
                 : s.early_stopping.monitor == core::Monitor::kValMacroF1 ? v1::MONITOR_VAL_MACRO_F1
                                                                          : v1::MONITOR_VAL_LOSS);
  e->set_mode(static_cast<v1::MonitorMode>(static_cast<int>(s.early_stopping.mode)));
  e->set_patience(s.early_stopping.patience);
  e->set_min_delta(s.early_stopping.min_delta);
  e->set_disable_restore_best(!s.early_stopping.restore_best);
  out->set_seed(s.seed);
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
  ToProto(j.spec, out->mutable_spec());
  out->set_state(ToProto(j.state));
  SetTime(j.created_at, out->mutable_created_at());
  SetTime(j.started_at, out->mutable_started_at());
  SetTime(j.finished_at, out->mutable_finished_at());
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
  SetTime(e.time, out->mutable_time());
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
      break;
    case core::JobEventType::kCheckpoint:
      out->mutable_checkpoint()->set_epoch(e.epoch_number);
      out->mutable_checkpoint()->set_batch(e.batch);
      break;
    case core::JobEventType::kProgress:
      out->mutable_progress()->set_epoch(e.epoch_number);
      out->mutable_progress()->set_batch(e.batch);
      out->mutable_progress()->set_batches(e.batches);
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
  SetTime(d.created_at, out->mutable_created_at());
  out->set_rejected_count(d.rejected_count);
}

void ToProto(const core::ModelInfo& m, v1::Model* out) {
  out->set_id(m.id);
  out->set_job_id(m.job_id);
  out->set_owner(m.owner);
  out->set_name(m.name);
  out->set_version(m.version);
  out->set_backbone(m.backbone);
  for (const auto& c : m.class_names) out->add_class_names(c);
  ToProto(m.preprocessing, out->mutable_preprocessing());
  ToProto(m.final_metrics, out->mutable_final_metrics());
  ToProto(m.best_metrics, out->mutable_best_metrics());
  ToProto(m.spec, out->mutable_spec());
  SetTime(m.created_at, out->mutable_created_at());
  out->set_bytes(m.bytes);
  for (const auto& b : m.trained_blocks) out->add_trained_blocks(b);
  if (m.report) ToProto(*m.report, out->mutable_report());
  for (const core::EpochMetrics& e : m.history) ToProto(e, out->add_history());
  for (int e : m.restored_epochs) out->add_restored_epochs(e);
}

void ToProto(const core::EvaluationReport& r, v1::EvaluationReport* out) {
  out->set_model(r.model);
  out->set_dataset(r.dataset);
  out->set_split(r.split);
  out->set_images(r.images);
  out->set_accuracy(r.accuracy);
  out->set_top5_accuracy(r.top5_accuracy);
  out->set_log_loss(r.log_loss);
  out->set_macro_f1(r.macro_f1);
  out->set_weighted_f1(r.weighted_f1);
  out->set_expected_calibration_error(r.expected_calibration_error);
  for (const core::ClassReport& k : r.classes) {
    v1::ClassReport* c = out->add_classes();
    c->set_name(k.name);
    c->set_precision(k.precision);
    c->set_recall(k.recall);
    c->set_f1(k.f1);
    c->set_support(k.support);
    c->set_predicted(k.predicted);
  }
  for (int64_t v : r.confusion) out->add_confusion(v);
  for (const core::ConfusedPair& p : r.most_confused) {
    v1::ConfusedPair* c = out->add_most_confused();
    c->set_true_class(p.true_class);
    c->set_predicted_class(p.predicted_class);
    c->set_count(p.count);
  }
  for (const core::ReliabilityBin& b : r.reliability) {
    v1::ReliabilityBin* c = out->add_reliability();
    c->set_lower(b.lower);
    c->set_upper(b.upper);
    c->set_count(b.count);
    c->set_confidence(b.confidence);
    c->set_accuracy(b.accuracy);
  }
  for (const core::HardExample& e : r.highest_loss) {
    v1::HardExample* c = out->add_highest_loss();
    c->set_file(e.file);
    c->set_true_class(e.true_class);
    c->set_predicted_class(e.predicted_class);
    c->set_predicted_probability(e.predicted_probability);
    c->set_true_probability(e.true_probability);
    c->set_loss(e.loss);
    c->set_thumbnail(e.thumbnail);
  }
  SetTime(r.computed_at, out->mutable_computed_at());
  out->set_seconds(r.seconds);
}

}  // namespace graft::server
