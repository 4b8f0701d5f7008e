#pragma once

#include <map>
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include <string>

#include "absl/status/statusor.h"

namespace graft::core {

// A fixed number of slots for one kind of work (uploads, evaluations, range
// tests) shared by every principal, of which one principal may hold at most
// its share: a client that opens slots and stalls holds its own share, never
// every slot. Both limits are flags; a refusal is RESOURCE_EXHAUSTED naming
// the one that applies.
class SharedSlots {
 public:
  struct Limits {
    std::string what;            // "uploads", in messages
    int total = 1;               // at least 1
    std::string total_flag;      // "--max_concurrent_uploads"
    int per_principal = 1;       // at least 1; above `total` is `total`
    std::string share_flag;      // "--max_uploads_per_principal"
  };
  explicit SharedSlots(Limits limits);

  // Held until destroyed (movable).
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();

   private:
    friend class SharedSlots;
    Slot(SharedSlots* owner, std::string principal) : owner_(owner), principal_(std::move(principal)) {}
    SharedSlots* owner_ = nullptr;
    std::string principal_;
  };

  absl::StatusOr<Slot> Acquire(const std::string& principal);

  int held() const;
  int held_by(const std::string& principal) const;
  const Limits& limits() const { return limits_; }

 private:
  void Release(const std::string& principal) ABSL_LOCKS_EXCLUDED(mu_);

  const Limits limits_;
  mutable absl::Mutex mu_;
  int held_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int> by_principal_ ABSL_GUARDED_BY(mu_);  // only principals holding slots: bounded by `total`
};

}  // namespace graft::core
