// graft train | search | lr-find | jobs | job ID | watch ID | cancel ID (retrain: cli_retrain.cc)

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <iomanip>
#include <map>
#include <mutex>
#include <ostream>
#include <thread>
#include <unistd.h>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli_commands.h"
#include "client/cli_search.h"
#include "client/client.h"
#include "core/util/files.h"

namespace graft::client {

// --monitor / --metric (CLI11 has checked the name).
v1::Monitor MonitorOf(const std::string& name) {
  return name == "val_accuracy"   ? v1::MONITOR_VAL_ACCURACY
         : name == "val_macro_f1" ? v1::MONITOR_VAL_MACRO_F1
                                  : v1::MONITOR_VAL_LOSS;
}

namespace {


struct TrainOptions {
  std::string spec_file, search_file, backbone, dataset, name, model_name;
  std::vector<std::string> add;  // add_datasets
  std::string lr;  // a number or "auto"
  double min_lr = 0, max_lr = 0;  // lr-find
  int steps = 0;
  int epochs = 0;
  std::string train = "head", optimizer = "adam", schedule = "constant";
  double momentum = 0, weight_decay = 0, gamma = 0.1;
  bool nesterov = false;
  int step_epochs = 0, warmup_epochs = 0;
  int fine_tune_epochs = 0;
  std::string fine_tune = "top:2", fine_tune_optimizer = "sgd";
  double fine_tune_lr = 1e-4, fine_tune_momentum = 0.9;
  std::vector<int> hidden;
  double dropout = 0;
  int batch_size = 0, input_size = 0, cached_views = 0;
  bool flip = false, crop = false;
  double crop_scale_min = 0, color_jitter = 0, label_smoothing = 0, val_fraction = 0;
  bool class_weighting = false, balanced_sampling = false, early_stopping = false, no_restore_best = false;
  std::string monitor = "val_loss";
  std::string batch_norm = "frozen", restore_best = "job";
  int patience = 0;
  double min_delta = 0;
  uint64_t seed = 0;
  int workers = 1;
  std::string precision = "auto";
  bool watch = false;
};

const std::map<std::string, v1::OptimizerKind> kOptimizers = {
    {"sgd", v1::OPTIMIZER_SGD}, {"adam", v1::OPTIMIZER_ADAM}, {"adamw", v1::OPTIMIZER_ADAMW}, {"rmsprop", v1::OPTIMIZER_RMSPROP}};
const std::map<std::string, v1::ScheduleKind> kSchedules = {{"constant", v1::SCHEDULE_CONSTANT},
                                                            {"step", v1::SCHEDULE_STEP},
                                                            {"cosine", v1::SCHEDULE_COSINE},
                                                            {"one_cycle", v1::SCHEDULE_ONE_CYCLE}};

absl::StatusOr<v1::JobSpec> BuildSpec(const TrainOptions& o) {
  v1::JobSpec spec;
  if (!o.spec_file.empty()) {
    auto text = core::ReadFile(o.spec_file);
    if (!text.ok()) return text.status();
    if (auto s = ExpandAutoLearningRate(*text); !s.ok()) return absl::InvalidArgumentError(absl::StrCat(o.spec_file, ": ", s.message()));
    const auto parsed = google::protobuf::util::JsonStringToMessage(*text, &spec);
    if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat(o.spec_file, ": ", parsed.ToString()));
  }
  if (!o.search_file.empty()) {
    auto text = core::ReadFile(o.search_file);
    if (!text.ok()) return text.status();
    const auto parsed = google::protobuf::util::JsonStringToMessage(*text, spec.mutable_search());
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(o.search_file, " (a SearchSpec): ", parsed.ToString()));
    }
  }
  double lr = 0;
  const bool auto_lr = o.lr == "auto";
  if (!o.lr.empty() && !auto_lr && !absl::SimpleAtod(o.lr, &lr)) {
    return absl::InvalidArgumentError(absl::StrCat("--lr: a number or auto, got '", o.lr, "'"));
  }
  if (!o.backbone.empty()) spec.set_backbone(o.backbone);
  if (!o.dataset.empty()) spec.set_dataset(o.dataset);
  if (!o.name.empty()) spec.set_name(o.name);
  if (!o.model_name.empty()) spec.set_model_name(o.model_name);
  for (const std::string& d : o.add) spec.add_add_datasets(d);
  if (!o.spec_file.empty() && o.epochs == 0) return spec;  // the file says it all
  auto* stage = spec.add_stages();
  stage->set_epochs(o.epochs == 0 ? 10 : o.epochs);
  stage->set_train(o.train);
  stage->mutable_optimizer()->set_kind(kOptimizers.at(o.optimizer));
  stage->mutable_optimizer()->set_learning_rate(lr);
  stage->mutable_optimizer()->set_auto_learning_rate(auto_lr);
  stage->mutable_optimizer()->set_momentum(o.momentum);
  stage->mutable_optimizer()->set_nesterov(o.nesterov);
  stage->mutable_optimizer()->set_weight_decay(o.weight_decay);
  stage->mutable_schedule()->set_kind(kSchedules.at(o.schedule));
  stage->mutable_schedule()->set_step_epochs(o.step_epochs);
  stage->mutable_schedule()->set_gamma(o.gamma);
  stage->mutable_schedule()->set_warmup_epochs(o.warmup_epochs);
  const v1::BatchNorm batch_norm = o.batch_norm == "train" ? v1::BATCH_NORM_TRAIN : v1::BATCH_NORM_FROZEN;
  stage->set_batch_norm(batch_norm);
  if (o.fine_tune_epochs > 0) {
    auto* ft = spec.add_stages();
    ft->set_epochs(o.fine_tune_epochs);
    ft->set_train(o.fine_tune);
    ft->mutable_optimizer()->set_kind(kOptimizers.at(o.fine_tune_optimizer));
    ft->mutable_optimizer()->set_learning_rate(o.fine_tune_lr);
    ft->mutable_optimizer()->set_momentum(o.fine_tune_optimizer == "sgd" ? o.fine_tune_momentum : 0);
    ft->set_batch_norm(batch_norm);
  }
  for (int h : o.hidden) spec.mutable_head()->add_hidden_units(h);
  spec.mutable_head()->set_dropout(static_cast<float>(o.dropout));
  spec.set_batch_size(o.batch_size);
  spec.set_input_size(o.input_size);
  spec.set_validation_fraction(static_cast<float>(o.val_fraction));
  auto* a = spec.mutable_augmentation();
  a->set_horizontal_flip(o.flip);
  a->set_random_resized_crop(o.crop);
  a->set_crop_scale_min(static_cast<float>(o.crop_scale_min));
  a->set_color_jitter(static_cast<float>(o.color_jitter));
  a->set_cached_views(o.cached_views);
  spec.set_label_smoothing(static_cast<float>(o.label_smoothing));
  spec.set_class_weighting(o.class_weighting);
  spec.set_balanced_sampling(o.balanced_sampling);
  auto* e = spec.mutable_early_stopping();
  e->set_enabled(o.early_stopping);
  e->set_monitor(MonitorOf(o.monitor));
  e->set_patience(o.patience);
  e->set_min_delta(o.min_delta);
  e->set_disable_restore_best(o.no_restore_best);
  e->set_restore_best(o.restore_best == "per_stage" ? v1::RESTORE_BEST_PER_STAGE : v1::RESTORE_BEST_JOB);
  spec.set_seed(o.seed);
  spec.set_workers(o.workers);
  spec.set_precision(o.precision == "bf16" ? v1::PRECISION_BF16 : o.precision == "fp32" ? v1::PRECISION_FP32
                                                                                        : v1::PRECISION_UNSPECIFIED);
  return spec;
}

