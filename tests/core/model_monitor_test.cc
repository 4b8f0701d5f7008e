// core::ModelMonitor and its ReferenceProfile on synthetic embeddings (no
// ../shared): traffic from the reference's distribution stays below the drift
// threshold and shifted traffic rises above it, class shares diverge when one
// class takes over, the window keeps only the last and recent predictions, a
// profile survives its JSON and malformed ones are refused, and the same seed
// gives the same sketch and profile.

#include "core/serve/model_monitor.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <thread>

namespace graft::core {
namespace {

constexpr int64_t kDim = 64;

// n embeddings around `shift` and probabilities over 3 classes, drawn from `seed`.
std::pair<torch::Tensor, torch::Tensor> Draw(int64_t n, double shift, uint64_t seed) {
  torch::manual_seed(seed);
  const torch::Tensor emb = torch::randn({n, kDim}) + shift;
  const torch::Tensor prob = torch::softmax(torch::randn({n, 3}) * 2, 1);
  return {emb, prob};
}

ReferenceProfile Reference(int64_t n = 200, uint64_t seed = 1) {
  const auto [emb, prob] = Draw(n, 0, 1000 + seed);
  auto p = MakeReferenceProfile(emb, prob, seed);
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

TEST(ModelMonitorTest, TrafficLikeTheReferenceStaysBelowTheThresholdAndShiftedTrafficRisesAboveIt) {
  const auto reference = std::make_shared<const ReferenceProfile>(Reference());
  EXPECT_EQ(reference->rows.size(), 200u);
  EXPECT_GT(reference->drift_threshold, 0);
  int alarms = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    ModelMonitor monitor(reference, 3, MonitorOptions{});
    const auto [emb, prob] = Draw(300, 0, seed);
    monitor.ObserveBatch(emb, prob, 10);
    const MonitorSnapshot s = monitor.Read(10);
    ASSERT_EQ(s.predictions, 300);
    EXPECT_GE(s.drift_score, 0) << "300 predictions are enough for a score";
    alarms += s.drifting ? 1 : 0;
  }
  EXPECT_LE(alarms, 2) << "the threshold is the 99th percentile: in-distribution traffic raised " << alarms
                       << " alarms in 20 windows";
  for (uint64_t seed = 0; seed < 5; ++seed) {
    ModelMonitor monitor(reference, 3, MonitorOptions{});
    const auto [emb, prob] = Draw(300, 0.5, 100 + seed);
    monitor.ObserveBatch(emb, prob, 10);
    const MonitorSnapshot s = monitor.Read(10);
    EXPECT_TRUE(s.drifting) << "a shift of half a standard deviation in every dimension went unseen: score "
                            << s.drift_score;
    EXPECT_GT(s.drift_score, 1);
  }
}

TEST(ModelMonitorTest, ShiftedTrafficIsSeenOnceItFillsHalfTheWindowItIsComparedOn) {
  const auto reference = std::make_shared<const ReferenceProfile>(Reference());
  ModelMonitor monitor(reference, 3, MonitorOptions{});
  const auto [emb, prob] = Draw(300, 0, 7);
  monitor.ObserveBatch(emb, prob, 1);
  EXPECT_FALSE(monitor.Read(1).drifting);
  // The score compares the latest kMaxReferenceRows predictions: shifted
  // traffic takes over the comparison as it arrives.
  const auto [shifted, shifted_prob] = Draw(kMaxReferenceRows, 1.0, 8);
  monitor.ObserveBatch(shifted, shifted_prob, 2);
  EXPECT_TRUE(monitor.Read(2).drifting);
}

TEST(ModelMonitorTest, ClassSharesDivergeWhenOneClassTakesOver) {
  ReferenceProfile p = Reference();
  p.class_shares = {0.5, 0.5, 0};
  const auto reference = std::make_shared<const ReferenceProfile>(p);
  ModelMonitor balanced(reference, 3, MonitorOptions{}), ants(reference, 3, MonitorOptions{});
  const float a[3] = {0.95f, 0.05f, 0}, b[3] = {0.2f, 0.8f, 0};
  for (int i = 0; i < 100; ++i) {
    balanced.Observe(nullptr, 0, i % 2 ? a : b, 3, 1);
    ants.Observe(nullptr, 0, a, 3, 1);
  }
  const MonitorSnapshot even = balanced.Read(1), skewed = ants.Read(1);
  EXPECT_NEAR(even.class_share_divergence, 0, 1e-9);
  // JS([1/2, 1/2], [1, 0]) = (KL(P|M) + KL(Q|M)) / 2 with M = [3/4, 1/4]: 0.311 bits.
  EXPECT_NEAR(skewed.class_share_divergence, 0.3113, 1e-3);
  EXPECT_NEAR(skewed.class_shares[0], 1.0, 1e-9);
  EXPECT_NEAR(skewed.mean_confidence, 0.95, 1e-6);
  EXPECT_NEAR(skewed.confidence_histogram[9], 1.0, 1e-9);
  EXPECT_EQ(skewed.drift_score, -1) << "no embeddings observed: no drift score";
}

TEST(ModelMonitorTest, TheWindowKeepsTheLastPredictionsAndNoneTooOld) {
  ModelMonitor monitor(nullptr, 2, MonitorOptions{/*window=*/10, /*max_age_s=*/60});
  const float p[2] = {0.3f, 0.7f};
  for (int i = 0; i < 25; ++i) monitor.Observe(nullptr, 0, p, 2, 100 + i);
  MonitorSnapshot s = monitor.Read(124);
  EXPECT_EQ(s.predictions, 10);
  EXPECT_EQ(s.observed, 25);
  EXPECT_EQ(s.class_share_divergence, -1) << "no reference";
  EXPECT_NEAR(s.class_shares[1], 1.0, 1e-9);
  s = monitor.Read(100 + 24 + 61);  // every one older than a minute
  EXPECT_EQ(s.predictions, 0);
  EXPECT_TRUE(s.class_shares.empty());
}

TEST(ModelMonitorTest, AWindowOfZeroMonitorsNothing) {
  ModelMonitor monitor(nullptr, 2, MonitorOptions{/*window=*/0, /*max_age_s=*/0});
  const float p[2] = {0.3f, 0.7f};
  for (int i = 0; i < 5; ++i) monitor.Observe(nullptr, 0, p, 2, 100 + i);
  monitor.ObserveBatch(torch::zeros({4, 8}), torch::full({4, 2}, 0.5f), 110);
  const MonitorSnapshot s = monitor.Read(111);
  EXPECT_EQ(s.observed, 0);
  EXPECT_EQ(s.predictions, 0);
}

TEST(ModelMonitorTest, TooFewValidationImagesGiveNoDriftScoreButSharesStillDiverge) {
  const auto reference = std::make_shared<const ReferenceProfile>(Reference(/*n=*/kMinReferenceRows - 1));
  EXPECT_EQ(reference->drift_threshold, 0);
  ModelMonitor monitor(reference, 3, MonitorOptions{});
  const auto [emb, prob] = Draw(300, 3, 5);
  monitor.ObserveBatch(emb, prob, 1);
  const MonitorSnapshot s = monitor.Read(1);
  EXPECT_EQ(s.drift_score, -1);
  EXPECT_FALSE(s.drifting);
  EXPECT_GE(s.class_share_divergence, 0);
}

TEST(ModelMonitorTest, AProfileSurvivesItsJsonAndMalformedOnesAreRefused) {
  const ReferenceProfile p = Reference(300);
  EXPECT_EQ(p.rows.size(), static_cast<size_t>(kMaxReferenceRows)) << "300 images: a sample of the rows";
  const nlohmann::json j = ReferenceProfileToJson(p);
  auto back = ReferenceProfileFromJson(nlohmann::json::parse(j.dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->rows, p.rows);
  EXPECT_EQ(back->sketch_seed, p.sketch_seed);
  EXPECT_DOUBLE_EQ(back->drift_threshold, p.drift_threshold);
  EXPECT_EQ(back->class_shares, p.class_shares);

  nlohmann::json short_row = j;
  short_row["rows"][3].erase(0);
  EXPECT_EQ(ReferenceProfileFromJson(short_row).status().code(), absl::StatusCode::kDataLoss);
  nlohmann::json many = j;
  many["rows"].push_back(j["rows"][0]);
  auto refused = ReferenceProfileFromJson(many);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(refused.status().message().find("at most 256 rows"), std::string::npos) << refused.status();
  nlohmann::json wide = j;
  wide["embedding_dim"] = kMaxEmbeddingDim + 1;
  EXPECT_EQ(ReferenceProfileFromJson(wide).status().code(), absl::StatusCode::kDataLoss);
  nlohmann::json shares = j;
  shares["class_shares"][0] = -0.5;
  EXPECT_EQ(ReferenceProfileFromJson(shares).status().code(), absl::StatusCode::kDataLoss);
  nlohmann::json missing = j;
  missing.erase("bandwidth");
  EXPECT_EQ(ReferenceProfileFromJson(missing).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReferenceProfileFromJson(nlohmann::json::array()).status().code(), absl::StatusCode::kDataLoss);

  const auto [emb, prob] = Draw(4, 0, 1);
  EXPECT_EQ(MakeReferenceProfile(emb, prob.slice(0, 0, 3), 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeReferenceProfile(emb.flatten(), prob, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelMonitorTest, TheSameSeedGivesTheSameSketchAndProfile) {
  const EmbeddingSketch a(kDim, 7), b(kDim, 7), c(kDim, 8);
  const torch::Tensor x = torch::randn({kDim});
  EXPECT_EQ(a.Project(x.data_ptr<float>()), b.Project(x.data_ptr<float>()));
  EXPECT_NE(a.Project(x.data_ptr<float>()), c.Project(x.data_ptr<float>()));
  const ReferenceProfile p = Reference(300, 4), q = Reference(300, 4);
  EXPECT_EQ(p.rows, q.rows);
  EXPECT_DOUBLE_EQ(p.drift_threshold, q.drift_threshold);
  // A projection to 32 of 64 dimensions keeps distances on average (variance 1/32 per entry).
  const std::vector<float> y = a.Project(x.data_ptr<float>());
  double norm = 0;
  for (float v : y) norm += v * v;
  EXPECT_NEAR(norm / x.pow(2).sum().item<double>(), 1.0, 0.6);
}

TEST(ModelMonitorTest, ManyThreadsObserveWhileOneReads) {
  const auto reference = std::make_shared<const ReferenceProfile>(Reference());
  ModelMonitor monitor(reference, 3, MonitorOptions{/*window=*/500, /*max_age_s=*/0});
  const auto [emb, prob] = Draw(250, 0, 3);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int r = 0; r < 2; ++r) monitor.ObserveBatch(emb, prob, 1);
    });
  }
  for (int r = 0; r < 20; ++r) EXPECT_LE(monitor.Read(1).predictions, 500);
  for (auto& t : threads) t.join();
  const MonitorSnapshot s = monitor.Read(1);
  EXPECT_EQ(s.observed, 2000);
  EXPECT_EQ(s.predictions, 500);
  EXPECT_FALSE(s.drifting);
}

}  // namespace
}  // namespace graft::core
