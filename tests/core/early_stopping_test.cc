// Early stopping and restore-best logic, no torch.

#include "core/train/early_stopping.h"

#include <gtest/gtest.h>

#include "core/train/stage_loop.h"

namespace graft::core {
namespace {

EarlyStoppingSpec Spec(Monitor monitor, MonitorMode mode, int patience, double min_delta) {
  EarlyStoppingSpec s;
  s.enabled = true;
  s.monitor = monitor;
  s.mode = mode;
  s.patience = patience;
  s.min_delta = min_delta;
  return s;
}

// Feeds values; returns the epoch at which it says stop (0 = never).
int StopEpoch(EarlyStopping& es, const std::vector<double>& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (es.Update(static_cast<int>(i) + 1, values[i]).stop) return static_cast<int>(i) + 1;
  }
  return 0;
}

TEST(EarlyStopping, StopsAfterPatienceEpochsWithoutImprovement) {
  EarlyStopping es(Spec(Monitor::kValLoss, MonitorMode::kAuto, 2, 0));
  EXPECT_EQ(StopEpoch(es, {1.0, 0.8, 0.9, 0.85, 0.7}), 4);
  EXPECT_EQ(es.state().best_epoch, 2);
  EXPECT_DOUBLE_EQ(es.state().best, 0.8);
}

TEST(EarlyStopping, PatienceResetsOnImprovement) {
  EarlyStopping es(Spec(Monitor::kValLoss, MonitorMode::kAuto, 2, 0));
  EXPECT_EQ(StopEpoch(es, {1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.95}), 7);
  EXPECT_EQ(es.state().best_epoch, 5);
}

TEST(EarlyStopping, MinDeltaIgnoresTinyImprovements) {
  EarlyStopping es(Spec(Monitor::kValLoss, MonitorMode::kMin, 2, 0.05));
  EXPECT_EQ(StopEpoch(es, {1.0, 0.97, 0.96}), 3);  // neither beats 1.0 by more than 0.05
  EXPECT_EQ(es.state().best_epoch, 1);
}

TEST(EarlyStopping, MaxModeForAccuracy) {
  EarlyStopping auto_mode(Spec(Monitor::kValAccuracy, MonitorMode::kAuto, 1, 0));
  EXPECT_FALSE(auto_mode.minimize());
  EXPECT_EQ(StopEpoch(auto_mode, {0.5, 0.7, 0.6}), 3);
  EXPECT_EQ(auto_mode.state().best_epoch, 2);
  EarlyStopping explicit_max(Spec(Monitor::kValLoss, MonitorMode::kMax, 1, 0));
  EXPECT_FALSE(explicit_max.minimize());
  EXPECT_EQ(StopEpoch(explicit_max, {0.1, 0.3, 0.2}), 3);
}

TEST(EarlyStopping, DisabledNeverStopsButTracksTheBest) {
  EarlyStoppingSpec s = Spec(Monitor::kValLoss, MonitorMode::kAuto, 1, 0);
  s.enabled = false;
  EarlyStopping es(s);
  EXPECT_EQ(StopEpoch(es, {0.5, 0.6, 0.7, 0.8}), 0);
  EXPECT_EQ(es.state().best_epoch, 1);
}

TEST(EarlyStopping, NonFiniteValuesNeverImprove) {
  EarlyStopping es(Spec(Monitor::kValLoss, MonitorMode::kAuto, 2, 0));
  EXPECT_EQ(StopEpoch(es, {1.0, std::nan(""), std::numeric_limits<double>::infinity()}), 3);
  EXPECT_EQ(es.state().best_epoch, 1);
}

TEST(EarlyStopping, StateRoundTripsForResume) {
  EarlyStopping a(Spec(Monitor::kValLoss, MonitorMode::kAuto, 3, 0));
  StopEpoch(a, {1.0, 0.9, 0.95});
  EarlyStopping b(Spec(Monitor::kValLoss, MonitorMode::kAuto, 3, 0));
  b.Restore(a.state());
  EXPECT_FALSE(b.Update(4, 0.96).stop);
  EXPECT_TRUE(b.Update(5, 0.97).stop);  // the wait carried over: epochs 3, 4, 5
}

TEST(RestoreBest, RestoresWhenTheBestIsNotTheLastEpoch) {
  EXPECT_EQ(EpochToRestore(/*restore_best=*/true, /*best_epoch=*/3, /*last_epoch=*/6), 3);
}

TEST(RestoreBest, NothingToRestoreWhenTheBestIsTheLastEpoch) {
  EXPECT_EQ(EpochToRestore(true, 6, 6), 0);
}

TEST(RestoreBest, OffMeansTheLastWeightsStay) {
  EXPECT_EQ(EpochToRestore(false, 3, 6), 0);
  EXPECT_EQ(EpochToRestore(true, 0, 6), 0);
}

}  // namespace
}  // namespace graft::core
