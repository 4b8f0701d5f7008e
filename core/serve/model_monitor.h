#pragma once

// How a served model does against how it did on its validation split.
//
// A ReferenceProfile is made once, at the end of a job, from the validation
// images' pooled trunk embeddings and the model's probabilities for them: the
// predicted-class shares, the histogram of top-1 confidence, and a sketch of
// the embeddings (a fixed random projection to kSketchDims dimensions, at
// most kMaxReferenceRows rows of it) with an RBF kernel bandwidth and a drift
// threshold calibrated on those rows.
//
// A ModelMonitor keeps the last predictions of one model version (a count
// and an age bound) and reads, at any moment:
// - the top-1 confidence histogram and mean;
// - each class's share of the predictions, and the Jensen-Shannon divergence
//   (base 2: 0 identical, 1 disjoint) from the reference shares;
// - an embedding drift score: the unbiased squared maximum mean discrepancy
//   (MMD², Gretton et al. 2012) between the window's latest sketched
//   embeddings and the reference rows, divided by the reference's threshold.
//   The threshold is the 99th percentile of the MMD² between the two halves
//   of the reference rows over 200 random splits; the window's rows are
//   compared with all of them, a test of lower variance than the
//   calibration's, so traffic from the validation distribution stays below
//   1 at least 99 times in 100. Above 1: the inputs no longer look like the
//   validation images (to the backbone that embeds them). "Failing Loudly"
//   (Rabanser et al. 2019) found such two-sample tests on a pretrained
//   network's representations the best detectors of dataset shift.
//
// Cost per prediction: one projection (dim x kSketchDims multiply-adds) and
// a copy into a ring; a read: at most kMaxReferenceRows x kMaxReferenceRows
// kernel evaluations.

#include <torch/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace graft::core {

inline constexpr int kConfidenceBins = 10;       // equal bins of [0, 1]
inline constexpr int kSketchDims = 32;           // sketched embedding dimensions
inline constexpr int kMaxReferenceRows = 256;    // reference rows kept (and window rows compared)
inline constexpr int kMinReferenceRows = 20;     // fewer validation images: no drift score
inline constexpr int kMaxMonitoredClasses = 100000;
inline constexpr int64_t kMaxEmbeddingDim = 1 << 16;

// A fixed random projection dim -> kSketchDims with Gaussian entries of
// variance 1/kSketchDims, drawn from `seed` by generators whose output the
// C++ standard fixes (std::mt19937_64, then Box-Muller by hand): a profile
// stored today projects the same way in any later build.
class EmbeddingSketch {
 public:
  EmbeddingSketch(int64_t dim, uint64_t seed);
  // kSketchDims values of `embedding` (dim() floats).
  std::vector<float> Project(const float* embedding) const;
  int64_t dim() const { return dim_; }

 private:
  int64_t dim_;
  std::vector<float> matrix_;  // [kSketchDims][dim]
};

struct ReferenceProfile {
  int64_t embedding_dim = 0;
  uint64_t sketch_seed = 0;
  int64_t images = 0;                        // validation images profiled
  std::vector<double> class_shares;          // of the predictions, per class (sums to 1)
  std::vector<double> confidence_histogram;  // top-1 confidence shares, kConfidenceBins bins
  double mean_confidence = 0;
  std::vector<std::vector<float>> rows;      // sketched embeddings, at most kMaxReferenceRows
  double bandwidth = 0;                      // RBF sigma: the median distance between rows
  double drift_threshold = 0;                // MMD² (see above); 0: too few rows, no drift score
};

// From the validation images' pooled embeddings [N, D] and the model's
// probabilities [N, C] for them (N >= 1). `seed` draws the sketch, the rows
// kept and the calibration's splits: the same inputs give the same profile.
absl::StatusOr<ReferenceProfile> MakeReferenceProfile(const torch::Tensor& embeddings,
                                                      const torch::Tensor& probabilities, uint64_t seed);