// Follows a job: the per-epoch table, a progress bar within each epoch (on a
// terminal), then its end. Non-OK when the job did not succeed.
absl::Status Watch(GraftClient& client, const Globals& g, const std::string& id, std::ostream& out, std::ostream& err) {
  const bool tty = StderrIsTty() && !g.json;
  // On a terminal the learning curves stay under the table, redrawn as each
  // epoch comes; otherwise they are printed once at the end.
  const bool live_curves = ::isatty(STDOUT_FILENO) == 1 && !g.json;
  bool header = false, trial_header = false;
  bool bar = false;
  std::vector<v1::EpochMetrics> epochs;
  bool curves_shown = false;
  auto clear_bar = [&]() {
    if (bar) err << "\r" << std::string(80, ' ') << "\r" << std::flush;
    bar = false;
  };
  auto erase_curves = [&]() {
    if (curves_shown) out << "\x1b[2F\x1b[J";  // up two lines, clear to the end of the screen
    curves_shown = false;
  };
  int64_t last_seq = 0;  // the last stored event seen: a lost stream resumes after it
  const auto handle = [&](const v1::JobEvent& e) {
    if (!e.has_progress()) last_seq = e.seq();
    if (g.json) {
      out << ToJson(e) << "\n" << std::flush;
      return true;
    }
    if (e.has_progress()) {
      const auto& p = e.progress();
      err << "\r"
          << (p.features_backbone().empty() ? absl::StrCat("epoch ", p.epoch())
                                            : absl::StrCat("features of ", p.features_backbone()))
          << " " << Bar(static_cast<double>(p.batch()) / std::max(1, p.batches()), 30) << " " << p.batch() << "/"
          << p.batches() << std::flush;
      bar = true;
      return true;
    }
    clear_bar();
    erase_curves();
    if (e.has_state()) {
      out << "state: " << StateName(e.state().state());
      if (!e.state().reason().empty()) out << " (" << e.state().reason() << ")";
      out << "\n";
    } else if (e.has_epoch()) {
      if (!header) out << EpochHeader() << "\n";
      header = true;
      out << EpochRow(e.epoch()) << "\n";
      epochs.push_back(e.epoch());
    } else if (e.has_early_stop()) {
      out << "early stop at epoch " << e.early_stop().epoch() << ": best epoch " << e.early_stop().best_epoch()
          << " (" << e.early_stop().best_value() << ")\n";
    } else if (e.has_best_restored()) {
      const auto& r = e.best_restored();
      if (r.across_stages()) {
        out << "published the job's best epoch: epoch " << r.epoch() << " of stage " << r.stage() << " (" << r.value()
            << "); later stages did not improve on it\n";
      } else {
        out << "restored the weights of epoch " << r.epoch() << "\n";
      }
    } else if (e.has_features()) {
      out << "features: " << e.features() << "\n";
    } else if (e.has_trial()) {
      if (!trial_header) out << TrialHeader() << "\n";
      trial_header = true;
      out << TrialRow(e.trial()) << "\n";
    } else if (e.has_learning_rate()) {
      out << LrPlot(e.learning_rate()) << "learning rate found: " << e.learning_rate().suggested() << "\n";
    } else if (e.has_promotion()) {
      out << (e.promotion().promoted() ? "promoted: " : "not promoted: ") << e.promotion().reason() << "\n";
    }
    if (live_curves && !epochs.empty()) {
      out << LearningCurves(epochs) << "\n";
      curves_shown = true;
    }
    out << std::flush;
    return true;
  };
  absl::Status s = client.WatchJob(id, tty, handle);
  // A stream that breaks once events came (graftd restarting, a network
  // blip) is resumed after the last event seen, for up to two minutes.
  for (int attempt = 0; s.code() == absl::StatusCode::kUnavailable && last_seq > 0 && attempt < 120; ++attempt) {
    clear_bar();
    if (attempt == 0) err << "graft: " << s.message() << "; resuming after event " << last_seq << "\n" << std::flush;
    std::this_thread::sleep_for(std::chrono::seconds(1));
    s = client.WatchJob(id, tty, handle, last_seq);
  }
  clear_bar();
  if (!s.ok()) return s;
  if (!g.json && std::any_of(epochs.begin(), epochs.end(), [](const v1::EpochMetrics& e) { return e.frozen_part_cached(); })) {
    out << "* the frozen part's output was cached: img/s counts the trainable part (the first such epoch built the cache)\n";
  }
  if (!g.json && std::any_of(epochs.begin(), epochs.end(), [](const v1::EpochMetrics& e) { return e.frozen_part_bf16(); })) {
    out << "b the frozen part ran in bfloat16 (spec.precision)\n";
  }
  if (!live_curves && !g.json && !epochs.empty()) out << "learning curves:\n" << LearningCurves(epochs) << "\n";
  auto job = client.GetJob(id);
  if (!job.ok()) return job.status();
  if (!g.json && job->has_search() && job->search().leaderboard_size() > 0) {
    out << LeaderboardTable(job->search(), 10);
  }
  if (job->state() == v1::JOB_STATE_SUCCEEDED) {
    if (!g.json) out << "model: " << job->model_id() << "\n";
    return absl::OkStatus();
  }
  return absl::AbortedError(absl::StrCat("job ", id, " ended ", StateName(job->state()), ": ", job->error()));
}

}  // namespace

