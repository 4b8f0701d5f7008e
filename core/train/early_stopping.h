#pragma once

#include <limits>

#include "core/train/job_spec.h"

namespace graft::core {

// Keras EarlyStopping semantics: an epoch improves when it beats the best by
// more than min_delta in the monitored direction; after `patience` epochs
// without improvement training stops (when enabled). The best epoch is
// tracked either way so that its weights can be restored.
class EarlyStopping {
 public:
  struct State {
    double best = 0;
    int best_epoch = 0;  // 0: none yet
    int wait = 0;
  };

  explicit EarlyStopping(const EarlyStoppingSpec& spec);

  struct Decision {
    bool improved = false;
    bool stop = false;
  };
  Decision Update(int epoch, double value);
  // Whether `value` beats `best` by more than min_delta in the monitored
  // direction (a value that is not finite never does).
  bool Improves(double value, double best) const;

  bool minimize() const { return minimize_; }
  const State& state() const { return state_; }
  void Restore(const State& state) { state_ = state; }

 private:
  EarlyStoppingSpec spec_;
  bool minimize_;
  State state_;
};

}  // namespace graft::core
