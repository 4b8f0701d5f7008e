#pragma once

#include <cstdint>
#include <functional>

namespace graft::core {

// Makes LibTorch ops called on this thread run on this thread alone.
//
// LibTorch's OpenMP backend gives every calling thread its own team of
// intra-op workers, and idle workers spin before they sleep. RPC handler and
// decode-pool threads only run small ops (preprocessing, softmax, heads); if
// each had a team, their spinning workers would steal the cores from the
// thread running the big forward passes (measured: a single-image Predict's
// forward 2.5x slower). Idempotent and cheap after the first call.
void UseOneComputeThreadHere();

// Process-wide: which threads compute with a team, and how large.
//
// libgomp gives every thread that runs a parallel op a team of its own, and
// the team's workers stay (asleep) for the thread's lifetime. Once the
// process holds more team threads than cores, every team's idle workers
// sleep after ~100 spins instead of ~300,000, so each op of a forward pays
// futex wake-ups (measured: a feature pass 30% slower, 6,000 context
// switches a second, because an RPC thread had once loaded a backbone with a
// team). So, after SetComputeThreads(n), a thread computes alone unless it
// asked for a team with UseComputeTeamHere; compute threads give their
// workers back with ReleaseComputeTeam when they go idle.
void SetComputeThreads(int n);

// n of SetComputeThreads; 0 when it was never called (a test or a program
// that drives LibTorch directly keeps LibTorch's own defaults).
int ComputeThreads();

// Gives this thread a team of ComputeThreads() threads for LibTorch ops (a
// trainer's job thread, a backbone's batcher). No-op before SetComputeThreads.
void UseComputeTeamHere();

// Lets this thread's OpenMP workers exit (libgomp's omp_pause_resource); the
// thread's next parallel op starts new ones. Only outside a parallel region.
void ReleaseComputeTeam();

// A scope in which this thread computes with a team (a job, a range test on
// an RPC thread); at its end the workers go and the thread's count is what
// it was.
class ComputeTeam {
 public:
  ComputeTeam();
  ~ComputeTeam();
  ComputeTeam(const ComputeTeam&) = delete;
  ComputeTeam& operator=(const ComputeTeam&) = delete;

 private:
  int previous_;
};

// Makes OpenBLAS run every matrix product on its calling thread.
//
// LibTorch's Linear layers call OpenBLAS, whose pthread build hands products
// above a small size to its own worker threads; after each product those
// workers spin on sched_yield for about 0.1 s before they sleep. Serving an
// ImageNet head per request kept one spinning on a core that the forward's
// OpenMP team needed (measured: 40% of a core, batched forwards 2x slower).
// graft parallelises through LibTorch's intra-op pool instead. Process-wide;
// returns false when the BLAS in use is not OpenBLAS (nothing changed).
bool UseSingleThreadedBlas();

// The CPUs this process may run on (its affinity mask: a container's
// cpuset), at least 1.
int AvailableCpus();

// Calls f(i) for every i in [0, n) on this thread's intra-op pool (LibTorch's
// OpenMP team), each thread taking the next i when it is free, LibTorch ops
// inside f running single-threaded; returns when all are done. Inside another
// ParallelForEach (or any LibTorch parallel region) it runs serially on the
// calling thread. An exception from f is rethrown here. It lives here because
// at::parallel_for is inlined into its caller and runs serially unless that
// file is compiled with OpenMP, as only this one is.
void ParallelForEach(int64_t n, const std::function<void(int64_t)>& f);

}  // namespace graft::core
