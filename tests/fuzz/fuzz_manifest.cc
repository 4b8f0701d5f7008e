// A custom backbone's manifest (JSON beside its TorchScript file in
// --backbone_import_dir or the zoo): name, script path, feature_dim,
// preprocessing, each checked.
#include <cstdint>
#include <string>

#include "core/zoo/torchscript_backbone.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = graft::fuzz::WriteInput("manifest", data, size);
  const auto def = graft::core::ReadCustomManifest(path);
  if (!def.ok()) return 0;
  const auto& p = def->preprocessing;
  GRAFT_FUZZ_ASSERT(p.height > 0 && p.width > 0 && p.resize_size > 0);
  for (int c = 0; c < 3; ++c) GRAFT_FUZZ_ASSERT(std::isfinite(p.mean[c]) && std::isfinite(p.std[c]) && p.std[c] > 0);
  return 0;
}
