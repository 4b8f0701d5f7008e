// core::RunStages, the stage and epoch loop, on a scripted runner whose
// weights are the number of the epoch that made them (no backbone, no
// images): which epochs run, which weights are left at the end, what each
// checkpoint holds, and that a resume (after an epoch or within one) ends
// exactly where the uninterrupted run does.

#include "core/train/stage_loop.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <utility>
#include <vector>

namespace graft::core {
namespace {

class ScriptedRunner final : public EpochRunner {
 public:
  // The validation loss of each epoch (1-based across stages).
  explicit ScriptedRunner(std::map<int, double> val_loss) : val_loss_(std::move(val_loss)) {}

  absl::Status BeginStage(size_t stage, bool restore_optimizer) override {
    begun.emplace_back(stage, restore_optimizer);
    return absl::OkStatus();
  }
  absl::StatusOr<EpochMetrics> RunEpoch(size_t stage, int epoch_in_stage, int epoch, const EpochResume& resume,
                                        const SaveWithin& save_within) override {
    ran.push_back(epoch);
    resumed_from.push_back(resume);
    if (epoch == shutdown_in) {  // a shutdown 7 batches into this epoch
      weights = 100 + epoch;     // what the 7 batches made
      if (absl::Status s = save_within(EpochResume{7, 1.5, 5, 7}); !s.ok()) return s;
      return absl::UnavailableError("stopped for a shutdown");
    }
    weights = epoch;
    EpochMetrics m;
    m.stage = static_cast<int>(stage) + 1;
    m.epoch = epoch;
    m.val_loss = val_loss_.at(epoch);
    m.train_loss = resume.loss_sum;  // shows the running sums reached the epoch
    return m;
  }
  StateDict State() override { return {{"w", torch::tensor({static_cast<double>(weights)})}}; }
  absl::Status LoadState(const StateDict& state) override {
    weights = static_cast<int>(state.at(0).second.item<double>());
    return absl::OkStatus();
  }
  absl::Status SaveCheckpoint(const TrainerCheckpoint& checkpoint) override {
    saved.push_back(checkpoint);
    return absl::OkStatus();
  }

  int weights = 0;
  int shutdown_in = 0;  // 0: never
  std::vector<std::pair<size_t, bool>> begun;
  std::vector<int> ran;
  std::vector<EpochResume> resumed_from;
  std::vector<TrainerCheckpoint> saved;

