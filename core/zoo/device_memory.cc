#include "core/zoo/device_memory.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cctype>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace graft::core {

int64_t DeviceTotalBytes(const c10::Device& device) {
  if (device.is_cpu()) {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page = ::sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : 0;
  }
  if (device.is_cuda()) {
    // The CUDA runtime LibTorch loaded, if it exported its API: graft links
    // no CUDA headers of its own (one source for CPU and GPU LibTorch).
    using SetDevice = int (*)(int);
    using MemGetInfo = int (*)(size_t*, size_t*);
    auto set = reinterpret_cast<SetDevice>(::dlsym(RTLD_DEFAULT, "cudaSetDevice"));
    auto info = reinterpret_cast<MemGetInfo>(::dlsym(RTLD_DEFAULT, "cudaMemGetInfo"));
    size_t free_bytes = 0, total_bytes = 0;
    if (set != nullptr && info != nullptr && set(device.has_index() ? device.index() : 0) == 0 &&
        info(&free_bytes, &total_bytes) == 0) {
      return static_cast<int64_t>(total_bytes);
    }
  }
  return 0;
}

absl::StatusOr<int64_t> ParseDeviceMemoryBudget(const std::string& flag, const c10::Device& device) {
  const std::string v = absl::AsciiStrToLower(absl::StripAsciiWhitespace(flag));
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "--device_memory_budget: '", flag, "' is not auto, none, a share (75%), a size (6GiB, 512MiB) or bytes"));
  };
  const int64_t total = DeviceTotalBytes(device);
  if (v.empty() || v == "auto") {
    if (total <= 0) return 0;  // unknown: unbounded
    return device.is_cpu() ? total / 2 : total / 10 * 9;
  }
  if (v == "none" || v == "0") return 0;
  if (v.back() == '%') {
    double share = 0;
    if (!absl::SimpleAtod(v.substr(0, v.size() - 1), &share) || !(share > 0) || share > 100) return bad();
    if (total <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("--device_memory_budget: '", flag, "': the memory of ",
                                                     device.str(), " cannot be read; give a size (6GiB)"));
    }
    return static_cast<int64_t>(static_cast<double>(total) * share / 100);
  }
  size_t unit_at = v.size();
  while (unit_at > 0 && std::isalpha(static_cast<unsigned char>(v[unit_at - 1]))) --unit_at;
  const std::string unit = v.substr(unit_at);
  double number = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(v.substr(0, unit_at)), &number) || !(number > 0) ||
      !std::isfinite(number)) {
    return bad();
  }
  static const std::map<std::string, double> kUnits = {{"", 1},
                                                       {"b", 1},
                                                       {"k", 1e3},
                                                       {"kb", 1e3},
                                                       {"kib", 1024.0},
                                                       {"m", 1e6},
                                                       {"mb", 1e6},
                                                       {"mib", 1048576.0},
                                                       {"g", 1e9},
                                                       {"gb", 1e9},
                                                       {"gib", 1073741824.0},
                                                       {"t", 1e12},
                                                       {"tb", 1e12},
                                                       {"tib", 1099511627776.0}};
  const auto u = kUnits.find(unit);
  if (u == kUnits.end()) return bad();
  const double bytes = number * u->second;
  if (bytes >= 9e18) return bad();
  return static_cast<int64_t>(bytes);
}

std::string HumanBytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (std::abs(b) >= 1073741824.0) return absl::StrFormat("%.1f GiB", b / 1073741824.0);
  if (std::abs(b) >= 1048576.0) return absl::StrFormat("%.1f MiB", b / 1048576.0);
  if (std::abs(b) >= 1024.0) return absl::StrFormat("%.1f KiB", b / 1024.0);
  return absl::StrCat(bytes, " B");
}

DeviceLedger::Charge::~Charge() {
  absl::MutexLock lock(&ledger_->mu_);
  ledger_->held_[kind_] -= bytes_;
}

std::shared_ptr<DeviceLedger::Charge> DeviceLedger::Hold(const std::shared_ptr<DeviceLedger>& ledger, Kind kind,
                                                         int64_t bytes) {
  absl::MutexLock lock(&ledger->mu_);
  ledger->held_[kind] += bytes;
  return std::shared_ptr<Charge>(new Charge(ledger, kind, bytes));
}

int64_t DeviceLedger::held(Kind kind) const {
  absl::MutexLock lock(&mu_);
  const auto it = held_.find(kind);
  return it == held_.end() ? 0 : it->second;
}

int64_t DeviceLedger::total() const {
  absl::MutexLock lock(&mu_);
  int64_t sum = 0;
  for (const auto& [kind, bytes] : held_) sum += bytes;
  return sum;
}

}  // namespace graft::core
