// Shadow versions' parts: the agreement of two versions' answers (classes
// matched by label, not index) and the bounded lane that runs the shadow's
// work off the request path, dropping what does not fit.

#include "core/serve/shadow.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <mutex>
#include <vector>

#include "absl/synchronization/notification.h"

namespace graft::core {
namespace {

TEST(ShadowAgreementTest, MatchesClassesByLabelAndCountsFlipsPerServedClass) {
  // The shadow lists the classes in another order and lacks "wasps".
  ShadowAgreement agreement({"ants", "bees", "wasps"}, {"bees", "ants"});
  const torch::Tensor served = torch::tensor({{0.7f, 0.2f, 0.1f},    // ants
                                              {0.1f, 0.6f, 0.3f},    // bees
                                              {0.6f, 0.3f, 0.1f},    // ants
                                              {0.1f, 0.1f, 0.8f}});  // wasps
  const torch::Tensor shadow = torch::tensor({{0.1f, 0.9f},    // ants: agrees, |0.9 - 0.7| = 0.2
                                              {0.8f, 0.2f},    // bees: agrees, |0.8 - 0.6| = 0.2
                                              {0.7f, 0.3f},    // bees: flips ants, |0.3 - 0.6| = 0.3
                                              {0.5f, 0.5f}});  // wasps unknown to it: flips, |0 - 0.8| = 0.8
  agreement.Observe(served, shadow);
  agreement.Dropped(5);
  agreement.Failed(2);
  const AgreementSnapshot s = agreement.Read();
  EXPECT_EQ(s.images, 4);
  EXPECT_EQ(s.agreements, 2);
  EXPECT_DOUBLE_EQ(s.top1_agreement(), 0.5);
  EXPECT_NEAR(s.mean_abs_diff(), (0.2 + 0.2 + 0.3 + 0.8) / 4, 1e-6);
  EXPECT_EQ(s.dropped_images, 5);
  EXPECT_EQ(s.failed_images, 2);
  ASSERT_EQ(s.classes.size(), 3u);
  EXPECT_EQ(s.classes[0].label, "ants");
  EXPECT_EQ(s.classes[0].served, 2);
  EXPECT_EQ(s.classes[0].flips, 1);
  EXPECT_EQ(s.classes[1].served, 1);
  EXPECT_EQ(s.classes[1].flips, 0);
  EXPECT_EQ(s.classes[2].served, 1);
  EXPECT_EQ(s.classes[2].flips, 1);
}

TEST(ShadowAgreementTest, AVersionAgainstItselfAgreesEverywhere) {
  ShadowAgreement agreement({"a", "b", "c"}, {"a", "b", "c"});
  torch::manual_seed(1);
  const torch::Tensor p = torch::softmax(torch::randn({50, 3}), 1);
  agreement.Observe(p, p.clone());
  const AgreementSnapshot s = agreement.Read();
  EXPECT_EQ(s.images, 50);
  EXPECT_DOUBLE_EQ(s.top1_agreement(), 1.0);
  EXPECT_DOUBLE_EQ(s.mean_abs_diff(), 0.0);
}

TEST(ShadowLaneTest, RunsInOrderAndDropsWhatDoesNotFitWithoutRunningIt) {
  ShadowLane lane(/*capacity_images=*/3);
  absl::Notification started, release;
  std::vector<int> ran;
  std::mutex mu;
  auto record = [&](int i) {
    std::lock_guard<std::mutex> lock(mu);
    ran.push_back(i);
  };
  // The first holds the worker; once it runs, the queue is empty again.
  ASSERT_TRUE(lane.Offer(3, [&] {
    started.Notify();
    release.WaitForNotification();
    record(0);
  }));
  started.WaitForNotification();
  EXPECT_TRUE(lane.Offer(2, [&] { record(1); }));
  EXPECT_FALSE(lane.Offer(2, [&] { record(2); })) << "2 + 2 images queued with room for 3";
  EXPECT_TRUE(lane.Offer(1, [&] { record(3); }));
  EXPECT_FALSE(lane.Offer(1, [&] { record(4); })) << "the queue is full";
  EXPECT_FALSE(lane.Offer(4, [&] { record(5); })) << "more than the whole capacity";
  release.Notify();
  lane.Drain();
  EXPECT_EQ(ran, (std::vector<int>{0, 1, 3}));
  // Room again once drained.
  EXPECT_TRUE(lane.Offer(3, [&] { record(6); }));
  lane.Drain();
  EXPECT_EQ(ran.back(), 6);
}

}  // namespace
}  // namespace graft::core
