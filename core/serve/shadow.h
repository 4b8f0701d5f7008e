#pragma once

// Shadow versions: an alias may name a version that sees every request the
// alias serves, off the request path, and whose answers are compared with
// the ones the callers got. What each comparison adds up to is kept per pair
// (shadow version, served version) by a ShadowAgreement; the work waits in a
// ShadowLane, a bounded queue that drops (and counts) what does not fit.

#include <torch/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace graft::core {

// One served class's comparisons: how often the served version chose it and
// how often, of those, the shadow chose another class.
struct ClassFlips {
  std::string label;
  int64_t served = 0;
  int64_t flips = 0;
};

struct AgreementSnapshot {
  int64_t images = 0;      // compared
  int64_t agreements = 0;  // of them, the same top-1 class (by label)
  // Sum over the compared images of |p_shadow(c) - p_served(c)|, c the served
  // top-1 class: the mean is how differently sure the two are of the answer
  // the caller got.
  double abs_diff_sum = 0;
  int64_t dropped_images = 0;  // not compared: the lane was full
  int64_t failed_images = 0;   // not compared: the shadow failed on them
  std::vector<ClassFlips> classes;  // the served version's classes, by index

  double top1_agreement() const { return images > 0 ? static_cast<double>(agreements) / images : 0; }
  double mean_abs_diff() const { return images > 0 ? abs_diff_sum / static_cast<double>(images) : 0; }
};

// What one shadow version's answers add up to against one served version's
// (thread-safe). Classes are matched by label, so versions with different
// class lists compare on the labels they share (a served class the shadow
// lacks always flips).
class ShadowAgreement {
 public:
  ShadowAgreement(const std::vector<std::string>& served_labels, const std::vector<std::string>& shadow_labels);
  // Probabilities [N, classes] of each for the same N images.
  void Observe(const torch::Tensor& served, const torch::Tensor& shadow);
  void Dropped(int64_t images);
  void Failed(int64_t images);
  AgreementSnapshot Read() const;

 private:
  // served class index -> the shadow's index of the same label (-1: none)
  std::vector<int64_t> to_shadow_;
  mutable absl::Mutex mu_;
  AgreementSnapshot totals_ ABSL_GUARDED_BY(mu_);
};

// One worker thread running queued work in order, holding at most
// `capacity_images` images' worth of it; work that would exceed that is
// dropped at once (the caller counts it). Destroying the lane runs nothing
// more: queued work is dropped, the running one finishes.
class ShadowLane {
 public:
  explicit ShadowLane(int64_t capacity_images);
  ~ShadowLane();
  ShadowLane(const ShadowLane&) = delete;
  ShadowLane& operator=(const ShadowLane&) = delete;

  // Queues `work` (`images` images); false, without running it, when the
  // queue has no room for them.
  bool Offer(int64_t images, std::function<void()> work);
  // Blocks until nothing is queued or running (tests, benchmarks).
  void Drain();
  int64_t capacity_images() const { return capacity_; }

 private:
  void Loop();

  struct Task {
    int64_t images = 0;
    std::function<void()> work;
  };
  const int64_t capacity_;
  absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_images_ ABSL_GUARDED_BY(mu_) = 0;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace graft::core
