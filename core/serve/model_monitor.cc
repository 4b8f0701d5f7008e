#include "core/serve/model_monitor.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/util/json.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace {

constexpr int kCalibrationSplits = 200;
constexpr double kCalibrationQuantile = 0.99;

// Uniform in (0, 1], from the generator's raw 64 bits (fixed by the standard).
double Uniform(std::mt19937_64& gen) { return (static_cast<double>(gen() >> 11) + 1.0) * 0x1.0p-53; }

// Fisher-Yates with the generator's raw output: the same order in any build
// (std::shuffle's algorithm is the library's choice).
void Shuffle(std::vector<size_t>& v, std::mt19937_64& gen) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<size_t>(gen() % i)]);
}

int ConfidenceBin(double confidence) {
  return std::clamp(static_cast<int>(confidence * kConfidenceBins), 0, kConfidenceBins - 1);
}

double SquaredDistance(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a[i]) - b[i];
    d += x * x;
  }
  return d;
}

double Kernel(const std::vector<float>& a, const std::vector<float>& b, double bandwidth) {
  return std::exp(-SquaredDistance(a, b) / (2 * bandwidth * bandwidth));
}

// The unbiased MMD² of rows x and y of a precomputed kernel matrix.
double MmdFromKernel(const std::vector<double>& k, size_t n, const std::vector<size_t>& x,
                     const std::vector<size_t>& y) {
  double xx = 0, yy = 0, xy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    for (size_t j = 0; j < x.size(); ++j) {
      if (i != j) xx += k[x[i] * n + x[j]];
    }
    for (size_t j : y) xy += k[x[i] * n + j];
  }
  for (size_t i = 0; i < y.size(); ++i) {
    for (size_t j = 0; j < y.size(); ++j) {
      if (i != j) yy += k[y[i] * n + y[j]];
    }
  }
  const double m = static_cast<double>(x.size()), l = static_cast<double>(y.size());
  return xx / (m * (m - 1)) + yy / (l * (l - 1)) - 2 * xy / (m * l);
}

std::vector<double> Normalised(const std::vector<double>& v) {
  const double sum = std::accumulate(v.begin(), v.end(), 0.0);
  std::vector<double> out(v.size(), 0);
  if (sum <= 0) return out;
  for (size_t i = 0; i < v.size(); ++i) out[i] = v[i] / sum;
  return out;
}

}  // namespace

EmbeddingSketch::EmbeddingSketch(int64_t dim, uint64_t seed) : dim_(dim) {
  std::mt19937_64 gen(seed);
  const double scale = 1.0 / std::sqrt(static_cast<double>(kSketchDims));
  matrix_.resize(static_cast<size_t>(kSketchDims * dim));
  for (size_t i = 0; i < matrix_.size(); i += 2) {
    const double r = std::sqrt(-2 * std::log(Uniform(gen))), theta = 2 * M_PI * Uniform(gen);
    matrix_[i] = static_cast<float>(r * std::cos(theta) * scale);
    if (i + 1 < matrix_.size()) matrix_[i + 1] = static_cast<float>(r * std::sin(theta) * scale);
  }
}

std::vector<float> EmbeddingSketch::Project(const float* embedding) const {
  std::vector<float> out(kSketchDims, 0);
  for (int r = 0; r < kSketchDims; ++r) {
    const float* row = matrix_.data() + static_cast<size_t>(r) * static_cast<size_t>(dim_);
    double sum = 0;
    for (int64_t c = 0; c < dim_; ++c) sum += static_cast<double>(row[c]) * embedding[c];
    out[static_cast<size_t>(r)] = static_cast<float>(sum);
  }
  return out;
}

double JensenShannonDivergence(const std::vector<double>& a, const std::vector<double>& b) {
  const std::vector<double> p = Normalised(a), q = Normalised(b);
  double js = 0;
  for (size_t i = 0; i < std::max(p.size(), q.size()); ++i) {
    const double pi = i < p.size() ? p[i] : 0, qi = i < q.size() ? q[i] : 0, m = (pi + qi) / 2;
    if (pi > 0) js += 0.5 * pi * std::log2(pi / m);
    if (qi > 0) js += 0.5 * qi * std::log2(qi / m);
  }
  return std::clamp(js, 0.0, 1.0);
}

