#pragma once

namespace graft::core {

// Keeps freed host memory in the process for reuse instead of handing it
// back to the kernel.
//
// glibc serves every allocation above its mmap threshold (128 KiB, rising to
// at most 32 MiB) with a fresh mmap and returns it with munmap on free, and
// trims the heap's free top back to the kernel. A forward pass allocates and
// frees activations of megabytes to hundreds of megabytes, so without this
// every forward page-faults its whole working set in again (measured on the
// 2-core machine: MobileNetV2 batch 32 runs 2-3x faster with it). With it,
// large blocks come from one heap (one arena, so that the batcher's and the
// trainer's threads share the reused memory) and resident memory stays at
// its high-water mark. The heap itself settles after a few rounds of the
// same work at a few times the largest live set (aligned requests cannot
// always reuse a block freed at their exact size): mobilenet_v2 batch-32
// forwards, 653-768 MB of heap; peak RSS 876 MB against 778 MB without. Process-wide; call once, before threads start.
// Returns false where the C library offers no such control (then nothing
// changed).
bool RetainHostMemory();

// Whether RetainHostMemory has taken effect in this process.
bool HostMemoryRetained();

}  // namespace graft::core
