"""The example consumer of docs/consumers.md (docs/examples/opencv_consumer.py) against a real server.

The example runs as its own process, as a user would start it, and answers the webhook with OpenCV's detections.
The test video is made here: 6 s of H.264 (three 2 s fragments) whose middle fragment shows a QR code made with
cv2.QRCodeEncoder, the rest a plain moving pattern. So which fragment must carry the `qr` label, and with which
text, comes from the video's making, not from the server or the example: the labels must come back on exactly
that fragment through ListFragments' MetadataFilter and GetMedia's tags, and on no other.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from consumer_helpers import api_ok, consumer_api, consumer_request, describe
from kds_helpers import REPO_ROOT
from kvs_helpers import (
    archive,
    assert_full_ack_sequence,
    create_stream,
    get_media_chunks,
    list_all_fragments,
    server_range,
    upload,
)
from media_fixtures import parse_mkv_chunks, tool

EXAMPLE = REPO_ROOT / "docs" / "examples" / "opencv_consumer.py"
QR_TEXT = "framelog-visitor"
WIDTH, HEIGHT, FPS = 640, 360, 30
GOP_FRAMES = 2 * FPS
FRAGMENTS = 3
QR_FRAGMENT = 1  # 0-based: only the middle fragment shows the code
QR_SIDE_PIXELS = 220
TIMECODES = [2000 * i for i in range(FRAGMENTS)]
DELIVERY_TIMEOUT_S = 30.0
AWS_TAG_PREFIX = "AWS_KINESISVIDEO_"


# ------------------------------------------------------------------------------------------------
# Test media
# ------------------------------------------------------------------------------------------------


def shows_qr(index: int) -> bool:
    return index // GOP_FRAMES == QR_FRAGMENT


def pattern_frame(index: int, with_qr: bool) -> np.ndarray:
    """A BGR frame: a colour gradient with a dark bar moving 4 px a frame (so frames differ and the encoder
    has real work), and, when asked, a QR code of QR_TEXT in the middle."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    image[..., 0] = x * 255 // WIDTH
    image[..., 1] = y * 255 // HEIGHT
    image[..., 2] = 96
    bar = (index * 4) % WIDTH
    image[:, bar : bar + 16] = 40
    if with_qr:
        # QRCodeEncoder draws one pixel per module (with its quiet zone): scaled up without smoothing, the
        # modules stay sharp through H.264 and JPEG.
        code = cv2.QRCodeEncoder.create().encode(QR_TEXT)
        code = cv2.resize(code, (QR_SIDE_PIXELS, QR_SIDE_PIXELS), interpolation=cv2.INTER_NEAREST)
        top, left = (HEIGHT - QR_SIDE_PIXELS) // 2, (WIDTH - QR_SIDE_PIXELS) // 2
        image[top : top + QR_SIDE_PIXELS, left : left + QR_SIDE_PIXELS] = cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)
    return image


