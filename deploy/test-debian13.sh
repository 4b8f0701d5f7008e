#!/usr/bin/env bash
# Builds graft against Debian 13 (trixie: LibTorch 2.6, gcc 14, Abseil with
# absl/log) and runs the whole test suite there, in a Debian 13 root made with
# debootstrap. The root is kept outside the clone (GRAFT_DEBIAN13_ROOT,
# default /var/cache/graft/debian13) and reused; packages come from the same
# deploy/install-deps.sh. Needs root. CI runs it after the Debian 12 suite.
#   deploy/test-debian13.sh            # make or update the root, build, test
#   deploy/test-debian13.sh --prepare  # only make the root and install the
#                                      # packages (CI overlaps this, mostly
#                                      # network, with the Debian 12 build)
#   deploy/test-debian13.sh --build    # only build (gcc 14's warnings are
#                                      # errors: a quick check of a change)
set -euo pipefail
STEP="bash deploy/test.sh"
if [ "${1:-}" = "--prepare" ]; then STEP="bash deploy/install-deps.sh"; fi
if [ "${1:-}" = "--build" ]; then STEP="bash deploy/build.sh"; fi
cd "$(dirname "$0")/.."
REPO="$(pwd)"
SHARED="$(cd .. && pwd)/shared"
ROOT="${GRAFT_DEBIAN13_ROOT:-/var/cache/graft/debian13}"
MIRROR="${GRAFT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
JOBS="${GRAFT_JOBS:-$(nproc)}"

if [ "$(id -u)" -ne 0 ]; then
  echo "test-debian13: needs root (debootstrap, chroot, mounts)" >&2
  exit 1
fi
if [ ! -f "$ROOT/.graft-root-ready" ]; then
  command -v debootstrap >/dev/null || { apt-get update -q && apt-get install -y -q debootstrap; }
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  echo "test-debian13: making a Debian 13 root in $ROOT"
  debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >/dev/null
  touch "$ROOT/.graft-root-ready"
fi

mounts=()
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() {  # bind SRC DST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mounts+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}
mkdir -p "$ROOT/proc" "$ROOT/dev" "$ROOT/tmp"
mount -t proc proc "$ROOT/proc"
mounts+=("$ROOT/proc")
bind /dev "$ROOT/dev"
bind /dev/pts "$ROOT/dev/pts"
bind /dev/shm "$ROOT/dev/shm"
bind "$REPO" "$ROOT/src/main"
bind "$SHARED" "$ROOT/src/shared" ro
# One compiler cache for every build (deploy/ccache-env.sh), mounted in.
source deploy/ccache-env.sh
mkdir -p "$CCACHE_DIR"
bind "$CCACHE_DIR" "$ROOT/ccache"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
chmod 1777 "$ROOT/tmp"

# The build directory lives in the Debian 13 root, apart from the host's build/.
# The benchmarks are built (and run) on Debian 12; here the suite is what counts.
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 CI="${CI:-}" \
  GRAFT_BUILD_DIR=/build-debian13 GRAFT_JOBS="$JOBS" GRAFT_TEST_JOBS="${GRAFT_TEST_JOBS:-2}" \
  GRAFT_CMAKE_ARGS=-DGRAFT_BUILD_BENCH=OFF CCACHE_DIR=/ccache CCACHE_MAXSIZE="$CCACHE_MAXSIZE" \
  /bin/bash -c 'cd /src/main && git config --global --add safe.directory /src/main 2>/dev/null; '"$STEP"
