"""Helpers for test_kvssink.py: AWS's own KVS producer, the kvssink GStreamer plugin, streaming a test pattern to a
framelog server, and the frames of Matroska (what went in, what came back) for comparing them.

The plugin is built from source by scripts/kvssink.sh (scripts/setup.sh runs it; a built plugin is cached outside
the clone, so calling it again here only prints the directory). Nothing here skips: a plugin that does not build or
load fails the test, because cameras run exactly this plugin.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from kds_helpers import ACCESS_KEY, REGION, REPO_ROOT, SECRET_KEY
from media_fixtures import Block, cluster_blocks, gst_launch_path, parse_mkv_chunks

KVSSINK_SCRIPT = REPO_ROOT / "scripts" / "kvssink.sh"
# A cold build (three C/C++ projects) takes about 45 s on 2 cores; a test run without setup.sh pays it here.
BUILD_TIMEOUT_S = 900


def kvssink_plugin_dir() -> Path:
    """The directory holding libgstkvssink.so, built now if the cache does not have it; fails the test when the
    plugin cannot be built or GStreamer cannot load it."""
    try:
        proc = subprocess.run([str(KVSSINK_SCRIPT)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{KVSSINK_SCRIPT} did not build kvssink within {BUILD_TIMEOUT_S} s", pytrace=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"could not build AWS's kvssink plugin ({KVSSINK_SCRIPT} exited {proc.returncode}); "
            f"scripts/setup.sh installs what the build needs.\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}",
            pytrace=False,
        )
    plugin_dir = Path(lines[-1])
    inspect = shutil.which("gst-inspect-1.0")
    if not inspect:
        pytest.fail("gst-inspect-1.0 not found (install gstreamer1.0-tools; scripts/setup.sh)", pytrace=False)
    # Loading it catches a plugin that built but cannot run here (a missing shared library, an ABI mismatch).
    check = subprocess.run([inspect, "kvssink"], capture_output=True, text=True, timeout=120, env=gst_env(plugin_dir))
    if check.returncode != 0:
        pytest.fail(
            f"GStreamer cannot load kvssink from {plugin_dir} (gst-inspect-1.0 exited {check.returncode}):\n"
            f"{check.stdout[-3000:]}\n{check.stderr[-3000:]}",
            pytrace=False,
        )
    return plugin_dir


def gst_env(plugin_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["GST_PLUGIN_PATH"] = os.pathsep.join(p for p in (str(plugin_dir), env.get("GST_PLUGIN_PATH", "")) if p)
    # The producer SDK would otherwise also pick up credentials and endpoints from the caller's AWS environment.
    for name in [n for n in env if n.startswith("AWS_")]:
        del env[name]
    env.update(extra)
    return env


@dataclass(frozen=True)
class CameraPattern:
    """What the camera sends: `frames` H.264 frames at `fps`, a key frame every `key_int` frames."""

    frames: int
    fps: int
    key_int: int

    @property
    def key_frames(self) -> int:
        return -(-self.frames // self.key_int)


@dataclass
class KvssinkRun:
    returncode: int
    log: str  # gst-launch-1.0's and the producer SDK's output (stdout and stderr together)
    sent: Path  # the encoded frames as they entered kvssink, muxed to Matroska by a tee branch

    def log_tail(self, chars: int = 6000) -> str:
        return self.log[-chars:]


def kvssink_command(
    stream: str, work_dir: Path, pattern: CameraPattern, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY
) -> tuple[list[str], Path, Path]:
    """The gst-launch-1.0 command line of stream_test_pattern, the directory to run it in (created here) and the
    path its tee copy (`sent.mkv`) is written to. For tests that run and stop kvssink themselves."""
    sent = work_dir / "sent.mkv"
    caps = f"video/x-raw,format=I420,width=320,height=240,framerate={pattern.fps}/1"
    pipeline = (
        f"videotestsrc is-live=true num-buffers={pattern.frames} pattern=ball ! {caps} "
        f"! x264enc key-int-max={pattern.key_int} bframes=0 speed-preset=ultrafast tune=zerolatency "
        "option-string=scenecut=0 ! h264parse ! video/x-h264,stream-format=avc,alignment=au ! tee name=t "
        f"t. ! queue ! kvssink stream-name={stream} access-key={shlex.quote(access_key)} "
        f"secret-key={shlex.quote(secret_key)} aws-region={REGION} "
        f"t. ! queue ! matroskamux ! filesink location={shlex.quote(str(sent))}"
    )
    # The producer SDK looks for a log configuration in ../kvs_log_configuration relative to its working
    # directory; a fresh directory keeps its default (everything to stdout), which the failure messages show.
    cwd = work_dir / "kvssink-cwd"
    cwd.mkdir()
    return [gst_launch_path(), "-e", *shlex.split(pipeline)], cwd, sent


def stream_test_pattern(
    endpoint: str,
    stream: str,
    plugin_dir: Path,
    work_dir: Path,
    pattern: CameraPattern,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    env: dict[str, str] | None = None,
) -> KvssinkRun:
    """Runs `videotestsrc ! x264enc ! h264parse ! kvssink` against `endpoint` until the pattern ends, signing
    with `access_key`/`secret_key` (dummy ones by default, which a server without --credentials accepts).
    `env` adds to gst-launch-1.0's environment (e.g. KVSSINK_CA_CERT_PATH for an HTTPS server).

    The source is live, so frames arrive at camera pace and kvssink stamps them with wall-clock time as it does
    for a camera. A tee writes the very buffers kvssink receives to `sent.mkv`, so the test can compare what came
    back frame by frame with what went in. gst-launch-1.0 returns after kvssink's shutdown, which waits until
    the SDK has sent everything and seen its acknowledgements."""
    cmd, cwd, sent = kvssink_command(stream, work_dir, pattern, access_key, secret_key)
    timeout_s = pattern.frames / pattern.fps + 120
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=gst_env(plugin_dir, CONTROL_PLANE_URI=endpoint, **(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as err:
        output = err.output.decode(errors="replace") if isinstance(err.output, bytes) else (err.output or "")
        pytest.fail(
            f"kvssink did not finish {pattern.frames} frames within {timeout_s:.0f} s:\n{' '.join(cmd)}\n"
            f"{output[-6000:]}",
            pytrace=False,
        )
    (work_dir / "kvssink.log").write_text(proc.stdout)
    return KvssinkRun(proc.returncode, proc.stdout, sent)


def mkv_cluster_blocks(data: bytes) -> list[list[Block]]:
    """The blocks of every cluster of a Matroska byte stream (one list per cluster, in order)."""
    return [cluster_blocks(data, cluster) for chunk in parse_mkv_chunks(data) for cluster in chunk.clusters]
