#include "core/util/host_memory.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <atomic>

namespace graft::core {
namespace {
std::atomic<bool> retained{false};
}  // namespace

bool RetainHostMemory() {
#if defined(__GLIBC__)
  // 1 GiB: above any single activation graft allocates at its batch sizes.
  constexpr int kLarge = 1 << 30;
  const bool ok = mallopt(M_ARENA_MAX, 1) == 1 && mallopt(M_MMAP_THRESHOLD, kLarge) == 1 &&
                  mallopt(M_TRIM_THRESHOLD, kLarge) == 1;
  if (ok) retained = true;
  return ok;
#else
  return false;
#endif
}

bool HostMemoryRetained() { return retained; }

}  // namespace graft::core
