// A .pth file (torch.save zip with a pickle): the archive and pickle checks,
// then graft's restricted unpickler, as RegisterBackbone and the zoo read one.
#include <cstdint>
#include <string>

#include "core/zoo/state_dict.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = graft::fuzz::WriteInput("pth", data, size);
  const auto dict = graft::core::ReadPth(path);
  if (dict.ok()) {
    for (const auto& [name, tensor] : *dict) {
      GRAFT_FUZZ_ASSERT(tensor.defined());
      (void)tensor.sum();  // every element readable: storage and view agree
    }
  }
  return 0;
}