nlohmann::json ReferenceProfileToJson(const ReferenceProfile& p);
// DATA_LOSS naming what is wrong (sizes that disagree, values out of range).
absl::StatusOr<ReferenceProfile> ReferenceProfileFromJson(const nlohmann::json& j);
// The same as a file's text (profile.json); DATA_LOSS also for text that is
// not JSON.
std::string ReferenceProfileToText(const ReferenceProfile& p);
absl::StatusOr<ReferenceProfile> ReferenceProfileFromText(const std::string& text);

// Share of `a`'s and `b`'s mass (each normalised to 1) that the two
// distributions disagree on: the Jensen-Shannon divergence in bits, 0..1.
double JensenShannonDivergence(const std::vector<double>& a, const std::vector<double>& b);

// The unbiased MMD² with an RBF kernel of width `bandwidth` between the rows
// of x and of y (each at least 2 rows, all of one width).
double SquaredMmd(const std::vector<std::vector<float>>& x, const std::vector<std::vector<float>>& y,
                  double bandwidth);

struct MonitorOptions {
  int64_t window = 1000;   // the last this many predictions (--monitor_window); 0: not monitored
  double max_age_s = 3600; // and none older (--monitor_window_s); 0: no age bound
};

// What a ModelMonitor reads.
struct MonitorSnapshot {
  int64_t predictions = 0;  // in the window
  int64_t observed = 0;     // since the monitor started
  std::vector<double> confidence_histogram;  // shares, kConfidenceBins bins; empty when no prediction
  double mean_confidence = 0;
  std::vector<double> class_shares;  // per class; empty when no prediction
  // Jensen-Shannon divergence of class_shares from the reference's; -1
  // without a reference or a prediction.
  double class_share_divergence = -1;
  // MMD² of the window's latest rows against the reference rows over the
  // reference's threshold (1: the threshold; 0 where the unbiased estimate,
  // drift_mmd2, falls below 0: samples that alike); -1 without a reference that
  // has one, or while the window holds fewer sketched predictions than half
  // the reference rows (the calibration's sample size).
  double drift_score = -1;
  double drift_mmd2 = 0;
  double drift_threshold = 0;
  bool drifting = false;  // drift_score > 1
  int64_t drift_min_predictions = 0;  // sketched predictions a drift score needs; 0: none without a reference
};

// The live statistics of one model version. Thread-safe: Observe is called
// by every request's thread, Read by metrics scrapes and GetModel.
class ModelMonitor {
 public:
  // `reference` may be null (a model older than profiles): confidence and
  // class shares only.
  ModelMonitor(std::shared_ptr<const ReferenceProfile> reference, int64_t classes, MonitorOptions options);

  // One prediction: its pooled embedding (`dim` floats; ignored unless it is
  // the reference's width) and its `classes` probabilities.
  void Observe(const float* embedding, int64_t dim, const float* probabilities, int64_t classes, double now_s);
  // Each row of embeddings [N, D] with its row of probabilities [N, C].
  void ObserveBatch(const torch::Tensor& embeddings, const torch::Tensor& probabilities, double now_s);

  MonitorSnapshot Read(double now_s) const;
  const std::shared_ptr<const ReferenceProfile>& reference() const { return reference_; }
  const MonitorOptions& options() const { return options_; }

 private:
  struct Entry {
    double time = 0;
    int32_t top1 = 0;
    float confidence = 0;
    std::vector<float> sketch;  // empty without a reference sketch
  };
  void DropOld(double now_s) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<const ReferenceProfile> reference_;
  const std::unique_ptr<const EmbeddingSketch> sketch_;  // null without a reference
  const int64_t classes_;
  const MonitorOptions options_;
  mutable absl::Mutex mu_;
  mutable std::deque<Entry> window_ ABSL_GUARDED_BY(mu_);
  int64_t observed_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace graft::core
