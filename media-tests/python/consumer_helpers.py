"""Shared helpers of the consumer suites (test_consumers.py, test_kds_consumers.py, test_kvs_notifications.py,
test_consumer_metrics.py, test_example_consumer.py): a webhook receiver run by the test, the consumer API of
docs/consumers.md, the source media's frames as ffprobe / ffmpeg read them and the comparison of delivered
pictures with them, record-consumer events, and the KVS notification / image-generation configurations.

The `hooks`, `consumers` and `record_consumers` fixtures built on these are in conftest.py.
"""

from __future__ import annotations

import base64
import functools
import json
import operator
import random
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import kds_helpers
from kds_helpers import REGION, put_records_in_batches
from kvs_helpers import PRODUCER_START_MS, assert_full_ack_sequence, upload
from media_fixtures import tool

THUMB_W, THUMB_H = 160, 90
THUMB_BYTES = THUMB_W * THUMB_H
# A delivered picture must be closer to its own source frame than to any neighbour within this many frames.
NEIGHBOURS = 3
# Mean absolute difference (0-255 gray, 160x90) allowed between a delivered picture and its source frame.
MAX_PICTURE_DIFF = {"JPEG": 3.0, "PNG": 2.5}
SECOND_UPLOAD_START_MS = PRODUCER_START_MS + 20_000


# ------------------------------------------------------------------------------------------------
# Webhook receiver
# ------------------------------------------------------------------------------------------------


@dataclass
class Call:
    at: float  # time.monotonic() when the request had been read
    path: str
    headers: dict[str, str]  # lower-cased names
    raw: bytes
    status: int  # what the receiver answered (or meant to: the caller may be gone)
    body: dict | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def frames(self) -> list[dict]:
        return list((self.body or {}).get("Frames") or [])


class _Handler(BaseHTTPRequestHandler):
    server_version = "test-webhook"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        receiver: WebhookReceiver = self.server.receiver  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, delay = receiver._record(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
        except OSError:
            pass  # the server gave up on the call (or was killed)

    def log_message(self, format, *args) -> None:  # noqa: A002 - silence the per-request log
        pass


class WebhookReceiver:
    """A webhook on 127.0.0.1:<free port>/frames that records every call (see Call).

    Behaviour: answers 200 unless `fail_next(n)` (the next n calls get `status`) or `fail_always()`
    (until `succeed()`); `delay_s` holds every answer that long; `down()` closes the listening socket
    (connections are refused) and `up()` listens on the same port again."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.calls: list[Call] = []
        self.cond = threading.Condition()
        self.on_call: Callable[[Call], None] | None = None
        self._fail_next = 0
        self._fail_status = 500
        self._fail_always: int | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/frames"

    def up(self) -> None:
        assert self._httpd is None, "already up"
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        httpd.daemon_threads = True
        httpd.receiver = self  # type: ignore[attr-defined]
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"webhook-{self.port}", daemon=True
        )
        self._thread.start()

    def down(self) -> None:
        """Stops listening: new connections are refused until up()."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = None

    def close(self) -> None:
        self.down()

    def fail_next(self, count: int, status: int = 500) -> None:
        with self.cond:
            self._fail_next, self._fail_status = count, status

    def fail_always(self, status: int = 500) -> None:
        with self.cond:
            self._fail_always = status

    def succeed(self) -> None:
        with self.cond:
            self._fail_always = None
            self._fail_next = 0

    def _record(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, float]:
        with self.cond:
            if self._fail_always is not None:
                status = self._fail_always
            elif self._fail_next > 0:
                self._fail_next -= 1
                status = self._fail_status
            else:
                status = 200
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            call = Call(time.monotonic(), path, headers, raw, status, body)
            self.calls.append(call)
            self.cond.notify_all()
            delay = self.delay_s
        if self.on_call is not None:
            self.on_call(call)
        return status, delay

    # What arrived -------------------------------------------------------------------------------

    def snapshot(self) -> list[Call]:
        with self.cond:
            return list(self.calls)

    def delivered_calls(self) -> list[Call]:
        return [c for c in self.snapshot() if c.ok]

    def delivered_frames(self) -> list[dict]:
        return [f for c in self.delivered_calls() for f in c.frames]

    def wait_for(self, condition: Callable[[list[Call]], bool], timeout: float, what: str) -> list[Call]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not condition(list(self.calls)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.0f} s waiting for {what}; {len(self.calls)} calls: "
                        f"{summarize_calls(self.calls)}"
                    )
                self.cond.wait(min(left, 0.2))
            return list(self.calls)

    def wait_for_frames(self, count: int, timeout: float) -> list[dict]:
        self.wait_for(
            lambda calls: sum(len(c.frames) for c in calls if c.ok) >= count, timeout, f"{count} delivered frames"
        )
        return self.delivered_frames()


