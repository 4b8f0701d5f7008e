#pragma once

// What each served model version's monitor (core/serve/model_monitor.h)
// reads, in the server's two outward forms: GetModel's ModelMonitoring, and
// Prometheus families read at each scrape.
//
// The families:
// Labels: model (OWNER/NAME, or the id of a model without a name), version
// (0 without a name) and, for class shares, class: the model's first
// `max_classes` classes by index, the rest summed as class="_other". So the
// series are at most models x (6 + max_classes + 1 + kConfidenceBins).
// Shadow families (graft_shadow_*) are labelled model, version (the
// shadow's) and served_version, and flips by class as above: at most, per
// shadow version and version it shadowed, 5 + max_classes + 1.

#include <prometheus/metric_family.h>

#include <string>
#include <vector>

#include "core/serve/model_monitor.h"
#include "core/serve/model_store.h"
#include "graft/v1/models.pb.h"

namespace graft::server {

inline constexpr char kOtherClasses[] = "_other";

// What `monitor` reads now, with the model's class names.
void ToProto(const core::ModelMonitor& monitor, const std::vector<std::string>& class_names, double now_s,
             v1::ModelMonitoring* out);

// A shadow version's agreement with one version it shadowed.
void ToProto(const core::ServingModel::ShadowedVersion& shadowed, v1::ShadowAgreement* out);

// Only models that have served a prediction in this process have series;
// only shadows that have compared or dropped an image have shadow series.
std::vector<prometheus::MetricFamily> CollectModelMetrics(core::ModelStore& models, int max_classes, double now_s);

}  // namespace graft::server
