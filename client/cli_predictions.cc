// graft predictions ... and graft feedback: record policies, prediction
// records and the labels that come back.

#include <chrono>
#include <ostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "client/cli_commands.h"
#include "client/cli_output.h"
#include "client/client.h"
#include "core/util/files.h"

namespace graft::client {
namespace {

void PrintPolicy(const v1::RecordPolicy& p, std::ostream& out) {
  const bool keeps = p.sample_rate() > 0 || p.below_confidence() > 0 || p.below_margin() > 0;
  out << "model        " << p.model() << "\n";
  if (!keeps) {
    out << "records      none kept\n";
  } else {
    out << "sample rate  " << p.sample_rate() << "\n";
    if (p.below_confidence() > 0) out << "keep when    top-1 < " << p.below_confidence() << "\n";
    if (p.below_margin() > 0) out << "keep when    top-1 - top-2 < " << p.below_margin() << "\n";
    out << "quota        " << (p.quota_bytes() > 0 ? HumanBytes(p.quota_bytes()) : "graftd's --prediction_quota_bytes")
        << "\n";
    out << "rate cap     "
        << (p.max_per_minute() > 0 ? absl::StrCat(p.max_per_minute(), " per minute")
                                   : "graftd's --prediction_records_per_minute")
        << "\n";
    out << "new classes  " << (p.allow_new_classes() ? "allowed in feedback" : "not allowed") << "\n";
  }
  out << "held         " << HumanBytes(p.used_bytes()) << "\n";
}

std::string TopText(const v1::PredictionRecord& r) {
  if (r.top().empty()) return "-";
  return absl::StrCat(r.top(0).label(), " ", absl::StrFormat("%.3f", r.top(0).probability()));
}

void PrintRecord(const v1::PredictionRecord& r, std::ostream& out) {
  out << "prediction   " << r.prediction_id() << "\n"
      << "model        " << r.model() << (r.version() > 0 ? absl::StrCat(" (version ", r.version(), ")") : "") << "\n"
      << "asked by     " << r.principal() << " at " << Timestamp(static_cast<int64_t>(r.created_at())) << "\n"
      << "kept as      " << r.reason() << "\n"
      << "image        " << HumanBytes(r.image_bytes()) << " sha256 " << r.image_sha256() << "\n";
  for (const v1::ClassScore& s : r.top()) {
    out << "  " << absl::StrFormat("%-24s %.4f", s.label(), s.probability()) << "\n";
  }
  if (r.feedback_label().empty()) {
    out << "feedback     none\n";
  } else {
    out << "feedback     " << r.feedback_label() << " by " << r.feedback_author()
        << (r.disagrees() ? " (disagrees with the answer)" : " (agrees)") << "\n";
  }
}

// "7d", "24h", "90m" (that long ago) or Unix seconds.
absl::StatusOr<double> SinceFrom(const std::string& text) {
  if (text.empty()) return 0.0;
  absl::Duration d;
  double days = 0;
  if (text.size() > 1 && text.back() == 'd' && absl::SimpleAtod(text.substr(0, text.size() - 1), &days) &&
      days > 0 && days < 1e5) {
    return absl::ToUnixSeconds(absl::Now()) - days * 86400.0;
  }
  if (absl::ParseDuration(text, &d) && d > absl::ZeroDuration()) {
    return absl::ToUnixSeconds(absl::Now() - d) + 0.0;
  }
  double unix_seconds = 0;
  if (absl::SimpleAtod(text, &unix_seconds) && unix_seconds >= 0) return unix_seconds;
  return absl::InvalidArgumentError(absl::StrCat("--since takes a duration (7d, 24h, 90m) or Unix seconds, got '", text, "'"));
}

}  // namespace

void AddPredictionCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action) {
  auto* preds = app.add_subcommand("predictions", "prediction records of a model: policy, list, show, purge");
  preds->require_subcommand(1);

  struct PolicyArgs {
    std::string model;
    double sample = -1, low_confidence = -1, margin = -1, per_minute = -1;
    int64_t quota_mb = -1;
    bool allow_new_classes = false, off = false;
  };
  auto pa = std::make_shared<PolicyArgs>();
  auto* record = preds->add_subcommand(
      "record", "show or set which predictions of a model are kept (its images, answers and who asked)");
  record->add_option("model", pa->model, "NAME (all its versions) or an unnamed model's id")->required();
  record->add_option("--sample", pa->sample, "share of predictions kept at random, 0 to 1")->check(CLI::Range(0.0, 1.0));
  record->add_option("--low_confidence", pa->low_confidence, "keep every prediction whose top-1 is under this")
      ->check(CLI::Range(0.0, 1.0));
  record->add_option("--margin", pa->margin, "keep every prediction whose top-1 leads the second by under this")
      ->check(CLI::Range(0.0, 1.0));
  record->add_option("--quota_mb", pa->quota_mb, "MiB of images the records may hold (0: graftd's default)")
      ->check(CLI::NonNegativeNumber);
  record->add_option("--per_minute", pa->per_minute, "records kept per minute per graftd (0: graftd's default)")
      ->check(CLI::NonNegativeNumber);
  record->add_flag("--allow_new_classes", pa->allow_new_classes, "feedback may name classes the model lacks");
  record->add_flag("--off", pa->off, "keep nothing from now on (records kept stay until purged or expired)");
  record->callback([&g, &out, action, pa]() {
    *action = [&g, &out, pa](GraftClient& c) -> absl::Status {
      const bool setting = pa->off || pa->sample >= 0 || pa->low_confidence >= 0 || pa->margin >= 0 ||
                           pa->quota_mb >= 0 || pa->per_minute >= 0 || pa->allow_new_classes;
      if (!setting) return Show(c.GetRecordPolicy(pa->model), g, out, PrintPolicy);
      v1::RecordPolicy p;
      if (!pa->off) {
        p.set_sample_rate(std::max(0.0, pa->sample));
        p.set_below_confidence(std::max(0.0, pa->low_confidence));
        p.set_below_margin(std::max(0.0, pa->margin));
        p.set_quota_bytes(std::max<int64_t>(0, pa->quota_mb) << 20);
        p.set_max_per_minute(std::max(0.0, pa->per_minute));
        p.set_allow_new_classes(pa->allow_new_classes);
      }
      return Show(c.SetRecordPolicy(pa->model, p), g, out, PrintPolicy);
    };
  });

  struct ListArgs {
    std::string model, since, feedback;
    bool low_confidence = false;
    int limit = 100;
  };
  auto la = std::make_shared<ListArgs>();
  auto* list = preds->add_subcommand("list", "a model's prediction records, newest first");
  list->add_option("model", la->model, "NAME, NAME@ALIAS or a model id")->required();
  list->add_flag("--low_confidence", la->low_confidence, "only those kept for low confidence or margin");
  list->add_option("--since", la->since, "a duration (24h) back, or Unix seconds");
  list->add_option("--feedback", la->feedback, "with or without")->check(CLI::IsMember({"with", "without"}));
  list->add_option("--limit", la->limit, "records at most (default 100)")->check(CLI::PositiveNumber);
  list->callback([&g, &out, action, la]() {
    *action = [&g, &out, la](GraftClient& c) -> absl::Status {
      v1::ListPredictionsRequest r;
      r.set_model(la->model);
      r.set_low_confidence_only(la->low_confidence);
      if (la->feedback == "with") r.set_feedback(v1::ListPredictionsRequest::WITH_FEEDBACK);
      if (la->feedback == "without") r.set_feedback(v1::ListPredictionsRequest::WITHOUT_FEEDBACK);
      auto since = SinceFrom(la->since);
      if (!since.ok()) return since.status();
      r.set_since(*since);
      int shown = 0;
      int64_t used = 0;
      if (!g.json) {
        out << absl::StrFormat("%-18s %-8s %-20s %-15s %-28s %s\n", "PREDICTION", "VERSION", "TIME", "KEPT AS",
                               "ANSWER", "FEEDBACK");
      }
      while (shown < la->limit) {
        r.set_page_size(std::min(1000, la->limit - shown));
        auto page = c.ListPredictions(r);
        if (!page.ok()) return page.status();
        used = page->used_bytes();
        for (const v1::PredictionRecord& rec : page->records()) {
          ++shown;
          if (g.json) {
            out << ToJsonLine(rec) << "\n";
            continue;
          }
          const std::string feedback =
              rec.feedback_label().empty() ? "-" : absl::StrCat(rec.feedback_label(), rec.disagrees() ? " (disagrees)" : "");
          out << absl::StrFormat("%-18s %-8d %-20s %-15s %-28s %s\n", rec.prediction_id(), rec.version(),
                                 Timestamp(static_cast<int64_t>(rec.created_at())), rec.reason(), TopText(rec),
                                 feedback);
        }
        if (page->next_page_token().empty()) break;
        r.set_page_token(page->next_page_token());
      }
      if (!g.json) out << shown << " records; the model's records hold " << HumanBytes(used) << "\n";
      return absl::OkStatus();
    };
  });

  struct ShowArgs {
    std::string id, image;
  };
  auto sa = std::make_shared<ShowArgs>();
  auto* show = preds->add_subcommand("show", "one prediction record");
  show->add_option("id", sa->id, "prediction id (the answer's prediction_id)")->required();
  show->add_option("--image", sa->image, "write the recorded image to this file");
  show->callback([&g, &out, action, sa]() {
    *action = [&g, &out, sa](GraftClient& c) -> absl::Status {
      auto r = c.GetPrediction(sa->id, !sa->image.empty());
      if (!r.ok()) return r.status();
      if (!sa->image.empty()) {
        if (auto s = core::WriteFileAtomic(sa->image, r->image()); !s.ok()) return s;
        r->clear_image();
      }
      return Show(absl::StatusOr<v1::PredictionRecord>(*r), g, out, PrintRecord);
    };
  });

  auto purge_model = std::make_shared<std::string>();
  auto* purge = preds->add_subcommand("purge", "delete every prediction record of a model (and its images)");
  purge->add_option("model", *purge_model, "NAME or a model id")->required();
  purge->callback([&out, action, purge_model]() {
    *action = [&out, purge_model](GraftClient& c) -> absl::Status {
      auto n = c.PurgePredictions(*purge_model);
      if (!n.ok()) return n.status();
      out << *n << " prediction records of " << *purge_model << " deleted\n";
      return absl::OkStatus();
    };
  });

  // graft datasets from-predictions (the datasets command exists: added before this one).
  struct FromArgs {
    std::string model, name, since;
    bool labelled_only = false;
    float val_fraction = 0;
    uint64_t seed = 0;
  };
  auto fr = std::make_shared<FromArgs>();
  CLI::App* datasets = app.get_subcommand("datasets");
  auto* from = datasets->add_subcommand(
      "from-predictions", "a dataset from a model's prediction records (one folder per label; images deduplicated)");
  from->add_option("model", fr->model, "NAME or a model id whose records to use")->required();
  from->add_option("--name", fr->name, "the new dataset's name")->required();
  from->add_flag("--labelled_only,--labelled-only", fr->labelled_only,
                 "only records with feedback (otherwise a record without feedback is labelled with the model's answer)");
  from->add_option("--since", fr->since, "a duration (24h) back, or Unix seconds");
  from->add_option("--val_fraction", fr->val_fraction, "held out for validation (default 0.2)")
      ->check(CLI::Range(0.0, 0.99));
  from->add_option("--seed", fr->seed, "the validation split's seed");
  from->callback([&g, &out, action, fr]() {
    *action = [&g, &out, fr](GraftClient& c) -> absl::Status {
      v1::CreateDatasetFromPredictionsRequest r;
      r.set_model(fr->model);
      r.set_name(fr->name);
      r.set_labelled_only(fr->labelled_only);
      auto since = SinceFrom(fr->since);
      if (!since.ok()) return since.status();
      r.set_since(*since);
      r.mutable_split()->set_fraction(fr->val_fraction);
      r.mutable_split()->set_seed(fr->seed);
      auto made = c.CreateDatasetFromPredictions(r);
      if (!made.ok()) return made.status();
      if (g.json) {
        out << ToJson(*made) << "\n";
        return absl::OkStatus();
      }
      PrintDataset(made->dataset(), out);
      out << "from " << made->records() << " records (" << made->duplicates() << " repeated images";
      if (fr->labelled_only) out << ", " << made->unlabelled() << " without feedback left out";
      out << ")\n";
      for (const auto& f : made->rejected()) out << "  rejected " << f.path() << ": " << f.reason() << "\n";
      return absl::OkStatus();
    };
  });

  struct FeedbackArgs {
    std::string id, label;
  };
  auto fa = std::make_shared<FeedbackArgs>();
  auto* feedback = app.add_subcommand("feedback", "give a recorded prediction its true label");
  feedback->add_option("id", fa->id, "prediction id")->required();
  feedback->add_option("label", fa->label, "the true class")->required();
  feedback->callback([&g, &out, action, fa]() {
    *action = [&g, &out, fa](GraftClient& c) -> absl::Status {
      return Show(c.Feedback(fa->id, fa->label), g, out, PrintRecord);
    };
  });
}

}  // namespace graft::client
