#include "core/data/decode_budget.h"

#include "absl/strings/str_cat.h"
#include "core/util/limit_error.h"

namespace graft::core {

DecodeBudget::Reservation::~Reservation() {
  if (budget_ != nullptr) budget_->Release(bytes_);
}

absl::StatusOr<DecodeBudget::Reservation> DecodeBudget::Reserve(int64_t bytes, const std::string& what) {
  if (bytes > capacity_) {
    return LimitError(absl::StatusCode::kResourceExhausted,
                      absl::StrCat("decoding ", what, " needs about ", bytes, " bytes, more than all of --max_decode_bytes (",
                                   capacity_, ")"),
                      "max_decode_bytes");
  }
  absl::MutexLock lock(&mu_);
  const absl::Time deadline = absl::Now() + absl::FromChrono(max_wait_);
  while (in_use_ + bytes > capacity_ && !freed_.WaitWithDeadline(&mu_, deadline)) {
  }
  if (in_use_ + bytes > capacity_) {
    return LimitError(absl::StatusCode::kResourceExhausted,
                      absl::StrCat("decoding ", what, " needs about ", bytes, " bytes; other decodes hold ", in_use_,
                                   " of --max_decode_bytes (", capacity_, "); retry shortly"),
                      "max_decode_bytes");
  }
  in_use_ += bytes;
  return Reservation(this, bytes);
}

int64_t DecodeBudget::in_use() const {
  absl::MutexLock lock(&mu_);
  return in_use_;
}

void DecodeBudget::Release(int64_t bytes) {
  {
    absl::MutexLock lock(&mu_);
    in_use_ -= bytes;
  }
  freed_.SignalAll();
}

}  // namespace graft::core