class EndlessAnswer:
    """A webhook on 127.0.0.1:<free port>/frames that answers every call 200 with a body that never ends (a
    Content-Length of a terabyte, then 64 KiB blocks until the caller hangs up). `sent` holds, per call, the body
    bytes it managed to send before the caller went away."""

    HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n"

    def __init__(self):
        self.sent: list[int] = []
        self.lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name=f"endless-{self.port}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/frames"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                request += chunk
            head, body = request.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            while len(body) < length:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                body += chunk
            sent, block = 0, b'{"labels": {"endless": "1"}, "pad": "' + b"a" * 65536
            try:
                connection.sendall(self.HEAD)
                while sent < 1 << 40:
                    connection.sendall(block)
                    sent += len(block)
            except OSError:
                pass  # the caller hung up: what it should do after 64 KiB
            with self.lock:
                self.sent.append(sent)

    def close(self) -> None:
        self._listener.close()


def summarize_calls(calls: list[Call], limit: int = 40) -> str:
    rows = [f"{c.status}:{[ms(f['FrameTimestamp']) % 100_000 for f in c.frames]}" for c in calls[-limit:]]
    return ", ".join(rows)


def settle(receiver: WebhookReceiver, quiet_s: float = 0.7) -> None:
    """Waits until no call arrived for quiet_s (anything extra a consumer was going to send has come)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        calls = receiver.snapshot()
        last = calls[-1].at if calls else 0.0
        if time.monotonic() - last >= quiet_s:
            return
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------------
# The consumer API
# ------------------------------------------------------------------------------------------------


@dataclass
class ApiResult:
    status: int
    error_type: str | None
    body: dict


def consumer_api(endpoint: str, operation: str, body: dict) -> ApiResult:
    request = urllib.request.Request(
        f"{endpoint}/{operation}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": kds_helpers.DUMMY_AUTHORIZATION},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        status, headers, raw = err.code, err.headers, err.read()
    error_type = headers.get("x-amzn-ErrorType")
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {"<raw>": raw.decode(errors="replace")}
    return ApiResult(status, error_type.split(":")[0] if error_type else None, parsed)


def api_ok(endpoint: str, operation: str, body: dict) -> dict:
    result = consumer_api(endpoint, operation, body)
    assert result.status == 200, (operation, body, result)
    return result.body


def describe(endpoint: str, stream: str, name: str) -> dict:
    return api_ok(endpoint, "describeConsumer", {"StreamName": stream, "ConsumerName": name})["Consumer"]


def consumer_request(stream: str, name: str, url: str, **fields) -> dict:
    request = {
        "StreamName": stream,
        "ConsumerName": name,
        "StartSelector": {"StartSelectorType": "EARLIEST"},
        "Selection": {"Type": "KEY_FRAMES"},
        "Output": {"Format": "JPEG"},
        "Webhook": {"Url": url},
    }
    request.update(fields)
    return request


# ------------------------------------------------------------------------------------------------
# Source media and delivered pictures
# ------------------------------------------------------------------------------------------------


def ms(seconds: float) -> int:
    return round(seconds * 1000)


@functools.lru_cache(maxsize=None)
def source_video(path: Path) -> tuple[tuple[int, bool], ...]:
    """(presentation time in ms, key frame) of every video packet of the source file, in presentation order."""
    proc = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    packets = json.loads(proc.stdout)["packets"]
    return tuple(sorted((ms(float(p["pts_time"])), p["flags"].startswith("K")) for p in packets))


@functools.lru_cache(maxsize=None)
def source_thumbs(path: Path) -> tuple[bytes, ...]:
    """Every video frame of the source, decoded by ffmpeg to RGB (as a delivered picture is) and scaled to
    160x90 gray, in presentation order."""
    proc = subprocess.run(
        [tool("ffmpeg"), "-v", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
         "-vf", f"format=rgb24,scale={THUMB_W}:{THUMB_H}:flags=area,format=gray", "-f", "rawvideo", "-"],
        capture_output=True, timeout=180, check=True,
    )
    thumbs = tuple(proc.stdout[i : i + THUMB_BYTES] for i in range(0, len(proc.stdout), THUMB_BYTES))
    assert len(thumbs) == len(source_video(path)), (len(thumbs), len(source_video(path)))
    return thumbs


def _image_pipe(blobs: list[bytes], fmt: str, tmp_path: Path) -> Path:
    path = tmp_path / f"delivered-{fmt.lower()}-{time.monotonic_ns()}.bin"
    path.write_bytes(b"".join(blobs))
    return path


def probe_images(blobs: list[bytes], fmt: str, tmp_path: Path) -> list[tuple[int, int]]:
    """(width, height) of each concatenated JPEG/PNG as ffprobe decodes them (one entry per decodable picture)."""
    demuxer = {"JPEG": "jpeg_pipe", "PNG": "png_pipe"}[fmt]
    path = _image_pipe(blobs, fmt, tmp_path)
    proc = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-f", demuxer, "-i", str(path), "-show_frames", "-show_entries",
         "frame=width,height", "-of", "json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [(f["width"], f["height"]) for f in json.loads(proc.stdout).get("frames", [])]


def image_thumbs(blobs: list[bytes], fmt: str, tmp_path: Path) -> list[bytes]:
    demuxer = {"JPEG": "jpeg_pipe", "PNG": "png_pipe"}[fmt]
    path = _image_pipe(blobs, fmt, tmp_path)
    proc = subprocess.run(
        [tool("ffmpeg"), "-v", "error", "-f", demuxer, "-i", str(path), "-fps_mode", "passthrough",
         "-vf", f"format=rgb24,scale={THUMB_W}:{THUMB_H}:flags=area,format=gray", "-f", "rawvideo", "-"],
        capture_output=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [proc.stdout[i : i + THUMB_BYTES] for i in range(0, len(proc.stdout), THUMB_BYTES)]


def mean_abs_diff(a: bytes, b: bytes) -> float:
    return sum(map(abs, map(operator.sub, a, b))) / len(a)


def assert_pictures_are_the_source_frames(
    frames: list[dict], fmt: str, source: Path, tmp_path: Path, start_ms: int = PRODUCER_START_MS
) -> None:
    """Each delivered picture is a real 640x360 image of the source frame at its FrameTimestamp: closer to
    that frame than to any of its neighbours, and close in absolute terms."""
    blobs = [base64.b64decode(f["Data"]) for f in frames]
    magic = {"JPEG": b"\xff\xd8\xff", "PNG": b"\x89PNG\r\n\x1a\n"}[fmt]
    for frame, blob in zip(frames, blobs):
        assert blob.startswith(magic), (frame["FrameTimestamp"], blob[:16])
        assert (frame["WidthPixels"], frame["HeightPixels"]) == (640, 360), {k: frame[k] for k in frame if k != "Data"}
    assert probe_images(blobs, fmt, tmp_path) == [(640, 360)] * len(blobs)
    thumbs = image_thumbs(blobs, fmt, tmp_path)
    assert len(thumbs) == len(blobs)
    source_times = [start_ms + t for t, _ in source_video(source)]
    index_of = {t: i for i, t in enumerate(source_times)}
    reference = source_thumbs(source)
    for frame, thumb in zip(frames, thumbs):
        index = index_of[ms(frame["FrameTimestamp"])]
        candidates = range(max(0, index - NEIGHBOURS), min(len(reference), index + NEIGHBOURS + 1))
        diffs = {i: mean_abs_diff(thumb, reference[i]) for i in candidates}
        best = min(diffs, key=diffs.get)
        assert best == index, (frame["FrameTimestamp"], {i - index: round(d, 2) for i, d in diffs.items()})
        assert diffs[index] <= MAX_PICTURE_DIFF[fmt], (frame["FrameTimestamp"], {i - index: round(d, 2) for i, d in diffs.items()})


def timed_upload(kinesisvideo, stream: str, path: Path, start_ms: int) -> float:
    """Seconds from the start of a paced upload to its last PERSISTED ack (the full ack sequence checked)."""
    started = time.monotonic()
    persisted: list[float] = []
    result = upload(
        kinesisvideo, stream, path, chunk_size=64 * 1024, pace_s=0.01, producer_start=start_ms / 1000,
        on_ack=lambda ack: persisted.append(time.monotonic()) if ack["EventType"] == "PERSISTED" else None,
    )
    assert_full_ack_sequence(result)
    return persisted[-1] - started


# ------------------------------------------------------------------------------------------------
# Record consumers (a data stream's records as Lambda Kinesis events)
# ------------------------------------------------------------------------------------------------


def key(stream: str, name: str) -> dict:
    """What names a record consumer in every API call: its data stream and its name."""
    return {"DataStreamName": stream, "ConsumerName": name}


def kds_request(stream: str, name: str, url: str, **fields) -> dict:
    return {**key(stream, name), "StartSelector": {"StartSelectorType": "TRIM_HORIZON"}, "Webhook": {"Url": url},
            **fields}


def put_mixed(kinesis, stream: str, count: int, prefix: str = "r", keys: int = 16) -> None:
    """PutRecords `count` random binary records over `keys` partition keys `<prefix>-<n>`."""
    rng = random.Random(f"{stream}/{prefix}")
    entries = [{"Data": rng.randbytes(rng.randint(1, 300)), "PartitionKey": f"{prefix}-{i % keys}"}
               for i in range(count)]
    put_records_in_batches(kinesis, stream, entries)


def events(call) -> list[dict]:
    return list((call.body or {}).get("Records") or [])


def wait_for_records(hook: WebhookReceiver, count: int, timeout: float = 30.0) -> None:
    hook.wait_for(lambda calls: sum(len(events(c)) for c in calls if c.ok) >= count, timeout,
                  f"{count} delivered records")
    settle(hook, 1.0)


# ------------------------------------------------------------------------------------------------
# KVS notification and image-generation configurations
# ------------------------------------------------------------------------------------------------

NOTIFY = "AWS_KINESISVIDEO_NOTIFICATION"


def image_config(uri: str, **fields) -> dict:
    config = {"Status": "ENABLED", "ImageSelectorType": "PRODUCER_TIMESTAMP",
              "DestinationConfig": {"Uri": uri, "DestinationRegion": REGION},
              "SamplingInterval": 1000, "Format": "JPEG"}
    config.update(fields)
    return config


def notify_config(uri: str, status: str = "ENABLED") -> dict:
    return {"Status": status, "DestinationConfig": {"Uri": uri}}


def images_dir(server, name: str, create: bool = True) -> Path:
    """A directory of its own under the server's images root (<data dir>/images), the only place a file://
    image destination may name (docs/consumers.md, "Destinations")."""
    path = server.data_dir.resolve() / "images" / f"{name}-{random.randrange(1 << 32):08x}"
    if create:
        path.mkdir(parents=True)
    return path


def consumer_metric(endpoint: str, stream: str, consumer: str, family: str) -> int | None:
    """One sample of GET /metrics (`framelog_consumer_<family>{stream, consumer, kind="video"}`), or None: the
    way to watch the hidden `$notification` / `$image-generation` consumers, which describeConsumer does not
    name."""
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=30) as response:
        text = response.read().decode()
    labels = f'{{stream="{stream}",consumer="{consumer}",kind="video"}}'
    for line in text.splitlines():
        if line.startswith(f"framelog_consumer_{family}{labels} "):
            return int(line.split()[-1])
    return None