// A job just created: its id and state (or its JSON), then followed with --watch.
absl::Status StartedJob(GraftClient& c, const Globals& g, const absl::StatusOr<v1::Job>& job, bool watch,
                        std::ostream& out, std::ostream& err) {
  if (!job.ok()) return job.status();
  if (g.json && !watch) {
    out << ToJson(*job) << "\n";
    return absl::OkStatus();
  }
  if (!g.json) out << "job " << job->id() << " " << StateName(job->state()) << "\n" << std::flush;
  return watch ? Watch(c, g, job->id(), out, err) : absl::OkStatus();
}

void PrintJob(const v1::Job& j, std::ostream& out) {
  // A search's backbone is its winner's (once there is one), among those it tried.
  std::string backbone = j.spec().backbone();
  if (j.spec().has_search()) {
    backbone = absl::StrCat("search over ", absl::StrJoin(j.spec().search().backbones(), ", "));
    if (j.search().leaderboard_size() > 0) {
      backbone = absl::StrCat(j.search().leaderboard(0).backbone(), " (", backbone, ")");
    }
  }
  out << "id:       " << j.id() << "\n"
      << "state:    " << StateName(j.state()) << (j.error().empty() ? "" : " (" + j.error() + ")") << "\n"
      << "backbone: " << backbone << "\n"
      << "dataset:  " << j.spec().dataset() << "\n";
  if (j.spec().has_search()) {
    out << "trials:   " << j.search().trials_done() << " / " << j.search().trials_planned() << "\n";
  }
  // A search's first stage is its trials' (counted above); epochs are shown
  // when it has further stages.
  if (!j.spec().has_search() || j.spec().stages_size() > 1) {
    out << "epochs:   " << j.epochs_done() << " / " << j.epochs_total() << "\n";
  }
  out << "created:  " << Timestamp(j.created_at().seconds()) << "\n"
      << "model:    " << (j.model_id().empty() ? "-" : j.model_id()) << "\n";
  if (!j.worker().empty()) out << "worker:   " << j.worker() << "\n";
  if (j.has_last()) out << "last:     " << EpochRow(j.last()) << "\n";
  if (j.has_best()) out << "best:     " << EpochRow(j.best()) << "\n";
  if (j.found_learning_rate() > 0) out << "learning rate found: " << j.found_learning_rate() << "\n";
  if (j.has_promotion()) {
    out << "promotion: " << (j.promotion().promoted() ? "promoted: " : "not promoted: ") << j.promotion().reason()
        << "\n";
  }
  if (j.has_search()) {
    for (const auto& f : j.search().features()) out << "features: " << f << "\n";
    out << LeaderboardTable(j.search());
  }
  out << "spec:\n" << ToJson(j.spec()) << "\n";
}

