#!/usr/bin/env bash
# Builds graft and its tests with sanitizers and runs them:
#   deploy/sanitize.sh asan    ASan+UBSan (build-asan/): the core, integration
#                              and e2e suites (graftd children instrumented too)
#   deploy/sanitize.sh tsan    TSan (build-tsan/): batcher, job runner, dataset
#                              store and server tests
#   deploy/sanitize.sh         both
# LibTorch, OpenCV, gRPC and the other Debian libraries are not instrumented;
# the suppressions in tests/sanitizers/ name each one and why. Extra ctest
# arguments go after the mode: deploy/sanitize.sh asan -R Batcher
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
# shellcheck source=deploy/ccache-env.sh
source deploy/ccache-env.sh
MODE="${1:-all}"
shift || true
JOBS="${GRAFT_JOBS:-$(nproc)}"
SUPP="$(pwd)/tests/sanitizers"
bash deploy/install-deps.sh >/dev/null

configure() {  # configure DIR SANITIZERS [TARGET...]
  local dir="$1" sanitizers="$2"
  shift 2
  if [ ! -f "$dir/build.ninja" ]; then
    # -O1 with line tables: fast enough to run the suites, exact enough to read a report.
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g1 -DNDEBUG" \
      -DGRAFT_SANITIZE="$sanitizers" -DGRAFT_BUILD_BENCH=OFF >/dev/null
  fi
  if [ "$#" -gt 0 ]; then
    cmake --build "$dir" -j"$JOBS" --target "$@"
  else
    cmake --build "$dir" -j"$JOBS"
  fi
}

status=0
if [ "$MODE" = asan ] || [ "$MODE" = all ]; then
  configure build-asan address,undefined
  export ASAN_OPTIONS="detect_leaks=1:alloc_dealloc_mismatch=0:quarantine_size_mb=64:strict_string_checks=1"
  export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
  # Everything but: the parity and shape references (Python writes them; they
  # test numerics, not memory); the CMake configure probe; the kill -9
  # campaign (durability; its graftd code paths are the e2e tests'); the host
  # memory tests (they measure glibc malloc's tuning, which ASan's allocator
  # replaces); deploy/run.sh's first use (it builds and runs the plain build/).
  (cd build-asan && ctest -j"${GRAFT_TEST_JOBS:-2}" --timeout 1500 --output-on-failure \
     -E "parity|Parity|Shapes|cmake_rejects|Chaos|HostMemory|FirstUse" "$@") || status=1
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
fi
if [ "$MODE" = tsan ] || [ "$MODE" = all ]; then
  configure build-tsan thread graft_core_tests graft_integration_tests graft_e2e_tests
  # One OpenMP thread: libgomp's own synchronisation is invisible to TSan.
  export OMP_NUM_THREADS=1
  # halt_on_error=0: every report of a run is printed; a test with any still fails (exit 66).
  # ignore_noninstrumented_modules=1: memcpy/memset that LibTorch, OpenBLAS or
  # OpenCV call on their own threads are not recorded as accesses (those
  # threads hand results over through synchronisation TSan cannot see; every
  # tensor element then "raced", and de-duplicating millions of such reports
  # made ServerTest.ConcurrentPredicts take 771 s instead of 7 s). graft's own
  # code stays fully checked.
  export TSAN_OPTIONS="suppressions=$SUPP/tsan.supp:halt_on_error=0:exitcode=66:second_deadlock_stack=1:report_signal_unsafe=0:ignore_noninstrumented_modules=1"
  (cd build-tsan && ctest -j"${GRAFT_TEST_JOBS:-2}" --timeout 1500 --output-on-failure \
     -R "Batcher|JobRunner|DatasetStore|ServerTest|Training|Restart" -E "parity|Parity|Cuda" "$@") || status=1
fi
if [ "$status" -ne 0 ]; then
  echo "sanitize: FAILED ($MODE)" >&2
  exit 1
fi
echo "sanitize: $MODE clean"
