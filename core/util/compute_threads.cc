#include "core/util/compute_threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace graft::core {

void UseOneComputeThreadHere() {
  thread_local bool done = false;
  if (done) return;
  done = true;
  // LibTorch initialises each thread's OpenMP thread count lazily on its
  // first parallel op; do that first so it cannot undo the limit below.
  (void)at::get_num_threads();
#ifdef _OPENMP
  omp_set_num_threads(1);
#endif
}

void ParallelForEach(int64_t n, const std::function<void(int64_t)>& f) {
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) f(i);
  });
}

bool UseSingleThreadedBlas() {
  // Looked up at run time: libblas.so.3 may be another implementation.
  using SetThreads = void (*)(int);
  auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set == nullptr) return false;
  set(1);
  return true;
}

}  // namespace graft::core
