"""Fixtures for the KDS and KVS wire-compatibility suites: real framelog server processes plus clients,
and the KVS test media (generated with gst-launch-1.0 into media-tests/fixtures-cache/, reused when present).

The server binary comes from the FRAMELOG_BIN environment variable (`make test` sets it). Servers are
started as `FRAMELOG_BIN serve --listen 127.0.0.1:<port> --data-dir <dir>`; without the binary the
suite fails, it never skips.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import pytest

from cluster_helpers import FramelogCluster, cluster_mode
from consumer_helpers import WebhookReceiver, api_ok, consumer_api, key
from hls_helpers import VOD_UPLOADS, VodUpload, vod_upload
from kds_helpers import AwsCli, FramelogServer, framelog_bin, new_stream_name as _new_stream_name
from media_fixtures import FIXTURE_CLUSTER_TIMECODES, cluster_timecodes, ensure_media


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> FramelogServer:
    """The server shared by the whole session; it must exit 0 on SIGTERM at the end. With
    FRAMELOG_CLUSTER=1 it is a three-node cluster behind HAProxy (cluster_helpers.py)."""
    base = tmp_path_factory.mktemp("framelog-shared")
    if cluster_mode():
        srv = FramelogCluster(base).start()
    else:
        srv = FramelogServer(framelog_bin(), base / "data", base).start()
    yield srv
    srv.stop_and_check_clean_exit()


@pytest.fixture
def private_server(tmp_path) -> FramelogServer:
    """A server of the test's own on its own data dir: the test may SIGTERM, kill -9 and restart it
    (`stop()`, `kill()`, `start()`, `restart()`; make a new `client()` after each start)."""
    srv = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path).start()
    yield srv
    srv.stop_and_check_clean_exit()


@pytest.fixture(scope="session")
def endpoint(server) -> str:
    return server.endpoint


@pytest.fixture(scope="session")
def kinesis(server):
    """boto3 Kinesis client for the shared server (dummy credentials, us-east-1, no retries)."""
    return server.client()


@pytest.fixture(scope="session")
def kinesisvideo(server):
    """boto3 Kinesis Video Streams control-plane client (`kinesisvideo`) for the shared server
    (dummy credentials, us-east-1, endpoint_url = the server's base URL, no retries)."""
    return server.kinesisvideo_client()


@pytest.fixture
def new_stream_name():
    """Generator of unique stream names: new_stream_name() or new_stream_name('prefix')."""
    return _new_stream_name


@pytest.fixture
def make_stream(kinesis):
    """Creates a PROVISIONED stream with the given shard count on the shared server; returns its name."""

    def create(shard_count: int = 1, name: str | None = None) -> str:
        name = name or _new_stream_name()
        kinesis.create_stream(StreamName=name, ShardCount=shard_count)
        return name

    return create


@pytest.fixture(scope="session")
def aws_cli(server, tmp_path_factory) -> AwsCli:
    """AWS CLI v1 from the venv, pointed at the shared server with dummy credentials."""
    return AwsCli(server.endpoint, tmp_path_factory.mktemp("aws-home"))


# ------------------------------------------------------------------------------------------------
# KVS media (test_kvs_media.py)
# ------------------------------------------------------------------------------------------------


def _media_fixture(name: str) -> Path:
    """Generates (or reuses from media-tests/fixtures-cache/) a test file and checks its shape: one
    Segment whose clusters start every 2 s (timecodes 0, 2000, ..., 18000)."""
    path = ensure_media(name)
    timecodes = cluster_timecodes(path.read_bytes())
    if timecodes != FIXTURE_CLUSTER_TIMECODES:
        pytest.fail(
            f"{path} has cluster timecodes {timecodes}, expected {FIXTURE_CLUSTER_TIMECODES}; "
            f"delete the file to regenerate it",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def h264_mkv() -> Path:
    """20 s H.264 640x360@30, key frame every 2 s: 10 clusters, 600 frames (media_fixtures.MEDIA_RECIPES)."""
    return _media_fixture("h264.mkv")


@pytest.fixture(scope="session")
def h264_aac_mkv() -> Path:
    """h264.mkv's video plus 20 s of AAC audio in the same Matroska segment."""
    return _media_fixture("h264_aac.mkv")


@pytest.fixture(scope="session")
def h265_mkv() -> Path:
    """20 s H.265 640x360@30, key frame every 2 s: 10 clusters, 600 frames."""
    return _media_fixture("h265.mkv")


@pytest.fixture(scope="session")
def h264_aac_mp4() -> Path:
    """20 s of H.264 + AAC as fragmented MP4, one moof+mdat per 2 s GOP."""
    return ensure_media("h264_aac.mp4")


@pytest.fixture(scope="session")
def h264_bframes_aac_mp4() -> Path:
    """h264_aac.mp4 encoded with two B-frames between references: one moof+mdat per track per 2 s,
    composition offsets on the video samples."""
    return ensure_media("h264_bframes_aac.mp4")


@pytest.fixture(scope="session")
def h264_420_aac_mkv() -> Path:
    """h264_aac.mkv as browsers decode it: 8-bit 4:2:0 H.264 High (yuv420p, avc1.64001e) 640x360@30 with a
    scrolling test pattern, key frame every 2 s, plus AAC LC audio (browser playback tests)."""
    return _media_fixture("h264_420_aac.mkv")


# ------------------------------------------------------------------------------------------------
# Shared by several suites: HLS/DASH/clip uploads (hls_helpers.py), consumers (consumer_helpers.py)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vod(request, kinesisvideo, tmp_path_factory):
    """vod(fixture name) -> the fixture uploaded (RELATIVE, PRODUCER_START_MS) to a new stream, its ON_DEMAND master
    playlist and every track downloaded through its media playlist. Made on first use, then shared by the module
    (each module that uses it gets its own uploads)."""
    uploads: dict[str, VodUpload] = {}

    def get(name: str) -> VodUpload:
        if name not in uploads:
            source = request.getfixturevalue(name)
            uploads[name] = vod_upload(kinesisvideo, source, VOD_UPLOADS[name], tmp_path_factory.mktemp(name))
        return uploads[name]

    return get


@pytest.fixture
def hooks():
    """Factory of webhook receivers (consumer_helpers.WebhookReceiver), all closed at teardown."""
    made: list[WebhookReceiver] = []

    def make(**kwargs) -> WebhookReceiver:
        receiver = WebhookReceiver(**kwargs)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def consumers(hooks):
    """Creates video consumers and deletes them at teardown (before the receivers close), so no consumer of a
    finished test keeps calling a dead webhook on the shared server."""
    created: list[tuple[Callable[[], str], str, str]] = []

    def create(endpoint: str | Callable[[], str], request: dict) -> dict:
        get_endpoint = endpoint if callable(endpoint) else (lambda: endpoint)
        body = api_ok(get_endpoint(), "createConsumer", request)
        created.append((get_endpoint, request["StreamName"], request["ConsumerName"]))
        return body

    yield create
    for get_endpoint, stream, name in created:
        try:
            consumer_api(get_endpoint(), "deleteConsumer", {"StreamName": stream, "ConsumerName": name})
        except Exception:  # noqa: BLE001 - the server may be gone (private server tests)
            pass


@pytest.fixture
def record_consumers(hooks):
    """Creates record consumers (`DataStreamName`); deletes them at teardown, before the webhooks close."""
    created = []

    def create(endpoint, request: dict) -> dict:
        get_endpoint = endpoint if callable(endpoint) else (lambda: endpoint)
        body = api_ok(get_endpoint(), "createConsumer", request)
        created.append((get_endpoint, key(request["DataStreamName"], request["ConsumerName"])))
        return body

    yield create
    for get_endpoint, consumer_key in created:
        with contextlib.suppress(Exception):  # the server may be gone (private server tests)
            consumer_api(get_endpoint(), "deleteConsumer", consumer_key)