namespace {

absl::Status ListJobs(GraftClient& client, const Globals& g, std::ostream& out) {
  auto r = client.ListJobs();
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
    return absl::OkStatus();
  }
  out << std::left << std::setw(18) << "ID" << std::setw(11) << "STATE" << std::setw(15) << "BACKBONE" << std::setw(17)
      << "DATASET" << std::setw(8) << "EPOCHS" << std::setw(9) << "VAL_ACC" << std::setw(20) << "MODEL" << "CREATED\n";
  for (const auto& j : r->jobs()) {
    std::ostringstream acc;
    if (j.has_best()) acc << std::fixed << std::setprecision(4) << j.best().val_accuracy();
    out << std::left << std::setw(18) << j.id() << std::setw(11) << StateName(j.state()) << std::setw(15)
        << (j.spec().has_search() ? "search" : j.spec().backbone()) << std::setw(17) << j.spec().dataset() << std::setw(8)
        << absl::StrCat(j.epochs_done(), "/", j.epochs_total()) << std::setw(9) << (j.has_best() ? acc.str() : "-")
        << std::setw(20) << (j.model_id().empty() ? "-" : j.model_id()) << Timestamp(j.created_at().seconds()) << "\n";
  }
  return absl::OkStatus();
}

void AddTrainOptions(CLI::App* cmd, TrainOptions& o) {
  cmd->add_option("--spec", o.spec_file, "JobSpec as JSON (protobuf JSON mapping); flags below override")
      ->check(CLI::ExistingFile);
  cmd->add_option("--backbone,-b", o.backbone, "backbone name or alias");
  cmd->add_option("--dataset,-d", o.dataset, "dataset id or name");
  cmd->add_option("--name", o.name, "a label for listings");
  cmd->add_option("--model_name", o.model_name,
                    "publish the model as the next version of this name (then NAME, NAME:VERSION, NAME@ALIAS)");
  cmd->add_option("--epochs,-e", o.epochs, "epochs of the first stage (default 10)")->check(CLI::Range(1, 10000));
  cmd->add_option("--train", o.train, "what the first stage trains: head, top:N or all")->capture_default_str();
  cmd->add_option("--optimizer", o.optimizer, "sgd, adam, adamw or rmsprop")
      ->check(CLI::IsMember({"sgd", "adam", "adamw", "rmsprop"}))->capture_default_str();
  cmd->add_option("--lr", o.lr, "learning rate (default 1e-3; 1e-2 for sgd), or auto: found by the range test first");
  cmd->add_option("--momentum", o.momentum, "SGD/RMSprop momentum");
  cmd->add_flag("--nesterov", o.nesterov, "Nesterov momentum (SGD)");
  cmd->add_option("--weight_decay", o.weight_decay, "weight decay");
  cmd->add_option("--schedule", o.schedule, "constant, step, cosine or one_cycle")
      ->check(CLI::IsMember({"constant", "step", "cosine", "one_cycle"}))->capture_default_str();
  cmd->add_option("--step_epochs", o.step_epochs, "step schedule: decay every N epochs");
  cmd->add_option("--gamma", o.gamma, "step schedule: decay factor")->capture_default_str();
  cmd->add_option("--warmup_epochs", o.warmup_epochs, "linear warmup epochs");
  cmd->add_option("--fine_tune_epochs", o.fine_tune_epochs, "add a second stage that unfreezes blocks");
  cmd->add_option("--fine_tune", o.fine_tune, "what the second stage trains")->capture_default_str();
  cmd->add_option("--fine_tune_lr", o.fine_tune_lr, "second stage learning rate")->capture_default_str();
  cmd->add_option("--fine_tune_optimizer", o.fine_tune_optimizer, "second stage optimizer")
      ->check(CLI::IsMember({"sgd", "adam", "adamw", "rmsprop"}))->capture_default_str();
  cmd->add_option("--fine_tune_momentum", o.fine_tune_momentum, "second stage SGD momentum")->capture_default_str();
  cmd->add_option("--hidden", o.hidden, "hidden Dense layers of the head, e.g. --hidden 1024")->delimiter(',');
  cmd->add_option("--dropout", o.dropout, "dropout before each Dense layer of the head");
  cmd->add_option("--batch_size", o.batch_size, "batch size (default 32)");
  cmd->add_option("--input_size", o.input_size, "input size (default: the backbone's)");
  cmd->add_option("--val_fraction", o.val_fraction, "re-split a flat dataset for this job");
  cmd->add_flag("--flip", o.flip, "augment: random horizontal flip");
  cmd->add_flag("--crop", o.crop, "augment: RandomResizedCrop");
  cmd->add_option("--crop_scale_min", o.crop_scale_min, "RandomResizedCrop smallest area (default 0.08)");
  cmd->add_option("--color_jitter", o.color_jitter, "augment: brightness/contrast/saturation strength");
  cmd->add_option("--cached_views", o.cached_views,
                    "augment: cache K augmented views per training image (frozen part runs once)");
  cmd->add_option("--label_smoothing", o.label_smoothing, "label smoothing");
  cmd->add_flag("--class_weighting", o.class_weighting, "weight the loss by inverse class frequency");
  cmd->add_flag("--balanced_sampling", o.balanced_sampling, "draw every class equally often in training");
  cmd->add_flag("--early_stopping", o.early_stopping, "stop after --patience epochs without improvement");
  cmd->add_option("--monitor", o.monitor, "val_loss, val_accuracy or val_macro_f1 (imbalanced classes)")
      ->check(CLI::IsMember({"val_loss", "val_accuracy", "val_macro_f1"}))->capture_default_str();
  cmd->add_option("--patience", o.patience, "epochs without improvement before stopping (default 5)");
  cmd->add_option("--min_delta", o.min_delta, "smallest change that counts as an improvement");
  cmd->add_flag("--no_restore_best", o.no_restore_best, "keep the last epoch's weights, not the best");
  cmd->add_option("--restore_best", o.restore_best,
                  "job: publish the best epoch of all stages; per_stage: the last stage's best")
      ->check(CLI::IsMember({"job", "per_stage"}))->capture_default_str();
  cmd->add_option("--batch_norm", o.batch_norm,
                  "batch norm in trained blocks: frozen (Keras' advice) or train (PyTorch's model.train())")
      ->check(CLI::IsMember({"frozen", "train"}))->capture_default_str();
  cmd->add_option("--seed", o.seed, "seed");
  cmd->add_option("--workers", o.workers, "trainer processes sharing each batch (data-parallel)")->capture_default_str();
  cmd->add_option("--precision", o.precision, "the frozen trunk's training pass: auto, bf16 or fp32 (README, Precision)")
      ->check(CLI::IsMember({"auto", "bf16", "fp32"}))->capture_default_str();
  cmd->add_option("--add", o.add, "a dataset whose every image joins the training split (repeatable)");
}


