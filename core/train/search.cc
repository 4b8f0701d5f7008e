#include "core/train/search.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/util/compute_threads.h"
#include "core/util/json.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"
#include "core/util/thread_pool.h"

namespace graft::core {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

// A feature pass's progress, passed on to the search's listener.
class FeatureProgress : public TrainEvents {
 public:
  explicit FeatureProgress(SearchEvents& events) : events_(events) {}
  void OnFeatureProgress(const std::string& backbone, int batch, int batches) override {
    events_.OnFeatureProgress(backbone, batch, batches);
  }

 private:
  SearchEvents& events_;
};

// The values each dimension takes.
struct Dimensions {
  std::vector<std::string> backbones;
  std::vector<double> learning_rates;
  std::vector<OptimizerKind> optimizers;
  std::vector<double> weight_decays;
  std::vector<HeadSpec> heads;
  std::vector<double> label_smoothings;
};

Dimensions DimensionsOf(const JobSpec& job, const std::vector<std::string>& backbones) {
  const SearchSpec& s = job.search;
  const OptimizerSpec& base = job.stages.front().optimizer;
  Dimensions d;
  d.backbones = backbones;
  d.learning_rates = s.learning_rates;
  if (d.learning_rates.empty() && s.lr_count >= 2) {
    for (int i = 0; i < s.lr_count; ++i) {
      d.learning_rates.push_back(s.lr_min * std::pow(s.lr_max / s.lr_min, static_cast<double>(i) / (s.lr_count - 1)));
    }
  }
  if (d.learning_rates.empty() && s.lr_min <= 0) d.learning_rates = {base.learning_rate};
  d.optimizers = s.optimizers.empty() ? std::vector<OptimizerKind>{base.kind} : s.optimizers;
  d.weight_decays = s.weight_decays.empty() ? std::vector<double>{base.weight_decay} : s.weight_decays;
  d.heads = s.heads.empty() ? std::vector<HeadSpec>{job.head} : s.heads;
  d.label_smoothings = s.label_smoothings.empty() ? std::vector<double>{job.label_smoothing} : s.label_smoothings;
  return d;
}

std::vector<std::vector<const TrialConfig*>> Singletons(const std::vector<const TrialConfig*>& todo) {
  std::vector<std::vector<const TrialConfig*>> out;
  for (const TrialConfig* c : todo) out.push_back({c});
  return out;
}

// Multiply-adds of one head per image.
double HeadCost(const HeadSpec& head, int64_t in, int classes) {
  double cost = 0;
  for (int units : head.hidden_units) {
    cost += static_cast<double>(in) * units;
    in = units;
  }
  return cost + static_cast<double>(in) * classes;
}

// A fused group holds at least this many trials when its head has them (it
// is split only to keep the threads busy), and at most kMaxFused.
constexpr size_t kMinFused = 4;
constexpr size_t kMaxFused = 32;
// Bytes of one fused group's stacked weights, gradients and optimizer state.
constexpr double kMaxFusedBytes = 512.0 * (1 << 20);

// The trials of `todo` grouped for fusion: one group per head shape, split
// into near-equal parts so that the parts' work keeps `threads` busy and
// their memory stays bounded, the heaviest first.
std::vector<std::vector<const TrialConfig*>> FusedUnits(const std::vector<const TrialConfig*>& todo,
                                                        int64_t feature_dim, int classes, int threads) {
  std::vector<std::vector<const TrialConfig*>> by_head;
  for (const TrialConfig* c : todo) {
    auto it = std::find_if(by_head.begin(), by_head.end(), [&](const auto& g) { return g.front()->head == c->head; });
    if (it == by_head.end()) {
      by_head.push_back({c});
    } else {
      it->push_back(c);
    }
  }
  double total = 0;
  for (const TrialConfig* c : todo) total += HeadCost(c->head, feature_dim, classes);
  const double target = total / (threads > 1 ? 2.0 * threads : 1.0);
  std::vector<std::pair<double, std::vector<const TrialConfig*>>> units;
  for (const auto& group : by_head) {
    const double each = HeadCost(group.front()->head, feature_dim, classes);
    const size_t n = group.size();
    const size_t most = std::max<size_t>(1, std::min<size_t>(kMaxFused, static_cast<size_t>(kMaxFusedBytes / (16 * each))));
    size_t parts = std::max<size_t>(1, static_cast<size_t>(std::ceil(n * each / std::max(target, 1.0))));
    parts = std::min(parts, std::max<size_t>(1, n / kMinFused));  // keep groups of kMinFused
    parts = std::max(parts, (n + most - 1) / most);                 // and within memory
    for (size_t p = 0; p < parts; ++p) {
      std::vector<const TrialConfig*> part(group.begin() + static_cast<long>(n * p / parts),
                                           group.begin() + static_cast<long>(n * (p + 1) / parts));
      if (!part.empty()) units.emplace_back(each * static_cast<double>(part.size()), std::move(part));
    }
  }
  std::stable_sort(units.begin(), units.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::vector<const TrialConfig*>> out;
  for (auto& unit : units) out.push_back(std::move(unit.second));
  return out;
}

}  // namespace

nlohmann::json TrialResultToJson(const TrialResult& t) {
  const TrialConfig& c = t.config;
  return {
      {"index", c.index},
      {"backbone", c.backbone},
      {"optimizer", static_cast<int>(c.optimizer)},
      {"learning_rate", c.learning_rate},
      {"weight_decay", c.weight_decay},
      {"head", {{"hidden_units", c.head.hidden_units}, {"dropout", c.head.dropout}, {"activation", c.head.activation}}},
      {"label_smoothing", c.label_smoothing},
      {"round", t.round},
      {"epochs_budget", t.epochs_budget},
      {"epochs", t.epochs},
      {"best", EpochMetricsToJson(t.best)},
      {"score", t.score},
      {"seconds", t.seconds},
      {"fused_trials", t.fused_trials},
      {"error", t.error}};
}

TrialResult TrialResultFromJson(const nlohmann::json& j) {
  TrialResult t;
  TrialConfig& c = t.config;
  c.index = JsonInt(j, "index", 0);
  c.backbone = j.value("backbone", "");
  c.optimizer = static_cast<OptimizerKind>(JsonInt(j, "optimizer", 2));
  c.learning_rate = j.value("learning_rate", 0.0);
  c.weight_decay = j.value("weight_decay", 0.0);
  const auto h = j.value("head", nlohmann::json::object());
  c.head.hidden_units = JsonInts<int>(h, "hidden_units");
  c.head.dropout = h.value("dropout", 0.0);
  c.head.activation = h.value("activation", "relu");
  c.label_smoothing = j.value("label_smoothing", 0.0);
  t.round = JsonInt(j, "round", 0);
  t.epochs_budget = JsonInt(j, "epochs_budget", 0);
  t.epochs = JsonInt(j, "epochs", 0);
  t.best = EpochMetricsFromJson(j.value("best", nlohmann::json::object()));
  t.score = j.value("score", 0.0);
  t.seconds = j.value("seconds", 0.0);
  t.fused_trials = JsonInt(j, "fused_trials", 1);
  t.error = j.value("error", "");
  return t;
}

bool RanksBefore(const TrialResult& a, const TrialResult& b, Monitor metric) {
  if (a.error.empty() != b.error.empty()) return a.error.empty();
  if (a.round != b.round) return a.round > b.round;  // a later round saw more epochs
  if (a.score != b.score) return metric == Monitor::kValLoss ? a.score < b.score : a.score > b.score;
  if (a.best.val_loss != b.best.val_loss) return a.best.val_loss < b.best.val_loss;
  return a.config.index < b.config.index;
}

std::vector<TrialResult> Leaderboard(std::vector<TrialResult> trials, Monitor metric) {
  std::map<int, TrialResult> latest;  // per configuration: its last round
  for (TrialResult& t : trials) {
    auto it = latest.find(t.config.index);
    if (it == latest.end() || t.round >= it->second.round) latest[t.config.index] = std::move(t);
  }
  std::vector<TrialResult> out;
  for (auto& [index, t] : latest) out.push_back(std::move(t));
  std::sort(out.begin(), out.end(),
            [&](const TrialResult& a, const TrialResult& b) { return RanksBefore(a, b, metric); });
  return out;
}

uint64_t SearchGridSize(const JobSpec& job, size_t backbones) {
  const Dimensions d = DimensionsOf(job, std::vector<std::string>(std::max<size_t>(backbones, 1)));
  uint64_t n = 1;
  constexpr uint64_t kCap = uint64_t{1} << 40;  // saturates: far beyond any limit
  for (size_t size : {d.backbones.size(), std::max<size_t>(d.learning_rates.size(), 1), d.optimizers.size(),
                      d.weight_decays.size(), d.heads.size(), d.label_smoothings.size()}) {
    n = std::min(kCap, n * static_cast<uint64_t>(size));
  }
  return n;
}

std::vector<TrialConfig> PlanTrials(const JobSpec& job, const std::vector<std::string>& backbones) {
  const SearchSpec& s = job.search;
  const Dimensions d = DimensionsOf(job, backbones);
  std::vector<TrialConfig> out;
  if (s.strategy == SearchStrategy::kRandom) {
    std::mt19937_64 rng(s.seed * 0x9E3779B97F4A7C15ULL + 11);
    const auto pick = [&rng](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
    for (int i = 0; i < s.max_trials; ++i) {
      TrialConfig c;
      c.backbone = d.backbones[pick(d.backbones.size())];
      if (d.learning_rates.empty()) {  // a range: log-uniform
        const double u = std::uniform_real_distribution<double>(0, 1)(rng);
        c.learning_rate = s.lr_min * std::pow(s.lr_max / s.lr_min, u);
      } else {
        c.learning_rate = d.learning_rates[pick(d.learning_rates.size())];
      }
      c.optimizer = d.optimizers[pick(d.optimizers.size())];
      c.weight_decay = d.weight_decays[pick(d.weight_decays.size())];
      c.head = d.heads[pick(d.heads.size())];
      c.label_smoothing = d.label_smoothings[pick(d.label_smoothings.size())];
      out.push_back(c);
    }
    // Trials of one backbone run together: group them, keeping draw order within.
    std::stable_sort(out.begin(), out.end(), [&](const TrialConfig& a, const TrialConfig& b) {
      const auto rank = [&](const std::string& name) {
        return std::find(d.backbones.begin(), d.backbones.end(), name) - d.backbones.begin();
      };
      return rank(a.backbone) < rank(b.backbone);
    });
  } else {
    // The grid in order (backbone, rate, optimizer, weight decay, head,
    // smoothing; the last varies fastest), decoded from a running index so
    // that max_trials bounds the work whatever the lists multiply to.
    const uint64_t total = SearchGridSize(job, d.backbones.size());
    const uint64_t n = s.max_trials > 0 ? std::min<uint64_t>(total, static_cast<uint64_t>(s.max_trials)) : total;
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t r = i;
      const auto take = [&r](size_t size) {
        const size_t at = static_cast<size_t>(r % size);
        r /= size;
        return at;
      };
      TrialConfig c;
      c.label_smoothing = d.label_smoothings[take(d.label_smoothings.size())];
      c.head = d.heads[take(d.heads.size())];
      c.weight_decay = d.weight_decays[take(d.weight_decays.size())];
      c.optimizer = d.optimizers[take(d.optimizers.size())];
      c.learning_rate = d.learning_rates[take(d.learning_rates.size())];
      c.backbone = d.backbones[take(d.backbones.size())];
      out.push_back(std::move(c));
    }
  }
  for (size_t i = 0; i < out.size(); ++i) out[i].index = static_cast<int>(i) + 1;
  return out;
}

std::vector<SearchRound> PlanRounds(const SearchSpec& search, int trials, int epochs) {
  if (search.strategy != SearchStrategy::kSuccessiveHalving || trials <= search.eta)
    return {SearchRound{epochs, trials}};
  std::vector<int> counts{trials};
  // Halve (by eta) while more than eta remain: the last round compares up to
  // eta trials at the full epochs.
  while (counts.back() > search.eta) counts.push_back((counts.back() + search.eta - 1) / search.eta);
  // Epochs grow eta-fold per round so that the last round runs them all.
  double first = epochs;
  for (size_t r = 1; r < counts.size(); ++r) first /= search.eta;
  std::vector<SearchRound> rounds;
  for (size_t r = 0; r < counts.size(); ++r) {
    const int e = std::min(epochs, std::max(1, static_cast<int>(std::lround(first * std::pow(search.eta, r)))));
    rounds.push_back(SearchRound{e, counts[r]});
    if (e >= epochs) break;  // the full epochs: this round decides
  }
  rounds.back().epochs = epochs;
  return rounds;
}

absl::Status CheckSearchSize(const JobSpec& job, size_t backbones) {
  if (job.search.strategy == SearchStrategy::kRandom) return absl::OkStatus();  // max_trials draws, bounded
  const uint64_t total = SearchGridSize(job, backbones);
  if (total > static_cast<uint64_t>(kMaxSearchTrials) && job.search.max_trials == 0) {
    return absl::InvalidArgumentError(absl::StrCat("spec.search: the grid has ", total, " combinations over ", backbones,
                                                   " backbone(s), more than ", kMaxSearchTrials,
                                                   "; set max_trials, use fewer values, or strategy random"));
  }
  return absl::OkStatus();
}

int PlannedTrials(const JobSpec& job) {
  if (!job.has_search || job.stages.empty()) return 0;
  int n = 0;
  const auto plan = PlanTrials(job, job.search.backbones);
  for (const SearchRound& r : PlanRounds(job.search, static_cast<int>(plan.size()), job.stages[0].epochs)) n += r.trials;
  return n;
}

JobSpec TrialSpec(const JobSpec& job, const TrialConfig& config, int epochs) {
  JobSpec s = job;
  s.has_search = false;
  s.search = SearchSpec{};
  s.backbone = config.backbone;
  s.head = config.head;
  s.label_smoothing = config.label_smoothing;
  s.stages.resize(1);
  StageSpec& st = s.stages[0];
  st.epochs = epochs;
  st.train = "head";
  if (st.optimizer.kind != config.optimizer) {  // the job's momentum/betas only for its own optimizer
    st.optimizer = OptimizerSpec{};
    st.optimizer.kind = config.optimizer;
  }
  st.optimizer.learning_rate = config.learning_rate;
  st.optimizer.weight_decay = config.weight_decay;
  if (st.schedule.warmup_epochs > epochs) st.schedule.warmup_epochs = epochs;
  s.early_stopping.monitor = job.search.metric;
  s.early_stopping.mode = MonitorMode::kAuto;
  return s;
}

absl::StatusOr<SearchOutcome> RunSearch(const SearchInput& input, const CancellationToken& cancel,
                                        SearchEvents& events) {
  const JobSpec& job = input.spec;
  const Monitor metric = job.search.metric;
  const std::vector<TrialConfig> plan = PlanTrials(job, input.backbones);
  if (plan.empty()) return absl::InvalidArgumentError("spec.search: no trials to run (no backbone?)");
  const std::vector<SearchRound> rounds = PlanRounds(job.search, static_cast<int>(plan.size()), job.stages[0].epochs);
  const auto start = Clock::now();
  std::map<std::pair<int, int>, TrialResult> done;  // (round, index)
  for (const TrialResult& t : input.done) done[{t.round, t.config.index}] = t;

  absl::Mutex mu;  // results, best
  std::vector<TrialResult> results;
  std::optional<std::pair<TrialResult, TrainedModel>> best;  // the best trial with its head
  int skipped = 0;
  std::map<std::string, std::shared_ptr<const SharedFeatures>> features;
  const int threads = std::max(1, input.threads > 0 ? input.threads : AvailableCpus());

  // The caller is told of each backbone's feature pass (its memory), not of the trials'.
  const std::function<void(int64_t)> on_features = input.base.on_cache_in_memory;
  std::vector<TrialConfig> alive = plan;
  for (size_t r = 0; r < rounds.size(); ++r) {
    const SearchRound& round = rounds[r];
    std::vector<TrialResult> this_round;
    for (size_t first = 0; first < alive.size();) {  // one backbone at a time
      size_t last = first;
      while (last < alive.size() && alive[last].backbone == alive[first].backbone) ++last;
      const std::string& backbone = alive[first].backbone;
      std::vector<const TrialConfig*> todo;
      for (size_t i = first; i < last; ++i) {
        const auto prior = done.find({static_cast<int>(r), alive[i].index});
        if (prior != done.end()) {
          absl::MutexLock lock(&mu);
          this_round.push_back(prior->second);
          results.push_back(prior->second);
        } else {
          todo.push_back(&alive[i]);
        }
      }
      first = last;
      if (todo.empty()) continue;
      if (cancel.cancelled()) {
        return cancel.stop_requested()
                   ? absl::UnavailableError("stopped for a shutdown; the search resumes after the restart")
                   : absl::CancelledError("cancelled between trials");
      }
      ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> resident, input.resident(backbone));
      TrainInput base = input.base;
      base.resident = resident;
      base.checkpoint_path.clear();
      base.on_cache_in_memory = on_features;
      if (features.count(backbone) == 0) {
        const auto extract_start = Clock::now();
        base.spec = TrialSpec(job, *todo.front(), round.epochs);
        FeatureProgress progress(events);
        ASSIGN_OR_RETURN(features[backbone], ExtractFeatures(base, cancel, &progress));
        events.OnFeatures(backbone, Seconds(extract_start), features[backbone]->description);
      }
      base.features = features[backbone];
      base.on_cache_in_memory = nullptr;
      base.decode_threads = 1;  // trials decode nothing: their features are shared
      absl::Status failure;
      // One trial, alone or as a member of `fusion` (which it leaves however it ends).
      const auto run_trial = [&](const TrialConfig* config, const std::shared_ptr<HeadFusion>& fusion) {
        const bool over_budget = job.search.budget_seconds > 0 && Seconds(start) > job.search.budget_seconds;
        if (cancel.cancelled() || over_budget) {
          if (fusion != nullptr) WithdrawFromFusion(*fusion);
          if (!over_budget) return;
          absl::MutexLock lock(&mu);
          ++skipped;
          return;
        }
        const auto trial_start = Clock::now();
        TrainInput in = base;
        in.spec = TrialSpec(job, *config, round.epochs);
        in.fusion = fusion;
        TrainEvents quiet;
        auto trained = Train(in, cancel, quiet);
        TrialResult t;
        t.config = *config;
        t.round = static_cast<int>(r);
        t.epochs_budget = round.epochs;
        t.seconds = Seconds(trial_start);
        if (trained.ok()) {
          t.epochs = trained->final_metrics.epoch;
          t.best = trained->best_metrics;
          t.score = MonitoredValue(t.best, metric);
          t.fused_trials = trained->fused_trials;
        } else if (absl::IsCancelled(trained.status()) || absl::IsUnavailable(trained.status())) {
          absl::MutexLock lock(&mu);
          if (failure.ok()) failure = trained.status();
          return;
        } else {
          t.error = std::string(trained.status().message());
        }
        events.OnTrial(t);
        absl::MutexLock lock(&mu);
        this_round.push_back(t);
        results.push_back(t);
        if (trained.ok() && (!best || RanksBefore(t, best->first, metric))) best.emplace(t, std::move(*trained));
      };
      const std::vector<std::vector<const TrialConfig*>> units =
          input.fuse ? FusedUnits(todo, resident->spec->feature_dim, input.base.num_classes, threads)
                     : Singletons(todo);
      {
        ThreadPool pool(std::min<int>(threads, static_cast<int>(units.size())));
        std::vector<std::future<void>> running;
        for (const std::vector<const TrialConfig*>& unit : units) {
          running.push_back(pool.Submit([&, unit] {
            if (unit.size() == 1) return run_trial(unit.front(), nullptr);
            // Each member on its own thread: they meet at every epoch.
            const std::shared_ptr<HeadFusion> fusion = NewHeadFusion(static_cast<int>(unit.size()));
            std::vector<std::thread> members;
            for (const TrialConfig* config : unit) members.emplace_back([&, config] { run_trial(config, fusion); });
            for (std::thread& m : members) m.join();
          }));
        }
        for (auto& f : running) f.wait();
      }
      RETURN_IF_ERROR(failure);
      if (cancel.cancelled()) {
        return cancel.stop_requested()
                   ? absl::UnavailableError("stopped for a shutdown; the search resumes after the restart")
                   : absl::CancelledError("cancelled during a trial");
      }
      // Features no later round needs go now.
      if (r + 1 == rounds.size()) features.erase(backbone);
    }
    // The best 1/eta go on to the next round.
    std::sort(this_round.begin(), this_round.end(),
              [&](const TrialResult& a, const TrialResult& b) { return RanksBefore(a, b, metric); });
    if (r + 1 < rounds.size()) {
      std::set<int> keep;
      for (const TrialResult& t : this_round) {
        if (static_cast<int>(keep.size()) < rounds[r + 1].trials && t.error.empty()) keep.insert(t.config.index);
      }
      std::vector<TrialConfig> next;
      for (const TrialConfig& c : alive) {
        if (keep.count(c.index) > 0) next.push_back(c);
      }
      alive = std::move(next);
      if (alive.empty()) break;
    }
  }
  SearchOutcome out;
  out.leaderboard = Leaderboard(results, metric);
  out.skipped = skipped;
  if (out.leaderboard.empty() || !out.leaderboard.front().error.empty()) {
    return absl::FailedPreconditionError(
        out.leaderboard.empty() ? "no trial finished within spec.search.budget_seconds"
                                : absl::StrCat("every trial failed; the best: ", out.leaderboard.front().error));
  }
  out.winner = out.leaderboard.front();
  if (best && best->first.config.index == out.winner.config.index && best->first.round == out.winner.round) {
    out.model = std::move(best->second);
    return out;
  }
  // The winner finished before a restart: train it again (seeded: the same head).
  ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> resident, input.resident(out.winner.config.backbone));
  TrainInput in = input.base;
  in.resident = resident;
  in.checkpoint_path.clear();
  in.spec = TrialSpec(job, out.winner.config, out.winner.epochs_budget);
  TrainEvents quiet;
  ASSIGN_OR_RETURN(out.model, Train(in, cancel, quiet));
  return out;
}

}  // namespace graft::core
