#include "core/util/clock.h"

namespace graft::core {
namespace {

class RealClock final : public WallClock {
 public:
  std::chrono::system_clock::time_point Now() const override { return std::chrono::system_clock::now(); }
};

}  // namespace

const WallClock& WallClock::Real() {
  static const RealClock clock;
  return clock;
}

}  // namespace graft::core
