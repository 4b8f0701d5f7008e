#!/usr/bin/env bash
# The second README command (and CI's): installs what is missing, builds, and
# runs the whole test suite; exits non-zero on any failure. Tests read
# ../shared (weights, images, datasets) beside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
# GRAFT_CMAKE_ARGS: extra configure arguments for a fresh build directory.
# shellcheck disable=SC2086
bash deploy/build.sh ${GRAFT_CMAKE_ARGS:-}
SOURCE="$(pwd)"
cd "${GRAFT_BUILD_DIR:-build}"
# Longest tests first from the start: ctest schedules by the costs it
# recorded, and a fresh build directory has none, so it starts from the
# ones kept in the repository (measured; refreshed from
# build/Testing/Temporary/CTestCostData.txt now and then).
if [ ! -f Testing/Temporary/CTestCostData.txt ]; then
  mkdir -p Testing/Temporary
  cp "$SOURCE/tests/ctest-cost-data.txt" Testing/Temporary/CTestCostData.txt
fi
ctest --output-on-failure -j "${GRAFT_TEST_JOBS:-2}" --timeout 900
