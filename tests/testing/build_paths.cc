#include "tests/testing/build_paths.h"

#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace graft::testing {
namespace fs = std::filesystem;

namespace {

fs::path FindBuildDir() {
  std::error_code ec;
  fs::path dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
  for (fs::path at = dir; !at.empty(); at = at.parent_path()) {
    if (fs::exists(at / "CMakeCache.txt", ec)) return at;
    if (at == at.root_path()) break;
  }
  std::cerr << "graft tests: no CMakeCache.txt above " << dir << "; run the programs from their build directory\n";
  std::abort();
}

}  // namespace

std::string FromBuildDir(const char* relative) {
  static const fs::path build = FindBuildDir();
  return (build / relative).lexically_normal().string();
}

}  // namespace graft::testing
