// graft models [show ID | rm ID | alias NAME ALIAS [VERSION] | monitor MODEL | profile MODEL -d D]
// | optimize MODEL --precision P (cli_optimize.cc) | export MODEL -o FILE | evaluate MODEL --dataset D [--split S] | report MODEL -o FILE.html

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <thread>
#include <iostream>
#include <sstream>
#include <ostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli_commands.h"
#include "client/client.h"
#include "client/report_html.h"
#include "core/util/files.h"

namespace graft::client {
namespace {

absl::Status ListModels(GraftClient& client, const Globals& g, std::ostream& out) {
  auto r = client.ListModels();
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
    return absl::OkStatus();
  }
  out << std::left << std::setw(20) << "ID" << std::setw(20) << "NAME" << std::setw(15) << "BACKBONE" << std::setw(9)
      << "CLASSES" << std::setw(9) << "VAL_ACC" << std::setw(11) << "SIZE" << std::setw(18) << "JOB" << "CREATED\n";
  for (const auto& m : r->models()) {
    std::ostringstream acc;
    acc << std::fixed << std::setprecision(4) << m.best_metrics().val_accuracy();
    const std::string name = m.name().empty() ? "-" : absl::StrCat(m.name(), ":", m.version());
    out << std::left << std::setw(20) << m.id() << std::setw(20) << name << std::setw(15) << m.backbone() << std::setw(9)
        << m.class_names_size()
        << std::setw(9) << acc.str() << std::setw(11) << HumanBytes(m.bytes()) << std::setw(18) << m.job_id()
        << Timestamp(m.created_at().seconds()) << "\n";
  }
  return absl::OkStatus();
}

std::string Fixed(double v, int digits = 4) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

void PrintReport(const v1::EvaluationReport& r, std::ostream& out) {
  const int c = r.classes_size();
  auto name = [&r](int k) { return k >= 0 && k < r.classes_size() ? r.classes(k).name() : std::to_string(k); };
  out << "evaluated on " << r.images() << " images of " << r.dataset() << " (" << r.split() << ")"
      << " in " << Fixed(r.seconds(), 1) << " s\n"
      << "  accuracy " << Fixed(r.accuracy()) << "   top-5 " << Fixed(r.top5_accuracy()) << "   log loss "
      << Fixed(r.log_loss()) << "\n"
      << "  macro F1 " << Fixed(r.macro_f1()) << "   weighted F1 " << Fixed(r.weighted_f1())
      << "   calibration error (ECE) " << Fixed(r.expected_calibration_error()) << "\n\n";
  size_t width = 5;
  for (const auto& k : r.classes()) width = std::max(width, std::min<size_t>(k.name().size(), 24));
  width += 2;
  out << std::left << std::setw(static_cast<int>(width)) << "CLASS" << std::setw(11) << "PRECISION" << std::setw(9)
      << "RECALL" << std::setw(9) << "F1" << "SUPPORT\n";
  for (const auto& k : r.classes()) {
    out << std::left << std::setw(static_cast<int>(width)) << k.name().substr(0, 24) << std::setw(11) << Fixed(k.precision())
        << std::setw(9) << Fixed(k.recall()) << std::setw(9) << Fixed(k.f1()) << k.support() << "\n";
  }
  if (c > 0 && c <= 20 && r.confusion_size() == c * c) {
    out << "\nconfusion (rows: true class, columns: predicted, in the order above)\n";
    for (int t = 0; t < c; ++t) {
      out << std::left << std::setw(static_cast<int>(width)) << name(t).substr(0, 24);
      for (int q = 0; q < c; ++q) out << std::right << std::setw(7) << r.confusion(t * c + q);
      out << "\n";
    }
  } else if (c > 20) {
    out << "\nconfusion: " << c << " x " << c << " (--json has it)\n";
  }
  if (r.most_confused_size() > 0) {
    out << "\nmost confused (true -> predicted: images)\n";
    for (const auto& p : r.most_confused()) {
      out << "  " << name(p.true_class()) << " -> " << name(p.predicted_class()) << ": " << p.count() << "\n";
    }
  }
  if (r.highest_loss_size() > 0) {
    out << "\nhighest loss\n";
    for (const auto& e : r.highest_loss()) {
      out << "  " << e.file() << "  true " << name(e.true_class()) << " (" << Fixed(e.true_probability(), 3)
          << "), predicted " << name(e.predicted_class()) << " (" << Fixed(e.predicted_probability(), 3) << ")\n";
    }
  }
}

}  // namespace

