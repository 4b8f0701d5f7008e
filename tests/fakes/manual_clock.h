#pragma once

#include <atomic>
#include <chrono>

#include "core/util/clock.h"

namespace graft::fakes {

// A clock that moves only when the test says: "a moment later" without a sleep.
class ManualClock final : public core::WallClock {
 public:
  explicit ManualClock(std::chrono::system_clock::time_point start = std::chrono::system_clock::time_point(
                           std::chrono::hours(24 * 365 * 50)))
      : now_(start.time_since_epoch().count()) {}
  std::chrono::system_clock::time_point Now() const override {
    return std::chrono::system_clock::time_point(std::chrono::system_clock::duration(now_.load()));
  }
  void Advance(std::chrono::system_clock::duration by) { now_ += by.count(); }

 private:
  std::atomic<std::chrono::system_clock::duration::rep> now_;
};

}  // namespace graft::fakes
