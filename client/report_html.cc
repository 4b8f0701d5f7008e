#include "client/report_html.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli_commands.h"
#include "client/cli_output.h"

namespace graft::client {
namespace {

std::string F(double v, int digits = 4) { return absl::StrFormat("%.*f", digits, v); }
// SVG coordinates: one decimal is finer than a pixel.
std::string C(double v) { return absl::StrFormat("%.1f", v); }

struct Series {
  std::string id;     // data-series: train_loss, val_accuracy, ...
  std::string label;  // legend
  std::string colour;
  std::function<double(const v1::EpochMetrics&)> value;
};

// A line chart over the epochs of `history`: one <circle class="point"> per
// epoch and series, dashed lines where a stage begins, a marker on each
// restored epoch.
std::string LineChart(const std::string& title, const std::string& id, const v1::Model& m,
                      const std::vector<Series>& series, bool unit_range) {
  constexpr double kW = 640, kH = 280, kLeft = 56, kRight = 150, kTop = 28, kBottom = 40;
  const auto& h = m.history();
  const int n = h.size();
  double lo = unit_range ? 0.0 : 0.0, hi = unit_range ? 1.0 : 0.0;
  for (const auto& e : h) {
    for (const auto& s : series) {
      const double v = s.value(e);
      if (std::isfinite(v)) hi = std::max(hi, v);
    }
  }
  if (hi <= lo) hi = lo + 1;
  if (!unit_range) hi *= 1.05;
  const double pw = kW - kLeft - kRight, ph = kH - kTop - kBottom;
  const int first = n > 0 ? h[0].epoch() : 1, last = n > 0 ? h[n - 1].epoch() : 1;
  auto x = [&](double epoch) { return last == first ? kLeft + pw / 2 : kLeft + pw * (epoch - first) / (last - first); };
  auto y = [&](double v) { return kTop + ph * (1 - (std::clamp(v, lo, hi) - lo) / (hi - lo)); };
  std::ostringstream o;
  o << "<svg id=\"" << id << "\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kW << "\" height=\""
    << kH << "\" viewBox=\"0 0 " << kW << " " << kH << "\" role=\"img\" aria-label=\"" << HtmlEscape(title) << "\">\n"
    << "<text x=\"" << kLeft << "\" y=\"18\" class=\"title\">" << HtmlEscape(title) << "</text>\n"
    << "<rect x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << C(pw) << "\" height=\"" << C(ph)
    << "\" class=\"frame\"/>\n";
  for (int t = 0; t <= 4; ++t) {  // y grid and ticks
    const double v = lo + (hi - lo) * t / 4;
    o << "<line x1=\"" << kLeft << "\" x2=\"" << C(kLeft + pw) << "\" y1=\"" << C(y(v)) << "\" y2=\"" << C(y(v))
      << "\" class=\"grid\"/><text x=\"" << kLeft - 6 << "\" y=\"" << C(y(v) + 4) << "\" class=\"tick\" text-anchor=\"end\">"
      << F(v, 2) << "</text>\n";
  }
  const int step = std::max(1, (last - first) / 10 + 1);
  for (int e = first; e <= last; e += step) {  // x ticks
    o << "<text x=\"" << C(x(e)) << "\" y=\"" << C(kTop + ph + 16) << "\" class=\"tick\" text-anchor=\"middle\">" << e
      << "</text>\n";
  }
  o << "<text x=\"" << C(kLeft + pw / 2) << "\" y=\"" << C(kH - 6) << "\" class=\"tick\" text-anchor=\"middle\">epoch</text>\n";
  for (int i = 1; i < n; ++i) {  // stage boundaries, between the last epoch of one stage and the first of the next
    if (h[i].stage() == h[i - 1].stage()) continue;
    const double bx = (x(h[i - 1].epoch()) + x(h[i].epoch())) / 2;
    o << "<line class=\"stage-boundary\" data-stage=\"" << h[i].stage() << "\" x1=\"" << C(bx) << "\" x2=\"" << C(bx)
      << "\" y1=\"" << kTop << "\" y2=\"" << C(kTop + ph) << "\"/><text x=\"" << C(bx + 4) << "\" y=\"" << kTop + 12
      << "\" class=\"note\">stage " << h[i].stage() << "</text>\n";
  }
  for (int r : m.restored_epochs()) {
    if (r < first || r > last) continue;
    o << "<line class=\"restored\" data-epoch=\"" << r << "\" x1=\"" << C(x(r)) << "\" x2=\"" << C(x(r)) << "\" y1=\""
      << kTop << "\" y2=\"" << C(kTop + ph) << "\"/><text x=\"" << C(x(r) + 4) << "\" y=\"" << C(kTop + ph - 6)
      << "\" class=\"note restored-label\">restored " << r << "</text>\n";
  }
  for (size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    o << "<g class=\"series\" data-series=\"" << s.id << "\"><polyline fill=\"none\" stroke=\"" << s.colour
      << "\" stroke-width=\"2\" points=\"";
    for (const auto& e : h) {
      if (std::isfinite(s.value(e))) o << C(x(e.epoch())) << "," << C(y(s.value(e))) << " ";
    }
    o << "\"/>\n";
    for (const auto& e : h) {
      if (!std::isfinite(s.value(e))) continue;  // a diverged epoch has no point
      o << "<circle class=\"point\" data-epoch=\"" << e.epoch() << "\" data-value=\"" << F(s.value(e), 6) << "\" cx=\""
        << C(x(e.epoch())) << "\" cy=\"" << C(y(s.value(e))) << "\" r=\"3\" fill=\"" << s.colour << "\"><title>"
        << s.label << ", epoch " << e.epoch() << " (stage " << e.stage() << "): " << F(s.value(e)) << "</title></circle>\n";
    }
    const double ly = kTop + 14 + 20.0 * static_cast<double>(k);
    o << "<line x1=\"" << C(kW - kRight + 12) << "\" x2=\"" << C(kW - kRight + 36) << "\" y1=\"" << C(ly - 4)
      << "\" y2=\"" << C(ly - 4) << "\" stroke=\"" << s.colour << "\" stroke-width=\"2\"/><text x=\""
      << C(kW - kRight + 42) << "\" y=\"" << C(ly) << "\" class=\"tick\">" << s.label << "</text></g>\n";
  }
  o << "</svg>\n";
  return o.str();
}

// Accuracy against confidence per bin, with the diagonal of perfect calibration.
std::string ReliabilityDiagram(const v1::EvaluationReport& r) {
  constexpr double kS = 300, kPad = 44;
  auto px = [&](double v) { return kPad + (kS - 2 * kPad) * v; };
  auto py = [&](double v) { return kS - kPad - (kS - 2 * kPad) * v; };
  std::ostringstream o;
  o << "<svg id=\"reliability\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kS << "\" height=\"" << kS
    << "\" viewBox=\"0 0 " << kS << " " << kS << "\" role=\"img\" aria-label=\"reliability diagram\">\n"
    << "<rect x=\"" << px(0) << "\" y=\"" << py(1) << "\" width=\"" << C(px(1) - px(0)) << "\" height=\""
    << C(py(0) - py(1)) << "\" class=\"frame\"/>\n";
  for (const auto& b : r.reliability()) {
    if (b.count() == 0) continue;
    o << "<rect class=\"rel-bar\" data-count=\"" << b.count() << "\" x=\"" << C(px(b.lower())) << "\" y=\""
      << C(py(b.accuracy())) << "\" width=\"" << C(px(b.upper()) - px(b.lower())) << "\" height=\""
      << C(py(0) - py(b.accuracy())) << "\"><title>confidence " << F(b.lower(), 3) << "-" << F(b.upper(), 3) << ": "
      << b.count() << " images, mean confidence " << F(b.confidence()) << ", accuracy " << F(b.accuracy())
      << "</title></rect>\n";
  }
  o << "<line class=\"diagonal\" x1=\"" << px(0) << "\" y1=\"" << py(0) << "\" x2=\"" << px(1) << "\" y2=\"" << py(1)
    << "\"/>\n";
  for (int t = 0; t <= 4; ++t) {
    const double v = t / 4.0;
    o << "<text x=\"" << C(px(v)) << "\" y=\"" << C(py(0) + 16) << "\" class=\"tick\" text-anchor=\"middle\">" << F(v, 2)
      << "</text><text x=\"" << C(px(0) - 6) << "\" y=\"" << C(py(v) + 4) << "\" class=\"tick\" text-anchor=\"end\">"
      << F(v, 2) << "</text>\n";
  }
  o << "<text x=\"" << C(kS / 2) << "\" y=\"" << C(kS - 8) << "\" class=\"tick\" text-anchor=\"middle\">confidence (top-1 probability)</text>\n"
    << "<text x=\"12\" y=\"" << C(kS / 2) << "\" class=\"tick\" text-anchor=\"middle\" transform=\"rotate(-90 12 "
    << C(kS / 2) << ")\">accuracy</text>\n</svg>\n";
  return o.str();
}

}  // namespace

std::vector<int> ConfusionClassesShown(const v1::EvaluationReport& r) {
  const int c = r.classes_size();
  std::vector<int> shown(static_cast<size_t>(std::max(c, 0)));
  for (int k = 0; k < c; ++k) shown[static_cast<size_t>(k)] = k;
  if (c <= kMaxConfusionClasses || r.confusion_size() != c * c) return shown;
  // The classes most involved in errors: off-diagonal images in their row
  // (taken for another class) and column (another class taken for them).
  std::vector<int64_t> errors(static_cast<size_t>(c), 0);
  for (int t = 0; t < c; ++t) {
    for (int q = 0; q < c; ++q) {
      if (t == q) continue;
      errors[static_cast<size_t>(t)] += r.confusion(t * c + q);
      errors[static_cast<size_t>(q)] += r.confusion(t * c + q);
    }
  }
  std::stable_sort(shown.begin(), shown.end(),
                   [&](int a, int b) { return errors[static_cast<size_t>(a)] > errors[static_cast<size_t>(b)]; });
  shown.resize(kMaxConfusionClasses);
  std::sort(shown.begin(), shown.end());
  return shown;
}

namespace {

std::string ConfusionTable(const v1::EvaluationReport& r) {
  const int c = r.classes_size();
  if (c == 0 || r.confusion_size() != c * c) return "<p>No confusion matrix.</p>\n";
  const std::vector<int> shown = ConfusionClassesShown(r);
  std::ostringstream o;
  if (static_cast<int>(shown.size()) < c) {
    o << "<p class=\"sub\" id=\"confusion-note\">The " << shown.size() << " of " << c
      << " classes most involved in errors (rows and columns); <code>graft --json models show</code> has the whole "
         "matrix.</p>\n";
  }
  o << "<div class=\"scroll\"><table id=\"confusion\" class=\"heat\">\n<tr><th class=\"corner\">true \\ predicted</th>";
  for (int q : shown) o << "<th class=\"col\" title=\"" << HtmlEscape(r.classes(q).name()) << "\">" << HtmlEscape(r.classes(q).name()) << "</th>";
  o << "</tr>\n";
  for (int t : shown) {
    int64_t row = 0;
    for (int q = 0; q < c; ++q) row += r.confusion(t * c + q);
    o << "<tr><th class=\"row\">" << HtmlEscape(r.classes(t).name()) << "</th>";
    for (int q : shown) {
      const int64_t v = r.confusion(t * c + q);
      const double share = row > 0 ? static_cast<double>(v) / static_cast<double>(row) : 0.0;
      // Diagonal cells blue, errors red; the shade is the share of the true class's images.
      const char* rgb = t == q ? "31,119,180" : "214,39,40";
      o << "<td class=\"cell" << (t == q ? " diag" : "") << "\" data-true=\"" << t << "\" data-predicted=\"" << q
        << "\" style=\"background:rgba(" << rgb << "," << F(share, 3) << ");" << (share > 0.55 ? "color:#fff" : "")
        << "\" title=\"" << HtmlEscape(r.classes(t).name()) << " predicted as " << HtmlEscape(r.classes(q).name()) << ": "
        << v << " (" << F(100 * share, 1) << "% of the class)\">" << v << "</td>";
    }
    o << "</tr>\n";
  }
  o << "</table></div>\n";
  return o.str();
}

std::string ClassTable(const v1::EvaluationReport& r) {
  std::ostringstream o;
  o << "<table id=\"classes\" class=\"numbers\">\n<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
       "<th>support</th><th>predicted</th></tr>\n";
  for (const auto& k : r.classes()) {
    o << "<tr><td class=\"name\">" << HtmlEscape(k.name()) << "</td><td>" << F(k.precision()) << "</td><td>"
      << F(k.recall()) << "</td><td>" << F(k.f1()) << "</td><td>" << k.support() << "</td><td>" << k.predicted()
      << "</td></tr>\n";
  }
  o << "</table>\n";
  return o.str();
}

std::string HardestImages(const v1::EvaluationReport& r) {
  if (r.highest_loss_size() == 0) return "<p>No images.</p>\n";
  auto name = [&r](int k) { return k >= 0 && k < r.classes_size() ? r.classes(k).name() : std::to_string(k); };
  std::ostringstream o;
  o << "<div id=\"hardest\" class=\"thumbs\">\n";
  for (const auto& e : r.highest_loss()) {
    o << "<figure class=\"hard\">";
    if (!e.thumbnail().empty()) {
      o << "<img alt=\"" << HtmlEscape(e.file()) << "\" src=\"data:image/jpeg;base64," << absl::Base64Escape(e.thumbnail())
        << "\">";
    } else {
      o << "<div class=\"nothumb\">no thumbnail</div>";
    }
    o << "<figcaption><span class=\"file\">" << HtmlEscape(e.file()) << "</span><br>true <b>" << HtmlEscape(name(e.true_class()))
      << "</b> (p " << F(e.true_probability(), 3) << ")<br>predicted <b>" << HtmlEscape(name(e.predicted_class()))
      << "</b> (p " << F(e.predicted_probability(), 3) << ")<br>loss " << F(e.loss(), 3) << "</figcaption></figure>\n";
  }
  o << "</div>\n";
  return o.str();
}

constexpr char kStyle[] = R"(body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666}.figures{display:flex;flex-wrap:wrap;gap:8px 28px;margin:12px 0}.figures div{min-width:120px}
.figures b{display:block;font-size:20px}.chart{max-width:100%;height:auto}.chart .title{font-weight:600;font-size:13px}
.frame{fill:none;stroke:#999}.grid{stroke:#eee}.tick{font-size:11px;fill:#444}.note{font-size:11px;fill:#555}
.stage-boundary{stroke:#555;stroke-dasharray:5 4}.restored{stroke:#2ca02c;stroke-width:2}.restored-label{fill:#2ca02c}
.rel-bar{fill:rgba(31,119,180,.7);stroke:#fff}.diagonal{stroke:#888;stroke-dasharray:4 3}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 8px;border:1px solid #ddd;text-align:right}
th{background:#f6f6f6}td.name,th.row{text-align:left}.heat td{text-align:center;min-width:28px}
.heat th.col{writing-mode:vertical-rl;transform:rotate(180deg);max-height:160px;overflow:hidden}.scroll{overflow:auto}
.thumbs{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px}
.hard{margin:0;border:1px solid #ddd;padding:6px;font-size:12px}.hard img{display:block;max-width:128px;max-height:128px;margin:auto}
.nothumb{height:96px;display:flex;align-items:center;justify-content:center;color:#999;background:#f6f6f6}
.file{word-break:break-all;color:#555}
)";

}  // namespace

std::string HtmlEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += ch;
    }
  }
  return out;
}

// How the model serves (GetModel's monitoring): the window's confidence and
// class shares beside the validation split's, and the drift score.
std::string ServingSection(const v1::ModelMonitoring& w) {
  std::ostringstream o;
  o << "<h2>In service</h2>\n";
  if (w.window_predictions() == 0) {
    o << "<p id=\"serving\">No predictions in the monitoring window of the graftd that made this page.</p>\n";
    return o.str();
  }
  o << "<div class=\"figures\" id=\"serving\"><div>predictions in the window<b>" << w.window_predictions()
    << "</b></div><div>mean confidence<b>" << F(w.mean_confidence(), 3) << "</b></div>";
  if (w.has_reference()) o << "<div>validation mean confidence<b>" << F(w.reference_mean_confidence(), 3) << "</b></div>";
  if (w.class_share_divergence() >= 0) {
    o << "<div>class-share divergence<b>" << F(w.class_share_divergence(), 4) << "</b></div>";
  }
  if (w.drift_score() >= 0) {
    o << "<div>drift score<b id=\"drift-score\">" << F(w.drift_score(), 2) << "</b></div>";
  }
  o << "</div>\n<p class=\"sub\">Over the last " << w.window_predictions()
    << " predictions of the graftd that made this page. ";
  if (w.drift_score() >= 0) {
    o << (w.drifting() ? "<b>Drifting</b>: the inputs no longer look like the validation images (score above 1)."
                       : "The inputs look like the validation images (drift score at most 1).");
  } else if (!w.has_reference()) {
    o << "No reference profile: graft models profile makes one.";
  } else {
    o << "A drift score needs " << w.drift_min_predictions() << " predictions in the window.";
  }
  o << "</p>\n<table id=\"serving-classes\"><tr><th>class</th><th>share served</th><th>share on validation</th></tr>\n";
  for (const auto& c : w.class_shares()) {
    o << "<tr><td>" << HtmlEscape(c.label()) << "</td><td>" << F(c.share(), 3) << "</td><td>"
      << (w.has_reference() ? F(c.reference_share(), 3) : "-") << "</td></tr>\n";
  }
  o << "</table>\n";
  return o.str();
}

// The precision the model serves in and what each check measured.
std::string PrecisionSection(const v1::Model& m) {
  const auto& name = PrecisionText;
  std::ostringstream o;
  o << "<h2>Precision</h2>\n<p id=\"precision\">Serves with a " << name(m.precision())
    << " trunk" << (m.precision() == v1::PRECISION_BF16 || m.precision() == v1::PRECISION_INT8
                        ? " (its own fine-tuned blocks and head in fp32)" : "")
    << ".</p>\n";
  if (m.precision_checks_size() == 0) return o.str();
  o << "<table id=\"precision-checks\"><tr><th>precision</th><th>images</th><th>top-1 agreement</th><th>accuracy</th>"
       "<th>fp32 accuracy</th><th>largest |&Delta;p|</th><th>gate</th><th>result</th></tr>\n";
  for (const v1::PrecisionCheck& c : m.precision_checks()) {
    o << "<tr><td>" << name(c.precision()) << "</td><td>" << c.images() << " " << HtmlEscape(c.split()) << " of "
      << HtmlEscape(c.dataset()) << "</td><td>" << F(c.top1_agreement()) << "</td><td>" << F(c.accuracy())
      << "</td><td>" << F(c.fp32_accuracy()) << "</td><td>" << F(c.max_probability_difference(), 6)
      << "</td><td>agreement &ge; " << F(c.min_agreement()) << ", drop &le; " << F(c.max_accuracy_drop()) << "</td><td>"
      << (c.passed() ? "passed" : "<b>failed</b>") << "</td></tr>\n";
  }
  o << "</table>\n";
  return o.str();
}

std::string RenderReportHtml(const v1::Model& m) {
  const std::string title = m.name().empty() ? m.id() : absl::StrCat(m.name(), ":", m.version(), " (", m.id(), ")");
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n"
    << "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
    << "<title>graft report: " << HtmlEscape(title) << "</title>\n<style>" << kStyle << "</style></head><body>\n"
    << "<h1>" << HtmlEscape(title) << "</h1>\n<p class=\"sub\">" << HtmlEscape(m.backbone()) << " fine-tuned on "
    << HtmlEscape(m.report().dataset().empty() ? m.spec().dataset() : m.report().dataset()) << " by job " << HtmlEscape(m.job_id()) << ", " << Timestamp(m.created_at().seconds())
    << "; " << m.class_names_size() << " classes";
  if (m.trained_blocks_size() > 0) o << "; trained blocks: " << m.trained_blocks_size();
  o << "</p>\n";
  const bool has_report = m.has_report() && m.report().classes_size() > 0;
  const v1::EvaluationReport& r = m.report();
  if (has_report) {
    o << "<div class=\"figures\" id=\"summary\">"
      << "<div>accuracy<b>" << F(r.accuracy()) << "</b></div><div>top-5 accuracy<b>" << F(r.top5_accuracy())
      << "</b></div><div>log loss<b>" << F(r.log_loss()) << "</b></div><div>macro F1<b>" << F(r.macro_f1())
      << "</b></div><div>weighted F1<b>" << F(r.weighted_f1()) << "</b></div><div>calibration error (ECE)<b>"
      << F(r.expected_calibration_error()) << "</b></div></div>\n<p class=\"sub\">On " << r.images() << " images of "
      << HtmlEscape(r.dataset()) << " (" << HtmlEscape(r.split()) << " split), through the serving path.</p>\n";
  }
  o << "<h2>Learning curves</h2>\n";
  if (m.history_size() == 0) {
    o << "<p>No learning curves were recorded with this model.</p>\n";
  } else {
    o << "<p class=\"sub\">One point per epoch; dashed lines: a new stage begins; green: the epoch whose weights were "
         "restored.</p>\n"
      << LineChart("Loss", "loss-chart", m,
                   {{"train_loss", "train loss", "#1f77b4", [](const v1::EpochMetrics& e) { return e.train_loss(); }},
                    {"val_loss", "val loss", "#ff7f0e", [](const v1::EpochMetrics& e) { return e.val_loss(); }}},
                   false)
      << LineChart("Accuracy", "accuracy-chart", m,
                   {{"train_accuracy", "train accuracy", "#1f77b4",
                     [](const v1::EpochMetrics& e) { return e.train_accuracy(); }},
                    {"val_accuracy", "val accuracy", "#ff7f0e", [](const v1::EpochMetrics& e) { return e.val_accuracy(); }}},
                   true);
  }
  if (!has_report) {
    o << "<h2>Evaluation</h2>\n<p>This model has no evaluation report (graft evaluate makes one).</p>\n";
  } else {
    o << "<h2>Confusion matrix</h2>\n<p class=\"sub\">Rows: true class; columns: predicted. The shade is the share "
         "of the row's images.</p>\n"
      << ConfusionTable(r) << "<h2>Per class</h2>\n" << ClassTable(r) << "<h2>Calibration</h2>\n"
      << "<p class=\"sub\">Bars: accuracy of the images in each confidence bin; dashed: perfect calibration. "
      << "Expected calibration error " << F(r.expected_calibration_error()) << ".</p>\n"
      << ReliabilityDiagram(r) << "<h2>Highest-loss images</h2>\n"
      << "<p class=\"sub\">The images the model was most wrong about: label errors and hard cases show up here.</p>\n"
      << HardestImages(r);
  }
  if (m.has_monitoring()) o << ServingSection(m.monitoring());
  o << PrecisionSection(m);
  o << "<p class=\"sub\">Made by graft report.</p>\n</body></html>\n";
  return o.str();
}

}  // namespace graft::client
