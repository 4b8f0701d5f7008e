#pragma once

#include <string>
#include <vector>

#include "graft/v1/models.pb.h"

namespace graft::client {

// One self-contained HTML page about a model (GetModel's answer): its learning
// curves (loss and accuracy, train and val, one point per epoch, stage
// boundaries and restored epochs marked) and reliability diagram as inline
// SVG, the confusion matrix as a heat map, the per-class table and the
// highest-loss images as embedded JPEG thumbnails. No script, no external
// resource: a Content-Security-Policy forbids both. Every string from the
// model (class and file names, ids) is HTML-escaped.
std::string RenderReportHtml(const v1::Model& model);

// The page's heat map shows at most this many classes (a 1000-class model's
// full matrix would be a million cells): those most involved in errors.
inline constexpr int kMaxConfusionClasses = 50;
// The model class indices the heat map shows, ascending.
std::vector<int> ConfusionClassesShown(const v1::EvaluationReport& report);

// `s` with & < > " ' as character references.
std::string HtmlEscape(const std::string& s);

}  // namespace graft::client
