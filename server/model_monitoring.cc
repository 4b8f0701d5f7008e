#include "server/model_monitoring.h"

#include <algorithm>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/serve/model_store.h"

namespace graft::server {
namespace {

struct Families {
  prometheus::MetricFamily predictions, window, confidence, confidence_bins, reference_confidence, class_share,
      divergence, drift, drift_threshold, shadow_images, shadow_agreements, shadow_abs_diff, shadow_dropped,
      shadow_failed, shadow_flips;
};

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

void Add(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels, double value) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (f.type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
}

}  // namespace

void ToProto(const core::ModelMonitor& monitor, const std::vector<std::string>& class_names, double now_s,
             v1::ModelMonitoring* out) {
  const core::MonitorSnapshot s = monitor.Read(now_s);
  const auto& reference = monitor.reference();
  out->set_window_predictions(s.predictions);
  out->set_predictions(s.observed);
  out->set_window(monitor.options().window);
  out->set_window_seconds(monitor.options().max_age_s);
  for (double share : s.confidence_histogram) out->add_confidence_histogram(share);
  out->set_mean_confidence(s.mean_confidence);
  const size_t classes = std::max(s.class_shares.size(), reference != nullptr ? reference->class_shares.size() : 0);
  for (size_t c = 0; c < classes && c < class_names.size(); ++c) {
    v1::ClassShare* share = out->add_class_shares();
    share->set_label(class_names[c]);
    share->set_share(c < s.class_shares.size() ? s.class_shares[c] : 0);
    share->set_reference_share(reference != nullptr && c < reference->class_shares.size() ? reference->class_shares[c]
                                                                                            : 0);
  }
  out->set_class_share_divergence(s.class_share_divergence);
  out->set_drift_score(s.drift_score);
  out->set_drift_mmd2(s.drift_mmd2);
  out->set_drift_threshold(s.drift_threshold);
  out->set_drifting(s.drifting);
  out->set_drift_min_predictions(s.drift_min_predictions);
  out->set_has_reference(reference != nullptr);
  if (reference != nullptr) {
    out->set_reference_images(reference->images);
    for (double share : reference->confidence_histogram) out->add_reference_confidence_histogram(share);
    out->set_reference_mean_confidence(reference->mean_confidence);
  }
}

void ToProto(const core::ServingModel::ShadowedVersion& shadowed, v1::ShadowAgreement* out) {
  const core::AgreementSnapshot& a = shadowed.agreement;
  out->set_served_model(shadowed.model_id);
  out->set_served_version(shadowed.version);
  out->set_images(a.images);
  out->set_top1_agreement(a.top1_agreement());
  out->set_mean_abs_diff(a.mean_abs_diff());
  out->set_dropped_images(a.dropped_images);
  out->set_failed_images(a.failed_images);
  for (const core::ClassFlips& c : a.classes) {
    if (c.served == 0) continue;
    v1::ClassFlips* flips = out->add_classes();
    flips->set_label(c.label);
    flips->set_served(c.served);
    flips->set_flips(c.flips);
  }
}

std::vector<prometheus::MetricFamily> CollectModelMetrics(core::ModelStore& models, int max_classes, double now_s) {
  using prometheus::MetricType;
  Families f{
      Family("graft_model_predictions_total", "Images a model version has classified in this process.",
             MetricType::Counter),
      Family("graft_model_window_predictions",
             "Predictions in the model version's monitoring window (--monitor_window, --monitor_window_s).",
             MetricType::Gauge),
      Family("graft_model_mean_confidence", "Mean top-1 probability over the window.", MetricType::Gauge),
      Family("graft_model_confidence_share",
             "Share of the window's predictions whose top-1 probability falls in [lower, lower + 0.1).",
             MetricType::Gauge),
      Family("graft_model_reference_mean_confidence",
             "Mean top-1 probability on the model's validation split (its reference profile).", MetricType::Gauge),
      Family("graft_model_class_share",
             "Share of the window's predictions that chose the class (first --monitor_max_classes classes; the rest "
             "summed as class=\"_other\").",
             MetricType::Gauge),
      Family("graft_model_class_share_divergence",
             "Jensen-Shannon divergence (bits, 0..1) of the window's class shares from the validation split's.",
             MetricType::Gauge),
      Family("graft_model_drift_score",
             "Embedding drift: MMD^2 of the window's pooled features against the validation split's, over its "
             "calibrated threshold (above 1: the inputs no longer look like the validation images).",
             MetricType::Gauge),
      Family("graft_model_drift_threshold", "The calibrated MMD^2 threshold (the validation split's 99th percentile).",
             MetricType::Gauge),
      Family("graft_shadow_images_total",
             "Images a shadow version (version) answered and compared with the version that served them "
             "(served_version).",
             MetricType::Counter),
      Family("graft_shadow_agreements_total", "Of the compared images, those where both chose the same top-1 class.",
             MetricType::Counter),
      Family("graft_shadow_abs_diff_total",
             "Sum over the compared images of |p_shadow - p_served| of the class the caller got.", MetricType::Counter),
      Family("graft_shadow_dropped_images_total",
             "Images not mirrored to the shadow: its queue was full (--shadow_queue_images).", MetricType::Counter),
      Family("graft_shadow_failed_images_total", "Images the shadow failed to answer.", MetricType::Counter),
      Family("graft_shadow_flips_total",
             "Compared images the served version gave the class (first --monitor_max_classes classes; the rest "
             "summed as class=\"_other\") and the shadow another.",
             MetricType::Counter),
  };
  for (const auto& model : models.Serving()) {
    const core::ModelInfo& info = model->info();
    for (const auto& shadowed : model->Agreements()) {
      const core::AgreementSnapshot& a = shadowed.agreement;
      if (a.images == 0 && a.dropped_images == 0 && a.failed_images == 0) continue;
      const std::vector<prometheus::ClientMetric::Label> labels = {
          {"model", info.name.empty() ? info.id : absl::StrCat(info.owner, "/", info.name)},
          {"version", absl::StrCat(info.version)},
          {"served_version", info.name.empty() ? shadowed.model_id : absl::StrCat(shadowed.version)}};
      Add(f.shadow_images, labels, static_cast<double>(a.images));
      Add(f.shadow_agreements, labels, static_cast<double>(a.agreements));
      Add(f.shadow_abs_diff, labels, a.abs_diff_sum);
      Add(f.shadow_dropped, labels, static_cast<double>(a.dropped_images));
      Add(f.shadow_failed, labels, static_cast<double>(a.failed_images));
      double other = 0;
      for (size_t c = 0; c < a.classes.size(); ++c) {
        if (c < static_cast<size_t>(max_classes)) {
          auto l = labels;
          l.push_back({"class", a.classes[c].label});
          Add(f.shadow_flips, std::move(l), static_cast<double>(a.classes[c].flips));
        } else {
          other += static_cast<double>(a.classes[c].flips);
        }
      }
      if (a.classes.size() > static_cast<size_t>(max_classes)) {
        auto l = labels;
        l.push_back({"class", kOtherClasses});
        Add(f.shadow_flips, std::move(l), other);
      }
    }
    const auto monitor = model->monitor();
    const core::MonitorSnapshot s = monitor->Read(now_s);
    if (s.observed == 0) continue;
    const std::string name = info.name.empty() ? info.id : absl::StrCat(info.owner, "/", info.name);
    const std::string version = absl::StrCat(info.version);
    const std::vector<prometheus::ClientMetric::Label> labels = {{"model", name}, {"version", version}};
    auto with = [&labels](std::string key, std::string value) {
      auto l = labels;
      l.push_back({std::move(key), std::move(value)});
      return l;
    };
    Add(f.predictions, labels, static_cast<double>(s.observed));
    Add(f.window, labels, static_cast<double>(s.predictions));
    const auto& reference = monitor->reference();
    if (reference != nullptr) Add(f.reference_confidence, labels, reference->mean_confidence);
    if (s.predictions == 0) continue;
    Add(f.confidence, labels, s.mean_confidence);
    for (size_t b = 0; b < s.confidence_histogram.size(); ++b) {
      Add(f.confidence_bins,
          with("lower", absl::StrFormat("%.1f", static_cast<double>(b) / static_cast<double>(core::kConfidenceBins))),
          s.confidence_histogram[b]);
    }
    double other = 0;
    for (size_t c = 0; c < s.class_shares.size(); ++c) {
      if (c < static_cast<size_t>(max_classes) && c < info.class_names.size()) {
        Add(f.class_share, with("class", info.class_names[c]), s.class_shares[c]);
      } else {
        other += s.class_shares[c];
      }
    }
    if (s.class_shares.size() > static_cast<size_t>(max_classes)) Add(f.class_share, with("class", kOtherClasses), other);
    if (s.class_share_divergence >= 0) Add(f.divergence, labels, s.class_share_divergence);
    if (s.drift_score >= 0) Add(f.drift, labels, s.drift_score);
    if (s.drift_threshold > 0) Add(f.drift_threshold, labels, s.drift_threshold);
  }
  std::vector<prometheus::MetricFamily> out;
  for (auto* family : {&f.predictions, &f.window, &f.confidence, &f.confidence_bins, &f.reference_confidence,
                       &f.class_share, &f.divergence, &f.drift, &f.drift_threshold, &f.shadow_images,
                       &f.shadow_agreements, &f.shadow_abs_diff, &f.shadow_dropped, &f.shadow_failed,
                       &f.shadow_flips}) {
    if (!family->metric.empty()) out.push_back(std::move(*family));
  }
  return out;
}

}  // namespace graft::server
