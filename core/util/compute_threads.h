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
