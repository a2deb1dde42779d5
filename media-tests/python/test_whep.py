"""WebRTC egress (WHEP) against a real server: headless Chromium's own WebRTC stack posts an offer to the URL that
getWHEPSessionURL hands out, plays the stream's H.264 from the live edge while a camera uploads frame by frame
(ll_helpers.PacedCamera), and ends the session with DELETE, as a WHEP player does.

Latency is sampled per presented frame from its RTP timestamp, which the server sets to the producer clock (the
camera sets that to the wall clock when it sends the frame); the figures go to
media-tests/browser/screenshots/latency-whep.json and docs/benchmarks.md ("Glass to browser").
"""

from __future__ import annotations

import json

from consumer_helpers import api_ok, consumer_api
from test_browser_playback import SCREENSHOTS, assert_played, run_play, source, summary  # noqa: F401 - fixture
from test_ll_hls import camera  # noqa: F401 - fixture

SECONDS = 6.0
# A WebRTC player shows frames as they arrive; a p50 this far behind would mean it plays a backlog, not the edge.
MAX_P50_MS = 1500


def whep_url(endpoint: str, stream: str) -> str:
    return api_ok(endpoint, "getWHEPSessionURL", {"StreamName": stream})["WHEPSessionURL"]


def test_chromium_plays_the_live_edge_over_whep_and_deletes_the_session(request, server, camera, source, tmp_path):  # noqa: F811
    url = whep_url(server.endpoint, camera.stream)
    assert "/whep/v1/offer?SessionToken=" in url, url

    result = run_play(request.node.name, tmp_path, "whep", url, seconds=SECONDS)

    assert_played(result, SECONDS, source.width, source.height)
    whep = result["whep"]
    assert whep["status"] == 201 and whep["location"].startswith("/whep/v1/"), summary(result)
    assert "connected" in whep["connectionStates"], summary(result)
    latency = result["latencyMs"]
    assert latency["count"] > 60, summary(result)
    assert 0 <= latency["min"] and latency["p50"] < MAX_P50_MS, summary(result)
    assert whep["deleteStatus"] == 200, summary(result)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "latency-whep.json").write_text(json.dumps({"whep": latency}, indent=1))
    print(f"glass-to-browser latency over WHEP (ms): {latency}")


def test_a_whep_session_url_needs_a_stream(server):
    refused = consumer_api(server.endpoint, "getWHEPSessionURL", {"StreamName": "no-such-camera"})
    assert (refused.status, refused.error_type) == (404, "ResourceNotFoundException"), refused