@pytest.fixture(scope="session")
def qr_mkv(tmp_path_factory) -> Path:
    """6 s H.264 640x360@30 yuv420p Matroska, key frame every 2 s (three clusters = three fragments); the QR code
    is on screen in the frames of the middle GOP only."""
    path = tmp_path_factory.mktemp("qr-media") / "qr.mkv"
    cmd = [
        tool("ffmpeg"), "-v", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-",
        "-c:v", "libx264", "-preset", "veryfast", "-g", str(GOP_FRAMES), "-keyint_min", str(GOP_FRAMES),
        "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p", "-f", "matroska", str(path),
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for index in range(FRAGMENTS * GOP_FRAMES):
            proc.stdin.write(pattern_frame(index, shows_qr(index)).tobytes())
        proc.stdin.close()
        stderr = proc.stderr.read().decode(errors="replace")
        assert proc.wait(timeout=60) == 0, f"{' '.join(cmd)}\n{stderr}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # ffmpeg's Matroska muxer starts a Cluster at a key frame once the cluster holds a few KB, not at every key
    # frame by rule: check the file has the one-GOP-per-cluster shape the test depends on.
    clusters = [c for chunk in parse_mkv_chunks(path.read_bytes()) for c in chunk.clusters]
    assert [(c.timecode, c.blocks) for c in clusters] == [(t, GOP_FRAMES) for t in TIMECODES], clusters
    return path


# ------------------------------------------------------------------------------------------------
# The example, as a module and as a process
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("opencv_consumer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ExampleProcess:
    """`opencv_consumer.py --listen 127.0.0.1:0` in a process of its own; its output lines are collected."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, name="opencv-consumer-output", daemon=True).start()
        first = self.wait_for_lines(1, timeout=30)[0]
        assert first.startswith("listening on http://127.0.0.1:"), self.lines
        self.url = first.removeprefix("listening on ")

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_for_lines(self, count: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.lines) < count:
                left = deadline - time.monotonic()
                assert left > 0 and self.proc.poll() is None, f"exit {self.proc.poll()}; output: {self.lines}"
                self.cond.wait(min(left, 0.2))
            return list(self.lines)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def example_process():
    process = ExampleProcess()
    try:
        yield process
    finally:
        process.stop()


# ------------------------------------------------------------------------------------------------
# ListFragments' MetadataFilter (docs/consumers.md) through boto3
# ------------------------------------------------------------------------------------------------


def with_metadata_filter(client):
    """Lets `client.list_fragments(..., MetadataFilter={...})` send our extension: botocore refuses (and would not
    serialize) a member its model lacks, so the filter is taken out before validation and put into the JSON body
    before the request is signed."""
    events = client.meta.events

    def take_out(params, context, **_):
        if "MetadataFilter" in params:
            context["metadata_filter"] = params.pop("MetadataFilter")

    def put_in(params, **_):
        wanted = params["context"].get("metadata_filter")
        if wanted is not None:
            body = json.loads(params["body"] or b"{}")
            body["MetadataFilter"] = wanted
            params["body"] = json.dumps(body).encode()

    events.register("before-parameter-build.kinesis-video-archived-media.ListFragments", take_out)
    events.register("before-call.kinesis-video-archived-media.ListFragments", put_in)
    return client


def fragments_tagged(client, stream: str, *, max_results: int = 100, **metadata_filter) -> list[str]:
    """Fragment numbers ListFragments returns with MetadataFilter (sent again with every NextToken, as documented)."""
    request = {"StreamName": stream, "FragmentSelector": server_range(0, int(time.time() * 1000) + 86_400_000)}
    numbers: list[str] = []
    for _ in range(100):
        response = client.list_fragments(**request, MaxResults=max_results, MetadataFilter=metadata_filter)
        numbers.extend(f["FragmentNumber"] for f in response["Fragments"])
        if not response.get("NextToken"):
            return sorted(numbers, key=int)
        request = {"StreamName": stream, "NextToken": response["NextToken"]}
    raise AssertionError("ListFragments kept returning NextToken")


def fragment_tags(kinesisvideo, stream: str) -> dict[str, dict[str, str]]:
    """Each fragment's own tags as GetMedia (EARLIEST) returns them, without GetMedia's AWS_KINESISVIDEO_* tags."""
    chunks, _ = get_media_chunks(kinesisvideo, stream, {"StartSelectorType": "EARLIEST"}, count=FRAGMENTS)
    assert len(chunks) == FRAGMENTS, [c.fragment_number for c in chunks]
    return {
        c.fragment_number: {k: v for k, v in c.all_tags.items() if not k.startswith(AWS_TAG_PREFIX)} for c in chunks
    }


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


def test_detect_reads_the_qr_code_and_finds_nothing_without_one(example):
    assert example.detect(pattern_frame(GOP_FRAMES, with_qr=True)) == {"qr": QR_TEXT}
    assert example.detect(pattern_frame(GOP_FRAMES, with_qr=False)) == {}
    assert example.detect(np.zeros((HEIGHT, WIDTH, 3), np.uint8)) == {}
    assert example.detect(np.full((HEIGHT, WIDTH, 3), 255, np.uint8)) == {}


def test_batch_labels_decode_the_delivered_pictures(example):
    def delivered(image: np.ndarray, fmt: str) -> dict:
        ok, blob = cv2.imencode({"JPEG": ".jpg", "PNG": ".png"}[fmt], image)
        assert ok
        return {"Format": fmt, "Data": base64.b64encode(blob.tobytes()).decode()}

    plain = delivered(pattern_frame(0, with_qr=False), "JPEG")
    coded = delivered(pattern_frame(GOP_FRAMES, with_qr=True), "PNG")
    undecodable = {"Error": "MEDIA_ERROR"}
    assert example.batch_labels([plain]) == {}
    assert example.batch_labels([plain, undecodable, coded]) == {"qr": QR_TEXT}
    assert example.batch_labels([undecodable]) == {}


def test_labels_of_the_example_consumer_come_back_in_list_fragments_and_get_media(
    server, kinesisvideo, qr_mkv, example_process
):
    stream = create_stream(kinesisvideo, prefix="opencv-example")
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, qr_mkv), timecodes=TIMECODES)
    assert len(numbers) == FRAGMENTS
    before = fragment_tags(kinesisvideo, stream)
    client = with_metadata_filter(archive(kinesisvideo, stream))
    assert fragments_tagged(client, stream, TagName="qr") == []

    # The request docs/consumers.md shows for the example.
    request = consumer_request(stream, "opencv", example_process.url)
    api_ok(server.endpoint, "createConsumer", request)
    try:
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while True:
            consumer = describe(server.endpoint, stream, "opencv")
            tagged = fragments_tagged(client, stream, TagName="qr")
            if consumer["Metrics"]["DeliveredBatches"] >= FRAGMENTS and tagged:
                break
            assert time.monotonic() < deadline, (
                f"no labels after {DELIVERY_TIMEOUT_S:.0f} s: qr-tagged {tagged}; metrics {consumer['Metrics']}; "
                f"example output {example_process.lines}"
            )
            time.sleep(0.2)
        time.sleep(0.5)  # nothing more may come: three fragments, one key frame each
        consumer = describe(server.endpoint, stream, "opencv")
    finally:
        consumer_api(server.endpoint, "deleteConsumer", {"StreamName": stream, "ConsumerName": "opencv"})

    metrics = consumer["Metrics"]
    delivered = (metrics["DeliveredBatches"], metrics["DeliveredFrames"], metrics["DeadLetteredBatches"])
    assert delivered == (FRAGMENTS, FRAGMENTS, 0), metrics
    # One log line per batch, one batch per fragment (KEY_FRAMES, MaxFrames 1): the QR only in the middle one.
    logged = example_process.wait_for_lines(1 + FRAGMENTS, timeout=5)[1:]
    assert len(logged) == FRAGMENTS, logged
    for index, (number, line) in enumerate(zip(numbers, logged)):
        assert number in line, logged
        assert (QR_TEXT in line) is (index == QR_FRAGMENT), logged

    # ListFragments: exactly the QR fragment carries `qr`, with the decoded text; the filter really filters.
    qr_number = numbers[QR_FRAGMENT]
    assert fragments_tagged(client, stream, TagName="qr") == [qr_number]
    assert fragments_tagged(client, stream, TagName="qr", TagValue=QR_TEXT) == [qr_number]
    assert fragments_tagged(client, stream, max_results=1, TagName="qr") == [qr_number]  # paged one by one
    assert fragments_tagged(client, stream, TagName="qr", TagValue="someone-else") == []
    assert fragments_tagged(client, stream, TagName="faces") == []
    assert [f["FragmentNumber"] for f in list_all_fragments(kinesisvideo, stream)] == numbers

    # GetMedia: the label was added to the QR fragment's tags and nothing was added to the others.
    after = fragment_tags(kinesisvideo, stream)
    assert list(after) == numbers
    for index, number in enumerate(numbers):
        added = {k: v for k, v in after[number].items() if before[number].get(k) != v}
        expected = {"qr": QR_TEXT} if index == QR_FRAGMENT else {}
        assert added == expected, (index, before[number], after[number])
        assert set(before[number]) <= set(after[number]), (index, before[number], after[number])
