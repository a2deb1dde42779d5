"""Processes for the edge-agent tests and benchmark: the RTSP test camera (rtsp_camera.py, run with the
system python, which has GStreamer's `gi` bindings) and the `framelog-edge` agent with a TOML config
of its own; plus the frame identity used to compare what the server stored with the source file.

Every process started here has a bounded start-up wait and is stopped (SIGTERM, then SIGKILL) by
its `stop()`/`kill()`; tests call them from fixture teardowns so that nothing outlives a test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CAMERA_SCRIPT = HERE / "rtsp_camera.py"
# The camera needs gi + GstRtspServer (Debian: python3-gi gir1.2-gst-rtsp-server-1.0), which the .venv lacks.
SYSTEM_PYTHON = os.environ.get("RTSP_CAMERA_PYTHON", "/usr/bin/python3")
DEFAULT_EDGE_BIN = "/var/cache/framelog/target/release/framelog-edge"
CAMERA_READY_TIMEOUT_S = 60.0
AGENT_READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def framelog_edge_bin() -> str:
    """FRAMELOG_EDGE_BIN, else `framelog-edge` next to FRAMELOG_BIN, else the shared release build."""
    candidates = []
    if os.environ.get("FRAMELOG_EDGE_BIN"):
        candidates.append(os.environ["FRAMELOG_EDGE_BIN"])
    else:
        if os.environ.get("FRAMELOG_BIN"):
            candidates.append(str(Path(os.environ["FRAMELOG_BIN"]).with_name("framelog-edge")))
        candidates.append(DEFAULT_EDGE_BIN)
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"framelog-edge not found (tried {candidates}); build it or set FRAMELOG_EDGE_BIN", pytrace=False)


def check_system_gi() -> None:
    """Fails (never skips) when the system python cannot run the camera."""
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import Gst, GstRtspServer"
    )
    try:
        proc = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.fail(f"{SYSTEM_PYTHON} cannot run the RTSP camera: {error}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"{SYSTEM_PYTHON} has no GstRtspServer through gi (apt-get install python3-gi "
            f"gir1.2-gst-rtsp-server-1.0; scripts/setup.sh):\n{proc.stderr[-2000:]}",
            pytrace=False,
        )


def _stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """Sends `sig` and waits; SIGKILL if it does not exit in time. Returns the exit code of the
    graceful stop, or None when it had to be killed."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return None


