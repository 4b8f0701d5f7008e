#include "core/serve/shadow.h"

#include <c10/core/InferenceMode.h>

#include <cmath>
#include <map>

#include "core/util/compute_threads.h"
#include "core/util/log.h"

namespace graft::core {

ShadowAgreement::ShadowAgreement(const std::vector<std::string>& served_labels,
                                 const std::vector<std::string>& shadow_labels) {
  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < shadow_labels.size(); ++i) index.emplace(shadow_labels[i], static_cast<int64_t>(i));
  for (const std::string& label : served_labels) {
    const auto it = index.find(label);
    to_shadow_.push_back(it == index.end() ? -1 : it->second);
    totals_.classes.push_back({label, 0, 0});
  }
}

void ShadowAgreement::Observe(const torch::Tensor& served, const torch::Tensor& shadow) {
  c10::InferenceMode guard;
  const torch::Tensor a = served.to(torch::kCPU).to(torch::kFloat32).contiguous();
  const torch::Tensor b = shadow.to(torch::kCPU).to(torch::kFloat32).contiguous();
  const int64_t n = std::min(a.size(0), b.size(0));
  const int64_t ca = a.size(1);
  const int64_t cb = b.size(1);
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  absl::MutexLock lock(&mu_);
  for (int64_t i = 0; i < n; ++i) {
    const float* ra = pa + i * ca;
    const float* rb = pb + i * cb;
    int64_t top_a = 0;
    for (int64_t c = 1; c < ca; ++c) top_a = ra[c] > ra[top_a] ? c : top_a;
    int64_t top_b = 0;
    for (int64_t c = 1; c < cb; ++c) top_b = rb[c] > rb[top_b] ? c : top_b;
    if (top_a >= static_cast<int64_t>(to_shadow_.size())) continue;  // more classes than labels: not comparable
    const int64_t same = to_shadow_[static_cast<size_t>(top_a)];
    const double p_shadow = same >= 0 ? rb[same] : 0.0;
    ++totals_.images;
    totals_.abs_diff_sum += std::abs(p_shadow - static_cast<double>(ra[top_a]));
    ClassFlips& cls = totals_.classes[static_cast<size_t>(top_a)];
    ++cls.served;
    if (same == top_b) {
      ++totals_.agreements;
    } else {
      ++cls.flips;
    }
  }
}

void ShadowAgreement::Dropped(int64_t images) {
  absl::MutexLock lock(&mu_);
  totals_.dropped_images += images;
}

void ShadowAgreement::Failed(int64_t images) {
  absl::MutexLock lock(&mu_);
  totals_.failed_images += images;
}

AgreementSnapshot ShadowAgreement::Read() const {
  absl::MutexLock lock(&mu_);
  return totals_;
}

ShadowLane::ShadowLane(int64_t capacity_images) : capacity_(capacity_images), worker_([this] { Loop(); }) {}

ShadowLane::~ShadowLane() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    queue_.clear();
    queued_images_ = 0;
  }
  cv_.SignalAll();
  worker_.join();
}

bool ShadowLane::Offer(int64_t images, std::function<void()> work) {
  absl::MutexLock lock(&mu_);
  if (stop_ || queued_images_ + images > capacity_) return false;
  queue_.push_back({images, std::move(work)});
  queued_images_ += images;
  cv_.Signal();
  return true;
}

void ShadowLane::Drain() {
  absl::MutexLock lock(&mu_);
  while (!queue_.empty() || running_) cv_.Wait(&mu_);
}

void ShadowLane::Loop() {
  // A model's tail (its head, its own blocks) on one thread: the cores
  // belong to the batchers that serve the callers.
  UseOneComputeThreadHere();
  absl::MutexLock lock(&mu_);
  while (true) {
    while (!stop_ && queue_.empty()) cv_.Wait(&mu_);
    if (stop_) return;
    Task task = std::move(queue_.front());
    queue_.pop_front();
    queued_images_ -= task.images;
    running_ = true;
    mu_.Unlock();
    try {
      task.work();
    } catch (const std::exception& e) {  // the work catches its own; this keeps the lane alive regardless
      ABSL_LOG(ERROR) << "shadow work failed: " << e.what();
    }
    task.work = nullptr;
    mu_.Lock();
    running_ = false;
    cv_.SignalAll();
  }
}

}  // namespace graft::core
