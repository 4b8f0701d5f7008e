#include "core/eval/report.h"

#include <map>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/util/json.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace {

constexpr double kMinProbability = 1e-15;

double F1(double precision, double recall) {
  return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
}

// Per-class counts from the confusion's non-empty cells: precision, recall,
// F1, support. Linear in the cells and the classes.
std::vector<ClassReport> ClassReports(const std::map<std::pair<int, int>, int64_t>& cells,
                                      const std::vector<std::string>& names) {
  const size_t c = names.size();
  std::vector<ClassReport> out(c);
  std::vector<int64_t> hits(c, 0);
  for (const auto& [cell, count] : cells) {
    out[static_cast<size_t>(cell.first)].support += count;
    out[static_cast<size_t>(cell.second)].predicted += count;
    if (cell.first == cell.second) hits[static_cast<size_t>(cell.first)] += count;
  }
  for (size_t k = 0; k < c; ++k) {
    out[k].name = names[k];
    const double tp = static_cast<double>(hits[k]);
    out[k].precision = out[k].predicted > 0 ? tp / static_cast<double>(out[k].predicted) : 0;
    out[k].recall = out[k].support > 0 ? tp / static_cast<double>(out[k].support) : 0;
    out[k].f1 = F1(out[k].precision, out[k].recall);
  }
  return out;
}

double MacroF1Of(const std::vector<ClassReport>& classes) {
  double sum = 0;
  int present = 0;
  for (const ClassReport& k : classes) {
    if (k.support == 0 && k.predicted == 0) continue;
    sum += k.f1;
    ++present;
  }
  return present > 0 ? sum / present : 0;
}

}  // namespace

absl::StatusOr<EvaluationReport> ComputeReport(const torch::Tensor& probabilities, const std::vector<int>& labels,
                                               const std::vector<std::string>& files,
                                               const std::vector<std::string>& class_names,
                                               const ReportOptions& options) {
  const int64_t c = static_cast<int64_t>(class_names.size());
  if (probabilities.dim() != 2 || probabilities.size(1) != c || c == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("probabilities must be [images, ", c, "], got ", probabilities.dim(), " dimensions"));
  }
  const int64_t n = probabilities.size(0);
  if (static_cast<int64_t>(labels.size()) != n || static_cast<int64_t>(files.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat(n, " rows of probabilities but ", labels.size(), " labels and ",
                                                   files.size(), " file names"));
  }
  if (n == 0) return absl::InvalidArgumentError("no images to evaluate");
  for (int label : labels) {
    if (label < 0 || label >= c) return absl::InvalidArgumentError(absl::StrCat("label ", label, " is not a class"));
  }
  // Read in the probabilities' own precision (a model's are float): a
  // double copy of [N, C] would double the memory at many classes.
  const bool as_double = probabilities.scalar_type() == torch::kDouble;
  const torch::Tensor p = probabilities.to(torch::kCPU, as_double ? torch::kDouble : torch::kFloat).contiguous();
  const int top = static_cast<int>(std::min<int64_t>(5, c));
  const int bins = std::max(1, options.bins);

  EvaluationReport r;
  r.images = n;
  // The confusion's cells that are not empty (at most one per image); the
  // dense matrix is kept only up to kMaxDenseConfusionClasses classes.
  std::map<std::pair<int, int>, int64_t> cells;
  r.reliability.resize(static_cast<size_t>(bins));
  for (int b = 0; b < bins; ++b) {
    r.reliability[b].lower = static_cast<double>(b) / bins;
    r.reliability[b].upper = static_cast<double>(b + 1) / bins;
  }
  std::vector<double> bin_confidence(bins, 0), bin_correct(bins, 0);
  std::vector<HardExample> examples;
  examples.reserve(static_cast<size_t>(n));
  double correct = 0, top_correct = 0, loss = 0;
  const auto scan = [&](const auto* rows) {
    for (int64_t i = 0; i < n; ++i) {
      const auto* row = rows + i * c;
      const int truth = labels[static_cast<size_t>(i)];
      int best = 0;
      for (int64_t k = 1; k < c; ++k) {
        if (row[k] > row[best]) best = static_cast<int>(k);
      }
      // Rank of the true class: how many classes score strictly higher (ties
      // go to the lower index, as argmax and top-k do).
      int64_t above = 0;
      for (int64_t k = 0; k < c; ++k) {
        if (row[k] > row[truth] || (row[k] == row[truth] && k < truth)) ++above;
      }
      const bool right = best == truth;
      correct += right;
      top_correct += above < top;
      const double p_true = std::clamp(static_cast<double>(row[truth]), kMinProbability, 1.0);
      const double example_loss = -std::log(p_true);
      loss += example_loss;
      ++cells[{truth, best}];
      const double confidence = row[best];
      int b = static_cast<int>(std::ceil(confidence * bins)) - 1;
      b = std::clamp(b, 0, bins - 1);
      ++r.reliability[b].count;
      bin_confidence[b] += confidence;
      bin_correct[b] += right;
      examples.push_back({files[static_cast<size_t>(i)], truth, best, row[best], row[truth], example_loss, {}});
    }
  };
  if (as_double) {
    scan(p.data_ptr<double>());
  } else {
    scan(p.data_ptr<float>());
  }
  r.accuracy = correct / n;
  r.top5_accuracy = top_correct / n;
  r.log_loss = loss / n;
  for (int b = 0; b < bins; ++b) {
    ReliabilityBin& bin = r.reliability[b];
    if (bin.count == 0) continue;
    bin.confidence = bin_confidence[b] / bin.count;
    bin.accuracy = bin_correct[b] / bin.count;
    r.expected_calibration_error += std::abs(bin.accuracy - bin.confidence) * bin.count / n;
  }
  r.classes = ClassReports(cells, class_names);
  if (c <= kMaxDenseConfusionClasses) {
    r.confusion.assign(static_cast<size_t>(c * c), 0);
    for (const auto& [cell, count] : cells) r.confusion[static_cast<size_t>(cell.first * c + cell.second)] = count;
  }
  r.macro_f1 = MacroF1Of(r.classes);
  for (const ClassReport& k : r.classes) r.weighted_f1 += k.f1 * static_cast<double>(k.support) / n;
  for (const auto& [cell, count] : cells) {  // in (true, predicted) order, as the dense scan was
    if (cell.first != cell.second) r.most_confused.push_back({cell.first, cell.second, count});
  }
  std::stable_sort(r.most_confused.begin(), r.most_confused.end(),
                   [](const ConfusedPair& a, const ConfusedPair& b) { return a.count > b.count; });
  if (r.most_confused.size() > static_cast<size_t>(std::max(0, options.confused_pairs))) {
    r.most_confused.resize(static_cast<size_t>(std::max(0, options.confused_pairs)));
  }
  const size_t hardest = std::min(examples.size(), static_cast<size_t>(std::max(0, options.hardest)));
  std::partial_sort(examples.begin(), examples.begin() + static_cast<long>(hardest), examples.end(),
                    [](const HardExample& a, const HardExample& b) {
                      return a.loss != b.loss ? a.loss > b.loss : a.file < b.file;
                    });
  examples.resize(hardest);
  r.highest_loss = std::move(examples);
  return r;
}

}  // namespace graft::core