class RtspCamera:
    """rtsp_camera.py serving `clip` at rtsp://127.0.0.1:<port><mount>."""

    def __init__(
        self,
        clip: Path,
        log_dir: Path,
        port: int = 0,
        mount: str = "/cam",
        user: str | None = None,
        password: str | None = None,
        transport: str = "both",
    ):
        self.clip = clip
        self.log_dir = log_dir
        self.port = port
        self.mount = "/" + mount.strip("/")
        self.user = user
        self.password = password
        self.transport = transport
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._lines: list[str] = []

    @property
    def url(self) -> str:
        """The camera's URL without credentials."""
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def url_with(self, user: str, password: str) -> str:
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}{self.mount}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"camera-{self.port or 'any'}-{self.starts}.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "<no log>"

    def start(self) -> "RtspCamera":
        """Starts the camera (on the same port as before, if it ran before) and waits for READY."""
        assert self.proc is None or self.proc.poll() is not None, "camera already running"
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = [
            SYSTEM_PYTHON,
            str(CAMERA_SCRIPT),
            "--port",
            str(self.port),
            "--mount",
            self.mount,
            "--file",
            str(self.clip),
            "--transport",
            self.transport,
        ]
        if self.user is not None:
            command += ["--user", self.user, "--password", self.password or ""]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True
            )
        ready: list[str] = []
        reader = threading.Thread(target=self._read_stdout, args=(self.proc, ready), daemon=True)
        reader.start()
        deadline = time.monotonic() + CAMERA_READY_TIMEOUT_S
        while not ready and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        if not ready:
            code = self.proc.poll()
            self.kill()
            pytest.fail(
                f"the RTSP camera did not print READY within {CAMERA_READY_TIMEOUT_S:.0f} s (exit {code}):\n"
                f"{' '.join(command)}\n{self.log()}",
                pytrace=False,
            )
        url = ready[0].split()[1]
        self.port = int(url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        return self

    @staticmethod
    def _read_stdout(proc: subprocess.Popen, ready: list[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("READY "):
                ready.append(line.strip())

    def kill(self) -> None:
        """SIGKILL: a camera that loses power; its connections are cut by the kernel."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, timeout=10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class EdgeAgent:
    """One `framelog-edge --config <dir>/edge.toml`, its stderr in <dir>/edge.log."""

    def __init__(self, config_text: str, directory: Path, status_listen: str):
        self.directory = directory
        self.config_path = directory / "edge.toml"
        self.log_path = directory / "edge.log"
        self.status_listen = status_listen
        self.binary = framelog_edge_bin()
        self.proc: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(config_text)

    @property
    def status_url(self) -> str:
        return f"http://{self.status_listen}"

    def start(self, env: dict[str, str] | None = None) -> "EdgeAgent":
        environment = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info"), "NO_COLOR": "1"}
        environment.update(env or {})
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=environment,
            )
        deadline = time.monotonic() + AGENT_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"framelog-edge exited at start-up ({self.proc.returncode}):\n{self.log()}", pytrace=False)
            try:
                self.status()
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        pytest.fail(f"framelog-edge did not answer on {self.status_url}:\n{self.log()}", pytrace=False)

    def log(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def full_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.status_url}{path}", timeout=5) as response:
            return response.read().decode("utf-8")

    def status(self) -> list[dict]:
        return json.loads(self._get("/status"))

    def stream_status(self, name: str) -> dict:
        for stream in self.status():
            if stream["name"] == name:
                return stream
        raise AssertionError(f"no stream {name} in /status")

    def metrics(self) -> str:
        return self._get("/metrics")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after STOP_TIMEOUT_S); the exit code, None if it was killed."""
        if self.proc is None:
            return None
        return _stop_process(self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def edge_config(
    server: str,
    buffer_dir: Path,
    status_listen: str,
    streams: list[dict],
    max_backoff_ms: int = 300,
) -> str:
    """A framelog-edge TOML config; each stream is a dict of [[stream]] keys (strings quoted)."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        f"server = {value(server)}",
        f"buffer_dir = {value(str(buffer_dir))}",
        f"status_listen = {value(status_listen)}",
        f"max_backoff_ms = {max_backoff_ms}",
    ]
    for stream in streams:
        lines.append("[[stream]]")
        lines.extend(f"{key} = {value(v)}" for key, v in stream.items())
    return "\n".join(lines) + "\n"


def make_clip(path: Path, pipeline_head: str, timeout: float = 300) -> Path:
    """Runs `gst-launch-1.0 -e <pipeline_head> ! filesink location=<path>` (written to a temporary
    name and renamed); fails the test with GStreamer's output if it does not work."""
    gst = shutil.which("gst-launch-1.0")
    if not gst:
        pytest.fail("gst-launch-1.0 not found (install gstreamer1.0-tools; scripts/setup.sh)", pytrace=False)
    tmp = path.with_name(f".{path.name}.tmp")
    command = f"{gst} -q -e {pipeline_head} ! filesink location={tmp}"
    proc = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
        pytest.fail(f"making {path.name} failed:\n{command}\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------------
# Frame identity
# ------------------------------------------------------------------------------------------------


def picture_nals(access_unit: bytes) -> tuple[bytes, ...]:
    """An AVC (4-byte length-prefixed) access unit without its parameter sets and delimiter (NAL types
    7, 8, 9): what identifies the picture. h264parse on the way may add SPS/PPS/AUD; the picture data
    stays byte for byte the same."""
    nals = []
    at = 0
    while at + 4 <= len(access_unit):
        length = int.from_bytes(access_unit[at : at + 4], "big")
        nal = access_unit[at + 4 : at + 4 + length]
        if len(nal) < length:
            raise ValueError(f"truncated NAL unit at offset {at} of a {len(access_unit)}-byte access unit")
        if nal and (nal[0] & 0x1F) not in (7, 8, 9):
            nals.append(bytes(nal))
        at += 4 + length
    return tuple(nals)
