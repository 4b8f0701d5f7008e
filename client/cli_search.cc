#include "client/cli_search.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"

namespace graft::client {
namespace {

std::string OptimizerName(v1::OptimizerKind k) {
  switch (k) {
    case v1::OPTIMIZER_SGD:
      return "sgd";
    case v1::OPTIMIZER_ADAMW:
      return "adamw";
    case v1::OPTIMIZER_RMSPROP:
      return "rmsprop";
    default:
      return "adam";
  }
}

std::string HeadName(const v1::HeadSpec& h) {
  if (h.hidden_units_size() == 0 && h.dropout() == 0) return "linear";
  std::string out;
  for (int u : h.hidden_units()) out += absl::StrCat(out.empty() ? "" : "-", u);
  if (out.empty()) out = "linear";
  if (h.dropout() > 0) {
    std::ostringstream d;
    d << std::setprecision(2) << h.dropout();
    out += " d" + d.str();
  }
  return out;
}

std::string Number(double v, int precision, bool scientific = false) {
  std::ostringstream s;
  if (scientific)
    s << std::scientific;
  else
    s << std::fixed;
  s << std::setprecision(precision) << v;
  return s.str();
}

}  // namespace

std::string TrialHeader() {
  std::ostringstream s;
  s << std::left << std::setw(6) << "TRIAL" << std::setw(15) << "BACKBONE" << std::setw(10) << "LR" << std::setw(8)
    << "OPT" << std::setw(9) << "WD" << std::setw(13) << "HEAD" << std::setw(6) << "LS" << std::setw(6) << "ROUND"
    << std::setw(8) << "EPOCHS" << std::setw(9) << "VAL_ACC" << std::setw(9) << "VAL_F1" << std::setw(10) << "VAL_LOSS"
    << "SECONDS";
  return s.str();
}

std::string TrialRow(const v1::Trial& t) {
  std::ostringstream s;
  s << std::left << std::setw(6) << t.index() << std::setw(15) << t.backbone() << std::setw(10)
    << Number(t.learning_rate(), 1, true) << std::setw(8) << OptimizerName(t.optimizer()) << std::setw(9)
    << (t.weight_decay() == 0 ? "0" : Number(t.weight_decay(), 0, true)) << std::setw(13) << HeadName(t.head())
    << std::setw(6) << Number(t.label_smoothing(), 2) << std::setw(6) << t.round() << std::setw(8)
    << absl::StrCat(t.epochs(), "/", t.epochs_budget());
  if (!t.error().empty()) {
    s << "failed: " << t.error();
    return s.str();
  }
  s << std::setw(9) << Number(t.best().val_accuracy(), 4) << std::setw(9) << Number(t.best().val_macro_f1(), 4)
    << std::setw(10) << Number(t.best().val_loss(), 4) << Number(t.seconds(), 2);
  if (t.fused_trials() > 1) s << " (fused with " << t.fused_trials() - 1 << ")";  // the seconds are its group's
  return s.str();
}

std::string LeaderboardTable(const v1::SearchProgress& search, int top) {
  std::ostringstream s;
  s << "leaderboard (" << search.trials_done() << " of " << search.trials_planned() << " trials done; best first):\n";
  s << "RANK  " << TrialHeader() << "\n";
  int rank = 0;
  for (const v1::Trial& t : search.leaderboard()) {
    if (top > 0 && rank >= top) break;
    s << std::left << std::setw(6) << ++rank << TrialRow(t) << "\n";
  }
  return s.str();
}

std::string LrPlot(const v1::LearningRateCurve& c, int width, int height) {
  std::vector<double> lr, loss;
  for (int i = 0; i < std::min(c.learning_rates_size(), c.smoothed_losses_size()); ++i) {
    if (std::isfinite(c.smoothed_losses(i)) && c.learning_rates(i) > 0) {
      lr.push_back(std::log10(c.learning_rates(i)));
      loss.push_back(c.smoothed_losses(i));
    }
  }
  if (lr.size() < 2) return "(too few finite losses to draw)\n";
  const double x0 = lr.front(), x1 = lr.back();
  // Clip the diverging tail so the interesting part keeps the height.
  double lo = *std::min_element(loss.begin(), loss.end());
  double hi = std::min(*std::max_element(loss.begin(), loss.end()), loss.front() * 1.5);
  if (hi <= lo) hi = lo + 1e-6;
  std::vector<std::string> grid(static_cast<size_t>(height), std::string(static_cast<size_t>(width), ' '));
  const auto column = [&](double x) {
    return std::clamp(static_cast<int>(std::lround((x - x0) / (x1 - x0) * (width - 1))), 0, width - 1);
  };
  if (c.suggested() > 0) {
    const int col = column(std::log10(c.suggested()));
    for (auto& row : grid) row[static_cast<size_t>(col)] = '|';
  }
  for (size_t i = 0; i < lr.size(); ++i) {
    const double y = std::clamp((loss[i] - lo) / (hi - lo), 0.0, 1.0);
    const int row = height - 1 - static_cast<int>(std::lround(y * (height - 1)));
    grid[static_cast<size_t>(row)][static_cast<size_t>(column(lr[i]))] = '*';
  }
  std::ostringstream s;
  for (int r = 0; r < height; ++r) {
    const double label = hi - (hi - lo) * r / (height - 1);
    s << std::right << std::setw(8) << Number(label, 3) << " " << grid[static_cast<size_t>(r)] << "\n";
  }
  s << std::string(9, ' ') << std::left << std::setw(width / 2) << Number(std::pow(10, x0), 0, true) << std::right
    << std::setw(width - width / 2) << Number(std::pow(10, x1), 0, true) << "\n";
  s << std::string(9, ' ') << "loss (smoothed) against the learning rate, log scale; '|' the suggestion\n";
  return s.str();
}

absl::Status ExpandAutoLearningRate(std::string& json_text) {
  auto j = nlohmann::json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::OkStatus();  // the proto parser says what is wrong
  bool changed = false;
  auto stages = j.find("stages");
  if (stages == j.end() || !stages->is_array()) return absl::OkStatus();
  for (size_t i = 0; i < stages->size(); ++i) {
    auto& stage = (*stages)[i];
    if (!stage.is_object() || !stage.contains("optimizer") || !stage["optimizer"].is_object()) continue;
    auto& o = stage["optimizer"];
    for (const char* key : {"learning_rate", "learningRate"}) {
      if (o.contains(key) && o[key].is_string() && o[key].get<std::string>() == "auto") {
        if (i > 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              "stages[", i, "].optimizer.", key, ": \"auto\" is for the first stage only (it trains the head)"));
        }
        o.erase(key);
        o["auto_learning_rate"] = true;
        changed = true;
      }
    }
  }
  if (changed) json_text = j.dump();
  return absl::OkStatus();
}

}  // namespace graft::client
