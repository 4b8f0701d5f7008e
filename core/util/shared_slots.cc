#include "core/util/shared_slots.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/util/limit_error.h"

namespace graft::core {

SharedSlots::SharedSlots(Limits limits) : limits_([&] {
  limits.total = std::max(1, limits.total);
  limits.per_principal = std::clamp(limits.per_principal, 1, limits.total);
  return std::move(limits);
}()) {}

absl::StatusOr<SharedSlots::Slot> SharedSlots::Acquire(const std::string& principal) {
  absl::MutexLock lock(&mu_);
  auto it = by_principal_.find(principal);
  const int mine = it == by_principal_.end() ? 0 : it->second;
  if (mine >= limits_.per_principal) {
    return LimitError(absl::StatusCode::kResourceExhausted,
                      absl::StrCat("principal '", principal, "' already holds ", mine, " of the ", limits_.total, " ",
                                   limits_.what, " slots, its share (", limits_.share_flag,
                                   "); retry when one of them has ended"),
                      absl::StripPrefix(limits_.share_flag, "--"));
  }
  if (held_ >= limits_.total) {
    return LimitError(absl::StatusCode::kResourceExhausted,
                      absl::StrCat(held_, " ", limits_.what, " are in progress, the most at once (",
                                   limits_.total_flag, "); retry when one has ended"),
                      absl::StripPrefix(limits_.total_flag, "--"));
  }
  ++held_;
  ++by_principal_[principal];
  return Slot(this, principal);
}

void SharedSlots::Release(const std::string& principal) {
  absl::MutexLock lock(&mu_);
  --held_;
  auto it = by_principal_.find(principal);
  if (it != by_principal_.end() && --it->second <= 0) by_principal_.erase(it);
}

int SharedSlots::held() const {
  absl::MutexLock lock(&mu_);
  return held_;
}

int SharedSlots::held_by(const std::string& principal) const {
  absl::MutexLock lock(&mu_);
  auto it = by_principal_.find(principal);
  return it == by_principal_.end() ? 0 : it->second;
}

SharedSlots::Slot::Slot(Slot&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), principal_(std::move(other.principal_)) {}

SharedSlots::Slot& SharedSlots::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    if (owner_ != nullptr) owner_->Release(principal_);
    owner_ = std::exchange(other.owner_, nullptr);
    principal_ = std::move(other.principal_);
  }
  return *this;
}

SharedSlots::Slot::~Slot() {
  if (owner_ != nullptr) owner_->Release(principal_);
}

}  // namespace graft::core
