// graft models optimize MODEL --precision bf16|int8|fp32 [--dataset D] [--split S]
//   [--min_agreement X] [--max_accuracy_drop X] [--max_probability_difference X]
//   [--calibration_images N] [--dry_run]

#include <iomanip>
#include <ostream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/cli_commands.h"
#include "client/client.h"

namespace graft::client {
namespace {

std::string Fixed(double v, int digits = 4) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

v1::Precision PrecisionOf(const std::string& name) {
  return name == "bf16" ? v1::PRECISION_BF16 : name == "int8" ? v1::PRECISION_INT8 : v1::PRECISION_FP32;
}

void PrintCheck(const v1::PrecisionCheck& c, std::ostream& out) {
  out << PrecisionText(c.precision()) << " against fp32 on " << c.images() << " " << c.split() << " images of "
      << c.dataset() << ": " << (c.passed() ? "passed" : "FAILED") << "\n"
      << "  top-1 agreement " << Fixed(c.top1_agreement()) << " (at least " << Fixed(c.min_agreement()) << ")\n"
      << "  accuracy " << Fixed(c.accuracy()) << ", fp32 " << Fixed(c.fp32_accuracy()) << " (drop at most "
      << Fixed(c.max_accuracy_drop()) << ")\n"
      << "  largest |dp| " << Fixed(c.max_probability_difference(), 6);
  if (c.max_probability_difference_bound() < 1) out << " (at most " << Fixed(c.max_probability_difference_bound(), 6) << ")";
  out << ", mean |dp| of fp32's top class " << Fixed(c.mean_probability_difference(), 6) << "\n";
  if (c.calibration_images() > 0) out << "  calibrated on " << c.calibration_images() << " training images\n";
  if (c.seconds() > 0) {
    out << "  pass " << Fixed(c.seconds(), 2) << " s, fp32 " << Fixed(c.fp32_seconds(), 2) << " s (decoding included): "
        << Fixed(c.fp32_seconds() / c.seconds(), 2) << "x\n";
  }
}

}  // namespace

std::string PrecisionText(v1::Precision p) {
  return p == v1::PRECISION_BF16 ? "bf16" : p == v1::PRECISION_INT8 ? "int8" : "fp32";
}

void PrintPrecision(const v1::Model& m, std::ostream& out) {
  out << "serves:   " << PrecisionText(m.precision()) << " trunk"
      << (m.precision() == v1::PRECISION_FP32 || m.precision() == v1::PRECISION_UNSPECIFIED
              ? ""
              : " (its own blocks and head in fp32)")
      << "\n";
  for (const v1::PrecisionCheck& c : m.precision_checks()) PrintCheck(c, out);
}

void AddOptimizeCommand(CLI::App& models, const Globals& g, std::ostream& out, Action* action) {
  struct Args {
    std::string model, precision, dataset, split = "val";
    double min_agreement = -1, max_accuracy_drop = -1, max_probability_difference = -1;
    int calibration_images = 0;
    bool dry_run = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = models.add_subcommand(
      "optimize", "serve a model in another precision once measured against fp32 on labelled images (README, Precision)");
  cmd->add_option("model", a->model, "model id, NAME, NAME:VERSION or NAME@ALIAS")->required();
  cmd->add_option("--precision,-p", a->precision, "bf16 or int8, or fp32 to go back")
      ->required()
      ->check(CLI::IsMember({"fp32", "bf16", "int8"}));
  cmd->add_option("--dataset,-d", a->dataset, "measure on this dataset (default: the one the model trained on)");
  cmd->add_option("--split", a->split, "val (default), train or all")->check(CLI::IsMember({"val", "train", "all"}));
  cmd->add_option("--min_agreement", a->min_agreement,
                  "top-1 agreement with fp32 the precision needs (default 0.99 for bf16, 0.98 for int8)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--max_accuracy_drop", a->max_accuracy_drop, "accuracy it may lose against fp32 (default 0.005)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--max_probability_difference", a->max_probability_difference,
                  "largest |p - p_fp32| allowed on any image and class (default: no bound)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--calibration_images", a->calibration_images,
                  "int8: images of the model's training split its ranges are calibrated on (default 256)")
      ->check(CLI::Range(1, 1024));
  cmd->add_flag("--dry_run", a->dry_run, "measure and store the check, but keep serving as now");
  cmd->callback([&g, &out, action, a]() {
    *action = [&g, &out, a](GraftClient& c) -> absl::Status {
      v1::OptimizeModelRequest request;
      request.set_model(a->model);
      request.set_precision(PrecisionOf(a->precision));
      request.set_dataset(a->dataset);
      request.set_split(SplitOf(a->split));
      if (a->min_agreement >= 0) request.set_min_agreement(a->min_agreement);
      if (a->max_accuracy_drop >= 0) request.set_max_accuracy_drop(a->max_accuracy_drop);
      if (a->max_probability_difference >= 0) request.set_max_probability_difference(a->max_probability_difference);
      if (a->calibration_images > 0) request.set_calibration_images(a->calibration_images);
      request.set_dry_run(a->dry_run);
      const bool tty = StderrIsTty() && !g.json;
      auto r = c.OptimizeModel(request, [tty](const v1::OptimizeModelProgress& p) {
        if (tty && p.images_total() > 0) {
          std::cerr << "\r" << Bar(static_cast<double>(p.images_done()) / p.images_total(), 30) << " "
                    << p.images_done() << "/" << p.images_total() << std::flush;
        }
      });
      if (tty) std::cerr << "\n";
      if (!r.ok()) return r.status();
      if (g.json) {
        out << ToJson(*r) << "\n";
        return absl::OkStatus();
      }
      if (r->has_check()) PrintCheck(r->check(), out);
      out << "model " << r->model().id() << " serves in " << PrecisionText(r->model().precision())
          << (a->dry_run ? " (dry run: unchanged)" : "") << "\n";
      return absl::OkStatus();
    };
  });
}

}  // namespace graft::client
