// Search jobs on cached features: the plan (grid, seeded random, successive
// halving's rounds), a grid search that picks the winner the same trials run
// alone pick while computing each backbone's features once, a cancelled
// search resumed from its finished trials, and the learning-rate finder.

#include "core/train/search.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>

#include "core/train/prefix_cache.h"
#include "core/train/trainer.h"
#include "core/util/compute_threads.h"
#include "core/util/host_memory.h"
#include "core/zoo/zoo.h"
#include "tests/testing/hymenoptera.h"
#include "tests/testing/paths.h"
#include "tests/testing/weights_zoo.h"

namespace graft::core {
namespace {

namespace fs = std::filesystem;

std::vector<DatasetImage> Hymenoptera(int train_per_class, int val_per_class) {
  return graft::testing::HymenopteraImages(train_per_class, val_per_class);
}

JobSpec SearchJob(int epochs) {
  JobSpec spec;
  spec.dataset = "hymenoptera";
  spec.input_size = 128;  // keeps the separate runs short on two cores
  spec.batch_size = 16;
  spec.seed = 5;
  spec.stages.push_back({});
  spec.stages[0].epochs = epochs;
  spec.has_search = true;
  spec.search.learning_rates = {1e-4, 1e-3, 1e-2};
  spec.search.heads = {HeadSpec{}, HeadSpec{{64}, 0.2, "relu"}};
  spec.search.metric = Monitor::kValAccuracy;
  EXPECT_TRUE(NormalizeJobSpec(spec, 18).ok());
  return spec;
}

class Recorder : public SearchEvents {
 public:
  void OnFeatures(const std::string& backbone, double, const std::string&) override {
    std::lock_guard<std::mutex> lock(mu);
    features.push_back(backbone);
  }
  void OnTrial(const TrialResult& t) override {
    std::lock_guard<std::mutex> lock(mu);
    trials.push_back(t);
  }
  std::mutex mu;
  std::vector<std::string> features;
  std::vector<TrialResult> trials;
};

// Cancels the search once `after` trials have ended.
class CancelAfter : public Recorder {
 public:
  CancelAfter(CancellationToken& token, size_t after) : token_(token), after_(after) {}
  void OnTrial(const TrialResult& t) override {
    Recorder::OnTrial(t);
    std::lock_guard<std::mutex> lock(mu);
    if (trials.size() >= after_) token_.Cancel();
  }

 private:
  CancellationToken& token_;
  size_t after_;
};

class SearchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RetainHostMemory();
    at::set_num_threads(AvailableCpus());
    zoo_ = graft::testing::NewWeightsZoo();
    ASSERT_NE(zoo_, nullptr);
  }
  static void TearDownTestSuite() {
    delete zoo_;
    zoo_ = nullptr;
  }

  SearchInput Input(const JobSpec& spec, std::vector<std::string> backbones) {
    SearchInput in;
    in.spec = spec;
    in.backbones = std::move(backbones);
    in.resident = [](const std::string& name) { return zoo_->Resident(name); };
    in.base.images = images_;
    in.base.num_classes = 2;
    in.base.feature_cache.memory_bytes = 1LL << 30;
    return in;
  }

  static Zoo* zoo_;
  std::vector<DatasetImage> images_ = Hymenoptera(40, 30);
};

Zoo* SearchTest::zoo_ = nullptr;

TEST(SearchPlanTest, GridIsEveryCombinationGroupedByBackbone) {
  JobSpec spec = SearchJob(5);
  spec.search.weight_decays = {0, 1e-4};
  const auto plan = PlanTrials(spec, {"mobilenet_v2", "squeezenet1_1"});
  ASSERT_EQ(plan.size(), 2u * 3 * 2 * 2);
  std::set<std::tuple<std::string, double, double, size_t>> distinct;
  for (size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(plan[i].index, static_cast<int>(i) + 1);
    EXPECT_EQ(plan[i].backbone, i < plan.size() / 2 ? "mobilenet_v2" : "squeezenet1_1");
    distinct.insert({plan[i].backbone, plan[i].learning_rate, plan[i].weight_decay, plan[i].head.hidden_units.size()});
  }
  EXPECT_EQ(distinct.size(), plan.size());
  spec.search.max_trials = 5;
  EXPECT_EQ(PlanTrials(spec, {"mobilenet_v2", "squeezenet1_1"}).size(), 5u);
  // Every list at its most (64^6 combinations): max_trials bounds the work.
  for (int i = 1; i <= 64; ++i) {
    spec.search.learning_rates.push_back(i * 1e-4);
    spec.search.weight_decays.push_back(i * 1e-5);
    spec.search.label_smoothings.push_back(i * 1e-3);
    spec.search.heads.push_back(HeadSpec{{i}, 0, "relu"});
    spec.search.optimizers.push_back(static_cast<OptimizerKind>(1 + i % 4));
  }
  std::vector<std::string> many(64, "mobilenet_v2");
  EXPECT_EQ(PlanTrials(spec, many).size(), 5u);
  EXPECT_GT(SearchGridSize(spec, 64), uint64_t{1} << 35);
  spec.search.max_trials = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(CheckSearchSize(spec, 64)));
}

