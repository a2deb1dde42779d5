"""Low-Latency HLS against a real server while a camera uploads frame by frame (ll_helpers.PacedCamera):

- every playlist a player would see follows the LL-HLS rules (ll_helpers.check_ll_media_playlist asserts them from
  the text), lists parts of the fragment still being received, and blocking reloads are answered when the part they
  ask for exists (400 when they ask too far ahead);
- ffprobe decodes parts and segments, and a segment's parts hold its frames;
- hls.js in low-latency mode plays the session in headless Chromium, loading parts, and its glass-to-browser latency
  (display time minus the frame's producer time, which the camera sets to the wall clock when it sends the frame) is
  far below a plain LIVE session's. The figures go to media-tests/browser/screenshots/latency.json and are recorded
  in docs/benchmarks.md ("Glass to browser").
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest

from consumer_helpers import api_ok
from hls_helpers import brief, fetch, get_playlist, get_segment, parse_master
from ll_helpers import check_ll_media_playlist, paced_camera, playlist_url
from media_fixtures import tool
from test_browser_playback import SCREENSHOTS, assert_played, run_play, summary

PREROLL_FRAGMENTS = 2
RELOADS = 12


@pytest.fixture
def camera(kinesisvideo, h264_420_aac_mkv, server):
    with paced_camera(kinesisvideo, h264_420_aac_mkv, "ll-hls", PREROLL_FRAGMENTS) as camera:
        yield camera


def ll_session(endpoint: str, stream: str, **extra) -> str:
    request = {"StreamName": stream, "PlaybackMode": "LIVE", "LowLatency": True, **extra}
    return api_ok(endpoint, "getHLSStreamingSessionURL", request)["HLSStreamingSessionURL"]


def media_urls(master_url: str) -> dict[str, str]:
    """{'video': URL, 'audio': URL} of a master playlist's media playlists."""
    master = parse_master(master_url, get_playlist(master_url))
    urls = {"video": master.variants[0][1]}
    for line in master.text.splitlines():
        if line.startswith("#EXT-X-MEDIA:TYPE=AUDIO"):
            urls["audio"] = urljoin(master_url, line.split('URI="')[1].split('"')[0])
    return urls


def test_blocking_reloads_follow_the_live_edge_part_by_part(server, camera):
    urls = media_urls(ll_session(server.endpoint, camera.stream))
    playlist = check_ll_media_playlist(get_playlist(urls["video"]))
    check_ll_media_playlist(get_playlist(urls["audio"]), video=False)
    waits_s, edge_parts_seen = [], 0
    for _ in range(RELOADS):
        msn, part = playlist.hint
        started = time.monotonic()
        text = get_playlist(playlist_url(urls["video"], msn=msn, part=part))
        waits_s.append(time.monotonic() - started)
        playlist = check_ll_media_playlist(text)
        reached = playlist.last_part()
        assert reached is not None and reached >= (msn, part) or any(s.msn > msn for s in playlist.segments), (
            f"the reload for part {part} of segment {msn} answered without it\n{brief(text)}"
        )
        edge_parts_seen += sum(len(s.parts) for s in playlist.segments if s.duration is None)
    # Parts of the fragment being received were listed before it was stored, and a held reload is answered when the
    # next part closes (about one part target), not at the hold's end (three target durations).
    assert edge_parts_seen > 0
    assert statistics.median(waits_s) < 2 * playlist.part_target_s, waits_s

    too_far = playlist_url(urls["video"], msn=playlist.hint[0] + 5)
    assert fetch(too_far).status == 400


def test_parts_and_segments_decode_and_hold_the_same_frames(server, camera, tmp_path):
    urls = media_urls(ll_session(server.endpoint, camera.stream))
    camera.wait_for_persisted(len(camera.persisted) + 1, timeout=10)
    playlist = check_ll_media_playlist(get_playlist(urls["video"]))
    stored = [s for s in playlist.segments if s.parts and s.duration is not None]
    assert stored, brief(playlist.text)
    segment = stored[-1]
    init_uri = [line for line in playlist.text.splitlines() if line.startswith("#EXT-X-MAP:")][-1].split('URI="')[1][:-1]
    init = get_segment(urljoin(urls["video"], init_uri))
    parts = b"".join(get_segment(urljoin(urls["video"], p.uri)) for p in segment.parts)
    whole = get_segment(urljoin(urls["video"], segment.uri))
    counts = []
    for name, body in (("parts", parts), ("segment", whole)):
        path = tmp_path / f"{name}.mp4"
        path.write_bytes(init + body)
        counts.append(frame_count(path))
    assert counts[0] == counts[1] > 0, counts


def frame_count(path: Path) -> int:
    cmd = [tool("ffprobe"), "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
           "stream=nb_read_frames", "-of", "json", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), f"ffprobe cannot decode {path}: {proc.stderr}"
    return int(json.loads(proc.stdout)["streams"][0]["nb_read_frames"])


def test_hls_js_low_latency_plays_parts_far_closer_to_live_than_plain_hls(request, server, camera, tmp_path):
    ll_url = ll_session(server.endpoint, camera.stream)
    plain_url = api_ok(
        server.endpoint,
        "getHLSStreamingSessionURL",
        {"StreamName": camera.stream, "PlaybackMode": "LIVE", "DisplayFragmentTimestamp": "ALWAYS"},
    )["HLSStreamingSessionURL"]
    seconds = 8.0
    low = run_play(f"{request.node.name}-ll", tmp_path, "hls-latency", ll_url, seconds=seconds)
    plain = run_play(f"{request.node.name}-plain", tmp_path, "hls-latency", plain_url, seconds=seconds)
    for result in (low, plain):
        assert_played(result, seconds, result["width"] or 1, result["height"] or 1)
        assert result["latencyMs"]["count"] > 100, summary(result)
    assert low["partRequests"] > 0 and plain["partRequests"] == 0, (low["partRequests"], plain["partRequests"])
    assert low["latencyMs"]["p50"] < plain["latencyMs"]["p50"], (low["latencyMs"], plain["latencyMs"])
    figures = {"ll_hls": low["latencyMs"], "plain_hls": plain["latencyMs"]}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "latency.json").write_text(json.dumps(figures, indent=1))
    print(f"glass-to-browser latency (ms): {figures}")


def test_a_part_request_for_a_plain_session_is_refused(server, camera):
    plain = api_ok(server.endpoint, "getHLSStreamingSessionURL", {"StreamName": camera.stream, "PlaybackMode": "LIVE"})
    url = plain["HLSStreamingSessionURL"].replace("getHLSMasterPlaylist.m3u8", "getMP4Part.mp4") + "&TrackNumber=1&MSN=0&Part=0"
    assert fetch(url).status == 400
