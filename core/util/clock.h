#pragma once

#include <chrono>

namespace graft::core {

// Wall-clock time as graft's bookkeeping reads it (last use of a backbone,
// created/updated stamps): the real clock in graftd, a manual one in tests
// (tests/fakes/manual_clock.h) so that "later" needs no sleep.
class WallClock {
 public:
  virtual ~WallClock() = default;
  virtual std::chrono::system_clock::time_point Now() const = 0;
  // The process's real clock.
  static const WallClock& Real();
};

}  // namespace graft::core
