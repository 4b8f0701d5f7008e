#!/usr/bin/env bash
# The second README command (and CI's): installs what is missing, builds, and
# runs the whole test suite; exits non-zero on any failure. Tests read
# ../shared (weights, images, datasets) beside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
bash deploy/build.sh
cd "${GRAFT_BUILD_DIR:-build}"
ctest --output-on-failure -j "${GRAFT_TEST_JOBS:-2}" --timeout 900
