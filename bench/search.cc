// bench/search: a search job (grid of 2 backbones x 8 learning rates x 3
// heads, 25 epochs each: 48 trials on features computed once per backbone)
// against (d) one default graft job on one backbone, (a) the same 48 trials
// run as separate graft jobs and (b) the Python reference running the grid
// the usual way (features recomputed per trial), all in this run, on an
// in-process graftd over loopback. Prints "name: value" lines and the ratios.
//
// build/bench/search [--threads N] [--epochs E] [--separate N] [--python N] [--trials_at_once N] [--unfused 0|1]
//   --separate N: run the first N trials of each backbone as separate jobs (0: all 48)
//   --python N:   the reference runs the first N trials of each backbone (0: all; -1: skip)
// With N < 24 the measured seconds per trial (per backbone) are scaled to the full grid.
//   --unfused 1:  the search again on a graftd restarted with --search_fuse_trials=false
// The search's own reference is its two feature passes (its `features` lines):
// search_vs_feature_passes is the whole search over their sum.

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_server.h"
#include "bench/bench_util.h"

namespace {

using Clock = std::chrono::steady_clock;

const std::vector<std::string> kBackbones = {"mobilenet_v2", "squeezenet1_1"};
const std::vector<double> kRates = {1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1};
struct Head {
  std::vector<int> hidden;
  float dropout;
};
const std::vector<Head> kHeads = {{{}, 0.0f}, {{256}, 0.2f}, {{512, 128}, 0.3f}};

struct Args {
  int threads = 2;
  int epochs = 25;
  int separate = 0;
  int python = 0;
  int trials_at_once = 0;
  bool unfused = true;
};

// The seconds a `features` line ends with ("... in 2.87 s").
double FeatureSeconds(const std::string& line) {
  const size_t in = line.rfind(" in ");
  return in == std::string::npos ? 0 : std::atof(line.c_str() + in + 4);
}

struct JobRun {
  double seconds = 0;
  graft::v1::Job job;
  std::string error;
};

JobRun RunJob(graft::client::GraftClient& client, const graft::v1::JobSpec& spec) {
  JobRun run;
  const auto start = Clock::now();
  auto job = client.CreateJob(spec);
  if (!job.ok()) {
    run.error = std::string(job.status().message());
    return run;
  }
  const auto watched = client.WatchJob(job->id(), false, [](const graft::v1::JobEvent&) { return true; });
  auto done = client.GetJob(job->id());
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!watched.ok() || !done.ok() || done->state() != graft::v1::JOB_STATE_SUCCEEDED) {
    run.error = done.ok() ? "job ended " + graft::v1::JobState_Name(done->state()) + ": " + done->error()
                          : std::string(done.status().message());
    return run;
  }
  run.job = *done;
  return run;
}

graft::v1::JobSpec BaseSpec(int epochs) {
  graft::v1::JobSpec spec;
  spec.set_dataset("hymenoptera");
  spec.set_seed(1);
  auto* stage = spec.add_stages();
  stage->set_epochs(epochs);
  stage->set_train("head");
  stage->mutable_optimizer()->set_kind(graft::v1::OPTIMIZER_ADAM);
  return spec;
}

// Ranks as the search does: val accuracy, then the lower val loss.
bool Better(const graft::v1::EpochMetrics& a, const graft::v1::EpochMetrics& b) {
  if (a.val_accuracy() != b.val_accuracy()) return a.val_accuracy() > b.val_accuracy();
  return a.val_loss() < b.val_loss();
}

}  // namespace

