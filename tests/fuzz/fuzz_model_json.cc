// A model's model.json (metadata beside its weights, read at every start):
// a damaged or hand-edited one is DATA_LOSS, never a crash.
#include <cstdint>
#include <string>

#include "core/serve/model_store.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto info = graft::core::ModelInfoFromJson(text);
  if (!info.ok()) {
    GRAFT_FUZZ_ASSERT(absl::IsDataLoss(info.status()));
    return 0;
  }
  // What reads back writes out and reads back the same.
  const auto again = graft::core::ModelInfoFromJson(graft::core::ModelInfoToJson(*info));
  GRAFT_FUZZ_ASSERT(again.ok());
  GRAFT_FUZZ_ASSERT(graft::core::ModelInfoToJson(*again) == graft::core::ModelInfoToJson(*info));
  return 0;
}
