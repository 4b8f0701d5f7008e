// One pickle through the structural check that runs before any .pth or
// TorchScript archive reaches LibTorch: opcodes, nesting depth, memo cycles.
#include <cstdint>
#include <string>

#include "core/zoo/archive_check.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string pickle(reinterpret_cast<const char*>(data), size);
  const absl::Status s = graft::core::CheckPickle(pickle, 64);
  GRAFT_FUZZ_ASSERT(s.ok() || absl::IsInvalidArgument(s) || absl::IsResourceExhausted(s) ||
                    absl::IsFailedPrecondition(s));
  return 0;
}
