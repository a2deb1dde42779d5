"""The console for people who watch cameras, in headless Chromium (play.mjs console-script mode) against a server of
its own: the live grid plays an H.264 and an H.265 camera at once; a recorded stream's timeline shows key-frame
thumbnails (GetImages) and zooms from the whole look-back to seconds; a metadata search finds the fragment a label
was written on and plays from it. Screenshots of the grid and a thumbnail are checked for content (not blank).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from pathlib import Path

import pytest

from consumer_helpers import api_ok
from hls_helpers import FRAGMENT_TAGS
from kvs_helpers import assert_full_ack_sequence, create_stream, upload
from ll_helpers import paced_camera
from media_fixtures import with_tags
from test_browser_playback import assert_picture, summary
from test_console_signin import run_script

GRID_SECONDS = 3
PLAY_SECONDS = 4
LABEL = dict(FRAGMENT_TAGS[7])  # {"label": "person"}, written before cluster 7


@pytest.fixture
def cameras(private_server, h264_420_aac_mkv, h265_mkv):
    """Two cameras uploading live to the test's own server: H.264 and H.265."""
    kinesisvideo = private_server.kinesisvideo_client()
    with contextlib.ExitStack() as running:
        started = [
            running.enter_context(paced_camera(kinesisvideo, source, prefix, 2))
            for prefix, source in (("cam-a-h264", h264_420_aac_mkv), ("cam-b-h265", h265_mkv))
        ]
        yield [camera.stream for camera in started]


@pytest.fixture
def recorded(private_server, h264_420_aac_mkv) -> str:
    """The H.264 fixture recorded a minute ago, with FRAGMENT_TAGS (a "label: person" on one fragment)."""
    kinesisvideo = private_server.kinesisvideo_client()
    stream = create_stream(kinesisvideo, prefix="rec")
    tagged = with_tags(h264_420_aac_mkv.read_bytes(), FRAGMENT_TAGS)
    assert_full_ack_sequence(upload(kinesisvideo, stream, tagged, producer_start=time.time() - 60))
    return stream


def parse_iso_ms(text: str) -> int:
    """The console's axis labels (ISO 8601, UTC) in epoch ms."""
    return round(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def labelled(endpoint: str, stream: str) -> list[int]:
    """Producer times (ms) of the stream's fragments with the label, as ListFragments' MetadataFilter finds them."""
    selector = {"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": {"StartTimestamp": 0, "EndTimestamp": 4102444800}}
    request = {"StreamName": stream, "FragmentSelector": selector, "MetadataFilter": {"TagName": "label", "TagValue": "person"}}
    return [round(f["ProducerTimestamp"] * 1000) for f in api_ok(endpoint, "listFragments", request)["Fragments"]]


def test_the_console_shows_every_camera_its_thumbnails_and_what_a_search_finds(
    request, tmp_path, private_server, cameras, recorded
):
    steps = [
        {"do": "load"},
        {"do": "grid", "streams": cameras, "seconds": GRID_SECONDS, "shot": True},
        {"do": "open", "stream": recorded},
        {"do": "thumbnails", "count": 4, "shot": True},
        {"do": "zoom", "times": 2},
        {"do": "thumbnails", "count": 1},
        {"do": "zoom", "out": True},
        {"do": "search", "name": "label", "value": "person", "hours": 1},
        {"do": "openResult", "seconds": PLAY_SECONDS},
    ]

    result = run_script(request.node.name, tmp_path, private_server.endpoint, steps)

    load, grid, opened, thumbs, zoomed, zoomed_thumbs, whole, searched, played = result["steps"]
    # The grid: every stream a tile; both cameras playing live over WebRTC (the H.265 one transcoded to H.264).
    assert sorted(grid["view"]["tiles"]) == sorted([*cameras, recorded]), summary(grid)
    live = {t["stream"]: t for t in grid["tiles"] if t["stream"] in cameras}
    for stream, tile in live.items():
        assert tile["played"] >= GRID_SECONDS and tile["width"] > 0, (stream, summary(grid))
        assert tile["transport"] == "webrtc", (stream, summary(grid))
    assert not [e for e in grid["errors"] if e.get("tile") in cameras], summary(grid)
    for stream in cameras:
        assert_picture(Path(grid["tileScreenshots"][stream]))
    # The recorded stream's timeline: key-frame thumbnails of its 2 s fragments, 160 pixels wide.
    assert not opened["view"]["grid"] and opened["view"]["viewer"], summary(opened)
    assert len(thumbs["thumbnails"]) >= 4 and all(t["naturalWidth"] == 160 for t in thumbs["thumbnails"]), summary(thumbs)
    assert_picture(Path(thumbs["thumbnail"]), min_bytes=1_000)
    # Zoomed in twice (x1/16): fewer fragments in view, and thumbnails of those.
    whole_fragments = opened["view"]["fragments"]
    assert zoomed["view"]["fragments"] < whole_fragments, (zoomed["view"], whole_fragments)
    assert zoomed["view"]["zoomLevel"].endswith(" s"), zoomed["view"]
    assert zoomed_thumbs["thumbnails"], summary(zoomed_thumbs)
    view_ms = [parse_iso_ms(text) for text in zoomed_thumbs["view"]["axis"]]
    assert all(view_ms[0] <= t["atMs"] <= view_ms[1] for t in zoomed_thumbs["thumbnails"]), summary(zoomed_thumbs)
    assert whole["view"]["fragments"] == whole_fragments, summary(whole)
    # The search finds exactly the fragment the label was written on, and plays from it.
    expected = labelled(private_server.endpoint, recorded)
    assert len(expected) == 1, expected
    assert searched["view"]["results"] == [{"stream": recorded, "startMs": expected[0]}], summary(searched)
    assert played["clicked"] == {"stream": recorded, "startMs": expected[0]}, summary(played)
    assert played["ok"] and played["played"] >= PLAY_SECONDS and not played["errors"], summary(played)
    # From that fragment: the playhead's producer time is the fragment's start plus what has played.
    behind_ms = played["playingAtMs"] - expected[0]
    assert PLAY_SECONDS * 1000 - 500 <= behind_ms <= (PLAY_SECONDS + 3) * 1000, summary(played)
