// A TorchScript or .pth archive through the pre-load checks (zip structure,
// record sizes and count, every pickle inside) that decide whether LibTorch
// may open it at all.
#include <cstdint>
#include <string>

#include "core/zoo/archive_check.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = graft::fuzz::WriteInput("torch_archive", data, size);
  graft::core::ArchiveLimits limits;
  (void)graft::core::CheckTorchArchive(path, limits);
  return 0;
}
