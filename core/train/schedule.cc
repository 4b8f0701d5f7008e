#include "core/train/schedule.h"

#include <algorithm>
#include <cmath>

namespace graft::core {

double LearningRate(const StageSpec& stage, int epoch, double progress) {
  const double base = stage.optimizer.learning_rate;
  const ScheduleSpec& s = stage.schedule;
  const double t = epoch + progress;  // epochs elapsed in this stage
  if (s.warmup_epochs > 0 && t < s.warmup_epochs) return base * (t + 1e-3) / s.warmup_epochs;
  const double span = std::max(1.0, static_cast<double>(stage.epochs - s.warmup_epochs));
  const double u = std::clamp((t - s.warmup_epochs) / span, 0.0, 1.0);  // fraction after warmup
  constexpr double kPi = 3.14159265358979323846;
  switch (s.kind) {
    case ScheduleKind::kConstant:
      return base;
    case ScheduleKind::kStep:
      return base * std::pow(s.gamma, std::floor((epoch - s.warmup_epochs) / static_cast<double>(s.step_epochs)));
    case ScheduleKind::kCosine:
      return s.min_lr + (base - s.min_lr) * 0.5 * (1 + std::cos(kPi * u));
    case ScheduleKind::kOneCycle: {
      // Up from base/25 to base over the first 30%, then cosine down to base/1e4.
      constexpr double kRise = 0.3;
      const double low = base / 25, floor = base / 1e4;
      if (u < kRise) return low + (base - low) * 0.5 * (1 - std::cos(kPi * u / kRise));
      return floor + (base - floor) * 0.5 * (1 + std::cos(kPi * (u - kRise) / (1 - kRise)));
    }
  }
  return base;
}

}  // namespace graft::core
