#pragma once

// The model-level statistics of what each served model version answers
// (core/serve/model_monitor.h), as Prometheus families read at each scrape.
// Labels: model (OWNER/NAME, or the id of a model without a name), version
// (0 without a name) and, for class shares, class: the model's first
// `max_classes` classes by index, the rest summed as class="_other". So the
// series are at most models x (6 + max_classes + 1 + kConfidenceBins).

#include <prometheus/metric_family.h>

#include <vector>

namespace graft::core {
class ModelStore;
}

namespace graft::server {

inline constexpr char kOtherClasses[] = "_other";

// Only models that have served a prediction in this process have series.
std::vector<prometheus::MetricFamily> CollectModelMetrics(core::ModelStore& models, int max_classes, double now_s);

}  // namespace graft::server