double SquaredMmd(const std::vector<std::vector<float>>& x, const std::vector<std::vector<float>>& y,
                  double bandwidth) {
  std::vector<std::vector<float>> all(x);
  all.insert(all.end(), y.begin(), y.end());
  const size_t n = all.size();
  std::vector<double> k(n * n);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i; j < n; ++j) k[i * n + j] = k[j * n + i] = Kernel(all[i], all[j], bandwidth);
  }
  std::vector<size_t> xi(x.size()), yi(y.size());
  std::iota(xi.begin(), xi.end(), size_t{0});
  std::iota(yi.begin(), yi.end(), x.size());
  return MmdFromKernel(k, n, xi, yi);
}

absl::StatusOr<ReferenceProfile> MakeReferenceProfile(const torch::Tensor& embeddings,
                                                      const torch::Tensor& probabilities, uint64_t seed) {
  if (embeddings.dim() != 2 || probabilities.dim() != 2 || embeddings.size(0) != probabilities.size(0) ||
      embeddings.size(0) < 1) {
    return absl::InvalidArgumentError(absl::StrCat("a reference profile needs embeddings [N, D] and probabilities ",
                                                   "[N, C] of the same N >= 1; got ", embeddings.dim(), " and ",
                                                   probabilities.dim(), " dimensions"));
  }
  const int64_t n = embeddings.size(0), dim = embeddings.size(1), classes = probabilities.size(1);
  if (dim < 1 || dim > kMaxEmbeddingDim || classes < 1 || classes > kMaxMonitoredClasses) {
    return absl::InvalidArgumentError(
        absl::StrCat("a reference profile takes 1..", kMaxEmbeddingDim, " embedding dimensions and 1..",
                     kMaxMonitoredClasses, " classes; got ", dim, " and ", classes));
  }
  return GuardInternal("making a reference profile", [&]() -> absl::StatusOr<ReferenceProfile> {
    const torch::Tensor emb = embeddings.detach().to(torch::kCPU, torch::kFloat).contiguous();
    const torch::Tensor prob = probabilities.detach().to(torch::kCPU, torch::kFloat).contiguous();
    ReferenceProfile p;
    p.embedding_dim = dim;
    p.sketch_seed = seed;
    p.images = n;
    p.class_shares.assign(static_cast<size_t>(classes), 0);
    p.confidence_histogram.assign(kConfidenceBins, 0);
    const auto [top, index] = prob.max(1);
    const float* conf = top.data_ptr<float>();
    const int64_t* cls = index.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      p.class_shares[static_cast<size_t>(cls[i])] += 1.0 / static_cast<double>(n);
      p.confidence_histogram[static_cast<size_t>(ConfidenceBin(conf[i]))] += 1.0 / static_cast<double>(n);
      p.mean_confidence += conf[i] / static_cast<double>(n);
    }
    // The rows kept: all, or a seeded sample of kMaxReferenceRows.
    std::mt19937_64 gen(seed ^ 0x5DEECE66DULL);
    std::vector<size_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), size_t{0});
    if (n > kMaxReferenceRows) {
      Shuffle(order, gen);
      order.resize(kMaxReferenceRows);
      std::sort(order.begin(), order.end());
    }
    const EmbeddingSketch sketch(dim, seed);
    for (size_t i : order) p.rows.push_back(sketch.Project(emb.data_ptr<float>() + i * static_cast<size_t>(dim)));
    const size_t rows = p.rows.size();
    // Bandwidth: the median distance between two rows (1 when they all coincide).
    std::vector<double> distances;
    for (size_t i = 0; i < rows; ++i) {
      for (size_t j = i + 1; j < rows; ++j) distances.push_back(std::sqrt(SquaredDistance(p.rows[i], p.rows[j])));
    }
    if (!distances.empty()) {
      std::nth_element(distances.begin(), distances.begin() + static_cast<long>(distances.size() / 2), distances.end());
      p.bandwidth = distances[distances.size() / 2];
    }
    if (!(p.bandwidth > 0)) p.bandwidth = 1;
    if (rows < static_cast<size_t>(kMinReferenceRows)) return p;  // no drift score
    std::vector<double> k(rows * rows);
    for (size_t i = 0; i < rows; ++i) {
      for (size_t j = i; j < rows; ++j) k[i * rows + j] = k[j * rows + i] = Kernel(p.rows[i], p.rows[j], p.bandwidth);
    }
    std::vector<double> null(kCalibrationSplits);
    std::vector<size_t> all(rows);
    std::iota(all.begin(), all.end(), size_t{0});
    for (int s = 0; s < kCalibrationSplits; ++s) {
      Shuffle(all, gen);
      const std::vector<size_t> x(all.begin(), all.begin() + static_cast<long>(rows / 2)), y(all.begin() + static_cast<long>(rows / 2), all.end());
      null[static_cast<size_t>(s)] = MmdFromKernel(k, rows, x, y);
    }
    std::sort(null.begin(), null.end());
    const size_t q = static_cast<size_t>(std::ceil(kCalibrationQuantile * kCalibrationSplits)) - 1;
    p.drift_threshold = std::max(null[q], 1e-9);
    return p;
  });
}

