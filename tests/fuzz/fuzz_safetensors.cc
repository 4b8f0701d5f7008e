// A safetensors file (weights upload, zoo file, export): header length, JSON
// header, dtypes, shapes and offsets against the data.
#include <cstdint>
#include <string>

#include "core/zoo/state_dict.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const auto dict = graft::core::ParseSafetensors(bytes, "fuzz input");
  if (!dict.ok()) return 0;
  for (const auto& [name, tensor] : *dict) {
    GRAFT_FUZZ_ASSERT(tensor.defined());
    GRAFT_FUZZ_ASSERT(tensor.numel() * static_cast<int64_t>(tensor.element_size()) <= static_cast<int64_t>(size));
    (void)tensor.sum();
  }
  // What graft parsed it writes back, and reads the same again.
  const auto again = graft::core::SerializeSafetensors(*dict, {});
  if (again.ok()) {
    const auto reread = graft::core::ParseSafetensors(*again, "re-serialised fuzz input");
    GRAFT_FUZZ_ASSERT(reread.ok() && reread->size() == dict->size());
  }
  return 0;
}
