"""Clients that stop reading (docs/security.md "Connections"): GetMedia, HLS segment and GetClip
requests whose client never reads the response. Each holds its connection only until the
stalled-response deadline, after which the server drops it; meanwhile a real client's PutRecords
are answered. (Idle and one-byte-a-second connections: media-tests/tests/e2e/connections.rs.)
"""

from __future__ import annotations

import json
import random
import socket
import statistics
import time
from urllib.parse import urlsplit

import pytest

from hls_helpers import session_url, video_playlist
from kds_helpers import FramelogServer, framelog_bin
from kvs_helpers import PRODUCER_START_MS, VIDEO, list_all_fragments, put_endpoint
from media_fixtures import KVS_MEDIA_AUTHORIZATION, H264_TRACK, HandFrame, mkv_cluster, mkv_header, put_media

STALL_DEADLINE_S = 3
FRAGMENT_BYTES = 8_000_000  # far more than the socket buffers on both ends hold
FRAGMENTS = 3
PER_KIND = 8


def big_fragment(index: int) -> list[HandFrame]:
    rng = random.Random(index)
    key = HandFrame(VIDEO, index * 2_000, rng.randbytes(FRAGMENT_BYTES), keyframe=True)
    return [key] + [HandFrame(VIDEO, index * 2_000 + 100 * i, rng.randbytes(1_000)) for i in range(1, 20)]


@pytest.fixture
def server(tmp_path):
    config = tmp_path / "framelog.toml"
    config.write_text(f"[limits]\nstalled_response_timeout_secs = {STALL_DEADLINE_S}\n")
    srv = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path, extra_args=["--config", str(config)]).start()
    yield srv
    srv.stop_and_check_clean_exit()


def non_reader(url: str, method: str, path_and_query: str, body: bytes = b"") -> socket.socket:
    """Sends one request and never reads: a receive buffer of 4 KiB keeps the window shut."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname, parts.port))
    head = (
        f"{method} {path_and_query} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: {KVS_MEDIA_AUTHORIZATION}\r\n"
        f"X-Amz-Date: 20261125T000000Z\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def drained_to_the_end(sock: socket.socket, limit_s: float) -> tuple[bool, int]:
    """Reads what the server had sent; True when the connection then ends (EOF or reset) within
    `limit_s`, with the number of bytes read."""
    sock.settimeout(limit_s)
    received = 0
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return True, received
            received += len(chunk)
    except ConnectionResetError:
        return True, received
    except socket.timeout:
        return False, received


def test_clients_that_stop_reading_are_dropped_and_real_clients_are_served_meanwhile(server):
    kinesis, kinesisvideo = server.client(), server.kinesisvideo_client()
    kinesisvideo.create_stream(StreamName="wide", DataRetentionInHours=24)
    body = mkv_header([H264_TRACK]) + b"".join(mkv_cluster(i * 2_000, big_fragment(i)) for i in range(FRAGMENTS))
    result = put_media(put_endpoint(kinesisvideo, "wide"), "wide", body, producer_start=PRODUCER_START_MS / 1000)
    assert len(result.events("PERSISTED")) == FRAGMENTS, result.acks
    fragments = list_all_fragments(kinesisvideo, "wide")
    first_ms = min(int(f["ServerTimestamp"].timestamp() * 1000) for f in fragments)
    last_ms = max(int(f["ServerTimestamp"].timestamp() * 1000) for f in fragments)

    get_media = json.dumps({"StreamName": "wide", "StartSelector": {"StartSelectorType": "EARLIEST"}}).encode()
    get_clip = json.dumps(
        {
            "StreamName": "wide",
            "ClipFragmentSelector": {
                "FragmentSelectorType": "SERVER_TIMESTAMP",
                "TimestampRange": {"StartTimestamp": first_ms / 1000 - 1, "EndTimestamp": last_ms / 1000 + 1},
            },
        }
    ).encode()
    segment = urlsplit(video_playlist(session_url(kinesisvideo, "wide", PlaybackMode="LIVE_REPLAY",
        HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP",
                             "TimestampRange": {"StartTimestamp": first_ms / 1000 - 1}})).segments[0].url)
    endpoint = server.endpoint
    stuck = (
        [non_reader(endpoint, "POST", "/getMedia", get_media) for _ in range(PER_KIND)]
        + [non_reader(endpoint, "POST", "/getClip", get_clip) for _ in range(PER_KIND)]
        + [non_reader(endpoint, "GET", f"{segment.path}?{segment.query}") for _ in range(PER_KIND)]
    )
    started = time.monotonic()

    kinesis.create_stream(StreamName="busy", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="busy", WaiterConfig={"Delay": 0.2})
    latencies_ms = []
    while time.monotonic() - started < STALL_DEADLINE_S + 2:
        asked = time.monotonic()
        kinesis.put_record(StreamName="busy", Data=b"still here", PartitionKey="k")
        latencies_ms.append((time.monotonic() - asked) * 1000)
    latencies_ms.sort()
    p99_ms = latencies_ms[int(len(latencies_ms) * 0.99) - 1]
    print(f"{len(latencies_ms)} PutRecords, median {statistics.median(latencies_ms):.1f} ms, p99 {p99_ms:.1f} ms")

    outcomes = [drained_to_the_end(sock, limit_s=10) for sock in stuck]
    for sock in stuck:
        sock.close()
    assert all(ended for ended, _ in outcomes), f"connections still open: {[n for e, n in outcomes if not e]}"
    # Each was cut before its response was whole (a clip or GetMedia holds 24 MB, a segment 8 MB).
    assert all(received < FRAGMENT_BYTES for _, received in outcomes), [r for _, r in outcomes]
    dropped = server.log_path.read_text(errors="replace").count("client stopped reading its response")
    assert dropped == len(stuck), f"{dropped} of {len(stuck)} dropped as stalled"
