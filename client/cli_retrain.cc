// graft retrain MODEL [--add D...] [--promote ALIAS --holdout D]: a new
// version of a model on its own data plus added datasets, promoted only when
// it wins on a holdout.

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "client/cli_commands.h"
#include "client/client.h"

namespace graft::client {
namespace {

struct RetrainOptions {
  std::string model, name, promote, holdout, metric = "val_accuracy";
  std::vector<std::string> add;
  int epochs = 0;
  double min_gain = 0.005, canary = 0;
  bool watch = false;
};

absl::Status RunRetrain(GraftClient& c, const Globals& g, const RetrainOptions& o, std::ostream& out,
                        std::ostream& err) {
  v1::RetrainRequest r;
  r.set_model(o.model);
  for (const std::string& d : o.add) r.add_add_datasets(d);
  if (o.epochs > 0) r.set_epochs(o.epochs);
  r.set_name(o.name);
  if (!o.promote.empty() || !o.holdout.empty()) {
    if (o.promote.empty() || o.holdout.empty()) {
      return absl::InvalidArgumentError("--promote ALIAS and --holdout DATASET go together");
    }
    auto* p = r.mutable_promotion();
    p->set_alias(o.promote);
    p->set_holdout(o.holdout);
    p->set_metric(MonitorOf(o.metric));
    p->set_min_gain(o.min_gain);
    p->set_canary_percent(o.canary);
  }
  return StartedJob(c, g, c.Retrain(r), o.watch, out, err);
}

}  // namespace

void AddRetrainCommand(CLI::App& app, const Globals& g, std::ostream& out, std::ostream& err, Action* action) {
  auto ro = std::make_shared<RetrainOptions>();
  auto* retrain = app.add_subcommand(
      "retrain", "a new version of a model with its own spec on its data plus --add datasets; with --promote, the "
                 "alias moves to it only when it beats the alias's version on --holdout");
  retrain->add_option("model", ro->model, "NAME@ALIAS, NAME:VERSION or NAME")->required();
  retrain->add_option("--add", ro->add, "a dataset whose images join the training data (repeatable)");
  retrain->add_option("--epochs", ro->epochs, "every stage's epochs (default: the model's)");
  retrain->add_option("--name", ro->name, "the job's label");
  retrain->add_option("--promote", ro->promote, "the alias to move when the new version wins (e.g. prod)");
  retrain->add_option("--holdout", ro->holdout, "a dataset never trained on, both versions are evaluated on");
  retrain->add_option("--metric", ro->metric, "val_accuracy, val_macro_f1 or val_loss (on the holdout)")
      ->check(CLI::IsMember({"val_loss", "val_accuracy", "val_macro_f1"}))->capture_default_str();
  retrain->add_option("--min_gain", ro->min_gain, "how much better the new version must be")->capture_default_str();
  retrain->add_option("--canary", ro->canary, "a win makes it the alias's canary at this share (%) instead");
  retrain->add_flag("--watch,-w", ro->watch, "follow the job until it ends (and the decision)");
  retrain->callback([&g, &out, &err, action, ro]() {
    *action = [&g, &out, &err, ro](GraftClient& c) { return RunRetrain(c, g, *ro, out, err); };
  });
}

}  // namespace graft::client
