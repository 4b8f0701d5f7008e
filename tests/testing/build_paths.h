#pragma once

// Paths the tests and benchmarks need (the source tree, ../shared, graftd,
// graft, the parity references), given to the compiler relative to the build
// directory and resolved when a program runs, from where its executable is.
// Absolute paths in compile definitions would differ in every clone and make
// every test file a compiler-cache miss (deploy/ccache-env.sh): with these,
// a clean clone's build hits what an earlier build left.

#include <string>

namespace graft::testing {

// The build directory (the nearest folder above the running executable that
// holds CMakeCache.txt) joined with `relative`, normalised.
std::string FromBuildDir(const char* relative);

}  // namespace graft::testing

#ifdef GRAFT_SHARED_FROM_BUILD
#define GRAFT_SHARED_DIR ::graft::testing::FromBuildDir(GRAFT_SHARED_FROM_BUILD)
#endif
#ifdef GRAFT_SOURCE_FROM_BUILD
#define GRAFT_SOURCE_DIR ::graft::testing::FromBuildDir(GRAFT_SOURCE_FROM_BUILD)
#endif
#ifdef GRAFTD_FROM_BUILD
#define GRAFTD_BIN ::graft::testing::FromBuildDir(GRAFTD_FROM_BUILD)
#endif
#ifdef GRAFT_BIN_FROM_BUILD
#define GRAFT_BIN ::graft::testing::FromBuildDir(GRAFT_BIN_FROM_BUILD)
#endif
#ifdef GRAFT_PARITY_FROM_BUILD
#define GRAFT_PARITY_DIR ::graft::testing::FromBuildDir(GRAFT_PARITY_FROM_BUILD)
#endif
#ifdef GRAFT_BENCH_FROM_BUILD
#define GRAFT_BENCH_DIR ::graft::testing::FromBuildDir(GRAFT_BENCH_FROM_BUILD)
#endif
