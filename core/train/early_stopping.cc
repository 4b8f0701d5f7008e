#include "core/train/early_stopping.h"

#include <algorithm>
#include <cmath>

namespace graft::core {

EarlyStopping::EarlyStopping(const EarlyStoppingSpec& spec) : spec_(spec) {
  minimize_ = spec.mode == MonitorMode::kMin ||
              (spec.mode == MonitorMode::kAuto && spec.monitor == Monitor::kValLoss);  // accuracy, macro F1: max
}

EarlyStopping::Decision EarlyStopping::Update(int epoch, double value) {
  Decision d;
  if (!std::isfinite(value)) {
    ++state_.wait;
  } else if (state_.best_epoch == 0 || Improves(value, state_.best)) {
    state_.best = value;
    state_.best_epoch = epoch;
    state_.wait = 0;
    d.improved = true;
  } else {
    ++state_.wait;
  }
  d.stop = spec_.enabled && !d.improved && state_.wait >= std::max(1, spec_.patience);
  return d;
}

bool EarlyStopping::Improves(double value, double best) const {
  if (!std::isfinite(value)) return false;
  return minimize_ ? value < best - spec_.min_delta : value > best + spec_.min_delta;
}

}  // namespace graft::core