absl::Status RunTrain(GraftClient& c, const Globals& g, const TrainOptions& o, std::ostream& out, std::ostream& err) {
  auto spec = BuildSpec(o);
  if (!spec.ok()) return spec.status();
  return StartedJob(c, g, c.CreateJob(*spec), o.watch, out, err);
}

absl::Status RunLrFind(GraftClient& c, const Globals& g, const TrainOptions& o, std::ostream& out, std::ostream& err) {
  auto spec = BuildSpec(o);
  if (!spec.ok()) return spec.status();
  v1::FindLearningRateRequest r;
  *r.mutable_spec() = *spec;
  r.set_min_lr(o.min_lr);
  r.set_max_lr(o.max_lr);
  r.set_steps(o.steps);
  // One call that answers when the test is done: say what it does first
  // and, on a terminal, how long it has run.
  if (!g.json) {
    err << "range test on " << spec->backbone() << " over " << spec->dataset()
        << ": the frozen features of every training image, then one batch at each of "
        << (o.steps > 0 ? o.steps : 100) << " rising rates\n"
        << std::flush;
  }
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread ticker;
  if (!g.json && StderrIsTty()) {
    ticker = std::thread([&] {
      const auto start = std::chrono::steady_clock::now();
      std::unique_lock<std::mutex> lock(mu);
      while (!cv.wait_for(lock, std::chrono::seconds(1), [&] { return done; })) {
        const auto s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start);
        err << "\rrunning… " << s.count() << " s" << std::flush;
      }
      err << "\r" << std::string(40, ' ') << "\r" << std::flush;
    });
  }
  auto found = c.FindLearningRate(r);
  if (ticker.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu);
      done = true;
    }
    cv.notify_one();
    ticker.join();
  }
  return Show(found, g, out, [](const v1::LearningRateCurve& curve, std::ostream& os) {
    os << LrPlot(curve) << "steps: " << curve.learning_rates_size() << (curve.diverged() ? " (stopped: the loss diverged)" : "")
       << "\nlowest loss at: " << curve.min_loss_learning_rate() << "\nsuggested learning rate: " << curve.suggested()
       << "\n";
  });
}

}  // namespace