int main(int argc, char** argv) {
  std::cout << std::unitbuf;  // each line as it comes (the run takes minutes)
  Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--threads")
      args.threads = std::stoi(value);
    else if (flag == "--epochs")
      args.epochs = std::stoi(value);
    else if (flag == "--separate")
      args.separate = std::stoi(value);
    else if (flag == "--python")
      args.python = std::stoi(value);
    else if (flag == "--trials_at_once")
      args.trials_at_once = std::stoi(value);
    else if (flag == "--unfused")
      args.unfused = std::stoi(value) != 0;
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  const int per_backbone = static_cast<int>(kRates.size() * kHeads.size());
  const int trials = per_backbone * static_cast<int>(kBackbones.size());
  std::cout << "threads: " << args.threads << "\nepochs: " << args.epochs << "\ntrials: " << trials << "\n";

  graft::bench::ScratchDir dir;
  auto options = graft::bench::BenchServerOptions(dir.path(), args.threads);
  options.search_trials_at_once = args.trials_at_once;
  options.max_queued_jobs_per_principal = 64;
  auto server = graft::server::GraftServer::Start(options);  // trials fused (the default)
  if (!server.ok()) {
    std::cerr << "graftd: " << server.status() << "\n";
    return 1;
  }
  graft::client::GraftClient client("127.0.0.1:" + std::to_string((*server)->port()),
                                    graft::bench::BenchClientOptions(dir.path()));
  if (auto d = client.UploadDataset(graft::bench::SharedDir() + "/data/hymenoptera", "hymenoptera"); !d.ok()) {
    std::cerr << "upload: " << d.status() << "\n";
    return 1;
  }

  // (d) One default job: mobilenet_v2, 10 epochs, Adam 1e-3, linear head.
  graft::v1::JobSpec one;
  one.set_backbone("mobilenet_v2");
  one.set_dataset("hymenoptera");
  one.set_seed(1);
  const JobRun default_job = RunJob(client, one);
  if (!default_job.error.empty()) {
    std::cerr << "default job: " << default_job.error << "\n";
    return 1;
  }
  std::cout << "default_job_seconds: " << default_job.seconds
            << "\ndefault_job_best_val_accuracy: " << default_job.job.best().val_accuracy() << "\n";

  // The search.
  graft::v1::JobSpec search = BaseSpec(args.epochs);
  for (const auto& b : kBackbones) search.mutable_search()->add_backbones(b);
  for (double lr : kRates) search.mutable_search()->add_learning_rates(lr);
  for (const Head& h : kHeads) {
    auto* head = search.mutable_search()->add_heads();
    for (int u : h.hidden) head->add_hidden_units(u);
    head->set_dropout(h.dropout);
  }
  const JobRun searched = RunJob(client, search);
  if (!searched.error.empty()) {
    std::cerr << "search job: " << searched.error << "\n";
    return 1;
  }
  auto with_board = client.GetJob(searched.job.id());
  if (!with_board.ok() || with_board->search().leaderboard_size() == 0) {
    std::cerr << "search job: no leaderboard\n";
    return 1;
  }
  const graft::v1::Trial& winner = with_board->search().leaderboard(0);
  std::cout << "search_seconds: " << searched.seconds << "\nsearch_trials_done: " << with_board->search().trials_done()
            << "\nsearch_winner_trial: " << winner.index()
            << "\nsearch_winner_val_accuracy: " << winner.best().val_accuracy()
            << "\nsearch_winner_val_loss: " << winner.best().val_loss() << "\n";
  double feature_seconds = 0;
  for (const auto& f : with_board->search().features()) {
    std::cout << "# features " << f << "\n";
    feature_seconds += FeatureSeconds(f);
  }
  int fused = 0;
  for (const auto& t : with_board->search().leaderboard()) fused += t.fused_trials() > 1;
  std::cout << "search_trials_fused: " << fused << "\nfeature_passes_seconds: " << feature_seconds
            << "\nsearch_vs_feature_passes: " << searched.seconds / feature_seconds << "  (target <= 1.3)"
            << "\nsearch_vs_default_job: " << searched.seconds / default_job.seconds << "  (target <= 1.5)\n";

  // The same search with every trial alone, on a graftd restarted without fusion.
  if (args.unfused) {
    server->reset();
    options.search_fuse_trials = false;
    server = graft::server::GraftServer::Start(options);
    if (!server.ok()) {
      std::cerr << "graftd: " << server.status() << "\n";
      return 1;
    }
    graft::client::GraftClient plain("127.0.0.1:" + std::to_string((*server)->port()),
                                     graft::bench::BenchClientOptions(dir.path()));
    const JobRun alone = RunJob(plain, search);
    if (!alone.error.empty()) {
      std::cerr << "unfused search job: " << alone.error << "\n";
      return 1;
    }
    auto board = plain.GetJob(alone.job.id());
    std::cout << "unfused_search_seconds: " << alone.seconds << "\nunfused_search_winner_trial: "
              << (board.ok() && board->search().leaderboard_size() > 0 ? board->search().leaderboard(0).index() : 0)
              << "\nunfused_vs_fused_search: " << alone.seconds / searched.seconds << "\n";
    options.search_fuse_trials = true;
    server->reset();
    server = graft::server::GraftServer::Start(options);
    if (!server.ok()) {
      std::cerr << "graftd: " << server.status() << "\n";
      return 1;
    }
  }
  graft::client::GraftClient again("127.0.0.1:" + std::to_string((*server)->port()),
                                   graft::bench::BenchClientOptions(dir.path()));

  // (a) The same trials as separate jobs.
  if (args.separate >= 0) {
    const int n = args.separate == 0 ? per_backbone : std::min(args.separate, per_backbone);
    double seconds = 0;
    int run = 0;
    graft::v1::EpochMetrics best;
    int best_index = 0;
    for (size_t b = 0; b < kBackbones.size(); ++b) {
      int index = static_cast<int>(b) * per_backbone;
      for (double lr : kRates) {
        for (const Head& h : kHeads) {
          ++index;
          if (index - static_cast<int>(b) * per_backbone > n) continue;
          graft::v1::JobSpec spec = BaseSpec(args.epochs);
          spec.set_backbone(kBackbones[b]);
          spec.mutable_stages(0)->mutable_optimizer()->set_learning_rate(lr);
          // As the search monitors its trials: the best epoch by val accuracy.
          spec.mutable_early_stopping()->set_monitor(graft::v1::MONITOR_VAL_ACCURACY);
          for (int u : h.hidden) spec.mutable_head()->add_hidden_units(u);
          spec.mutable_head()->set_dropout(h.dropout);
          const JobRun job = RunJob(again, spec);
          if (!job.error.empty()) {
            std::cerr << "separate job " << index << ": " << job.error << "\n";
            return 1;
          }
          seconds += job.seconds;
          ++run;
          std::cout << "separate_trial_" << index << "_seconds: " << job.seconds << "\nseparate_trial_" << index
                    << "_best_val_accuracy: " << job.job.best().val_accuracy() << "\n";
          if (best_index == 0 || Better(job.job.best(), best)) {
            best = job.job.best();
            best_index = index;
          }
        }
      }
    }
    const double total = seconds * trials / run;
    std::cout << "separate_jobs_run: " << run << "\nseparate_jobs_seconds" << (run < trials ? "_scaled" : "") << ": "
              << total << "\nseparate_best_trial: " << best_index
              << "\nseparate_best_val_accuracy: " << best.val_accuracy()
              << "\nseparate_vs_search: " << total / searched.seconds << "  (target >= 10)\n";
    if (run == trials) {
      std::cout << "winner_equals_separate_best: "
                << (best.val_accuracy() == winner.best().val_accuracy() ? "yes" : "no") << "\n";
    }
  }

  // (b) The Python reference.
  if (args.python >= 0) {
    const std::string cmd =
        absl::StrCat(graft::bench::kPython, " ", GRAFT_BENCH_DIR, "/reference/search_reference.py --data ",
                     graft::bench::SharedDir(), "/data/hymenoptera --weights ", graft::bench::SharedDir(),
                     "/weights --epochs ", args.epochs, " --threads ", args.threads, " --per_backbone ", args.python);
    const auto values = graft::bench::ParseValues(graft::bench::RunCommand(cmd));
    if (!values.count("wall_seconds") || !values.count("trials")) {
      std::cerr << "the Python reference printed no result\n";
      return 1;
    }
    const double ran = values.at("trials");
    double best = 0;
    for (const auto& [k, v] : values) {
      if (k.find("best_val_accuracy") != std::string::npos) best = std::max(best, v);
    }
    const double total = values.at("wall_seconds") * trials / ran;
    std::cout << "python_trials_run: " << ran << "\npython_seconds" << (ran < trials ? "_scaled" : "") << ": " << total
              << "\npython_best_val_accuracy_of_those_run: " << best
              << "\npython_vs_search: " << total / searched.seconds << "  (target >= 50)\n";
  }
  return 0;
}