 private:
  std::map<int, double> val_loss_;
};

struct Heard : TrainEvents {
  void OnEpoch(const EpochMetrics& m) override { epochs.push_back(m.epoch); }
  void OnEarlyStop(int epoch, int best_epoch, double best_value) override {
    early_stop = {epoch, best_epoch};
    early_best = best_value;
  }
  void OnBestRestored(const BestRestored& r) override { restored.push_back(r); }
  void OnCheckpoint(int epoch, int batch) override { checkpoints.emplace_back(epoch, batch); }
  std::vector<int> epochs;
  std::pair<int, int> early_stop{0, 0};
  double early_best = 0;
  std::vector<BestRestored> restored;
  std::vector<std::pair<int, int>> checkpoints;
};

int Weights(const StateDict& state) { return static_cast<int>(state.at(0).second.item<double>()); }

JobSpec Stages(std::vector<int> epochs) {
  JobSpec spec;
  spec.stages.clear();
  for (int n : epochs) {
    StageSpec st;
    st.epochs = n;
    spec.stages.push_back(st);
  }
  return spec;
}

TEST(StageLoopTest, StopsEarlyAndLeavesTheStagesBestWeights) {
  JobSpec spec = Stages({10});
  spec.early_stopping.enabled = true;
  spec.early_stopping.patience = 2;
  ScriptedRunner runner({{1, 1.0}, {2, 0.5}, {3, 0.6}, {4, 0.7}, {5, 0.1}});
  Heard heard;
  auto result = RunStages(spec, runner, heard, nullptr, /*save_checkpoints=*/true);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(runner.ran, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(runner.weights, 2);
  EXPECT_EQ(heard.early_stop, std::make_pair(4, 2));
  EXPECT_DOUBLE_EQ(heard.early_best, 0.5);
  ASSERT_EQ(heard.restored.size(), 1u);
  EXPECT_EQ(heard.restored[0].epoch, 2);
  EXPECT_FALSE(heard.restored[0].across_stages);
  EXPECT_EQ(result->best_metrics.epoch, 2);
  EXPECT_EQ(result->final_metrics.epoch, 4);
  EXPECT_TRUE(result->restored_best);
  ASSERT_EQ(runner.saved.size(), 4u);
  EXPECT_TRUE(runner.saved.back().stopped);
  EXPECT_EQ(Weights(runner.saved.back().best_weights), 2);
  EXPECT_EQ(runner.saved.back().stopper.best_epoch, 2);
  EXPECT_EQ(heard.checkpoints.back(), std::make_pair(4, 0));
}

const std::map<int, double> kTwoStages = {{1, 0.9}, {2, 0.4}, {3, 0.6}, {4, 0.5}, {5, 0.45}, {6, 0.7}};

TEST(StageLoopTest, TheJobsBestAcrossStagesIsWhatIsLeft) {
  const JobSpec spec = Stages({3, 3});
  ScriptedRunner runner(kTwoStages);
  Heard heard;
  auto result = RunStages(spec, runner, heard, nullptr, true);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(runner.ran, (std::vector<int>{1, 2, 3, 4, 5, 6}));
  // Stage 1 ends on its best (2), stage 2 on its own (5), the job on epoch 2.
  ASSERT_EQ(heard.restored.size(), 3u);
  EXPECT_EQ(heard.restored[0].epoch, 2);
  EXPECT_EQ(heard.restored[1].epoch, 5);
  EXPECT_EQ(heard.restored[2].epoch, 2);
  EXPECT_TRUE(heard.restored[2].across_stages);
  EXPECT_EQ(runner.weights, 2);
  EXPECT_EQ(result->best_metrics.epoch, 2);
  EXPECT_EQ(result->final_metrics.epoch, 6);
  EXPECT_EQ(runner.begun, (std::vector<std::pair<size_t, bool>>{{0, false}, {1, false}}));

  JobSpec per_stage = spec;
  per_stage.early_stopping.restore_per_stage = true;
  ScriptedRunner second(kTwoStages);
  Heard heard2;
  result = RunStages(per_stage, second, heard2, nullptr, true);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(second.weights, 5) << "per stage: the last stage's best";
  EXPECT_EQ(result->best_metrics.epoch, 5);

  JobSpec last = spec;
  last.early_stopping.restore_best = false;
  ScriptedRunner third(kTwoStages);
  Heard heard3;
  result = RunStages(last, third, heard3, nullptr, true);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(third.weights, 6) << "without restore_best the last epoch's weights stay";
  EXPECT_TRUE(heard3.restored.empty());
  EXPECT_FALSE(result->restored_best);
}

TEST(StageLoopTest, AResumeRunsOnlyWhatTheCheckpointHadNotFinished) {
  const JobSpec spec = Stages({3, 3});
  ScriptedRunner whole(kTwoStages);
  Heard heard;
  auto uninterrupted = RunStages(spec, whole, heard, nullptr, true);
  ASSERT_TRUE(uninterrupted.ok());
  ASSERT_EQ(whole.saved.size(), 6u);
  const TrainerCheckpoint after4 = whole.saved[3];
  EXPECT_EQ(after4.stage, 1u);
  EXPECT_EQ(after4.epoch, 4);
  EXPECT_EQ(after4.job_best.epoch, 2);

  ScriptedRunner resumed(kTwoStages);
  resumed.weights = Weights(after4.weights);  // the trainer loads them before the loop
  Heard heard2;
  auto result = RunStages(spec, resumed, heard2, &after4, true);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(resumed.ran, (std::vector<int>{5, 6}));
  EXPECT_EQ(resumed.begun, (std::vector<std::pair<size_t, bool>>{{1, true}}));
  EXPECT_EQ(resumed.weights, whole.weights);
  EXPECT_EQ(result->best_metrics.epoch, uninterrupted->best_metrics.epoch);
  EXPECT_EQ(result->final_metrics.epoch, 6);
  ASSERT_FALSE(heard2.restored.empty());
  EXPECT_EQ(heard2.restored.back().epoch, 2);
  EXPECT_TRUE(heard2.restored.back().across_stages);
}

TEST(StageLoopTest, AShutdownWithinAnEpochSavesItAndTheResumeRunsTheRest) {
  JobSpec spec = Stages({5});
  spec.early_stopping.enabled = true;
  spec.early_stopping.patience = 2;
  const std::map<int, double> losses = {{1, 1.0}, {2, 0.5}, {3, 0.6}, {4, 0.4}, {5, 0.45}};
  ScriptedRunner first(losses);
  first.shutdown_in = 3;
  Heard heard;
  auto stopped = RunStages(spec, first, heard, nullptr, true);
  ASSERT_EQ(stopped.status().code(), absl::StatusCode::kUnavailable);
  ASSERT_EQ(first.saved.size(), 3u);  // after epochs 1 and 2, then within 3
  const TrainerCheckpoint within = first.saved.back();
  EXPECT_EQ(within.epoch, 3);
  EXPECT_EQ(within.batches_done, 7);
  EXPECT_DOUBLE_EQ(within.partial_loss_sum, 1.5);
  EXPECT_EQ(Weights(within.weights), 103);
  // Everything else as of epoch 2.
  EXPECT_EQ(within.stopper.best_epoch, 2);
  EXPECT_EQ(within.last_metrics.epoch, 2);
  EXPECT_EQ(Weights(within.best_weights), 2);
  EXPECT_EQ(heard.checkpoints.back(), std::make_pair(3, 7));

  ScriptedRunner second(losses);
  second.weights = Weights(within.weights);
  Heard heard2;
  auto result = RunStages(spec, second, heard2, &within, true);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(second.ran, (std::vector<int>{3, 4, 5}));
  EXPECT_EQ(second.resumed_from[0].batches_done, 7);
  EXPECT_DOUBLE_EQ(second.resumed_from[0].loss_sum, 1.5);
  EXPECT_EQ(second.resumed_from[1].batches_done, 0) << "only the interrupted epoch resumes within";
  EXPECT_EQ(second.weights, 4);
  EXPECT_EQ(result->best_metrics.epoch, 4);

  ScriptedRunner whole(losses);
  Heard heard3;
  auto uninterrupted = RunStages(spec, whole, heard3, nullptr, true);
  ASSERT_TRUE(uninterrupted.ok());
  EXPECT_EQ(whole.weights, second.weights);
  EXPECT_EQ(uninterrupted->best_metrics.epoch, result->best_metrics.epoch);
}

TEST(StageLoopTest, NoCheckpointIsWrittenWhenNoneIsAsked) {
  ScriptedRunner runner(kTwoStages);
  Heard heard;
  ASSERT_TRUE(RunStages(Stages({3, 3}), runner, heard, nullptr, /*save_checkpoints=*/false).ok());
  EXPECT_TRUE(runner.saved.empty());
  EXPECT_TRUE(heard.checkpoints.empty());
  EXPECT_EQ(heard.epochs, (std::vector<int>{1, 2, 3, 4, 5, 6}));
}

}  // namespace
}  // namespace graft::core