nlohmann::json ReferenceProfileToJson(const ReferenceProfile& p) {
  return {{"embedding_dim", p.embedding_dim},
          {"sketch_seed", p.sketch_seed},
          {"images", p.images},
          {"class_shares", p.class_shares},
          {"confidence_histogram", p.confidence_histogram},
          {"mean_confidence", p.mean_confidence},
          {"rows", p.rows},
          {"bandwidth", p.bandwidth},
          {"drift_threshold", p.drift_threshold}};
}

absl::StatusOr<ReferenceProfile> ReferenceProfileFromJson(const nlohmann::json& j) {
  return GuardExceptions(absl::StatusCode::kDataLoss, "reading a reference profile",
                         [&]() -> absl::StatusOr<ReferenceProfile> {
    ReferenceProfile p;
    p.embedding_dim = JsonInt<int64_t>(j.at("embedding_dim"));
    p.sketch_seed = j.at("sketch_seed").get<uint64_t>();
    p.images = JsonInt<int64_t>(j.at("images"));
    p.class_shares = j.at("class_shares").get<std::vector<double>>();
    p.confidence_histogram = j.at("confidence_histogram").get<std::vector<double>>();
    p.mean_confidence = j.at("mean_confidence").get<double>();
    const nlohmann::json rows = j.at("rows");  // a copy: gcc 14 flags a reference through at()'s temporary key
    if (!rows.is_array() || rows.size() > static_cast<size_t>(kMaxReferenceRows)) {
      return absl::DataLossError(absl::StrCat("a reference profile holds at most ", kMaxReferenceRows, " rows"));
    }
    p.rows = rows.get<std::vector<std::vector<float>>>();
    p.bandwidth = j.at("bandwidth").get<double>();
    p.drift_threshold = j.at("drift_threshold").get<double>();
    const auto finite_in = [](const std::vector<double>& v, double lo, double hi) {
      return std::all_of(v.begin(), v.end(), [&](double x) { return std::isfinite(x) && x >= lo && x <= hi; });
    };
    if (p.embedding_dim < 1 || p.embedding_dim > kMaxEmbeddingDim || p.images < 1) {
      return absl::DataLossError("a reference profile's embedding width or image count is out of range");
    }
    if (p.class_shares.empty() || p.class_shares.size() > static_cast<size_t>(kMaxMonitoredClasses) ||
        !finite_in(p.class_shares, 0, 1) || p.confidence_histogram.size() != kConfidenceBins ||
        !finite_in(p.confidence_histogram, 0, 1) || !(p.mean_confidence >= 0 && p.mean_confidence <= 1)) {
      return absl::DataLossError("a reference profile's class shares or confidence histogram are malformed");
    }
    for (const auto& row : p.rows) {
      if (row.size() != kSketchDims || !std::all_of(row.begin(), row.end(), [](float x) { return std::isfinite(x); })) {
        return absl::DataLossError(absl::StrCat("a reference profile's rows must each hold ", kSketchDims,
                                                " finite values"));
      }
    }
    if (!(p.bandwidth > 0 && std::isfinite(p.bandwidth)) || !(p.drift_threshold >= 0 && std::isfinite(p.drift_threshold))) {
      return absl::DataLossError("a reference profile's bandwidth or drift threshold is out of range");
    }
    return p;
  });
}

std::string ReferenceProfileToText(const ReferenceProfile& p) { return ReferenceProfileToJson(p).dump(); }

absl::StatusOr<ReferenceProfile> ReferenceProfileFromText(const std::string& text) {
  ASSIGN_OR_RETURN(const nlohmann::json j, GuardExceptions(absl::StatusCode::kDataLoss, "reading a reference profile",
                                                           [&]() -> absl::StatusOr<nlohmann::json> {
                                                             return nlohmann::json::parse(text);
                                                           }));
  return ReferenceProfileFromJson(j);
}

