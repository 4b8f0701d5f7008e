# Sourced by deploy/build.sh, deploy/fuzz.sh, deploy/sanitize.sh and
# deploy/test-debian13.sh: every build of graft compiles through ccache
# (CMakeLists.txt sets it as the compiler launcher when it is installed), and
# all of them share one cache that survives the clone. CCACHE_BASEDIR makes
# the paths in compile commands relative to the clone, so a clean clone in
# another folder (CI's) hits what an earlier build here left; CCACHE_NOHASHDIR
# does the same for builds with debug line tables (the fuzz build). The
# sloppiness settings are what ccache needs to cache precompiled headers.
# Callers set REPO to the clone's root first.
if [ -z "${CCACHE_DIR:-}" ]; then
  if mkdir -p /var/cache/graft/ccache 2>/dev/null && [ -w /var/cache/graft/ccache ]; then
    CCACHE_DIR=/var/cache/graft/ccache
  else
    CCACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/graft-ccache"
  fi
fi
export CCACHE_DIR
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$REPO}"
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-25G}"
# ccache hashes the locale variables (they change the compiler's messages):
# one fixed locale for every build, whatever the caller's environment.
export LANG=C.UTF-8 LC_ALL=C.UTF-8
unset LC_CTYPE LC_MESSAGES
