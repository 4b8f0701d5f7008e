// Fused trials (TrainInput::fusion): runs trained in lockstep with their
// heads stacked give what each gives alone: every optimizer, weight decay,
// label smoothing, dropout, a warmup-then-cosine schedule, members that stop
// early at different epochs (the stack shrinks) and one that diverges
// (its error, while the others go on).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <set>
#include <thread>

#include "core/train/one_pass_adam.h"
#include "core/train/search.h"
#include "core/train/trainer.h"
#include "core/util/compute_threads.h"
#include "core/util/host_memory.h"
#include "core/zoo/zoo.h"
#include "tests/testing/hymenoptera.h"
#include "tests/testing/weights_zoo.h"

namespace graft::core {
namespace {

class FusedTrialsTest : public ::testing::Test {
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
  // A head-only run of `job` on hymenoptera images with their features
  // extracted once (as a search shares them).
  static absl::StatusOr<TrainInput> OnSharedFeatures(const JobSpec& job, int train_per_class, int val_per_class) {
    TrainInput in;
    in.images = graft::testing::HymenopteraImages(train_per_class, val_per_class);
    in.num_classes = 2;
    in.resident = *zoo_->Resident(job.backbone);
    in.spec = job;
    CancellationToken never;
    auto features = ExtractFeatures(in, never);
    if (!features.ok()) return features.status();
    in.features = *features;
    return in;
  }
  static Zoo* zoo_;
};

Zoo* FusedTrialsTest::zoo_ = nullptr;

struct Config {
  OptimizerSpec optimizer;
  double label_smoothing = 0;
  bool early_stopping = false;
};

// The largest absolute difference between two runs' trained weights.
double MaxWeightDifference(const StateDict& a, const StateDict& b) {
  EXPECT_EQ(a.size(), b.size());
  double most = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    most = std::max(most, (a[i].second - b[i].second).abs().max().item<double>());
  }
  return most;
}

TEST_F(FusedTrialsTest, EqualRunsAloneWithEveryOptimizerEarlyStopsAndADivergence) {
  JobSpec job;
  job.backbone = "mobilenet_v2";
  job.dataset = "hymenoptera";
  job.input_size = 112;
  job.batch_size = 16;
  job.seed = 11;
  job.head = HeadSpec{{48, 24}, 0.3, "gelu"};  // two hidden layers: both kinds of stacked product, masks on each
  job.stages.push_back({});
  job.stages[0].epochs = 7;
  job.stages[0].schedule.kind = ScheduleKind::kCosine;
  job.stages[0].schedule.warmup_epochs = 1;
  job.early_stopping.monitor = Monitor::kValLoss;
  job.early_stopping.patience = 1;
  job.early_stopping.min_delta = 0.02;
  ASSERT_TRUE(NormalizeJobSpec(job, 18).ok());

  std::vector<Config> configs(6);
  configs[0].optimizer.kind = OptimizerKind::kAdam;
  configs[0].optimizer.learning_rate = 1e-3;
  configs[1].optimizer.kind = OptimizerKind::kSgd;
  configs[1].optimizer.learning_rate = 3e-2;
  configs[1].optimizer.momentum = 0.9;
  configs[1].optimizer.nesterov = true;
  configs[1].optimizer.weight_decay = 1e-4;
  configs[2].optimizer.kind = OptimizerKind::kAdamW;
  configs[2].optimizer.learning_rate = 3e-3;
  configs[2].optimizer.weight_decay = 1e-2;
  configs[2].label_smoothing = 0.1;
  configs[2].early_stopping = true;
  configs[3].optimizer.kind = OptimizerKind::kRmsprop;
  configs[3].optimizer.learning_rate = 1e-4;
  configs[3].optimizer.momentum = 0.5;
  configs[4].optimizer.kind = OptimizerKind::kSgd;  // diverges: its weights overflow after the first step
  configs[4].optimizer.learning_rate = 1e37;
  configs[5].optimizer.kind = OptimizerKind::kAdam;
  configs[5].optimizer.learning_rate = 3e-2;
  configs[5].early_stopping = true;

  auto shared = OnSharedFeatures(job, 40, 30);
  ASSERT_TRUE(shared.ok()) << shared.status();
  const TrainInput& base = *shared;
  CancellationToken never;
  std::vector<TrainInput> inputs;
  for (const Config& c : configs) {
    TrainInput in = base;
    in.spec.stages[0].optimizer = c.optimizer;
    in.spec.label_smoothing = c.label_smoothing;
    in.spec.early_stopping.enabled = c.early_stopping;
    inputs.push_back(in);
  }

  std::vector<absl::StatusOr<TrainedModel>> alone, fused(configs.size(), absl::UnknownError("not run"));
  for (const TrainInput& in : inputs) {
    TrainEvents quiet;
    alone.push_back(Train(in, never, quiet));
  }
  const std::shared_ptr<HeadFusion> fusion = NewHeadFusion(static_cast<int>(configs.size()));
  std::vector<std::thread> members;
  for (size_t i = 0; i < configs.size(); ++i) {
    members.emplace_back([&, i] {
      TrainInput in = inputs[i];
      in.fusion = fusion;
      TrainEvents quiet;
      fused[i] = Train(in, never, quiet);
    });
  }
  for (std::thread& m : members) m.join();

  std::set<int> stopped_at;
  for (size_t i = 0; i < configs.size(); ++i) {
    SCOPED_TRACE("config " + std::to_string(i));
    ASSERT_EQ(alone[i].ok(), fused[i].ok()) << alone[i].status() << " / " << fused[i].status();
    if (!alone[i].ok()) {  // the divergence: the same error, the others unharmed
      EXPECT_EQ(i, 4u);
      EXPECT_EQ(fused[i].status(), alone[i].status());
      EXPECT_NE(alone[i].status().message().find("training diverged"), std::string::npos) << alone[i].status();
      continue;
    }
    const TrainedModel& a = *alone[i];
    const TrainedModel& f = *fused[i];
    EXPECT_EQ(a.fused_trials, 1);
    EXPECT_EQ(f.fused_trials, 6);
    EXPECT_EQ(f.final_metrics.epoch, a.final_metrics.epoch);
    EXPECT_EQ(f.best_metrics.epoch, a.best_metrics.epoch);
    EXPECT_NEAR(f.best_metrics.val_loss, a.best_metrics.val_loss, 1e-5);
    EXPECT_NEAR(f.final_metrics.train_loss, a.final_metrics.train_loss, 1e-5);
    EXPECT_DOUBLE_EQ(f.best_metrics.val_accuracy, a.best_metrics.val_accuracy);
    EXPECT_DOUBLE_EQ(f.best_metrics.val_macro_f1, a.best_metrics.val_macro_f1);
    EXPECT_DOUBLE_EQ(f.final_metrics.learning_rate, a.final_metrics.learning_rate);
    EXPECT_LT(MaxWeightDifference(f.weights, a.weights), 1e-5);
    stopped_at.insert(a.final_metrics.epoch);
    std::cout << "config " << i << ": " << a.final_metrics.epoch << " epochs, best " << a.best_metrics.epoch
              << ", val loss " << a.best_metrics.val_loss << " alone, " << f.best_metrics.val_loss << " fused\n";
  }
  // Members left at different epochs: the stack shrank while others trained on.
  EXPECT_GE(stopped_at.size(), 2u);
  EXPECT_EQ(*stopped_at.rbegin(), 7);
}

// One pass per element computes what torch::optim's eight tensor-wide
// operations do, weight decay coupled (Adam) or decoupled (AdamW), with the
// learning rate changing between steps as a schedule changes it.
TEST(OnePassAdamTest, StepsAsTorchOptimDoes) {
  for (const OptimizerKind kind : {OptimizerKind::kAdam, OptimizerKind::kAdamW}) {
    for (const double weight_decay : {0.0, 0.05}) {
      SCOPED_TRACE(std::string(kind == OptimizerKind::kAdam ? "Adam" : "AdamW") + " wd " + std::to_string(weight_decay));
      OptimizerSpec spec;
      spec.kind = kind;
      spec.weight_decay = weight_decay;
      spec.beta1 = 0.85;
      torch::manual_seed(4);
      const torch::Tensor start = torch::randn({37, 53});
      torch::Tensor theirs = start.clone().requires_grad_(true), ours = start.clone();
      ASSERT_TRUE(OnePassAdam::Handles(spec, {ours}));
      std::unique_ptr<torch::optim::Optimizer> reference;
      if (kind == OptimizerKind::kAdam) {
        reference = std::make_unique<torch::optim::Adam>(
            std::vector<torch::Tensor>{theirs},
            torch::optim::AdamOptions(1e-2).betas({0.85, 0.999}).weight_decay(weight_decay));
      } else {
        reference = std::make_unique<torch::optim::AdamW>(
            std::vector<torch::Tensor>{theirs},
            torch::optim::AdamWOptions(1e-2).betas({0.85, 0.999}).weight_decay(weight_decay));
      }
      OnePassAdam adam({ours}, spec);
      for (int step = 0; step < 60; ++step) {
        const double lr = 1e-2 * (1 + std::cos(step / 10.0)) / 2 + 1e-4;
        const torch::Tensor grad = torch::randn({37, 53}) * (step % 7 == 0 ? 1e-6 : 0.3);
        theirs.mutable_grad() = grad.clone();
        ours.mutable_grad() = grad.clone();
        for (auto& group : reference->param_groups()) group.options().set_lr(lr);
        reference->step();
        adam.Step(lr);
      }
      EXPECT_LT((ours - theirs.detach()).abs().max().item<double>(), 1e-6);
      EXPECT_GT((ours - start).abs().max().item<double>(), 0.05) << "the weights moved";
    }
  }
  OptimizerSpec sgd;
  sgd.kind = OptimizerKind::kSgd;
  EXPECT_FALSE(OnePassAdam::Handles(sgd, {torch::zeros({2})}));
  OptimizerSpec adam;
  EXPECT_FALSE(OnePassAdam::Handles(adam, {torch::zeros({2}, torch::kFloat64)}));
}

TEST_F(FusedTrialsTest, AMemberThatCannotFuseTrainsAloneAndTheOthersDoNotWaitForIt) {
  JobSpec job;
  job.backbone = "squeezenet1_1";
  job.dataset = "hymenoptera";
  job.input_size = 112;
  job.batch_size = 16;
  job.seed = 3;
  job.stages.push_back({});
  job.stages[0].epochs = 3;
  ASSERT_TRUE(NormalizeJobSpec(job, 18).ok());
  auto shared = OnSharedFeatures(job, 20, 10);
  ASSERT_TRUE(shared.ok()) << shared.status();
  const TrainInput& base = *shared;
  CancellationToken never;
  const std::shared_ptr<HeadFusion> fusion = NewHeadFusion(4);
  std::vector<absl::StatusOr<TrainedModel>> out(3, absl::UnknownError("not run"));
  std::vector<std::thread> members;
  for (int i = 0; i < 3; ++i) {
    members.emplace_back([&, i] {
      TrainInput in = base;
      in.fusion = fusion;
      if (i == 2) in.features = nullptr;  // computes its own features: nothing to share
      in.spec.stages[0].optimizer.learning_rate = 1e-3 * (i + 1);
      TrainEvents quiet;
      out[static_cast<size_t>(i)] = Train(in, never, quiet);
    });
  }
  WithdrawFromFusion(*fusion);  // the fourth member was skipped
  for (std::thread& m : members) m.join();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(out[static_cast<size_t>(i)].ok()) << out[static_cast<size_t>(i)].status();
  EXPECT_EQ(out[0]->fused_trials, 2);
  EXPECT_EQ(out[1]->fused_trials, 2);
  EXPECT_EQ(out[2]->fused_trials, 1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(out[static_cast<size_t>(i)]->final_metrics.epoch, 3);
}

}  // namespace
}  // namespace graft::core
