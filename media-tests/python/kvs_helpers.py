"""Shared helpers of the KVS suites (test_kvs_*.py, test_consumers.py and the suites built on them): streams,
PutMedia uploads and their acks, the archived-media and GetMedia clients, timestamps and fragment selectors,
hand-made frames and control-plane error shapes.

Wire formats follow docs/spec/kvs.md (protocol, PutMedia, GetMedia, ListFragments); the test media and the
PutMedia client are in media_fixtures.py. Fixtures are in conftest.py.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from typing import Iterable

from kds_helpers import ACCOUNT_ID, REGION, new_stream_name
from media_fixtures import (
    AAC_TRACK,
    FIXTURE_CLUSTER_TIMECODES,
    H264_TRACK,
    GetMediaReader,
    HandFrame,
    PutMediaResult,
    data_client,
    put_media,
)

FRAGMENT_COUNT = len(FIXTURE_CLUSTER_TIMECODES)
MAX_ACK_CHARS = 1024
# Producer start of the RELATIVE uploads: whole seconds plus 250 ms, so millisecond parsing is checked.
PRODUCER_START_MS = 1_763_000_000_250
READ_TIMEOUT_S = 20.0
# Track numbers of the hand-made tracks (media_fixtures.H264_TRACK, AAC_TRACK).
VIDEO = H264_TRACK.number
AUDIO = AAC_TRACK.number


# ------------------------------------------------------------------------------------------------
# Streams, uploads and data-plane clients
# ------------------------------------------------------------------------------------------------


def create_stream(kinesisvideo, retention_hours: int = 24, prefix: str = "media") -> str:
    name = new_stream_name(prefix)
    kinesisvideo.create_stream(StreamName=name, DataRetentionInHours=retention_hours)
    return name


def put_endpoint(kinesisvideo, stream: str) -> str:
    return kinesisvideo.get_data_endpoint(StreamName=stream, APIName="PUT_MEDIA")["DataEndpoint"]


def upload(kinesisvideo, stream: str, data, **kwargs) -> PutMediaResult:
    kwargs.setdefault("producer_start", PRODUCER_START_MS / 1000)
    return put_media(put_endpoint(kinesisvideo, stream), stream, data, **kwargs)


def archive(kinesisvideo, stream: str):
    return data_client(kinesisvideo, "kinesis-video-archived-media", stream, "LIST_FRAGMENTS")


def fragments_to_file(kinesisvideo, stream: str, numbers: list[str], path):
    """GetMediaForFragmentList of `numbers` written to `path` (an MKV of one chunk per fragment); returns path."""
    response = archive(kinesisvideo, stream).get_media_for_fragment_list(StreamName=stream, Fragments=numbers)
    path.write_bytes(response["Payload"].read())
    return path


def media(kinesisvideo, stream: str):
    # GetMedia never ends by itself; a short read timeout bounds a reader the server stops feeding.
    return data_client(kinesisvideo, "kinesis-video-media", stream, "GET_MEDIA", read_timeout=READ_TIMEOUT_S)


def list_all_fragments(kinesisvideo, stream: str, **kwargs) -> list[dict]:
    """Every fragment ListFragments returns (following NextToken), sorted by fragment number."""
    client = archive(kinesisvideo, stream)
    fragments: list[dict] = []
    # The selector is required without NextToken (docs/spec/kvs.md#listfragments): by default, every server time.
    kwargs.setdefault("FragmentSelector", server_range(0, int(time.time() * 1000) + 86_400_000))
    request = dict(StreamName=stream, **kwargs)
    for _ in range(100):
        response = client.list_fragments(**request)
        fragments.extend(response["Fragments"])
        token = response.get("NextToken")
        if not token:
            return sorted(fragments, key=lambda f: int(f["FragmentNumber"]))
        request = dict(StreamName=stream, NextToken=token, **{k: v for k, v in kwargs.items() if k == "MaxResults"})
    raise AssertionError("ListFragments kept returning NextToken")


def get_media_chunks(kinesisvideo, stream: str, selector: dict, count: int, timeout: float = READ_TIMEOUT_S):
    """Reads GetMedia until `count` complete chunks arrived (or timeout); returns (chunks, bytes)."""
    reader = GetMediaReader(media(kinesisvideo, stream), stream, selector).start()
    try:
        chunks = reader.wait_for_chunks(count, timeout)
        assert reader.error is None, f"GetMedia failed: {reader.error!r}"
        data = reader.snapshot()
    finally:
        reader.close()
    return chunks, data


# ------------------------------------------------------------------------------------------------
# Timestamps and fragment selectors
# ------------------------------------------------------------------------------------------------


def epoch_ms(value: dt.datetime) -> int:
    return round(value.timestamp() * 1000)


def at_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)


def producer_range(start_ms: int, end_ms: int) -> dict:
    return {
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": at_ms(start_ms), "EndTimestamp": at_ms(end_ms)},
    }


def server_range(start_ms: int, end_ms: int) -> dict:
    return {
        "FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": at_ms(start_ms), "EndTimestamp": at_ms(end_ms)},
    }


# ------------------------------------------------------------------------------------------------
# PutMedia acks
# ------------------------------------------------------------------------------------------------


def is_fragment_number(value: object) -> bool:
    return isinstance(value, str) and len(value) == 47 and value.isdigit()


def assert_ack_lines_well_formed(result: PutMediaResult) -> None:
    """Every ack is one JSON object per line, at most 1,024 characters, with the exact key set of its
    event type (docs/spec/kvs.md#putmedia-acks)."""
    for line, ack in zip(result.ack_lines, result.acks, strict=True):
        assert len(line) <= MAX_ACK_CHARS, line
        assert isinstance(json.loads(line), dict), line
        event = ack.get("EventType")
        if event in ("BUFFERING", "RECEIVED"):
            assert set(ack) == {"EventType", "FragmentTimecode"}, line
        elif event == "PERSISTED":
            assert set(ack) == {"EventType", "FragmentTimecode", "FragmentNumber"}, line
            assert is_fragment_number(ack["FragmentNumber"]), line
        elif event == "ERROR":
            assert {"EventType", "ErrorId", "ErrorCode"} <= set(ack) <= {
                "EventType",
                "ErrorId",
                "ErrorCode",
                "FragmentTimecode",
                "FragmentNumber",
            }, line
        elif event == "IDLE":
            assert set(ack) == {"EventType"}, line
        else:
            raise AssertionError(f"unknown ack event type: {line}")
        if "FragmentTimecode" in ack:
            assert isinstance(ack["FragmentTimecode"], int) and ack["FragmentTimecode"] >= 0, line


def assert_full_ack_sequence(result: PutMediaResult, timecodes: list[int] = FIXTURE_CLUSTER_TIMECODES) -> list[str]:
    """200, then BUFFERING, RECEIVED, PERSISTED for every cluster in that order, fragment numbers
    increasing; the response ends after the body. Returns the fragment numbers in upload order."""
    assert result.status == 200, (result.status, result.body)
    assert result.ended, f"the ack stream did not end after the body: {result.read_error!r}"
    assert_ack_lines_well_formed(result)
    assert not result.events("ERROR"), result.ack_lines
    acks = [a for a in result.acks if a["EventType"] != "IDLE"]
    for event in ("BUFFERING", "RECEIVED", "PERSISTED"):
        assert [a["FragmentTimecode"] for a in result.events(event)] == timecodes, (event, result.ack_lines)
    for timecode in timecodes:
        order = [a["EventType"] for a in acks if a["FragmentTimecode"] == timecode]
        assert order == ["BUFFERING", "RECEIVED", "PERSISTED"], (timecode, result.ack_lines)
    numbers = result.persisted_numbers()
    assert [int(n) for n in numbers] == sorted(int(n) for n in numbers)
    assert len(set(numbers)) == len(numbers), numbers
    return numbers


def single_error(result: PutMediaResult) -> dict:
    errors = result.events("ERROR")
    assert len(errors) == 1, result.ack_lines
    return errors[0]


# ------------------------------------------------------------------------------------------------
# Hand-made frames
# ------------------------------------------------------------------------------------------------


def frames(track: int, times: Iterable[int], seed: int, sizes: tuple[int, int] = (300, 3000)) -> list[HandFrame]:
    """Frames of one track at the given times (ms) holding deterministic random bytes. Video starts with a
    key frame; every audio frame is a key frame."""
    rng = random.Random(seed)
    return [
        HandFrame(track, t, rng.randbytes(rng.randint(*sizes)), keyframe=track != VIDEO or i == 0)
        for i, t in enumerate(times)
    ]


# ------------------------------------------------------------------------------------------------
# Control-plane errors
# ------------------------------------------------------------------------------------------------


def missing_arn(name: str) -> str:
    """A well-formed KVS stream ARN that names no stream."""
    return f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT_ID}:stream/{name}/1700000000000"


def kvs_error(excinfo) -> tuple[str, str, int]:
    """(code, message, HTTP status) of a botocore ClientError."""
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["Error"].get("Message", ""),
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def code_status(excinfo) -> tuple[str, int]:
    """(code, HTTP status) of a botocore ClientError."""
    code, _, status = kvs_error(excinfo)
    return code, status
