#pragma once

// Helpers shared by the benchmarks: running the Python references, reading
// their "name: value" lines, a scratch directory, process memory.

#include <map>
#include <string>

#include "tests/testing/build_paths.h"

namespace graft::bench {

// Runs `command` through the shell; its stdout (stderr passes through).
std::string RunCommand(const std::string& command);
// "name: value" lines -> {name: value}; other lines are ignored.
std::map<std::string, double> ParseValues(const std::string& text);
// A fresh directory under $TMPDIR, removed on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};
// Runs a Python reference that prints one JSON object {key: images_per_second}
// and prints, for every key of `graft` (same keys), "<bench>/<key>/graft_img_s",
// "<bench>/<key>/<reference_label>_img_s" and "<bench>/<key>/ratio" lines.
// False (with the command and its output on stderr) when the reference fails.
bool CompareWithReference(const std::string& bench, const std::string& command, const std::map<std::string, double>& graft,
                          const std::string& reference_label);
// This process's resident set size in bytes (VmRSS).
int64_t ResidentBytes();
// ../shared beside the source tree.
std::string SharedDir();
// Python with torch and torchvision.
inline constexpr const char* kPython = "/usr/bin/python3";

}  // namespace graft::bench
