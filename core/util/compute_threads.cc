#include "core/util/compute_threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace graft::core {
namespace {
std::atomic<int> compute_threads{0};
}  // namespace

void SetComputeThreads(int n) {
  compute_threads = std::max(1, n);
  // LibTorch starts each new thread's OpenMP thread count from its global
  // count: 1 makes every thread compute alone unless it asks for a team.
  at::set_num_threads(1);
}

int ComputeThreads() { return compute_threads.load(); }

// LibTorch sets each thread's OpenMP count from its global count the first
// time the thread runs a parallel op, and would undo a count set before. That
// lazy set-up has two copies: LibTorch's own (get_num_threads runs it) and,
// in LibTorch 2.x where the inline function is not exported, this file's,
// which ParallelForEach's inlined parallel_for runs. Both go first.
static void InitThreadCountsHere() {
  (void)at::get_num_threads();
  at::internal::lazy_init_num_threads();
}

void UseComputeTeamHere() {
  const int n = compute_threads.load();
  if (n == 0) return;
  InitThreadCountsHere();
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

void ReleaseComputeTeam() {
#ifdef _OPENMP
  if (!omp_in_parallel()) omp_pause_resource_all(omp_pause_soft);
#endif
}

ComputeTeam::ComputeTeam() : previous_(at::get_num_threads()) { UseComputeTeamHere(); }

ComputeTeam::~ComputeTeam() {
  if (compute_threads.load() == 0) return;
  ReleaseComputeTeam();
#ifdef _OPENMP
  omp_set_num_threads(previous_);
#endif
}

void UseOneComputeThreadHere() {
  thread_local bool done = false;
  if (done) return;
  done = true;
  InitThreadCountsHere();  // first, so that it cannot undo the limit below
#ifdef _OPENMP
  omp_set_num_threads(1);
#endif
}

int AvailableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

void ParallelForEach(int64_t n, const std::function<void(int64_t)>& f) {
  if (n <= 0) return;
  // Each thread of the team takes the next index when it is free, rather than
  // a fixed share: images differ in size by orders of magnitude, and a thread
  // preempted by other work leaves its share to the others.
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(n, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      for (int64_t i = next++; i < n; i = next++) f(i);
    }
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
