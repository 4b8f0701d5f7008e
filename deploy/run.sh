#!/usr/bin/env bash
# The first README command: installs what is missing, builds, and starts graftd
# with its embedded defaults (extra arguments are passed to graftd).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
bash deploy/build.sh
exec "${GRAFT_BUILD_DIR:-build}/server/graftd" "$@"