TEST(SearchPlanTest, RandomSearchIsReproducibleBySeed) {
  JobSpec spec = SearchJob(5);
  spec.search.strategy = SearchStrategy::kRandom;
  spec.search.learning_rates.clear();
  spec.search.lr_min = 1e-5;
  spec.search.lr_max = 1e-1;
  spec.search.max_trials = 12;
  spec.search.seed = 3;
  ASSERT_TRUE(NormalizeSearchSpec(spec.search).ok());
  const auto a = PlanTrials(spec, {"mobilenet_v2", "squeezenet1_1"});
  const auto b = PlanTrials(spec, {"mobilenet_v2", "squeezenet1_1"});
  spec.search.seed = 4;
  const auto c = PlanTrials(spec, {"mobilenet_v2", "squeezenet1_1"});
  ASSERT_EQ(a.size(), 12u);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].backbone, b[i].backbone);
    EXPECT_EQ(a[i].learning_rate, b[i].learning_rate);
    EXPECT_EQ(a[i].head.hidden_units, b[i].head.hidden_units);
    EXPECT_GE(a[i].learning_rate, 1e-5);
    EXPECT_LE(a[i].learning_rate, 1e-1);
    differs = differs || a[i].learning_rate != c[i].learning_rate;
  }
  EXPECT_TRUE(differs) << "another seed drew the same learning rates";
}

TEST(SearchPlanTest, SuccessiveHalvingKeepsOneEtaThWithEtaTimesTheEpochs) {
  SearchSpec s;
  s.strategy = SearchStrategy::kSuccessiveHalving;
  s.eta = 3;
  const auto rounds = PlanRounds(s, 48, 27);
  ASSERT_EQ(rounds.size(), 4u);
  const std::vector<int> trials{48, 16, 6, 2}, epochs{1, 3, 9, 27};
  for (size_t r = 0; r < rounds.size(); ++r) {
    EXPECT_EQ(rounds[r].trials, trials[r]) << "round " << r;
    EXPECT_EQ(rounds[r].epochs, epochs[r]) << "round " << r;
  }
  // Fewer epochs than rounds would need: the last round still runs them all.
  const auto short_rounds = PlanRounds(s, 9, 4);
  EXPECT_EQ(short_rounds.back().epochs, 4);
  EXPECT_EQ(short_rounds.back().trials, 3);
  EXPECT_EQ(short_rounds.front().trials, 9);
  EXPECT_EQ(PlanRounds(s, 3, 10).size(), 1u);  // no more than eta: they all run the full epochs
  s.strategy = SearchStrategy::kGrid;
  EXPECT_EQ(PlanRounds(s, 48, 25).size(), 1u);
}

TEST(SearchSpecTest, BadSearchesAreRefusedNamingTheField) {
  JobSpec spec = SearchJob(5);
  spec.search.learning_rates = {0.1, -1};
  auto s = NormalizeJobSpec(spec, 18);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_NE(s.message().find("spec.search.learning_rates[1]"), std::string::npos) << s;
  spec = SearchJob(5);
  spec.search.eta = 1;
  s = NormalizeJobSpec(spec, 18);
  EXPECT_NE(s.message().find("spec.search.eta"), std::string::npos) << s;
  spec = SearchJob(5);
  spec.stages[0].train = "top:2";
  s = NormalizeJobSpec(spec, 18);
  EXPECT_NE(s.message().find("spec.stages[0].train"), std::string::npos) << s;
  spec = SearchJob(5);
  spec.search.heads.resize(65);
  s = NormalizeJobSpec(spec, 18);
  EXPECT_NE(s.message().find("spec.search.heads: at most 64"), std::string::npos) << s;
}