v1::DatasetSplit SplitOf(const std::string& split) {
  return split == "train" ? v1::DATASET_SPLIT_TRAIN : split == "all" ? v1::DATASET_SPLIT_ALL : v1::DATASET_SPLIT_VAL;
}

// The model's monitoring as a terminal page (graft models monitor).
void PrintMonitoring(const v1::Model& m, std::ostream& out) {
  const v1::ModelMonitoring& w = m.monitoring();
  out << "model " << (m.name().empty() ? m.id() : absl::StrCat(m.name(), ":", m.version(), " (", m.id(), ")")) << " on "
      << m.backbone() << ", as this graftd serves it\n"
      << "window:      " << w.window_predictions() << " predictions (the last " << w.window()
      << (w.window_seconds() > 0 ? absl::StrCat(" within ", Fixed(w.window_seconds(), 0), " s") : "") << "); "
      << w.predictions() << " since it started serving\n";
  if (!w.has_reference()) {
    out << "reference:   none (published before profiles: graft models profile " << m.id()
        << " -d DATASET makes one)\n";
  } else {
    out << "reference:   " << w.reference_images() << " validation images\n";
  }
  if (w.window_predictions() == 0) {
    out << "\nno predictions in the window yet\n";
    return;
  }
  out << "\nconfidence:  mean " << Fixed(w.mean_confidence(), 3);
  if (w.has_reference()) out << " (validation " << Fixed(w.reference_mean_confidence(), 3) << ")";
  out << "\n";
  for (int b = 0; b < w.confidence_histogram_size(); ++b) {
    const double lo = b / 10.0;
    out << "  " << Fixed(lo, 1) << "-" << Fixed(lo + 0.1, 1) << " " << Bar(w.confidence_histogram(b), 30) << " "
        << std::setw(6) << Fixed(100 * w.confidence_histogram(b), 1) << " %";
    if (b < w.reference_confidence_histogram_size()) {
      out << "  (validation " << Fixed(100 * w.reference_confidence_histogram(b), 1) << " %)";
    }
    out << "\n";
  }
  std::vector<v1::ClassShare> shares(w.class_shares().begin(), w.class_shares().end());
  std::stable_sort(shares.begin(), shares.end(), [](const v1::ClassShare& a, const v1::ClassShare& b) {
    return a.share() > b.share();
  });
  size_t width = 5;
  for (const auto& c : shares) width = std::max(width, std::min<size_t>(c.label().size(), 24));
  width += 2;
  out << "\n" << std::left << std::setw(static_cast<int>(width)) << "CLASS" << std::setw(9) << "SHARE"
      << "VALIDATION\n";
  constexpr size_t kShown = 20;
  for (size_t i = 0; i < shares.size() && i < kShown; ++i) {
    out << std::left << std::setw(static_cast<int>(width)) << shares[i].label().substr(0, 24) << std::setw(9)
        << Fixed(shares[i].share(), 3) << (w.has_reference() ? Fixed(shares[i].reference_share(), 3) : "-") << "\n";
  }
  if (shares.size() > kShown) out << "(" << shares.size() - kShown << " more classes: --json has them all)\n";
  if (w.class_share_divergence() >= 0) {
    out << "class-share divergence: " << Fixed(w.class_share_divergence(), 4)
        << " bits (Jensen-Shannon; 0 the same, 1 disjoint)\n";
  }
  out << "\ndrift:       ";
  if (w.drift_score() >= 0) {
    out << "score " << Fixed(w.drift_score(), 2) << " (MMD2 " << w.drift_mmd2() << ", threshold " << w.drift_threshold()
        << "): " << (w.drifting() ? "DRIFTING: the inputs no longer look like the validation images"
                                  : "in distribution")
        << "\n";
  } else if (w.drift_min_predictions() > 0) {
    out << "needs " << w.drift_min_predictions() << " predictions in the window\n";
  } else {
    out << "no score without a reference profile\n";
  }
}

