// The Keras recipe as one job (a frozen MobileNetV2 under a new head, then
// its top two blocks with SGD 1e-4) never publishes a model worse than the
// head stage's best, and batch norm in the unfrozen blocks is frozen unless
// the spec asks for PyTorch's train mode.

#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/zoo/state_dict.h"
#include "tests/integration/training_fixture.h"

namespace graft::server {
namespace {

struct JobRun {
  v1::Job job;
  std::vector<v1::EpochMetrics> epochs;
  std::vector<v1::BestRestored> restored;
  v1::Model model;
  core::StateDict exported;
};

class FineTuneTest : public TrainingTest {
 protected:
  // hymenoptera at 160 px (the TensorFlow tutorial's MobileNetV2 size): the
  // head 5 epochs with Adam 1e-3, then top:2 5 epochs with SGD 1e-4, momentum 0.9.
  v1::JobSpec Recipe(v1::BatchNorm batch_norm) {
    v1::JobSpec spec = Spec("hym", 5);
    spec.set_input_size(160);
    auto* fine = spec.add_stages();
    fine->set_epochs(5);
    fine->set_train("top:2");
    fine->mutable_optimizer()->set_kind(v1::OPTIMIZER_SGD);
    fine->mutable_optimizer()->set_learning_rate(1e-4);
    fine->mutable_optimizer()->set_momentum(0.9);
    spec.mutable_stages(0)->set_batch_norm(batch_norm);
    fine->set_batch_norm(batch_norm);
    return spec;
  }

  JobRun Train(const v1::JobSpec& spec) {
    JobRun r;
    auto job = client_->CreateJob(spec);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return r;
    EXPECT_TRUE(client_
                    ->WatchJob(job->id(), false,
                               [&](const v1::JobEvent& e) {
                                 if (e.has_epoch()) r.epochs.push_back(e.epoch());
                                 if (e.has_best_restored()) r.restored.push_back(e.best_restored());
                                 return true;
                               })
                    .ok());
    r.job = client_->GetJob(job->id()).value_or(v1::Job());
    EXPECT_EQ(r.job.state(), v1::JOB_STATE_SUCCEEDED) << r.job.error();
    r.model = client_->GetModel(r.job.model_id()).value_or(v1::Model());
    auto bytes = client_->ExportModel(r.job.model_id());
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    if (bytes.ok()) r.exported = core::ParseSafetensors(*bytes, "export").value_or(core::StateDict{});
    return r;
  }

  static double BestOfStage(const JobRun& r, int stage) {
    double best = std::numeric_limits<double>::infinity();
    for (const auto& e : r.epochs) {
      if (e.stage() == stage) best = std::min(best, e.val_loss());
    }
    return best;
  }

  // Batch-norm running statistics of the top two blocks (features.17 and
  // features.18), exported against the pretrained file's: the largest change.
  static double StatisticsMoved(const core::StateDict& exported) {
    auto pretrained = core::ReadSafetensors(graft::testing::WeightsDir() + "/mobilenet_v2-imagenet.safetensors");
    EXPECT_TRUE(pretrained.ok()) << pretrained.status();
    std::map<std::string, torch::Tensor> before;
    for (const auto& [name, t] : pretrained.value_or(core::StateDict{})) before[name] = t;
    double moved = 0;
    int compared = 0;
    for (const auto& [name, t] : exported) {
      const bool top = name.rfind("features.17.", 0) == 0 || name.rfind("features.18.", 0) == 0;
      const bool stats = name.find("running_mean") != std::string::npos || name.find("running_var") != std::string::npos;
      if (!top || !stats) continue;
      EXPECT_EQ(before.count(name), 1u) << name;
      if (before.count(name) == 0) continue;
      moved = std::max(moved, (t.to(torch::kFloat64) - before[name].to(torch::kFloat64)).abs().max().item<double>());
      ++compared;
    }
    EXPECT_GE(compared, 8) << "the export holds no batch-norm statistics of the top blocks";
    return moved;
  }
};

TEST_F(FineTuneTest, TheKerasRecipeNeverPublishesAModelWorseThanItsHeadStage) {
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  // Default: batch norm frozen (Keras' training=False), the job's best
  // published; then batch_norm: train (PyTorch's model.train()), which is
  // what made the fine-tuning stage worse, under the same guard.
  for (const v1::BatchNorm mode : {v1::BATCH_NORM_UNSPECIFIED, v1::BATCH_NORM_TRAIN}) {
    SCOPED_TRACE(v1::BatchNorm_Name(mode));
    const JobRun r = Train(Recipe(mode));
    ASSERT_EQ(r.epochs.size(), 10u);
    const double head_best = BestOfStage(r, 1), fine_best = BestOfStage(r, 2);
    std::cout << "[ figures  ] " << v1::BatchNorm_Name(mode) << ": head stage best val_loss " << head_best
              << ", fine-tuning stage best " << fine_best << ", published " << r.model.best_metrics().val_loss()
              << " (stage " << r.model.best_metrics().stage() << "), report log_loss " << r.model.report().log_loss()
              << "\n";
    EXPECT_LE(r.model.best_metrics().val_loss(), head_best);
    EXPECT_DOUBLE_EQ(r.model.best_metrics().val_loss(), std::min(head_best, fine_best));
    // The model's report is the published weights evaluated by the serving
    // path (float32, where training read the fp16 feature cache): within 1 %.
    EXPECT_LE(r.model.report().log_loss(), head_best * 1.01 + 1e-3)
        << "the published model is worse than the head stage's best";
    if (fine_best > head_best) {
      // The fine-tuning stage only made things worse: the head stage's best
      // is published, and the job says so.
      ASSERT_FALSE(r.restored.empty());
      const v1::BestRestored& last = r.restored.back();
      EXPECT_TRUE(last.across_stages());
      EXPECT_EQ(last.stage(), 1);
      EXPECT_NEAR(last.value(), head_best, 1e-9);
      EXPECT_EQ(r.model.best_metrics().stage(), 1);
    }
  }
}

TEST_F(FineTuneTest, FrozenBatchNormKeepsItsStatisticsAndPerStageRestorePublishesTheLastStage) {
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  // Per stage, the fine-tuning stage's best is published whatever the head
  // stage did, so its blocks' batch norms are in the export.
  for (const v1::BatchNorm mode : {v1::BATCH_NORM_FROZEN, v1::BATCH_NORM_TRAIN}) {
    SCOPED_TRACE(v1::BatchNorm_Name(mode));
    v1::JobSpec spec = Recipe(mode);
    spec.mutable_early_stopping()->set_restore_best(v1::RESTORE_BEST_PER_STAGE);
    const JobRun r = Train(spec);
    ASSERT_EQ(r.epochs.size(), 10u);
    EXPECT_EQ(r.model.best_metrics().stage(), 2);
    EXPECT_DOUBLE_EQ(r.model.best_metrics().val_loss(), BestOfStage(r, 2));
    for (const auto& restored : r.restored) EXPECT_FALSE(restored.across_stages());
    const double moved = StatisticsMoved(r.exported);
    std::cout << "[ figures  ] " << v1::BatchNorm_Name(mode) << " per stage: running statistics moved by up to "
              << moved << "\n";
    if (mode == v1::BATCH_NORM_FROZEN) {
      EXPECT_EQ(moved, 0.0) << "frozen batch norm changed its running statistics";
    } else {
      EXPECT_GT(moved, 1e-3) << "batch norm in train mode kept the pretrained statistics";
    }
  }
}

}  // namespace
}  // namespace graft::server
