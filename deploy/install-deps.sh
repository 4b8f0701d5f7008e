#!/usr/bin/env bash
# Installs every Debian 12 package graft needs to build, test and run.
# One script for the README, CI (.ci/run) and the Dockerfile. Idempotent.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates ccache
  libtorch-dev libopenblas0-pthread libgloo-dev
  libopencv-dev libjpeg62-turbo-dev
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libsqlite3-dev libpq-dev libarchive-dev libssl-dev zlib1g-dev libboost-dev openssl libcli11-dev nlohmann-json3-dev libcurl4-openssl-dev
  python3 python3-torch python3-torchvision python3-grpcio python3-protobuf python3-numpy python3-pil
  python3-pytest python3-pip python3-setuptools python3-venv
  python3-sklearn python3-yaml chromium prometheus postgresql curl
)

# deploy/fuzz.sh and deploy/sanitize.sh add libFuzzer and the sanitizer
# runtimes (clang 14, Debian 12's).
if [ "${1:-}" = "--fuzz" ]; then
  PACKAGES+=(clang-14 libclang-rt-14-dev)
  shift
fi

if [ "${1:-}" = "--print" ]; then  # the list, for deploy/check-runtime.sh
  printf '%s\n' "${PACKAGES[@]}"
  exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
