#pragma once

// Checks a PyTorch zip archive (torch.save's .pth, torch.jit.save's
// TorchScript) before LibTorch or graft's own reader touches it, with graft's
// own zip and pickle parsing: a crafted file is refused with its reason
// instead of exhausting memory or the stack (LibTorch's unpickler and the
// destructors of what it builds recurse once per nesting level).

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace graft::core {

struct ArchiveLimits {
  int64_t max_records = 100'000;
  int64_t max_record_bytes = 8LL << 30;    // one tensor's storage
  int64_t max_pickle_bytes = 256LL << 20;  // data.pkl, constants.pkl, ...
  int max_pickle_depth = 200;              // containers inside containers
  int max_code_depth = 100;                // brackets inside brackets in TorchScript code/
};

// The records of the zip at `path` are bounded, and every *.pkl record is a
// pickle within the limits with no reference cycle; code/ sources nest
// brackets at most max_code_depth deep.
absl::Status CheckTorchArchive(const std::string& path, const ArchiveLimits& limits = {});

// A checked torch archive (CheckTorchArchive's checks, in Open), whose
// records graft reads itself: the .pth reader never hands a file to
// LibTorch's zip reader (whose constructor leaks when it refuses one).
class TorchZip {
 public:
  static absl::StatusOr<TorchZip> Open(const std::string& path, const ArchiveLimits& limits = {});
  // Names inside the archive's one folder, e.g. "data.pkl", "data/0".
  bool Has(const std::string& name) const;
  // Inflated and CRC-checked; NOT_FOUND for a missing record.
  absl::StatusOr<std::string> Read(const std::string& name) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// One pickle (protocols 0-5): well formed, at most `max_depth` containers
// deep (shared references through the memo followed), no cycle.
absl::Status CheckPickle(const std::string& data, int max_depth);

}  // namespace graft::core
