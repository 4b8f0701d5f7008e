#include "bench/bench_util.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace graft::bench {

std::string RunCommand(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

bool CompareWithReference(const std::string& bench, const std::string& command, const std::map<std::string, double>& graft,
                          const std::string& reference_label) {
  const std::string out = RunCommand(command);
  const auto reference = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (!reference.is_object()) {
    std::cerr << "reference run failed: " << command << "\n" << out << "\n";
    return false;
  }
  for (const auto& [key, g] : graft) {
    const double r = reference.value(key, 0.0);
    const std::string name = bench + "/" + key;
    std::printf("%s/graft_img_s: %.2f\n", name.c_str(), g);
    std::printf("%s/%s_img_s: %.2f\n", name.c_str(), reference_label.c_str(), r);
    std::printf("%s/ratio: %.2f\n", name.c_str(), r > 0 ? g / r : 0.0);
  }
  return true;
}

std::map<std::string, double> ParseValues(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    const auto colon = line.find(": ");
    if (colon == std::string::npos) continue;
    try {
      out[line.substr(0, colon)] = std::stod(line.substr(colon + 2));
    } catch (...) {
    }
  }
  return out;
}

ScratchDir::ScratchDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr ? tmp : "/tmp") + "/graft-bench-XXXXXX";
  if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

int64_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      int64_t kb = 0;
      status >> kb;
      return kb * 1024;
    }
    status.ignore(1 << 12, '\n');
  }
  return 0;
}

std::string SharedDir() { return GRAFT_SHARED_DIR; }

}  // namespace graft::bench
