#!/usr/bin/env bash
# Builds graft's libFuzzer harnesses (clang-14, ASan+UBSan, -DGRAFT_FUZZ=ON) in
# build-fuzz/ and runs each: first every kept regression input in
# tests/fuzz/regressions/<harness>/ once, then fuzzing for SECONDS (default
# 60) from the build-time seeds plus the corpus kept in build-fuzz between runs.
#   deploy/fuzz.sh [SECONDS] [HARNESS...]
#   GRAFT_FUZZ_RUNS=1000000 deploy/fuzz.sh 0 image   # a campaign: N executions
# Harnesses run side by side, GRAFT_FUZZ_PARALLEL (default: the cores) at a time.
# GRAFT_FUZZ_BUILD_DIR and GRAFT_FUZZ_SOURCE_LINK: fixed paths for CI (below).
# Exits non-zero on any crash, leak, UBSan finding or broken invariant; the
# input is left in build-fuzz/tests/fuzz/crashes/<harness>/. A summary table
# (executions, coverage, corpus) is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
# shellcheck source=deploy/ccache-env.sh
source deploy/ccache-env.sh
SECS="${1:-60}"
shift || true
BUILD="${GRAFT_FUZZ_BUILD_DIR:-build-fuzz}"
# GRAFT_FUZZ_SOURCE_LINK (CI sets it, with GRAFT_FUZZ_BUILD_DIR outside the
# clone): configure through a symlink at that fixed path to this checkout.
# clang's precompiled headers record the source and build folders' paths, so
# in a new folder they, and every compile that includes them, miss the
# compiler cache; at fixed paths a clean clone's fuzz build hits it.
SOURCE="$REPO"
if [ -n "${GRAFT_FUZZ_SOURCE_LINK:-}" ]; then
  mkdir -p "$(dirname "$GRAFT_FUZZ_SOURCE_LINK")"
  ln -sfn "$REPO" "$GRAFT_FUZZ_SOURCE_LINK"
  SOURCE="$GRAFT_FUZZ_SOURCE_LINK"
fi
if [ -f "$BUILD/CMakeCache.txt" ] && \
   ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$SOURCE" "$BUILD/CMakeCache.txt"; then
  rm -rf "$BUILD"  # configured from another source folder: CMake would refuse it
fi
JOBS="${GRAFT_JOBS:-$(nproc)}"
ALL=(image archive pth pickle torch_archive safetensors job_spec model_json manifest infer_json)
HARNESSES=("$@")
[ "${#HARNESSES[@]}" -gt 0 ] || HARNESSES=("${ALL[@]}")

bash deploy/install-deps.sh --fuzz >/dev/null
# OSS-Fuzz's flags: -O1 and line tables only (enough for the sanitizers'
# stack traces) instead of RelWithDebInfo's -O2 -g. Measured on 2 cores with
# ASan+UBSan: core/train/trainer.cc 17.0 -> 12.0 s, graft_core's precompiled
# header 16.2 -> 13.5 s, the object 4.1 -> 2.4 MB.
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang-14 CXX=clang++-14 cmake -S "$SOURCE" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DGRAFT_FUZZ=ON -DGRAFT_BUILD_TESTS=OFF -DGRAFT_BUILD_BENCH=OFF >/dev/null
fi
# The server library too, though no harness links all of it: this is the
# clang build CI makes, and clang's lock analysis (-Wthread-safety -Werror)
# checks what server/ marks ABSL_GUARDED_BY here, as it does all of core.
targets=(graft_fuzz_seed_corpora graft_server_lib)
for h in "${HARNESSES[@]}"; do targets+=("graft_fuzz_$h"); done
cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}"

FUZZ="$BUILD/tests/fuzz"
# LibTorch and OpenCV are not instrumented; their own allocations stay
# theirs. Leaks are checked (graft's own objects are instrumented). A small
# quarantine: freed memory held back for use-after-free checks counts against
# -rss_limit_mb.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:quarantine_size_mb=64:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_NUM_THREADS=1
OUT="$(mktemp -d)"
# One harness: regressions, then fuzzing; its summary line in $OUT/<h>.line,
# a failure in $OUT/<h>.failed.
run_one() {
  local h="$1" bin="$FUZZ/graft_fuzz_$1" max_len=16384
  case "$h" in
    image|archive|pth|torch_archive) max_len=65536 ;;
  esac
  # 1. Kept regression inputs: each must run clean.
  local reg="tests/fuzz/regressions/$h"
  if [ -d "$reg" ] && [ -n "$(ls -A "$reg")" ]; then
    if ! "$bin" -rss_limit_mb=4096 "$reg"/* >"$FUZZ/$h.regressions.log" 2>&1; then
      echo "$h (regression)" > "$OUT/$h.failed"
      { echo "fuzz: $h: a kept regression input fails again:"; tail -40 "$FUZZ/$h.regressions.log"; } >&2 || true
      return
    fi
  fi
  # 2. Fuzzing.
  local corpus="$FUZZ/corpus/$h" crashes="$FUZZ/crashes/$h" log="$FUZZ/$h.log"
  mkdir -p "$corpus" "$crashes"
  local limit=(-max_total_time="$SECS")
  if [ -n "${GRAFT_FUZZ_RUNS:-}" ]; then limit=(-runs="$GRAFT_FUZZ_RUNS"); fi
  local start rc=0
  start=$(date +%s)
  "$bin" "${limit[@]}" -max_len="$max_len" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "$corpus" "$FUZZ/seeds/$h" >"$log" 2>&1 || rc=$?
  local secs=$(( $(date +%s) - start ))
  local execs cov
  if [ "$rc" -ne 0 ]; then echo "$h" > "$OUT/$h.failed"; fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)"
  cov="$(grep -aoE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)"
  printf '%-14s %12s execs %6ss  %-22s corpus %5s  rc %s\n' "$h" "${execs:-?}" "$secs" "${cov:-?}" \
    "$(ls "$corpus" | wc -l)" "$rc" | tee "$OUT/$h.line" || true
  if [ "$rc" -ne 0 ]; then
    { echo "fuzz: $h found a failure (input in $crashes):"
      grep -aE 'ERROR|runtime error|graft fuzz|SUMMARY|Test unit written' "$log" | head -20; } >&2 || true
  fi
}
# Harnesses run side by side, one per core (GRAFT_FUZZ_PARALLEL), each single-threaded.
PARALLEL="${GRAFT_FUZZ_PARALLEL:-$JOBS}"
running=0
for h in "${HARNESSES[@]}"; do
  if [ "$running" -ge "$PARALLEL" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_one "$h" &
  running=$((running + 1))
done
wait
summary="$(mktemp)"
failed=()
for h in "${HARNESSES[@]}"; do
  if [ -f "$OUT/$h.line" ]; then cat "$OUT/$h.line" >> "$summary"; fi
  if [ -f "$OUT/$h.failed" ]; then failed+=("$(cat "$OUT/$h.failed")"); fi
done
echo "--- fuzz summary"
cat "$summary"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#HARNESSES[@]} harnesses clean"
