#pragma once
// Shared by graft's libFuzzer harnesses.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace graft::fuzz {

// The readers that take a path (archives, .pth, manifests) get the input
// through one file per harness process, rewritten on every run.
inline std::string WriteInput(const char* harness, const uint8_t* data, size_t size) {
  static const std::string path = [&] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/graft-fuzz-" + harness + "-" +
           std::to_string(::getpid());
  }();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::perror("graft fuzz: writing the input file");
    std::abort();
  }
  return path;
}

// An invariant of graft's own, broken: a finding like a crash.
#define GRAFT_FUZZ_ASSERT(cond)                                                        \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "graft fuzz: invariant broken at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

}  // namespace graft::fuzz
