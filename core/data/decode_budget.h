#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace graft::core {

// Memory that image decodes in flight may hold together (uploads and
// Predict/Embed share one). A decode reserves its estimate before it starts
// and releases it when done; past the budget it waits up to `max_wait`, then
// is refused with RESOURCE_EXHAUSTED naming --max_decode_bytes.
class DecodeBudget {
 public:
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& other) noexcept : budget_(other.budget_), bytes_(other.bytes_) { other.budget_ = nullptr; }
    Reservation& operator=(Reservation&&) = delete;
    ~Reservation();

   private:
    friend class DecodeBudget;
    Reservation(DecodeBudget* budget, int64_t bytes) : budget_(budget), bytes_(bytes) {}
    DecodeBudget* budget_ = nullptr;
    int64_t bytes_ = 0;
  };

  explicit DecodeBudget(int64_t capacity_bytes,
                        std::chrono::milliseconds max_wait = std::chrono::milliseconds(2000))
      : capacity_(capacity_bytes), max_wait_(max_wait) {}

  absl::StatusOr<Reservation> Reserve(int64_t bytes, const std::string& what);
  int64_t in_use() const;
  int64_t capacity() const { return capacity_; }

 private:
  void Release(int64_t bytes);

  const int64_t capacity_;
  const std::chrono::milliseconds max_wait_;
  mutable absl::Mutex mu_;
  absl::CondVar freed_;
  int64_t in_use_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace graft::core
