#!/usr/bin/env bash
# Builds AWS's KVS producer GStreamer plugin (kvssink) once and prints the directory to put on GST_PLUGIN_PATH.
#
# kvssink is what cameras run to stream to KVS, so the test suite streams through it
# (media-tests/python/test_kvssink.py). It is not packaged in Debian: it is built from pinned source archives by
# the build script of the reference material that CI checks out beside the clone (FRAMELOG_SHARED_DIR, the
# same folder .cargo/config.toml names for cargo). scripts/setup.sh runs this script and so does the test, so both always agree on where the
# plugin is.
#
# A build takes about 45 s of both CI cores, so it lives outside the clone when possible (like cargo's target dir in the
# Makefile): /var/cache/framelog/kvssink when /var/cache is writable, else .kvssink/ in the clone (git-ignored);
# FRAMELOG_KVSSINK_CACHE overrides both. Inside it, each build sits in a directory named after a hash of the build
# script, which pins the source versions: a changed script builds afresh instead of reusing a stale plugin, and
# the superseded build is removed. A warm run only hashes the script and prints the directory.
#
# Usage: scripts/kvssink.sh            build when missing, print the plugin directory
#        scripts/kvssink.sh --check    print the plugin directory if it is built, else exit 1 (no build)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED_DIR="${FRAMELOG_SHARED_DIR:-$ROOT/../shared}"
BUILD_SCRIPT="$SHARED_DIR/tools/build-kvssink.sh"

die() { printf '[kvssink] ERROR: %s\n' "$*" >&2; exit 1; }

if [ -n "${FRAMELOG_KVSSINK_CACHE:-}" ]; then
  CACHE="$FRAMELOG_KVSSINK_CACHE"
elif [ -w /var/cache ]; then
  CACHE=/var/cache/framelog/kvssink
else
  CACHE="$ROOT/.kvssink"
fi

[ -f "$BUILD_SCRIPT" ] \
  || die "kvssink build script not found at $BUILD_SCRIPT (set FRAMELOG_SHARED_DIR to the folder holding tools/)"
key="$(sha256sum "$BUILD_SCRIPT" | cut -c1-16)"
OUT="$CACHE/$key"
# The build script leaves the plugin here; its presence is what makes a build complete.
PLUGIN_DIR="$OUT/sdk-cpp/build"

if [ -f "$PLUGIN_DIR/libgstkvssink.so" ]; then
  echo "$PLUGIN_DIR"
  exit 0
fi
[ "${1:-}" = "--check" ] && exit 1

mkdir -p "$CACHE"
# Two clones set up at once on one machine share the cache: the second waits instead of building over the first.
exec 9>"$CACHE/.lock"
flock 9
if [ ! -f "$PLUGIN_DIR/libgstkvssink.so" ]; then
  printf '[kvssink] building the kvssink plugin into %s (about a minute; logs there)\n' "$OUT" >&2
  built="$("$BUILD_SCRIPT" "$OUT" | tail -n 1)" \
    || die "building kvssink failed (logs: $OUT/configure.log, $OUT/build.log)"
  [ "$built" = "$PLUGIN_DIR" ] && [ -f "$PLUGIN_DIR/libgstkvssink.so" ] \
    || die "the kvssink build reported '$built' but $PLUGIN_DIR/libgstkvssink.so is missing"
  for old in "$CACHE"/*/; do
    [ "${old%/}" = "$OUT" ] || rm -rf "${old%/}"
  done
fi
echo "$PLUGIN_DIR"