namespace {

void PrintModel(const v1::Model& m, std::ostream& out) {
  out << "id:       " << m.id() << "\n";
  if (!m.name().empty()) {
    std::vector<std::string> routes(m.aliases().begin(), m.aliases().end());
    for (const auto& c : m.canary_of()) routes.push_back(absl::StrCat("canary of ", c.alias(), " ", Fixed(c.percent(), 1), " %"));
    for (const auto& alias : m.shadow_of()) routes.push_back(absl::StrCat("shadow of ", alias));
    out << "name:     " << m.name() << ":" << m.version()
        << (routes.empty() ? "" : " (" + absl::StrJoin(routes, ", ") + ")") << "\n";
  }
  out << "job:      " << m.job_id() << "\n"
      << "backbone: " << m.backbone() << "\n"
      << "classes:  " << absl::StrJoin(m.class_names(), ", ") << "\n"
      << "input:    " << m.preprocessing().height() << "x" << m.preprocessing().width() << "\n"
      << "trained:  head" << (m.trained_blocks_size() ? " + " + absl::StrJoin(m.trained_blocks(), " ") : "") << "\n"
      << "size:     " << HumanBytes(m.bytes()) << " (own weights; the backbone is shared)\n"
      << "best:     " << EpochRow(m.best_metrics()) << "\n"
      << "final:    " << EpochRow(m.final_metrics()) << "\n"
      << "created:  " << Timestamp(m.created_at().seconds()) << "\n";
  PrintPrecision(m, out);
  for (const v1::ShadowAgreement& a : m.shadow_agreements()) {
    out << "shadowing version " << a.served_version() << ": " << a.images() << " images compared, top-1 agreement "
        << Fixed(100 * a.top1_agreement(), 1) << " %, mean |dp| " << Fixed(a.mean_abs_diff(), 4);
    if (a.dropped_images() > 0) out << ", " << a.dropped_images() << " dropped (queue full)";
    if (a.failed_images() > 0) out << ", " << a.failed_images() << " failed";
    out << "\n";
    for (const v1::ClassFlips& c : a.classes()) {
      if (c.flips() > 0) out << "  " << c.label() << ": " << c.flips() << " of " << c.served() << " answered otherwise\n";
    }
  }
  if (m.has_report()) {
    out << "\n";
    PrintReport(m.report(), out);
  }
}

}  // namespace

void AddModelCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action) {
  auto* models = app.add_subcommand("models", "list, show and delete fine-tuned models");
  models->callback([&g, &out, action, models]() {
    if (models->get_subcommands().empty()) *action = [&g, &out](GraftClient& c) { return ListModels(c, g, out); };
  });
  auto id = std::make_shared<std::string>();
  auto* show = models->add_subcommand("show", "one model in full");
  show->add_option("id", *id, "model id, NAME, NAME:VERSION or NAME@ALIAS")->required();
  show->callback([&g, &out, action, id]() {
    *action = [&g, &out, id](GraftClient& c) { return Show(c.GetModel(*id), g, out, PrintModel); };
  });
  struct AliasArgs {
    std::string name, alias;
    int64_t version = 0;
    bool remove = false;
    std::vector<std::string> canaries;  // VERSION=PERCENT
    int64_t shadow = 0;
  };
  auto al = std::make_shared<AliasArgs>();
  auto* alias = models->add_subcommand("alias", "point NAME@ALIAS at a version (moving it back is the rollback)");
  alias->add_option("name", al->name, "model name")->required();
  alias->add_option("alias", al->alias, "alias (NAME alone means the alias 'default' when set)")->required();
  alias->add_option("version", al->version, "version the alias points to");
  alias->add_flag("--rm", al->remove, "delete the alias instead");
  alias->add_option("--canary", al->canaries,
                    "VERSION=PERCENT: that version takes PERCENT of the alias's predictions (repeatable; "
                    "setting the alias without --canary ends the canary)");
  alias->add_option("--shadow", al->shadow,
                    "VERSION: mirror every prediction through the alias to that version off the request path and "
                    "compare its answers (graft models show VERSION; setting the alias without --shadow ends it)");
  alias->callback([&g, &out, action, al]() {
    *action = [&g, &out, al](GraftClient& c) -> absl::Status {
      if (al->remove) {
        if (auto s = c.DeleteModelAlias(al->name, al->alias); !s.ok()) return s;
        out << al->name << "@" << al->alias << " deleted\n";
        return absl::OkStatus();
      }
      if (al->version < 1) return absl::InvalidArgumentError("give the version the alias points to (1, 2, ...)");
      std::vector<std::pair<int64_t, double>> canaries;
      double canary_total = 0;
      for (const std::string& text : al->canaries) {
        const size_t eq = text.find('=');
        int64_t version = 0;
        double percent = 0;
        if (eq == std::string::npos || !absl::SimpleAtoi(text.substr(0, eq), &version) ||
            !absl::SimpleAtod(text.substr(eq + 1), &percent)) {
          return absl::InvalidArgumentError(absl::StrCat("--canary takes VERSION=PERCENT (4=10), got '", text, "'"));
        }
        canaries.emplace_back(version, percent);
        canary_total += percent;
      }
      auto m = c.SetModelAlias(al->name, al->alias, al->version, canaries, al->shadow);
      if (!m.ok()) return m.status();
      if (g.json) {
        out << ToJson(*m) << "\n";
      } else {
        out << al->name << "@" << al->alias << " -> version " << m->version() << " (" << m->id() << ")";
        if (!canaries.empty()) {
          out << " " << Fixed(100 - canary_total, 1) << " %";
          for (const auto& [version, percent] : canaries) out << ", version " << version << " " << Fixed(percent, 1) << " %";
        }
        if (al->shadow > 0) out << ", shadowed by version " << al->shadow;
        out << "\n";
      }
      return absl::OkStatus();
    };
  });
  struct MonitorArgs {
    std::string model;
    double interval = 2;
    int count = 0;
  };
  auto mo = std::make_shared<MonitorArgs>();
  auto* monitor = models->add_subcommand(
      "monitor", "a live view of how a served model does: confidence, class shares and drift against its validation split");
  monitor->add_option("model", mo->model, "model id, NAME, NAME:VERSION or NAME@ALIAS")->required();
  monitor->add_option("--interval", mo->interval, "seconds between refreshes (default 2)")
      ->check(CLI::Range(0.1, 3600.0));
  monitor->add_option("--count,-n", mo->count, "refreshes before exiting (default: until interrupted)")
      ->check(CLI::NonNegativeNumber);
  monitor->callback([&g, &out, action, mo]() {
    *action = [&g, &out, mo](GraftClient& c) -> absl::Status {
      const bool tty = isatty(STDOUT_FILENO) != 0 && !g.json;
      for (int i = 0; mo->count == 0 || i < mo->count; ++i) {
        if (i > 0) std::this_thread::sleep_for(std::chrono::duration<double>(mo->interval));
        auto m = c.GetModel(mo->model);
        if (!m.ok()) return m.status();
        if (g.json) {
          out << ToJsonLine(m->monitoring()) << "\n";
        } else {
          if (tty) out << "\033[H\033[2J";  // a fresh screen per refresh
          else if (i > 0) out << "\n";
          PrintMonitoring(*m, out);
        }
        out.flush();
      }
      return absl::OkStatus();
    };
  });
  struct ProfileArgs {
    std::string model, dataset, split = "val";
  };
  auto pa = std::make_shared<ProfileArgs>();
  auto* profile = models->add_subcommand(
      "profile", "make a model's reference profile from a dataset's images (monitoring compares with it)");
  profile->add_option("model", pa->model, "model id, NAME, NAME:VERSION or NAME@ALIAS")->required();
  profile->add_option("--dataset,-d", pa->dataset, "dataset id or name (the model's own, most often)")->required();
  profile->add_option("--split", pa->split, "val (default), train or all")->check(CLI::IsMember({"val", "train", "all"}));
  profile->callback([&out, action, pa]() {
    *action = [&out, pa](GraftClient& c) -> absl::Status {
      v1::EvaluateRequest request;
      request.set_model(pa->model);
      request.set_dataset(pa->dataset);
      request.set_split(SplitOf(pa->split));
      request.set_set_profile(true);
      auto r = c.Evaluate(request, [](const v1::EvaluateProgress&) {});
      if (!r.ok()) return r.status();
      out << "profiled " << pa->model << " on " << r->images() << " images of " << r->dataset() << " (" << r->split()
          << "); accuracy " << Fixed(r->accuracy()) << "\n";
      return absl::OkStatus();
    };
  });
  AddOptimizeCommand(*models, g, out, action);
  auto rm_id = std::make_shared<std::string>();
  auto* rm = models->add_subcommand("rm", "delete a model (requests in flight finish on it)");
  rm->add_option("id", *rm_id, "model id, NAME, NAME:VERSION or NAME@ALIAS")->required();
  rm->callback([&out, action, rm_id]() {
    *action = [&out, rm_id](GraftClient& c) -> absl::Status {
      if (auto s = c.DeleteModel(*rm_id); !s.ok()) return s;
      out << "deleted model " << *rm_id << "\n";
      return absl::OkStatus();
    };
  });
  struct EvaluateArgs {
    std::string model, dataset, split = "val";
  };
  auto ev = std::make_shared<EvaluateArgs>();
  auto* evaluate = app.add_subcommand("evaluate", "a model's report on a stored dataset (or its val or train part)");
  evaluate->add_option("model", ev->model, "model id, NAME, NAME:VERSION or NAME@ALIAS")->required();
  evaluate->add_option("--dataset,-d", ev->dataset, "dataset id or name")->required();
  evaluate->add_option("--split", ev->split, "val (default), train or all")->check(CLI::IsMember({"val", "train", "all"}));
  evaluate->callback([&g, &out, action, ev]() {
    *action = [&g, &out, ev](GraftClient& c) -> absl::Status {
      v1::EvaluateRequest request;
      request.set_model(ev->model);
      request.set_dataset(ev->dataset);
      request.set_split(SplitOf(ev->split));
      const bool tty = StderrIsTty() && !g.json;
      auto report = c.Evaluate(request, [tty](const v1::EvaluateProgress& p) {
        if (tty && p.images_total() > 0) {
          std::cerr << "\r" << Bar(static_cast<double>(p.images_done()) / p.images_total(), 30) << " "
                    << p.images_done() << "/" << p.images_total() << std::flush;
        }
      });
      if (tty) std::cerr << "\n";
      return Show(report, g, out, PrintReport);
    };
  });
  struct ReportArgs {
    std::string model, output, dataset, split = "val";
  };
  auto ra = std::make_shared<ReportArgs>();
  auto* report = app.add_subcommand("report", "write a model's report as one self-contained HTML page");
  report->add_option("model", ra->model, "model id, NAME, NAME:VERSION or NAME@ALIAS")->required();
  report->add_option("--output,-o", ra->output, "output file (.html)")->required();
  report->add_option("--dataset,-d", ra->dataset, "evaluate on this dataset now instead of using the job's report");
  report->add_option("--split", ra->split, "with --dataset: val (default), train or all")
      ->check(CLI::IsMember({"val", "train", "all"}));
  report->callback([&out, action, ra]() {
    *action = [&out, ra](GraftClient& c) -> absl::Status {
      auto m = c.GetModel(ra->model);
      if (!m.ok()) return m.status();
      if (!ra->dataset.empty()) {
        v1::EvaluateRequest request;
        request.set_model(m->id());
        request.set_dataset(ra->dataset);
        request.set_split(SplitOf(ra->split));
        auto r = c.Evaluate(request, [](const v1::EvaluateProgress&) {});
        if (!r.ok()) return r.status();
        *m->mutable_report() = std::move(*r);
      }
      const std::string html = RenderReportHtml(*m);
      if (auto s = core::WriteFileAtomic(ra->output, html); !s.ok()) return s;
      out << "wrote " << ra->output << " (" << HumanBytes(static_cast<int64_t>(html.size())) << ")\n";
      return absl::OkStatus();
    };
  });
  auto model = std::make_shared<std::string>();
  auto file = std::make_shared<std::string>();
  auto* exp = app.add_subcommand("export", "write a model as one safetensors file (torchvision names + metadata)");
  exp->add_option("model", *model, "model id, NAME, NAME:VERSION or NAME@ALIAS")->required();
  exp->add_option("--output,-o", *file, "output file")->required();
  exp->callback([&out, action, model, file]() {
    *action = [&out, model, file](GraftClient& c) -> absl::Status {
      auto bytes = c.ExportModel(*model);
      if (!bytes.ok()) return bytes.status();
      if (auto s = core::WriteFileAtomic(*file, *bytes); !s.ok()) return s;
      out << "wrote " << *file << " (" << HumanBytes(static_cast<int64_t>(bytes->size())) << ")\n";
      return absl::OkStatus();
    };
  });
}

}  // namespace graft::client
