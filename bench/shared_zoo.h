#pragma once

// A CPU zoo of backbones of ../shared/weights, their files linked (not
// copied) into <dir>/zoo: the in-process benches' backbones.

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/bench_util.h"
#include "core/zoo/zoo.h"

namespace graft::bench {

inline absl::StatusOr<std::unique_ptr<core::Zoo>> SharedBackboneZoo(const std::string& dir,
                                                                    const std::vector<std::string>& backbones) {
  namespace fs = std::filesystem;
  const fs::path zoo_dir = fs::path(dir) / "zoo";
  std::error_code ec;
  fs::create_directories(zoo_dir, ec);
  const fs::path weights = fs::path(SharedDir()) / "weights";
  std::vector<std::string> files{"imagenet_classes.txt"};
  for (const std::string& backbone : backbones) files.push_back(backbone + "-imagenet.safetensors");
  for (const std::string& file : files) {
    fs::create_symlink(weights / file, zoo_dir / file, ec);
    if (ec) return absl::InternalError("linking " + (weights / file).string() + ": " + ec.message());
  }
  return core::Zoo::Create(core::ZooAt(zoo_dir.string(), "cpu"));
}

inline absl::StatusOr<std::unique_ptr<core::Zoo>> SharedBackboneZoo(const std::string& dir, const std::string& backbone) {
  return SharedBackboneZoo(dir, std::vector<std::string>{backbone});
}

}  // namespace graft::bench
