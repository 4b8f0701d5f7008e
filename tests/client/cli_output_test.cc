// The terminal learning curves of graft watch.
#include "client/cli_output.h"
#include "client/cli_search.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace graft::client {
namespace {

TEST(Sparkline, ScalesValuesOntoTheEightBlocks) {
  EXPECT_EQ(Sparkline({0, 1, 0.5, 2, -1}, 0, 1), "\u2581\u2588\u2585\u2588\u2581");
  EXPECT_EQ(Sparkline({0.25, std::nan("")}, 0, 1), "\u2583 ");
  EXPECT_EQ(Sparkline({3, 3}, 3, 3), "\u2585\u2585");  // a flat curve sits in the middle
}

TEST(LearningCurves, TrainAndValShareAScaleAndStagesAreMarked) {
  std::vector<v1::EpochMetrics> epochs;
  for (int e = 1; e <= 4; ++e) {
    v1::EpochMetrics m;
    m.set_epoch(e);
    m.set_stage(e <= 2 ? 1 : 2);
    m.set_train_loss(1.0 - 0.25 * (e - 1));  // 1, .75, .5, .25
    m.set_val_loss(1.0);
    m.set_train_accuracy(0.5);
    m.set_val_accuracy(std::vector<double>{0.5, 0.65, 0.8, 0.9}[e - 1]);
    epochs.push_back(m);
  }
  const std::string curves = LearningCurves(epochs);
  EXPECT_EQ(curves,
            "loss     train \u2588\u2586|\u2583\u2581  val \u2588\u2588|\u2588\u2588  (0.250 .. 1.000)\n"
            "accuracy train \u2581\u2581|\u2581\u2581  val \u2581\u2584|\u2586\u2588  (0.500 .. 0.900)");
}

TEST(TrialRow, AFusedTrialSaysWithHowManyOthersItsSecondsWereShared) {
  v1::Trial t;
  t.set_index(3);
  t.set_backbone("mobilenet_v2");
  t.set_learning_rate(1e-3);
  t.set_epochs(5);
  t.set_epochs_budget(5);
  t.mutable_best()->set_val_accuracy(0.9);
  t.set_seconds(2.5);
  t.set_fused_trials(1);
  EXPECT_EQ(TrialRow(t).find("fused"), std::string::npos) << TrialRow(t);
  t.set_fused_trials(4);
  const std::string row = TrialRow(t);
  EXPECT_NE(row.find("2.50 (fused with 3)"), std::string::npos) << row;
}

}  // namespace
}  // namespace graft::client
