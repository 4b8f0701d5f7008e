// balanced_sampling's draws, and the macro-F1 monitor's direction.
#include <gtest/gtest.h>

#include <map>

#include "core/jobs/job_store.h"
#include "core/train/early_stopping.h"
#include "core/train/trainer.h"

namespace graft::core {
namespace {

TEST(BalancedOrder, DrawsEveryClassEquallyOftenFromAnImbalancedSet) {
  // 900 images of class 0, 90 of class 1, 10 of class 2, none of class 3.
  std::vector<std::vector<int64_t>> by_class(4);
  int64_t next = 0;
  for (int i = 0; i < 900; ++i) by_class[0].push_back(next++);
  for (int i = 0; i < 90; ++i) by_class[1].push_back(next++);
  for (int i = 0; i < 10; ++i) by_class[2].push_back(next++);
  std::mt19937_64 rng(7);
  const std::vector<int64_t> order = BalancedOrder(by_class, 30000, rng);
  ASSERT_EQ(order.size(), 30000u);
  std::map<int, int> per_class;
  std::map<int64_t, int> per_image;
  for (int64_t item : order) {
    ASSERT_GE(item, 0);
    ASSERT_LT(item, next);
    ++per_class[item < 900 ? 0 : item < 990 ? 1 : 2];
    ++per_image[item];
  }
  // 10000 expected per class; 5 standard deviations is ~410.
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(per_class[c], 10000, 410) << "class " << c;
  // Within the rare class every image is drawn, ~1000 times each.
  for (int64_t item = 990; item < 1000; ++item) EXPECT_NEAR(per_image[item], 1000, 160) << item;
  // The same seed draws the same order (a resumed epoch skips exactly its done batches).
  std::mt19937_64 again(7);
  EXPECT_EQ(BalancedOrder(by_class, 30000, again), order);
  EXPECT_TRUE(BalancedOrder({{}, {}}, 5, again).empty());
}

TEST(EarlyStoppingMacroF1, HigherIsBetterAndPatienceCounts) {
  EarlyStoppingSpec spec;
  spec.enabled = true;
  spec.monitor = Monitor::kValMacroF1;
  spec.patience = 2;
  EarlyStopping stopper(spec);
  EXPECT_TRUE(stopper.Update(1, 0.50).improved);
  EXPECT_TRUE(stopper.Update(2, 0.70).improved);
  EXPECT_FALSE(stopper.Update(3, 0.60).improved);
  const auto decision = stopper.Update(4, 0.65);
  EXPECT_FALSE(decision.improved);
  EXPECT_TRUE(decision.stop);
  EXPECT_EQ(stopper.state().best_epoch, 2);
  EXPECT_DOUBLE_EQ(stopper.state().best, 0.70);
}

TEST(LearningCurvesOf, EveryEpochOnceInOrderTheLastCopyCountingAndEachRestoreOnce) {
  auto epoch = [](int n, double loss) {
    JobEvent e;
    e.type = JobEventType::kEpoch;
    e.epoch.epoch = n;
    e.epoch.val_loss = loss;
    return e;
  };
  JobEvent restored;
  restored.type = JobEventType::kBestRestored;
  restored.epoch_number = 2;
  // Epoch 3 ran twice (killed after its event, resumed): the second copy counts.
  const LearningCurves c = LearningCurvesOf({epoch(1, 0.9), epoch(2, 0.5), epoch(3, 0.7), epoch(3, 0.6), restored,
                                             restored});
  ASSERT_EQ(c.epochs.size(), 3u);
  EXPECT_EQ(c.epochs[2].epoch, 3);
  EXPECT_DOUBLE_EQ(c.epochs[2].val_loss, 0.6);
  EXPECT_EQ(c.restored_epochs, std::vector<int>{2});
}

}  // namespace
}  // namespace graft::core
