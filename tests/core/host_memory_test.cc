#include "core/util/host_memory.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace graft::core {
namespace {

#if defined(__GLIBC__)
// 64 MiB: the size of one activation of a batch-32 forward, far above glibc's
// default mmap threshold.
constexpr int64_t kFloats = 16LL << 20;

TEST(HostMemoryTest, LargeTensorsComeFromTheHeapAndStayThereWhenFreed) {
  ASSERT_TRUE(RetainHostMemory());
  const size_t mmapped_before = mallinfo2().hblkhd;
  size_t heap_in_use = 0;
  {
    torch::Tensor a = torch::ones({kFloats});
    heap_in_use = mallinfo2().arena;
    // Not a fresh mapping: the block lives in the heap.
    EXPECT_LT(mallinfo2().hblkhd, mmapped_before + (kFloats * 4) / 2);
    EXPECT_FLOAT_EQ(a.sum().item<float>(), static_cast<float>(kFloats));
  }
  // Freed but kept for the next forward: the heap did not shrink.
  EXPECT_GE(mallinfo2().arena, heap_in_use);
  EXPECT_GE(mallinfo2().fordblks, static_cast<size_t>(kFloats * 4));
}

TEST(HostMemoryTest, RepeatedWorkReusesTheSameMemory) {
  ASSERT_TRUE(RetainHostMemory());
  auto step = [] {
    torch::Tensor x = torch::ones({kFloats});
    torch::Tensor small = torch::ones({1000});  // lands above x in the heap
    torch::Tensor y = x * 2 + small.sum();
    return y[kFloats - 1].item<float>();
  };
  // A round holds at most three 64 MiB tensors (x, x * 2 and y) at once and
  // frees them all. glibc's aligned allocations cannot always reuse a block
  // freed at exactly their size, so the heap grows for a few rounds, by an
  // amount that depends on how the intra-op threads interleave, before freed
  // blocks have coalesced enough to serve every request (measured: 3 to 4x
  // the live set, then flat). Had freed memory not been reused, twenty rounds
  // would have taken twenty times the live set from the kernel.
  const size_t live = 3 * kFloats * sizeof(float);
  const size_t before = mallinfo2().arena;
  for (int i = 0; i < 20; ++i) EXPECT_FLOAT_EQ(step(), 1002.0f);
  const size_t after = mallinfo2().arena;
  EXPECT_LT(after, before + 6 * live) << "heap went from " << before << " to " << after
                                      << " bytes over twenty rounds";
}

TEST(HostMemoryTest, DefaultAllocatorMapsLargeTensorsFreshly) {
  // The behaviour RetainHostMemory exists to change (ctest runs each test in
  // a process of its own; run together, an earlier test has changed it).
  if (HostMemoryRetained()) GTEST_SKIP() << "RetainHostMemory already ran in this process";
  const size_t mmapped_before = mallinfo2().hblkhd;
  torch::Tensor a = torch::ones({kFloats});
  EXPECT_GE(mallinfo2().hblkhd, mmapped_before + kFloats * 4);
}
#endif

}  // namespace
}  // namespace graft::core