TEST_F(SearchTest, GridPicksTheWinnerOfSeparateRunsAndComputesFeaturesOncePerBackbone) {
  const JobSpec spec = SearchJob(6);
  const std::vector<std::string> backbones{"mobilenet_v2", "squeezenet1_1"};
  Recorder events;
  CancellationToken cancel;
  const int64_t before = FrozenPrefixImages();
  auto outcome = RunSearch(Input(spec, backbones), cancel, events);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  // Each backbone's features once: every image through each trunk once.
  EXPECT_EQ(FrozenPrefixImages() - before, static_cast<int64_t>(images_.size() * backbones.size()));
  EXPECT_EQ(events.features, backbones);
  ASSERT_EQ(events.trials.size(), 12u);
  ASSERT_EQ(outcome->leaderboard.size(), 12u);

  // The same trials as separate runs, each computing its own features.
  std::vector<TrialResult> alone;
  for (const TrialConfig& c : PlanTrials(spec, backbones)) {
    TrainInput in = Input(spec, backbones).base;
    in.spec = TrialSpec(spec, c, 6);
    in.resident = *zoo_->Resident(c.backbone);
    CancellationToken never;
    TrainEvents quiet;
    auto trained = Train(in, never, quiet);
    ASSERT_TRUE(trained.ok()) << trained.status();
    TrialResult t;
    t.config = c;
    t.epochs = trained->final_metrics.epoch;
    t.best = trained->best_metrics;
    t.score = t.best.val_accuracy;
    alone.push_back(t);
    const auto in_search = std::find_if(events.trials.begin(), events.trials.end(),
                                        [&](const TrialResult& s) { return s.config.index == c.index; });
    ASSERT_NE(in_search, events.trials.end());
    // Fused in the search (3 trials per head shape and backbone), alone here.
    EXPECT_EQ(in_search->fused_trials, 3) << "trial " << c.index;
    EXPECT_DOUBLE_EQ(in_search->best.val_accuracy, t.best.val_accuracy) << "trial " << c.index;
    EXPECT_NEAR(in_search->best.val_loss, t.best.val_loss, 1e-5) << "trial " << c.index;
    EXPECT_EQ(in_search->epochs, t.epochs) << "trial " << c.index;
  }
  const auto separate = Leaderboard(alone, Monitor::kValAccuracy);
  EXPECT_EQ(outcome->winner.config.index, separate.front().config.index);
  EXPECT_EQ(outcome->winner.score, separate.front().score);
  EXPECT_GE(outcome->winner.best.val_accuracy, 0.85);
  // The winner's head is there to publish: its weights, its best epoch.
  EXPECT_FALSE(outcome->model.weights.empty());
  EXPECT_EQ(outcome->model.best_metrics.val_accuracy, outcome->winner.best.val_accuracy);
  std::cout << "winner: trial " << outcome->winner.config.index << " " << outcome->winner.config.backbone << " lr "
            << outcome->winner.config.learning_rate << " val accuracy " << outcome->winner.score << "\n";
}

TEST_F(SearchTest, SuccessiveHalvingRunsTheBestThirdOnWithThreeTimesTheEpochs) {
  JobSpec spec = SearchJob(9);
  spec.search.strategy = SearchStrategy::kSuccessiveHalving;
  spec.search.learning_rates = {1e-5, 1e-4, 1e-3, 1e-2, 3e-2};
  spec.search.heads = {HeadSpec{}};
  spec.search.weight_decays = {0};
  Recorder events;
  CancellationToken cancel;
  auto outcome = RunSearch(Input(spec, {"squeezenet1_1"}), cancel, events);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  std::map<int, std::vector<TrialResult>> by_round;
  for (const auto& t : events.trials) by_round[t.round].push_back(t);
  ASSERT_EQ(by_round.size(), 2u);  // 5 trials x 3 epochs, the best 2 x 9
  EXPECT_EQ(by_round[0].size(), 5u);
  EXPECT_EQ(by_round[1].size(), 2u);
  EXPECT_EQ(by_round[0][0].epochs_budget, 3);
  EXPECT_EQ(by_round[1][0].epochs_budget, 9);
  // The ones that went on were the best of their round.
  auto ranked = by_round[0];
  std::sort(ranked.begin(), ranked.end(),
            [](const TrialResult& a, const TrialResult& b) { return RanksBefore(a, b, Monitor::kValAccuracy); });
  std::set<int> best_two{ranked[0].config.index, ranked[1].config.index}, went_on;
  for (const auto& t : by_round[1]) went_on.insert(t.config.index);
  EXPECT_EQ(went_on, best_two);
  EXPECT_EQ(outcome->winner.round, 1);
  EXPECT_EQ(outcome->leaderboard.size(), 5u);  // one line per configuration, its last round
  EXPECT_EQ(outcome->leaderboard.front().config.index, outcome->winner.config.index);
}

