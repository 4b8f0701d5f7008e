#!/usr/bin/env bash
# Prints the Debian packages that own the shared libraries the given binaries
# load (ldd, then dpkg -S on each library's real path), one per line, sorted.
# The Dockerfile's runtime stage and deploy/check-runtime.sh install exactly
# these, so the runtime carries no compiler, headers, Python or test packages.
#   deploy/runtime-packages.sh build/server/graftd build/client/graft
set -euo pipefail
if [ "$#" -eq 0 ]; then
  echo "usage: $0 BINARY..." >&2
  exit 2
fi
deps="$(ldd "$@")"
if grep -q 'not found' <<<"$deps"; then
  echo "runtime-packages: unresolved libraries:" >&2
  grep 'not found' <<<"$deps" >&2
  exit 1
fi
mapfile -t libs < <(awk '$3 ~ /^\// {print $3}' <<<"$deps" | sort -u | xargs realpath | sort -u)
# With usrmerge a library may be found as /usr/lib/... and owned as /lib/...
# (or the other way round): ask for both spellings.
paths=()
for lib in "${libs[@]}"; do
  case "$lib" in
    /usr/*) paths+=("$lib" "${lib#/usr}") ;;
    *) paths+=("$lib" "/usr$lib") ;;
  esac
done
# dpkg -S also prints "diversion by PKG from/to: PATH" lines (Debian 13's
# t64 transition diverts some libraries); only "PKG[, PKG]: PATH" lines own.
owners="$(dpkg -S "${paths[@]}" 2>/dev/null | grep -v '^diversion by ' || true)"
declare -A owned=()
while IFS= read -r line; do owned["${line##*: }"]=1; done <<<"$owners"
status=0
for lib in "${libs[@]}"; do
  alt="${lib#/usr}"; [ "$alt" = "$lib" ] && alt="/usr$lib"
  if [ -z "${owned[$lib]:-}" ] && [ -z "${owned[$alt]:-}" ]; then
    echo "runtime-packages: no package owns $lib" >&2
    status=1
  fi
done
cut -d: -f1 <<<"$owners" | tr -d ' ' | tr ',' '\n' | sed '/^$/d' | sort -u
exit "$status"
