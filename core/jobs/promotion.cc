#include "core/jobs/promotion.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/auth/policy.h"
#include "core/eval/evaluator.h"
#include "core/util/status_macros.h"

namespace graft::core {

double MetricValue(const EvaluationReport& report, Monitor metric) {
  switch (metric) {
    case Monitor::kValLoss: return report.log_loss;
    case Monitor::kValMacroF1: return report.macro_f1;
    case Monitor::kValAccuracy: break;
  }
  return report.accuracy;
}

bool ChallengerWins(Monitor metric, double champion, double challenger, double min_gain) {
  const double gain = metric == Monitor::kValLoss ? champion - challenger : challenger - champion;
  // A hair under min_gain from rounding (0.905 - 0.9) still counts.
  return gain >= min_gain - 1e-12;
}

namespace {

const char* HoldoutMetricName(Monitor m) {
  switch (m) {
    case Monitor::kValLoss: return "log loss";
    case Monitor::kValMacroF1: return "macro F1";
    case Monitor::kValAccuracy: break;
  }
  return "accuracy";
}

std::string Figure(double v) { return absl::StrFormat("%.4f", v); }

}  // namespace

absl::StatusOr<EvaluationReport> Promoter::Evaluate(const std::string& id, const DatasetInfo& holdout,
                                                    const std::vector<DatasetImage>& images,
                                                    const Caller& caller) const {
  DatasetPass pass;
  ASSIGN_OR_RETURN(pass.model, models_.Get(id));
  pass.images = images;
  for (const ClassCount& c : holdout.classes) pass.dataset_classes.push_back(c.name);
  return EvaluateModel(*predictor_, pass, holdout.name, "all", {}, caller);
}

PromotionResult Promoter::Decide(const JobSpec& spec, const ModelInfo& challenger, const Caller& given) const {
  const PromotionSpec& p = spec.promotion;
  PromotionResult r;
  r.alias = absl::StrCat(challenger.name, "@", p.alias);
  r.metric = p.metric;
  r.min_gain = p.min_gain;
  r.challenger = challenger.id;
  r.challenger_version = challenger.version;
  const auto stays = [&](const std::string& why) {
    r.promoted = false;
    r.reason = absl::StrCat(r.alias, " stays", r.champion.empty() ? "" : absl::StrCat(" on version ", r.champion_version),
                            ": ", why);
    return r;
  };
  if (predictor_ == nullptr) return stays("this process has no predictor to evaluate with");
  Caller caller = given;
  caller.background = true;  // predictions first: the decision can wait

  auto holdout = datasets_.Get(p.holdout);
  if (!holdout.ok()) return stays(absl::StrCat("the holdout: ", holdout.status().message()));
  r.holdout = holdout->name;
  auto images = datasets_.Images(holdout->id);
  if (!images.ok()) return stays(absl::StrCat("the holdout: ", images.status().message()));
  r.holdout_images = static_cast<int64_t>(images->size());

  auto target = models_.Alias(challenger.owner, challenger.name, p.alias);
  if (!target.ok() && !absl::IsNotFound(target.status())) return stays(std::string(target.status().message()));
  if (target.ok()) {
    auto champion = models_.Resolve(absl::StrCat(challenger.name, ":", target->version), challenger.owner, false);
    if (!champion.ok()) return stays(absl::StrCat("its version ", target->version, ": ", champion.status().message()));
    r.champion = *champion;
    r.champion_version = target->version;
  }

  auto challenger_report = Evaluate(challenger.id, *holdout, *images, caller);
  if (!challenger_report.ok()) {
    return stays(absl::StrCat("the challenger could not be evaluated on '", r.holdout, "': ",
                              challenger_report.status().message()));
  }
  r.challenger_value = MetricValue(*challenger_report, p.metric);
  const std::string metric = HoldoutMetricName(p.metric);

  std::vector<CanaryRoute> canaries;
  int64_t version = challenger.version;
  if (target.ok()) {
    auto champion_report = Evaluate(r.champion, *holdout, *images, caller);
    if (!champion_report.ok()) {
      return stays(absl::StrCat("the champion could not be evaluated on '", r.holdout, "': ",
                                champion_report.status().message()));
    }
    r.champion_value = MetricValue(*champion_report, p.metric);
    const std::string figures =
        absl::StrCat(metric, " on '", r.holdout, "' (", r.holdout_images, " images): challenger version ",
                     challenger.version, " ", Figure(r.challenger_value), ", champion version ", r.champion_version,
                     " ", Figure(r.champion_value), ", min_gain ", Figure(p.min_gain));
    r.compared = true;
    if (!ChallengerWins(p.metric, r.champion_value, r.challenger_value, p.min_gain)) {
      return stays(absl::StrCat("the challenger does not win by min_gain; ", figures));
    }
    r.reason = figures;
    if (p.canary_percent > 0) {
      version = target->version;
      canaries = {{challenger.version, p.canary_percent}};
    }
  } else {
    r.compared = true;
    r.reason = absl::StrCat("no version served ", r.alias, "; ", metric, " on '", r.holdout, "' (", r.holdout_images,
                            " images): challenger ", Figure(r.challenger_value));
  }
  if (caller.cancelled && caller.cancelled()) {
    r.compared = false;
    return stays("cancelled before the alias moved");
  }
  // A move ends the alias's canaries (as graft models alias does); its shadow stays.
  auto moved = models_.SetAlias(challenger.owner, challenger.name, p.alias, version, canaries,
                                target.ok() ? target->shadow : 0);
  if (!moved.ok()) {
    r.compared = false;
    return stays(absl::StrCat("moving it failed: ", moved.status().message()));
  }
  r.promoted = true;
  r.canary_percent = canaries.empty() ? 0 : p.canary_percent;
  r.reason = canaries.empty()
                 ? absl::StrCat(r.alias, " moved to version ", challenger.version, ": ", r.reason)
                 : absl::StrCat(r.alias, " keeps version ", r.champion_version, " with version ", challenger.version,
                                " as its canary at ", p.canary_percent, "%: ", r.reason);
  return r;
}

absl::StatusOr<JobSpec> RetrainSpec(ModelStore& models, const RetrainRequest& request, const Principal& by) {
  if (request.model.empty()) return absl::InvalidArgumentError("model: required (NAME@ALIAS, NAME:VERSION or an id)");
  ASSIGN_OR_RETURN(const std::string id, models.Resolve(request.model, by.name, SeesEveryOwner(by)));
  ASSIGN_OR_RETURN(const auto model, models.Get(id));
  const ModelInfo& info = model->info();
  if (!Owns(by, info.owner)) {
    return absl::NotFoundError(absl::StrCat("model: no model '", request.model, "' of yours"));
  }
  if (info.name.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model: '", request.model, "' has no name, so it has no versions or aliases to promote; retrain a model "
        "published with model_name"));
  }
  JobSpec spec = info.spec;
  // A search's model was published with its winner's spec; its own search is not run again.
  spec.has_search = false;
  spec.search = SearchSpec{};
  spec.backbone = info.backbone;
  spec.model_name = info.name;
  spec.name = request.name.empty() ? absl::StrCat("retrain ", info.name, ":", info.version) : request.name;
  // Its training data, plus the new: what it was trained on with before stays.
  for (const std::string& d : request.add_datasets) spec.add_datasets.push_back(d);
  if (request.epochs) {
    for (StageSpec& stage : spec.stages) stage.epochs = *request.epochs;
  }
  spec.has_promotion = request.has_promotion;
  spec.promotion = request.promotion;
  return spec;
}

}  // namespace graft::core
