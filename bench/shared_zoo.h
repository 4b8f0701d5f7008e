#pragma once

// A CPU zoo of one backbone of ../shared/weights, its files linked (not
// copied) into <dir>/zoo: the in-process benches' backbone.

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "bench/bench_util.h"
#include "core/zoo/zoo.h"

namespace graft::bench {

inline absl::StatusOr<std::unique_ptr<core::Zoo>> SharedBackboneZoo(const std::string& dir, const std::string& backbone) {
  namespace fs = std::filesystem;
  const fs::path zoo_dir = fs::path(dir) / "zoo";
  std::error_code ec;
  fs::create_directories(zoo_dir, ec);
  const fs::path weights = fs::path(SharedDir()) / "weights";
  for (const std::string& file : {backbone + "-imagenet.safetensors", std::string("imagenet_classes.txt")}) {
    fs::create_symlink(weights / file, zoo_dir / file, ec);
    if (ec) return absl::InternalError("linking " + (weights / file).string() + ": " + ec.message());
  }
  return core::Zoo::Create(core::ZooAt(zoo_dir.string(), "cpu"));
}

}  // namespace graft::bench