ModelMonitor::ModelMonitor(std::shared_ptr<const ReferenceProfile> reference, int64_t classes,
                           MonitorOptions options)
    : reference_(std::move(reference)),
      sketch_(reference_ != nullptr ? std::make_unique<EmbeddingSketch>(reference_->embedding_dim,
                                                                         reference_->sketch_seed)
                                    : nullptr),
      classes_(std::max<int64_t>(classes, 1)),
      options_(options) {}

void ModelMonitor::Observe(const float* embedding, int64_t dim, const float* probabilities, int64_t classes,
                           double now_s) {
  if (options_.window <= 0) return;
  Entry e;
  e.time = now_s;
  const int64_t n = std::min(classes, classes_);
  for (int64_t c = 0; c < n; ++c) {
    if (probabilities[c] > e.confidence || c == 0) {
      e.confidence = probabilities[c];
      e.top1 = static_cast<int32_t>(c);
    }
  }
  if (sketch_ != nullptr && embedding != nullptr && dim == sketch_->dim()) e.sketch = sketch_->Project(embedding);
  absl::MutexLock lock(&mu_);
  window_.push_back(std::move(e));
  ++observed_;
  DropOld(now_s);
}

void ModelMonitor::ObserveBatch(const torch::Tensor& embeddings, const torch::Tensor& probabilities, double now_s) {
  if (options_.window <= 0) return;  // monitoring is off (--monitor_window 0)
  const torch::Tensor emb = embeddings.detach().to(torch::kCPU, torch::kFloat).contiguous();
  const torch::Tensor prob = probabilities.detach().to(torch::kCPU, torch::kFloat).contiguous();
  if (emb.dim() != 2 || prob.dim() != 2 || emb.size(0) != prob.size(0)) return;
  for (int64_t i = 0; i < emb.size(0); ++i) {
    Observe(emb.data_ptr<float>() + i * emb.size(1), emb.size(1), prob.data_ptr<float>() + i * prob.size(1),
            prob.size(1), now_s);
  }
}

void ModelMonitor::DropOld(double now_s) const {
  while (static_cast<int64_t>(window_.size()) > std::max<int64_t>(options_.window, 1)) window_.pop_front();
  if (options_.max_age_s <= 0) return;
  while (!window_.empty() && window_.front().time < now_s - options_.max_age_s) window_.pop_front();
}

MonitorSnapshot ModelMonitor::Read(double now_s) const {
  MonitorSnapshot s;
  const size_t needed =
      reference_ != nullptr ? std::max<size_t>((reference_->rows.size() + 1) / 2, 2) : 0;
  if (reference_ != nullptr && reference_->drift_threshold > 0) {
    s.drift_min_predictions = static_cast<int64_t>(needed);
    s.drift_threshold = reference_->drift_threshold;
  }
  std::vector<std::vector<float>> latest;
  {
    absl::MutexLock lock(&mu_);
    DropOld(now_s);
    s.observed = observed_;
    s.predictions = static_cast<int64_t>(window_.size());
    if (window_.empty()) return s;
    s.confidence_histogram.assign(kConfidenceBins, 0);
    s.class_shares.assign(static_cast<size_t>(classes_), 0);
    const double share = 1.0 / static_cast<double>(window_.size());
    for (const Entry& e : window_) {
      s.confidence_histogram[static_cast<size_t>(ConfidenceBin(e.confidence))] += share;
      s.class_shares[static_cast<size_t>(e.top1)] += share;
      s.mean_confidence += e.confidence * share;
    }
    for (auto it = window_.rbegin(); it != window_.rend() && latest.size() < kMaxReferenceRows; ++it) {
      if (!it->sketch.empty()) latest.push_back(it->sketch);
    }
  }
  if (reference_ == nullptr) return s;
  if (reference_->class_shares.size() == s.class_shares.size()) {
    s.class_share_divergence = JensenShannonDivergence(s.class_shares, reference_->class_shares);
  }
  if (reference_->drift_threshold > 0 && latest.size() >= needed) {
    s.drift_mmd2 = SquaredMmd(latest, reference_->rows, reference_->bandwidth);
    // The unbiased estimate falls below 0 when the two samples are alike:
    // no evidence of a difference, a score of 0.
    s.drift_score = std::max(0.0, s.drift_mmd2) / reference_->drift_threshold;
    s.drifting = s.drift_score > 1;
  }
  return s;
}

}  // namespace graft::core
