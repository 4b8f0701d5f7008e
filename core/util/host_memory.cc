#include "core/util/host_memory.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace graft::core {

bool RetainHostMemory() {
#if defined(__GLIBC__)
  // 1 GiB: above any single activation graft allocates at its batch sizes.
  constexpr int kLarge = 1 << 30;
  return mallopt(M_ARENA_MAX, 1) == 1 && mallopt(M_MMAP_THRESHOLD, kLarge) == 1 &&
         mallopt(M_TRIM_THRESHOLD, kLarge) == 1;
#else
  return false;
#endif
}

}  // namespace graft::core
