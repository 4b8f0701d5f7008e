#!/usr/bin/env bash
# Proves the Dockerfile's runtime stage without Docker: in a fresh minimal
# Debian root (debootstrap --variant=minbase) it installs only the packages
# deploy/runtime-packages.sh names for the built graftd and graft, then runs
# graftd there as the unprivileged uid 10001 and checks that it serves
# (health, backbones, an ImageNet prediction from ../shared's weights). It
# prints the root's size with the runtime packages and what the full
# build-and-test package list (deploy/install-deps.sh) would add.
#   deploy/check-runtime.sh            # Debian 12, binaries from build/
#   deploy/check-runtime.sh 13         # Debian 13, binaries from the
#                                      # deploy/test-debian13.sh root
# Needs root. The pristine base root is cached in
# $GRAFT_RUNTIME_CACHE (default /var/cache/graft), the working copy is made
# afresh on every run.
#   deploy/check-runtime.sh --prepare 13   # only make the base root (CI
#                                          # overlaps it with the builds)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
SHARED="$(cd .. && pwd)/shared"
PREPARE=0
if [ "${1:-}" = "--prepare" ]; then PREPARE=1; shift; fi
DIST="${1:-12}"
CACHE="${GRAFT_RUNTIME_CACHE:-/var/cache/graft}"
MIRROR="${GRAFT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
case "$DIST" in
  12) SUITE=bookworm; BUILD_ROOT=/; BIN_DIR="$REPO/${GRAFT_BUILD_DIR:-build}" ;;
  13) SUITE=trixie; BUILD_ROOT="${GRAFT_DEBIAN13_ROOT:-/var/cache/graft/debian13}"; BIN_DIR="$BUILD_ROOT/build-debian13" ;;
  *) echo "check-runtime: DIST is 12 or 13, not $DIST" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "check-runtime: needs root (debootstrap, chroot)" >&2; exit 1; }

BASE="$CACHE/runtime-base-$SUITE"
ROOT="$CACHE/runtime-check-$SUITE"
if [ ! -f "$BASE/.graft-base-ready" ]; then
  command -v debootstrap >/dev/null || { apt-get update -q && apt-get install -y -q debootstrap; }
  rm -rf "$BASE"
  echo "check-runtime: debootstrap $SUITE into $BASE"
  debootstrap --variant=minbase "$SUITE" "$BASE" "$MIRROR" >/dev/null
  touch "$BASE/.graft-base-ready"
fi
if [ "$PREPARE" = 1 ]; then exit 0; fi
for b in server/graftd client/graft; do
  [ -x "$BIN_DIR/$b" ] || { echo "check-runtime: $BIN_DIR/$b is not built" >&2; exit 1; }
done

pids=()
mounts=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT

# 1. The runtime packages, worked out where the binaries were built.
LIST="$(mktemp)"
if [ "$DIST" = 12 ]; then
  bash deploy/runtime-packages.sh "$BIN_DIR/server/graftd" "$BIN_DIR/client/graft" > "$LIST"
else
  cp deploy/runtime-packages.sh "$BUILD_ROOT/tmp/runtime-packages.sh"
  mount -t proc proc "$BUILD_ROOT/proc"; mounts+=("$BUILD_ROOT/proc")
  mount --bind /dev "$BUILD_ROOT/dev"; mounts+=("$BUILD_ROOT/dev")
  chroot "$BUILD_ROOT" /bin/bash /tmp/runtime-packages.sh /build-debian13/server/graftd /build-debian13/client/graft > "$LIST"
fi
echo "check-runtime: $(wc -l < "$LIST") runtime packages"
if grep -E -- '-dev$|^python3|^g\+\+|^gcc-[0-9]+$|^cmake$' "$LIST"; then
  echo "check-runtime: FAIL: build or test packages in the runtime list (above)" >&2
  exit 1
fi