TEST_F(SearchTest, ACancelledSearchResumesFromItsFinishedTrials) {
  const JobSpec spec = SearchJob(4);
  const std::vector<std::string> backbones{"squeezenet1_1"};
  Recorder whole;
  CancellationToken never;
  auto uninterrupted = RunSearch(Input(spec, backbones), never, whole);
  ASSERT_TRUE(uninterrupted.ok()) << uninterrupted.status();

  CancellationToken token;
  CancelAfter first(token, 2);
  SearchInput in = Input(spec, backbones);
  in.threads = 1;
  auto cancelled = RunSearch(in, token, first);
  ASSERT_TRUE(absl::IsCancelled(cancelled.status())) << cancelled.status();
  ASSERT_GE(first.trials.size(), 2u);
  ASSERT_LT(first.trials.size(), 6u);

  in = Input(spec, backbones);
  in.done = first.trials;
  Recorder rest;
  CancellationToken again;
  auto resumed = RunSearch(in, again, rest);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(rest.trials.size(), 6u - first.trials.size()) << "finished trials ran again";
  EXPECT_EQ(resumed->leaderboard.size(), 6u);
  EXPECT_EQ(resumed->winner.config.index, uninterrupted->winner.config.index);
  EXPECT_EQ(resumed->winner.score, uninterrupted->winner.score);
  EXPECT_FALSE(resumed->model.weights.empty());
}

TEST_F(SearchTest, LrFindSuggestsARateThatTrainsAtLeastAsWellAsTheDefault) {
  TrainInput in = Input(SearchJob(1), {}).base;
  in.images = Hymenoptera(1000, 1000);  // all of it (the GIF aside): 244 train, 153 val
  JobSpec spec;
  spec.backbone = "mobilenet_v2";
  spec.dataset = "hymenoptera";
  spec.input_size = 128;
  spec.batch_size = 16;
  spec.seed = 2;
  spec.stages.push_back({});
  spec.stages[0].epochs = 10;  // the default job's
  ASSERT_TRUE(NormalizeJobSpec(spec, 18).ok());
  in.spec = spec;
  in.resident = *zoo_->Resident("mobilenet_v2");
  CancellationToken never;
  auto curve = FindLearningRate(in, LrFindOptions{}, never);
  ASSERT_TRUE(curve.ok()) << curve.status();
  ASSERT_GE(curve->learning_rates.size(), 20u);
  EXPECT_EQ(curve->learning_rates.size(), curve->losses.size());
  EXPECT_TRUE(std::is_sorted(curve->learning_rates.begin(), curve->learning_rates.end()));
  EXPECT_NEAR(curve->learning_rates.front(), 1e-7, 1e-12);
  // The suggestion lies where the loss was falling: below where it started.
  EXPECT_GT(curve->suggested, 1e-7);
  EXPECT_LT(curve->suggested, curve->learning_rates.back());
  const size_t at = std::lower_bound(curve->learning_rates.begin(), curve->learning_rates.end(), curve->suggested) -
                    curve->learning_rates.begin();
  EXPECT_LT(curve->smoothed_losses[at], curve->smoothed_losses[0]);
  std::cout << "lr-find: suggested " << curve->suggested << ", minimum at " << curve->min_loss_lr << " after "
            << curve->losses.size() << " steps\n";

  TrainEvents quiet;
  auto with_default = Train(in, never, quiet);
  in.spec.auto_learning_rate = true;
  struct Found : TrainEvents {
    void OnLearningRateFound(const LrCurve& c) override { rate = c.suggested; }
    double rate = 0;
  } found;
  auto with_found = Train(in, never, found);
  ASSERT_TRUE(with_default.ok() && with_found.ok());
  EXPECT_DOUBLE_EQ(found.rate, curve->suggested) << "the job's range test is the RPC's";
  EXPECT_DOUBLE_EQ(with_found->found_learning_rate, curve->suggested);
  std::cout << "val accuracy after 10 epochs: default 1e-3 " << with_default->best_metrics.val_accuracy << ", found "
            << with_found->best_metrics.val_accuracy << "\n";
  EXPECT_GE(with_found->best_metrics.val_accuracy, with_default->best_metrics.val_accuracy);
}

}  // namespace
}  // namespace graft::core
