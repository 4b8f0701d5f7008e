#include "server/model_convert.h"

#include "absl/strings/str_cat.h"
#include "server/job_convert.h"
#include "server/proto_convert.h"

namespace graft::server {

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
  SetTimestamp(m.created_at, out->mutable_created_at());
  out->set_bytes(m.bytes);
  for (const auto& b : m.trained_blocks) out->add_trained_blocks(b);
  if (m.report) ToProto(*m.report, out->mutable_report());
  for (const core::EpochMetrics& e : m.history) ToProto(e, out->add_history());
  for (int e : m.restored_epochs) out->add_restored_epochs(e);
  out->set_precision(ToProto(m.precision));
  for (const core::PrecisionCheck& c : m.precision_checks) ToProto(c, out->add_precision_checks());
}

v1::Precision ToProto(core::Precision p) {
  switch (p) {
    case core::Precision::kBf16:
      return v1::PRECISION_BF16;
    case core::Precision::kInt8:
      return v1::PRECISION_INT8;
    case core::Precision::kFp32:
      break;
  }
  return v1::PRECISION_FP32;
}

absl::StatusOr<core::Precision> FromProto(v1::Precision p) {
  switch (p) {
    case v1::PRECISION_UNSPECIFIED:
    case v1::PRECISION_FP32:
      return core::Precision::kFp32;
    case v1::PRECISION_BF16:
      return core::Precision::kBf16;
    case v1::PRECISION_INT8:
      return core::Precision::kInt8;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("precision: unknown value ", static_cast<int>(p)));
}

void ToProto(const core::PrecisionCheck& c, v1::PrecisionCheck* out) {
  out->set_precision(ToProto(c.precision));
  out->set_dataset(c.dataset);
  out->set_split(c.split);
  out->set_images(c.images);
  out->set_top1_agreement(c.top1_agreement);
  out->set_fp32_accuracy(c.fp32_accuracy);
  out->set_accuracy(c.accuracy);
  out->set_max_probability_difference(c.max_probability_difference);
  out->set_mean_probability_difference(c.mean_probability_difference);
  out->set_fp32_seconds(c.fp32_seconds);
  out->set_seconds(c.seconds);
  out->set_min_agreement(c.gate.min_agreement);
  out->set_max_accuracy_drop(c.gate.max_accuracy_drop);
  out->set_max_probability_difference_bound(c.gate.max_probability_difference);
  out->set_passed(c.passed);
  SetTimestamp(c.created_at, out->mutable_created_at());
  out->set_calibration_images(c.calibration_images);
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
  SetTimestamp(r.computed_at, out->mutable_computed_at());
  out->set_seconds(r.seconds);
}

}  // namespace graft::server