# 2. A fresh copy of the minimal root with exactly those packages.
rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"
base_kb=$(du -skx "$ROOT" | cut -f1)
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount -t proc proc "$ROOT/proc"; mounts+=("$ROOT/proc")
mount --bind /dev "$ROOT/dev"; mounts+=("$ROOT/dev")
mount --bind /dev/pts "$ROOT/dev/pts"; mounts+=("$ROOT/dev/pts")
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
in_root apt-get update -q >/dev/null
# shellcheck disable=SC2046
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  ca-certificates $(cat "$LIST") >/dev/null
in_root apt-get clean
rm -rf "$ROOT/var/lib/apt/lists/"*
runtime_kb=$(du -skx "$ROOT" | cut -f1)
# What the build-and-test list would add on top (apt answers without installing).
in_root apt-get update -q >/dev/null
# shellcheck disable=SC2046
full_add="$(in_root apt-get install --assume-no --no-install-recommends $(bash deploy/install-deps.sh --print) 2>/dev/null \
  | sed -n 's/^After this operation, \(.*\) of additional disk space will be used.*/\1/p' || true)"
rm -rf "$ROOT/var/lib/apt/lists/"*

# 3. graftd as uid 10001 in that root, as the image runs it.
cp "$BIN_DIR/server/graftd" "$BIN_DIR/client/graft" "$ROOT/usr/local/bin/"
in_root useradd --system --uid 10001 --home-dir /var/lib/graft --shell /usr/sbin/nologin graft
mkdir -p "$ROOT/var/lib/graft/zoo" "$ROOT/srv/images"
cp "$SHARED/weights/imagenet_classes.txt" "$SHARED/weights/squeezenet1_1-imagenet.safetensors" "$ROOT/var/lib/graft/zoo/"
cp "$SHARED/images/dog.jpg" "$ROOT/srv/images/"
in_root chown -R graft:graft /var/lib/graft
port=$((20000 + RANDOM % 20000))
chroot --userspec=10001:10001 "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/var/lib/graft \
  GRAFT_DATA_DIR=/var/lib/graft graftd --port="$port" --metrics_port=-1 --http_port=-1 > "$ROOT/tmp/graftd.log" 2>&1 &
pids+=($!)
as_graft() { chroot --userspec=10001:10001 "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/var/lib/graft \
  graft --server "127.0.0.1:$port" --token_file /var/lib/graft/admin.token "$@"; }
ok=0
for _ in $(seq 1 120); do
  if [ -f "$ROOT/var/lib/graft/admin.token" ] && as_graft health >/dev/null 2>&1; then ok=1; break; fi
  sleep 1
done
if [ "$ok" != 1 ]; then
  echo "check-runtime: FAIL: graftd did not become healthy; its log:" >&2
  cat "$ROOT/tmp/graftd.log" >&2
  exit 1
fi
as_graft backbones > "$ROOT/tmp/backbones.txt"
as_graft predict --backbone squeezenet1_1 -k 1 /srv/images/dog.jpg > "$ROOT/tmp/predict.txt"
owner="$(stat -c %u "$ROOT/var/lib/graft/admin.token")"
echo "check-runtime: graftd healthy as uid $owner; $(grep -c . "$ROOT/tmp/backbones.txt") lines from 'graft backbones'"
echo "check-runtime: predict dog.jpg: $(tr '\n' ' ' < "$ROOT/tmp/predict.txt")"
if [ "$owner" != 10001 ]; then echo "check-runtime: FAIL: data written as uid $owner" >&2; exit 1; fi
if ! grep -qiE 'retriever|terrier|spaniel|hound|shepherd|collie|dog|poodle|setter|pointer|husky|corgi|pug|beagle|labrador' "$ROOT/tmp/predict.txt"; then
  echo "check-runtime: FAIL: squeezenet1_1 did not name a dog breed for dog.jpg" >&2; exit 1
fi
echo "check-runtime: Debian $DIST minbase $((base_kb / 1024)) MiB; with the runtime packages and graft $((runtime_kb / 1024)) MiB; the full build-and-test list would add ${full_add:-?}"
echo "check-runtime: OK"
