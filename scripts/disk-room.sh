#!/usr/bin/env bash
# Makes room for the release build before `make test`. Each test binary links to about 1 GB, and a
# disk that fills at link time fails with a linker bus error that names no cause. Below
# FRAMELOG_BUILD_ROOM_GB free (default 15), the build cache's incremental data goes first (it only
# speeds up rebuilds of our own crates); if that is not enough, say so plainly before building.
set -euo pipefail
target="${CARGO_TARGET_DIR:?CARGO_TARGET_DIR names the build cache}"
need_gb="${FRAMELOG_BUILD_ROOM_GB:-15}"
mkdir -p "$target"
free_gb() { df -P -BG "$target" | awk 'NR == 2 { sub("G", "", $4); print $4 }'; }
if (( $(free_gb) < need_gb )); then
  echo "disk-room: $(free_gb) GB free, under ${need_gb}: removing $target/release/incremental" >&2
  rm -rf "$target/release/incremental"
fi
if (( $(free_gb) < need_gb )); then
  echo "disk-room: still only $(free_gb) GB free for the build; a link may fail for want of disk" >&2
  echo "disk-room: stale builds in $target are the usual cause (cargo clean removes them)" >&2
fi
