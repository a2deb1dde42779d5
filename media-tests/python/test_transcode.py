"""H.265 cameras in Chromium: sessions that ask for H.264 (`"VideoCodec": "H264"`, our extension) get an H.265
stream transcoded, against the real server (whose transcodes run in `framelog transcode-worker` processes).

- ffprobe decodes every frame of an ON_DEMAND HLS session of h265.mkv as H.264, at the source's size, where the same
  session without the member is H.265;
- headless Chromium (which cannot decode H.265 here) plays an H.265 camera live over WHEP and in the console, both
  over WebRTC and over Low-Latency HLS, and a transcode worker process runs while it does.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from consumer_helpers import api_ok
from hls_helpers import UPLOAD_RANGE_MS, counted_streams, ffprobe_json
from kvs_helpers import PRODUCER_START_MS, assert_full_ack_sequence, create_stream, upload
from ll_helpers import paced_camera
from test_browser_playback import SCREENSHOTS, assert_played, run_play, summary

SECONDS = 4.0
PREROLL_FRAGMENTS = 2


def hls_on_demand(endpoint: str, stream: str, **extra) -> str:
    selector = {
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {
            "StartTimestamp": PRODUCER_START_MS / 1000,
            "EndTimestamp": (PRODUCER_START_MS + UPLOAD_RANGE_MS) / 1000,
        },
    }
    request = {"StreamName": stream, "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": selector, **extra}
    return api_ok(endpoint, "getHLSStreamingSessionURL", request)["HLSStreamingSessionURL"]


@pytest.fixture(scope="module")
def h265_source(h265_mkv) -> dict:
    video = next(s for s in counted_streams(h265_mkv) if s["codec_type"] == "video")
    assert video["codec_name"] == "hevc", video
    return video


@pytest.fixture(scope="module")
def h265_vod(kinesisvideo, h265_mkv) -> str:
    stream = create_stream(kinesisvideo, prefix="h265-vod")
    assert_full_ack_sequence(upload(kinesisvideo, stream, h265_mkv))
    return stream


@pytest.fixture
def h265_camera(kinesisvideo, h265_mkv, server):
    with paced_camera(kinesisvideo, h265_mkv, "h265-live", PREROLL_FRAGMENTS) as camera:
        yield camera


def record_latency(name: str, latency: dict) -> None:
    """Adds a glass-to-browser figure to media-tests/browser/screenshots/latency-h265.json (docs/benchmarks.md)."""
    path = SCREENSHOTS / "latency-h265.json"
    figures = json.loads(path.read_text()) if path.is_file() else {}
    figures[name] = latency
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1))
    print(f"glass-to-browser latency, {name} (ms): {latency}")


def transcode_workers() -> list[int]:
    """Pids of the `framelog transcode-worker` processes running now."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"transcode-worker" in argv:
            found.append(int(entry.name))
    return found


def test_ffprobe_decodes_every_frame_of_an_h265_stream_as_h264(server, h265_vod, h265_source):
    as_stored = counted_streams(hls_on_demand(server.endpoint, h265_vod))
    transcoded = counted_streams(hls_on_demand(server.endpoint, h265_vod, VideoCodec="H264"))

    assert [s["codec_name"] for s in as_stored] == ["hevc"], as_stored
    assert len(transcoded) == 1, transcoded
    video = transcoded[0]
    assert video["codec_name"] == "h264", video
    assert (video["width"], video["height"]) == (h265_source["width"], h265_source["height"]), video
    assert video["nb_read_frames"] == h265_source["nb_read_frames"], (video, h265_source)


def test_the_transcoded_playlist_declares_h264(server, h265_vod):
    url = hls_on_demand(server.endpoint, h265_vod, VideoCodec="H264")
    master = ffprobe_json(url, "-show_entries", "stream=codec_name,codec_tag_string")["streams"]

    assert [(s["codec_name"], s["codec_tag_string"]) for s in master] == [("h264", "avc1")], master


def test_chromium_plays_an_h265_camera_over_whep(request, tmp_path, server, h265_camera, h265_source):
    url = api_ok(server.endpoint, "getWHEPSessionURL", {"StreamName": h265_camera.stream, "VideoCodec": "H264"})[
        "WHEPSessionURL"
    ]
    before = set(transcode_workers())
    seen: set[int] = set()
    playing = threading.Event()

    def watch_workers() -> None:
        while not playing.is_set():
            seen.update(set(transcode_workers()) - before)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_workers, daemon=True)
    watcher.start()
    try:
        result = run_play(request.node.name, tmp_path, "whep", url, seconds=SECONDS)
    finally:
        playing.set()
        watcher.join()

    assert_played(result, SECONDS, h265_source["width"], h265_source["height"])
    assert result["whep"]["deleteStatus"] == 200, summary(result)
    # The session's transcode ran in a worker process of its own, which ends with the session.
    assert len(seen) == 1, seen
    record_latency("whep_h265_as_h264", result["latencyMs"])
    deadline = time.monotonic() + 10
    while seen & set(transcode_workers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not seen & set(transcode_workers()), "the transcode worker outlived its WebRTC session"


@pytest.mark.parametrize("which, transport", [("live", "webrtc"), ("live-hls", "ll-hls")])
def test_the_console_plays_an_h265_camera_live(request, tmp_path, server, h265_camera, h265_source, which, transport):
    result = run_play(
        request.node.name, tmp_path, "console", server.endpoint, h265_camera.stream, which, seconds=SECONDS
    )

    assert result["transport"] == transport, summary(result)
    assert_played(result, SECONDS, h265_source["width"], h265_source["height"])


def test_low_latency_hls_of_an_h265_camera_is_seconds_behind_not_ten(request, tmp_path, server, h265_camera):
    """hls.js in LL mode on the transcoded stream: parts come a fragment at a time, so it is further behind than
    LL-HLS of an H.264 camera, but well ahead of plain HLS (docs/benchmarks.md "Glass to browser")."""
    request_body = {"StreamName": h265_camera.stream, "PlaybackMode": "LIVE", "LowLatency": True, "VideoCodec": "H264"}
    url = api_ok(server.endpoint, "getHLSStreamingSessionURL", request_body)["HLSStreamingSessionURL"]
    seconds = 8.0

    result = run_play(request.node.name, tmp_path, "hls-latency", url, seconds=seconds)

    # hls.js sometimes fetches a whole segment whose parts it already has (a fragment's parts all
    # appear at once here) and reports that the append added nothing: bandwidth, not picture. Any
    # other error (a stall, a hole, a fatal one) fails the test (docs/known-gaps.md).
    redundant = [e for e in result["errors"] if e.get("details") == "bufferAppendNoProgress" and not e.get("fatal")]
    result = {**result, "errors": [e for e in result["errors"] if e not in redundant]}
    only_errors = all(re.fullmatch(r"\d+ player error\(s\)( after playback)?", why) for why in result.get("reason", "").split("; "))
    result["ok"] = result["ok"] or (not result["errors"] and only_errors)
    assert_played(result, seconds, result["width"] or 1, result["height"] or 1)
    latency = result["latencyMs"]
    assert latency["count"] > 100 and result["partRequests"] > 0, summary(result)
    # Plain HLS LIVE is about ten seconds behind on this machine (test_ll_hls.py).
    assert latency["p50"] < 6000, summary(result)
    record_latency("ll_hls_h265_as_h264", latency)
