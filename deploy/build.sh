#!/usr/bin/env bash
# Configures and builds graft (Release) into ./build. Incremental when re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
# shellcheck source=deploy/ccache-env.sh
source deploy/ccache-env.sh
BUILD_DIR="${GRAFT_BUILD_DIR:-build}"
JOBS="${GRAFT_JOBS:-$(nproc)}"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
fi
cmake --build "$BUILD_DIR" -j "$JOBS"
