// The evaluation report's figures against scikit-learn's on the same
// predictions (Debian's python3-sklearn; tests/eval/sklearn_report.py).

#include "core/eval/report.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "core/util/files.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/paths.h"

namespace graft::core {
namespace {

struct Predictions {
  torch::Tensor probabilities;
  std::vector<int> labels;
  std::vector<std::string> files;
  std::vector<std::string> classes;
};

// `n` images over `c` classes: imbalanced truth (class k drawn with weight
// k + 1, the last class never), logits that favour the truth with `skill`.
Predictions Random(int n, int c, double skill, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> weights;
  for (int k = 0; k < c; ++k) weights.push_back(k == c - 1 ? 0 : k + 1);
  std::discrete_distribution<int> truth(weights.begin(), weights.end());
  std::normal_distribution<double> noise(0, 1.5);
  Predictions p;
  torch::Tensor logits = torch::empty({n, c}, torch::kDouble);
  for (int i = 0; i < n; ++i) {
    const int y = truth(rng);
    p.labels.push_back(y);
    p.files.push_back("img" + std::to_string(i) + ".jpg");
    for (int k = 0; k < c; ++k) logits[i][k] = noise(rng) + (k == y ? skill : 0);
  }
  for (int k = 0; k < c; ++k) p.classes.push_back("class" + std::to_string(k));
  p.probabilities = torch::softmax(logits, 1);
  return p;
}

nlohmann::json Sklearn(const Predictions& p, int bins) {
  graft::testing::TempDir dir;
  nlohmann::json in;
  const torch::Tensor probs = p.probabilities.contiguous();
  std::vector<std::vector<double>> rows(static_cast<size_t>(probs.size(0)));
  for (int64_t i = 0; i < probs.size(0); ++i) {
    for (int64_t k = 0; k < probs.size(1); ++k) rows[i].push_back(probs[i][k].item<double>());
  }
  in["probabilities"] = rows;
  in["labels"] = p.labels;
  in["classes"] = p.classes.size();
  in["bins"] = bins;
  const std::string path = dir.Join("in.json");
  EXPECT_TRUE(WriteFileAtomic(path, in.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict)).ok());
  const std::string cmd = std::string(GRAFT_PYTHON) + " " + GRAFT_SOURCE_DIR + "/tests/eval/sklearn_report.py " + path;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (pipe != nullptr && ::fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
  EXPECT_EQ(pipe != nullptr ? ::pclose(pipe) : -1, 0) << cmd;
  return nlohmann::json::parse(out);
}

void ExpectMatchesSklearn(const Predictions& p) {
  auto report = ComputeReport(p.probabilities, p.labels, p.files, p.classes);
  ASSERT_TRUE(report.ok()) << report.status();
  const nlohmann::json ref = Sklearn(p, 15);
  EXPECT_EQ(report->confusion, ref["confusion"].get<std::vector<int64_t>>());
  ASSERT_EQ(report->classes.size(), p.classes.size());
  for (size_t k = 0; k < p.classes.size(); ++k) {
    SCOPED_TRACE(p.classes[k]);
    EXPECT_NEAR(report->classes[k].precision, ref["precision"][k].get<double>(), 1e-6);
    EXPECT_NEAR(report->classes[k].recall, ref["recall"][k].get<double>(), 1e-6);
    EXPECT_NEAR(report->classes[k].f1, ref["f1"][k].get<double>(), 1e-6);
    EXPECT_EQ(report->classes[k].support, ref["support"][k].get<int64_t>());
  }
  EXPECT_NEAR(report->macro_f1, ref["macro_f1"].get<double>(), 1e-6);
  EXPECT_NEAR(report->weighted_f1, ref["weighted_f1"].get<double>(), 1e-6);
  EXPECT_NEAR(report->accuracy, ref["accuracy"].get<double>(), 1e-9);
  EXPECT_NEAR(report->top5_accuracy, ref["top5_accuracy"].get<double>(), 1e-9);
  EXPECT_NEAR(report->log_loss, ref["log_loss"].get<double>(), 1e-6);
  EXPECT_NEAR(report->expected_calibration_error, ref["ece"].get<double>(), 1e-6);
}

TEST(EvaluationReportTest, FiguresMatchScikitLearnOnImbalancedManyClassPredictions) {
  ExpectMatchesSklearn(Random(600, 12, 1.8, 1));
}

TEST(EvaluationReportTest, FiguresMatchScikitLearnOnFewClassesAndOnAPerfectModel) {
  ExpectMatchesSklearn(Random(97, 3, 0.5, 2));
  ExpectMatchesSklearn(Random(50, 4, 40, 3));  // every image right, one class never seen
}

TEST(EvaluationReportTest, ConfusedPairsHardestImagesAndBinsAreConsistent) {
  const Predictions p = Random(400, 6, 1.0, 4);
  auto r = ComputeReport(p.probabilities, p.labels, p.files, p.classes, {10, 5, 3});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->most_confused.size(), 3u);
  for (size_t i = 0; i < r->most_confused.size(); ++i) {
    const ConfusedPair& pair = r->most_confused[i];
    EXPECT_NE(pair.true_class, pair.predicted_class);
    EXPECT_EQ(pair.count, r->confusion[pair.true_class * 6 + pair.predicted_class]);
    if (i > 0) {
      EXPECT_LE(pair.count, r->most_confused[i - 1].count);
    }
  }
  // The largest off-diagonal cell is first.
  int64_t largest = 0;
  for (int t = 0; t < 6; ++t) {
    for (int q = 0; q < 6; ++q) largest = t == q ? largest : std::max(largest, r->confusion[t * 6 + q]);
  }
  EXPECT_EQ(r->most_confused[0].count, largest);
  ASSERT_EQ(r->highest_loss.size(), 5u);
  const torch::Tensor truth_p =
      p.probabilities.gather(1, torch::tensor(std::vector<int64_t>(p.labels.begin(), p.labels.end())).unsqueeze(1));
  const double max_loss = -std::log(truth_p.min().item<double>());
  EXPECT_NEAR(r->highest_loss[0].loss, max_loss, 1e-9);
  for (size_t i = 1; i < r->highest_loss.size(); ++i) EXPECT_LE(r->highest_loss[i].loss, r->highest_loss[i - 1].loss);
  int64_t binned = 0;
  for (const ReliabilityBin& b : r->reliability) binned += b.count;
  EXPECT_EQ(r->reliability.size(), 10u);
  EXPECT_EQ(binned, 400);
  // The JSON round trip keeps every figure.
  auto back = EvaluationReportFromJson(EvaluationReportToJson(*r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(EvaluationReportToJson(*back), EvaluationReportToJson(*r));
}

// Beyond kMaxDenseConfusionClasses classes the report keeps no dense matrix
// (36,000 classes made a 10 GB one and a crash loop); the per-class figures
// and the confused pairs come from the same cells and agree with a dense
// count made here.
TEST(EvaluationReportTest, ManyClassesKeepTheFiguresWithoutADenseConfusion) {
  const int c = static_cast<int>(kMaxDenseConfusionClasses) + 44;
  const Predictions p = Random(2000, c, 2.0, 9);
  auto r = ComputeReport(p.probabilities, p.labels, p.files, p.classes, {10, 5, 4});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->confusion.empty());
  std::vector<int64_t> dense(static_cast<size_t>(c) * c, 0);
  const torch::Tensor best = p.probabilities.argmax(1);
  for (int i = 0; i < 2000; ++i) ++dense[static_cast<size_t>(p.labels[i]) * c + best[i].item<int64_t>()];
  for (int k = 0; k < c; ++k) {
    int64_t support = 0, predicted = 0;
    for (int j = 0; j < c; ++j) {
      support += dense[static_cast<size_t>(k) * c + j];
      predicted += dense[static_cast<size_t>(j) * c + k];
    }
    ASSERT_EQ(r->classes[k].support, support) << k;
    ASSERT_EQ(r->classes[k].predicted, predicted) << k;
    const double tp = static_cast<double>(dense[static_cast<size_t>(k) * c + k]);
    EXPECT_NEAR(r->classes[k].recall, support > 0 ? tp / support : 0, 1e-12);
  }
  ASSERT_EQ(r->most_confused.size(), 4u);
  for (const ConfusedPair& pair : r->most_confused) {
    EXPECT_EQ(pair.count, dense[static_cast<size_t>(pair.true_class) * c + pair.predicted_class]);
  }
  int64_t largest = 0;
  for (int t = 0; t < c; ++t) {
    for (int q = 0; q < c; ++q) largest = t == q ? largest : std::max(largest, dense[static_cast<size_t>(t) * c + q]);
  }
  EXPECT_EQ(r->most_confused[0].count, largest);
  // Stored and read back without a matrix.
  auto back = EvaluationReportFromJson(EvaluationReportToJson(*r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(EvaluationReportToJson(*back), EvaluationReportToJson(*r));
}

TEST(EvaluationReportTest, MismatchedInputsAreRefusedWithTheReason) {
  const Predictions p = Random(10, 3, 1, 5);
  std::vector<int> bad = p.labels;
  bad[3] = 7;
  EXPECT_EQ(ComputeReport(p.probabilities, bad, p.files, p.classes).status().message(), "label 7 is not a class");
  std::vector<std::string> few(p.files.begin(), p.files.begin() + 4);
  EXPECT_EQ(ComputeReport(p.probabilities, p.labels, few, p.classes).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ComputeReport(p.probabilities.slice(0, 0, 0), {}, {}, p.classes).status().message(),
            "no images to evaluate");
}

}  // namespace
}  // namespace graft::core