void AddJobCommands(CLI::App& app, const Globals& g, std::ostream& out, std::ostream& err, Action* action) {
  auto o = std::make_shared<TrainOptions>();
  auto* train = app.add_subcommand("train", "start a fine-tuning job (from flags or a JSON spec)");
  AddTrainOptions(train, *o);
  train->add_flag("--watch,-w", o->watch, "follow the job until it ends");
  train->add_option("--search", o->search_file,
                    "a SearchSpec as JSON (protobuf JSON mapping): try its backbones, rates, heads... on cached features");
  train->callback([&g, &out, &err, action, o]() {
    *action = [&g, &out, &err, o](GraftClient& c) { return RunTrain(c, g, *o, out, err); };
  });

  auto so = std::make_shared<TrainOptions>();
  auto* search = app.add_subcommand("search", "a search job: graft train with --search FILE (its leaderboard with -w)");
  AddTrainOptions(search, *so);
  search->add_option("--search", so->search_file, "a SearchSpec as JSON (protobuf JSON mapping)")->required();
  search->add_flag("--watch,-w", so->watch, "follow the search: a row per trial as it ends, then the leaderboard");
  search->callback([&g, &out, &err, action, so]() {
    *action = [&g, &out, &err, so](GraftClient& c) { return RunTrain(c, g, *so, out, err); };
  });

  auto lo = std::make_shared<TrainOptions>();
  auto* lr_find = app.add_subcommand("lr-find", "the learning-rate range test: loss against a rising rate, a suggestion");
  AddTrainOptions(lr_find, *lo);
  lr_find->add_option("--min_lr", lo->min_lr, "lowest rate (default 1e-7)");
  lr_find->add_option("--max_lr", lo->max_lr, "highest rate (default 10)");
  lr_find->add_option("--steps", lo->steps, "batches, one per rate (default 100)");
  lr_find->callback([&g, &out, &err, action, lo]() {
    *action = [&g, &out, &err, lo](GraftClient& c) { return RunLrFind(c, g, *lo, out, err); };
  });

  AddRetrainCommand(app, g, out, err, action);

  app.add_subcommand("jobs", "list jobs, newest first")->callback([&g, &out, action]() {
    *action = [&g, &out](GraftClient& c) { return ListJobs(c, g, out); };
  });
  auto id = std::make_shared<std::string>();
  auto* job = app.add_subcommand("job", "one job in full");
  job->add_option("id", *id, "job id")->required();
  job->callback([&g, &out, action, id]() {
    *action = [&g, &out, id](GraftClient& c) { return Show(c.GetJob(*id), g, out, PrintJob); };
  });
  auto watch_id = std::make_shared<std::string>();
  auto* watch = app.add_subcommand("watch", "follow a job: replays its events, then live");
  watch->add_option("id", *watch_id, "job id")->required();
  watch->callback([&g, &out, &err, action, watch_id]() {
    *action = [&g, &out, &err, watch_id](GraftClient& c) { return Watch(c, g, *watch_id, out, err); };
  });
  auto cancel_id = std::make_shared<std::string>();
  auto* cancel = app.add_subcommand("cancel", "cancel a queued or running job");
  cancel->add_option("id", *cancel_id, "job id")->required();
  cancel->callback([&g, &out, action, cancel_id]() {
    *action = [&g, &out, cancel_id](GraftClient& c) -> absl::Status {
      auto j = c.CancelJob(*cancel_id);
      if (!j.ok()) return j.status();
      if (g.json) {
        out << ToJson(*j) << "\n";
      } else {
        out << "job " << j->id() << " " << StateName(j->state()) << (j->error().empty() ? "" : ": " + j->error()) << "\n";
      }
      return absl::OkStatus();
    };
  });
}

}  // namespace graft::client
