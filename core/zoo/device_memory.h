#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace graft::core {

// The bytes of the compute device: all of a GPU's memory, or the host's RAM
// for the CPU. 0 when it cannot be read (a CUDA runtime without
// cudaMemGetInfo in the process).
int64_t DeviceTotalBytes(const c10::Device& device);

// --device_memory_budget: "" or "auto" (90% of a GPU, half of the host's RAM
// on CPU), a share ("75%"), a size with a unit ("6GiB", "512MiB", "2GB"), or
// bytes ("1000000"); "0" or "none" leaves residency unbounded.
// INVALID_ARGUMENT naming the flag for anything else.
absl::StatusOr<int64_t> ParseDeviceMemoryBudget(const std::string& flag, const c10::Device& device);

// "12.3 MiB", "1.5 GiB", "512 B".
std::string HumanBytes(int64_t bytes);

// What the device holds besides resident backbones, accounted against the
// same budget: published models' own weights (heads, fine-tuned blocks) and
// running jobs' estimated training memory. A charge lasts as long as its
// handle; the ledger outlives the zoo's users that hold handles.
class DeviceLedger {
 public:
  enum class Kind { kModel, kJob };
  class Charge {
   public:
    ~Charge();
    Charge(const Charge&) = delete;
    Charge& operator=(const Charge&) = delete;
    int64_t bytes() const { return bytes_; }

   private:
    friend class DeviceLedger;
    Charge(std::shared_ptr<DeviceLedger> ledger, Kind kind, int64_t bytes)
        : ledger_(std::move(ledger)), kind_(kind), bytes_(bytes) {}
    std::shared_ptr<DeviceLedger> ledger_;
    Kind kind_;
    int64_t bytes_;
  };

  // Holds `bytes` until the returned handle is gone.
  static std::shared_ptr<Charge> Hold(const std::shared_ptr<DeviceLedger>& ledger, Kind kind, int64_t bytes);
  int64_t held(Kind kind) const;
  int64_t total() const;

 private:
  mutable absl::Mutex mu_;
  std::map<Kind, int64_t> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace graft::core
