"""Helpers for the KVS media data-plane suite (test_kvs_media.py): deterministic test media made with
GStreamer, a streaming PutMedia client (raw chunked HTTP and curl), a GetMedia reader, a small Matroska
(EBML) parser for the chunks the server returns, and ffprobe checks.

The recipes are the gst-launch-1.0 pipelines of MEDIA_RECIPES; the wire formats are those of docs/spec/kvs.md
(PutMedia, GetMedia, ListFragments, GetMediaForFragmentList and producer Matroska).
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from kds_helpers import ACCESS_KEY, REGION, REPO_ROOT, SECRET_KEY, client_config

FIXTURES_CACHE = REPO_ROOT / "media-tests" / "fixtures-cache"

KVS_MEDIA_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIDUMMY/20261125/us-east-1/kinesisvideo/aws4_request, "
    "SignedHeaders=host, Signature=0"
)

EBML_MAGIC = bytes.fromhex("1A45DFA3")

# ------------------------------------------------------------------------------------------------
# Test media (GStreamer, deterministic, cached in media-tests/fixtures-cache/)
# ------------------------------------------------------------------------------------------------

_VIDEO_SRC = (
    "videotestsrc num-buffers=600 pattern=smpte ! video/x-raw,width=640,height=360,framerate=30/1"
)
_X264 = "x264enc key-int-max=60 bitrate=1000 speed-preset=veryfast option-string=scenecut=0 bframes=0 ! h264parse"
# The same encoder with two B-frames between references, always (b-adapt=false): presentation order differs
# from decode order, and every GOP ends with frames presented after the next key frame's decode time.
_X264_BFRAMES = (
    "x264enc key-int-max=60 bitrate=1000 speed-preset=veryfast option-string=scenecut=0 bframes=2 b-adapt=false "
    "! h264parse"
)
# 600 buffers of 1600 samples at 48 kHz = 20 s of audio, the length of the video.
_AUDIO_SRC = (
    "audiotestsrc num-buffers=600 samplesperbuffer=1600 ! audio/x-raw,rate=48000,channels=2 "
    "! audioconvert ! avenc_aac ! aacparse"
)

# Browsers decode 8-bit 4:2:0 H.264 only, while x264enc's default for videotestsrc's raw output is High 4:4:4
# (avc1.f4001e, yuv444p10le): the browser fixtures convert to I420 first and ask for the High profile. The test
# pattern scrolls (4 px per frame), so consecutive frames differ and a screenshot shows where playback is.
_VIDEO_SRC_420 = (
    "videotestsrc num-buffers=600 pattern=smpte horizontal-speed=4 "
    "! video/x-raw,width=640,height=360,framerate=30/1 ! videoconvert ! video/x-raw,format=I420"
)
_X264_420 = (
    "x264enc key-int-max=60 bitrate=1000 speed-preset=veryfast option-string=scenecut=0 bframes=0 "
    "! video/x-h264,profile=high ! h264parse"
)

# name -> gst-launch-1.0 pipeline; {out} is the output file.
MEDIA_RECIPES: dict[str, str] = {
    # 20 s H.264 640x360@30, key frame every 2 s => 10 clusters, 600 frames.
    "h264.mkv": f"{_VIDEO_SRC} ! {_X264} ! matroskamux streamable=true ! filesink location={{out}}",
    # The same video plus AAC audio into a named muxer.
    "h264_aac.mkv": (
        f"matroskamux name=m streamable=true ! filesink location={{out}} "
        f"{_VIDEO_SRC} ! {_X264} ! m. {_AUDIO_SRC} ! m."
    ),
    # Fragmented MP4 (one moof+mdat per 2 s) with H.264 and AAC, as ffmpeg/GStreamer producers send it.
    "h264_aac.mp4": (
        f"mp4mux name=m fragment-duration=2000 streamable=true ! filesink location={{out}} "
        f"{_VIDEO_SRC} ! {_X264} ! m. {_AUDIO_SRC} ! m."
    ),
    # h264_aac.mp4 with B-frames: the fMP4 a GStreamer or ffmpeg producer sends with a default x264 profile.
    "h264_bframes_aac.mp4": (
        f"mp4mux name=m fragment-duration=2000 streamable=true ! filesink location={{out}} "
        f"{_VIDEO_SRC} ! {_X264_BFRAMES} ! m. {_AUDIO_SRC} ! m."
    ),
    # h264_aac.mkv as a browser plays it: 4:2:0 8-bit H.264 High (avc1.64001e) + AAC LC (browser playback tests).
    "h264_420_aac.mkv": (
        f"matroskamux name=m streamable=true ! filesink location={{out}} "
        f"{_VIDEO_SRC_420} ! {_X264_420} ! m. {_AUDIO_SRC} ! m."
    ),
    # H.265, key frame every 2 s.
    "h265.mkv": f"{_VIDEO_SRC} ! x265enc key-int-max=60 ! h265parse ! matroskamux streamable=true ! filesink location={{out}}",
}

FIXTURE_FRAMES = 600
FIXTURE_CLUSTER_TIMECODES = [2000 * i for i in range(10)]
GST_TIMEOUT_S = 180


def gst_launch_path() -> str:
    found = shutil.which("gst-launch-1.0")
    if not found:
        pytest.fail(
            "gst-launch-1.0 not found: the KVS media tests generate their media with GStreamer "
            "(scripts/setup.sh installs gstreamer1.0-tools and the GStreamer plugins the tests use)",
            pytrace=False,
        )
    return found


def ensure_media(name: str, cache_dir: Path = FIXTURES_CACHE) -> Path:
    """Returns the cached test file `name`, generating it with gst-launch-1.0 when it is missing or its
    recipe changed. The file is written under a temporary name and renamed, so a half-written file is
    never reused."""
    recipe = MEDIA_RECIPES[name]
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / name
    stamp = cache_dir / f"{name}.recipe"
    if target.is_file() and target.stat().st_size > 0 and stamp.is_file() and stamp.read_text() == recipe:
        return target
    gst = gst_launch_path()
    tmp = cache_dir / f".{name}.{os.getpid()}.tmp"
    pipeline = recipe.format(out=shlex.quote(str(tmp)))
    cmd = [gst, "-q", "-e", *shlex.split(pipeline)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=GST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        pytest.fail(f"gst-launch-1.0 did not finish {name} within {GST_TIMEOUT_S} s", pytrace=False)
    if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        pytest.fail(
            f"gst-launch-1.0 failed to make {name} (exit {proc.returncode}):\n"
            f"{' '.join(cmd)}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}",
            pytrace=False,
        )
    os.replace(tmp, target)
    stamp.write_text(recipe)
    return target


# ------------------------------------------------------------------------------------------------
# EBML / Matroska parsing
# ------------------------------------------------------------------------------------------------

ID_EBML = 0x1A45DFA3
ID_SEGMENT = 0x18538067
ID_INFO = 0x1549A966
ID_TIMECODE_SCALE = 0x2AD7B1
ID_TRACKS = 0x1654AE6B
ID_TAGS = 0x1254C367
ID_TAG = 0x7373
ID_SIMPLE_TAG = 0x67C8
ID_TAG_NAME = 0x45A3
ID_TAG_STRING = 0x4487
ID_CLUSTER = 0x1F43B675
ID_TIMECODE = 0xE7
ID_SIMPLE_BLOCK = 0xA3
ID_BLOCK_GROUP = 0xA0

# Children that may appear inside an unknown-size Cluster; anything else ends it.
_CLUSTER_CHILDREN = {ID_TIMECODE, 0xA7, 0xAB, ID_SIMPLE_BLOCK, ID_BLOCK_GROUP, 0xEC, 0xBF}


class Incomplete(Exception):
    """The buffer ends inside an element."""


def read_vint(data: bytes, pos: int, keep_marker: bool = False) -> tuple[int, int, bool]:
    """Reads an EBML variable-length integer at pos: (value, length, is_all_ones)."""
    if pos >= len(data):
        raise Incomplete
    first = data[pos]
    if first == 0:
        raise ValueError(f"invalid EBML vint at offset {pos}")
    length = 1
    mask = 0x80
    while not first & mask:
        length += 1
        mask >>= 1
    if pos + length > len(data):
        raise Incomplete
    value = first if keep_marker else first & (mask - 1)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    all_ones = (first & (mask - 1)) == mask - 1 and all(b == 0xFF for b in data[pos + 1 : pos + length])
    return value, length, all_ones


def read_header(data: bytes, pos: int) -> tuple[int, int | None, int]:
    """(element id, data size or None when unknown, offset of the data)."""
    eid, id_len, _ = read_vint(data, pos, keep_marker=True)
    size, size_len, unknown = read_vint(data, pos + id_len)
    return eid, (None if unknown else size), pos + id_len + size_len


def _tags_of(data: bytes, start: int, end: int) -> list[tuple[str, str]]:
    """(name, string value) of every SimpleTag (nested ones included) inside a Tags/Tag/SimpleTag body."""
    out: list[tuple[str, str]] = []
    pos = start
    while pos < end:
        eid, size, body = read_header(data, pos)
        if size is None:
            raise ValueError(f"unknown-size element {eid:#x} inside Tags")
        if eid == ID_TAG:
            out.extend(_tags_of(data, body, body + size))
        elif eid == ID_SIMPLE_TAG:
            name, value = None, ""
            inner = body
            while inner < body + size:
                cid, csize, cbody = read_header(data, inner)
                if cid == ID_TAG_NAME:
                    name = data[cbody : cbody + csize].decode("utf-8")
                elif cid == ID_TAG_STRING:
                    value = data[cbody : cbody + csize].decode("utf-8")
                inner = cbody + csize
            if name is not None:
                out.append((name, value))
            out.extend(_tags_of(data, body, body + size))
        pos = body + size
    return out


@dataclass
class Cluster:
    start: int  # offset of the Cluster element's ID
    timecode: int | None
    blocks: int
    block_spans: list[tuple[int, int]] = field(default_factory=list)  # (start, end) of each SimpleBlock's data


@dataclass(frozen=True)
class Block:
    """One SimpleBlock as stored in a cluster (no lacing)."""

    track: int
    relative_timecode: int
    flags: int
    payload: bytes

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & 0x80)


def cluster_blocks(data: bytes, cluster: Cluster) -> list[Block]:
    """The SimpleBlocks of a parsed cluster: track, int16 timecode, flags and frame bytes
    (docs/spec/kvs.md#producer-matroska)."""
    blocks = []
    for start, end in cluster.block_spans:
        track, track_len, _ = read_vint(data, start)
        at = start + track_len
        timecode = int.from_bytes(data[at : at + 2], "big", signed=True)
        blocks.append(Block(track, timecode, data[at + 2], bytes(data[at + 3 : end])))
    return blocks


@dataclass
class MkvChunk:
    """One EBML header + Segment of a GetMedia / GetMediaForFragmentList response (or of a file)."""

    start: int
    end: int
    level1: list[int] = field(default_factory=list)  # ids of the Segment's children, in order
    clusters: list[Cluster] = field(default_factory=list)
    pre_cluster_tags: dict[str, str] = field(default_factory=dict)
    post_cluster_tags: dict[str, str] = field(default_factory=dict)
    timecode_scale: int | None = None  # Info/TimecodeScale in ns, when the chunk's Info has one
    complete: bool = False

    @property
    def fragment_number(self) -> str | None:
        return self.pre_cluster_tags.get("AWS_KINESISVIDEO_FRAGMENT_NUMBER")

    @property
    def all_tags(self) -> dict[str, str]:
        return {**self.pre_cluster_tags, **self.post_cluster_tags}


def _parse_cluster(data: bytes, start: int, body: int, size: int | None) -> tuple[Cluster, int]:
    end = len(data) if size is None else body + size
    if size is not None and end > len(data):
        raise Incomplete
    pos = body
    timecode = None
    blocks = 0
    spans: list[tuple[int, int]] = []
    while pos < end:
        eid, csize, cbody = read_header(data, pos)
        if size is None and eid not in _CLUSTER_CHILDREN:
            break
        if csize is None:
            raise ValueError(f"unknown-size element {eid:#x} inside a Cluster")
        if cbody + csize > len(data):
            raise Incomplete
        if eid == ID_TIMECODE:
            timecode = int.from_bytes(data[cbody : cbody + csize], "big")
        elif eid in (ID_SIMPLE_BLOCK, ID_BLOCK_GROUP):
            blocks += 1
            if eid == ID_SIMPLE_BLOCK:
                spans.append((cbody, cbody + csize))
        pos = cbody + csize
    return Cluster(start, timecode, blocks, spans), pos


def _info_timecode_scale(data: bytes, start: int, end: int) -> int | None:
    pos = start
    while pos < end:
        eid, size, body = read_header(data, pos)
        if size is None:
            raise ValueError(f"unknown-size element {eid:#x} inside Info")
        if eid == ID_TIMECODE_SCALE:
            return int.from_bytes(data[body : body + size], "big")
        pos = body + size
    return None


def parse_mkv_chunks(data: bytes) -> list[MkvChunk]:
    """Splits a byte stream into EBML header + Segment chunks and reads each chunk's Tags and Clusters.

    Parsing is structural (element by element), so EBML magic bytes inside frame data are never taken
    for a chunk boundary. The last chunk is `complete` only when the buffer ends on an element boundary
    after its post-cluster Tags (GetMedia's MILLIS_BEHIND_NOW / CONTINUATION_TOKEN); earlier chunks are
    complete when the next chunk's EBML header follows."""
    chunks: list[MkvChunk] = []
    pos = 0
    while pos < len(data):
        try:
            eid, size, body = read_header(data, pos)
        except Incomplete:
            break
        if eid != ID_EBML:
            raise ValueError(f"expected an EBML header at offset {pos}, found element {eid:#x}")
        if size is None:
            raise ValueError("unknown-size EBML header")
        chunk = MkvChunk(start=pos, end=pos)
        chunks.append(chunk)
        pos = body + size
        if pos > len(data):
            break
        try:
            eid, seg_size, seg_body = read_header(data, pos)
        except Incomplete:
            break
        if eid != ID_SEGMENT:
            raise ValueError(f"expected a Segment at offset {pos}, found element {eid:#x}")
        seg_end = len(data) if seg_size is None else seg_body + seg_size
        pos = seg_body
        ended_by_next_chunk = False
        try:
            while pos < seg_end:
                eid, size, child_body = read_header(data, pos)
                if eid == ID_EBML and seg_size is None:
                    ended_by_next_chunk = True
                    break
                chunk.level1.append(eid)
                if eid == ID_CLUSTER:
                    cluster, pos = _parse_cluster(data, pos, child_body, size)
                    chunk.clusters.append(cluster)
                    continue
                if size is None:
                    raise ValueError(f"unknown-size level-1 element {eid:#x} at offset {pos}")
                if child_body + size > len(data):
                    raise Incomplete
                if eid == ID_TAGS:
                    tags = dict(_tags_of(data, child_body, child_body + size))
                    (chunk.post_cluster_tags if chunk.clusters else chunk.pre_cluster_tags).update(tags)
                elif eid == ID_INFO:
                    chunk.timecode_scale = _info_timecode_scale(data, child_body, child_body + size)
                pos = child_body + size
        except Incomplete:
            chunk.end = pos
            break
        chunk.end = pos
        chunk.complete = ended_by_next_chunk or (
            seg_size is not None and pos == seg_end
        ) or "AWS_KINESISVIDEO_CONTINUATION_TOKEN" in chunk.post_cluster_tags
    return chunks


def cluster_timecodes(data: bytes) -> list[int]:
    return [c.timecode for chunk in parse_mkv_chunks(data) for c in chunk.clusters]


# ------------------------------------------------------------------------------------------------
# Hand-made Matroska, written the way the producer SDK writes it (docs/spec/kvs.md#producer-matroska)
# ------------------------------------------------------------------------------------------------

UNKNOWN_SIZE = bytes.fromhex("01FFFFFFFFFFFFFF")


def ebml_size(size: int) -> bytes:
    """An 8-byte size field (0x01 marker), as the producer SDK writes them."""
    return (0x0100000000000000 | size).to_bytes(8, "big")


def ebml_id(element_id: int) -> bytes:
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")


def ebml_element(element_id: int, payload: bytes) -> bytes:
    return ebml_id(element_id) + ebml_size(len(payload)) + payload


def ebml_uint(element_id: int, value: int, width: int | None = None) -> bytes:
    return ebml_element(element_id, value.to_bytes(width or max(1, (value.bit_length() + 7) // 8), "big"))


def ebml_text(element_id: int, text: str) -> bytes:
    return ebml_element(element_id, text.encode("utf-8"))


@dataclass(frozen=True)
class HandTrack:
    number: int
    codec_id: str
    track_type: int  # 1 video, 2 audio
    codec_private: bytes = b""


# CodecPrivate is not validated at ingest (docs/spec/kvs.md#putmedia-body): an avcC without parameter sets and a 2-byte
# AudioSpecificConfig (AAC LC, 48 kHz, stereo) are enough for PutMedia, ListFragments and GetMedia.
H264_TRACK = HandTrack(1, "V_MPEG4/ISO/AVC", 1, bytes.fromhex("0142C01EFFE000"))
AAC_TRACK = HandTrack(2, "A_AAC", 2, bytes.fromhex("1190"))


def _track_entry(track: HandTrack) -> bytes:
    fields = [
        ebml_uint(0xD7, track.number),
        ebml_uint(0x73C5, 0x1000 + track.number, width=8),
        ebml_uint(0x83, track.track_type),
        ebml_text(0x536E, "kinesis_video"),
        ebml_text(0x86, track.codec_id),
        ebml_element(0x63A2, track.codec_private),
    ]
    if track.track_type == 1:
        fields.append(ebml_element(0xE0, ebml_uint(0xB0, 640) + ebml_uint(0xBA, 360)))
    else:
        fields.append(ebml_element(0xE1, ebml_element(0xB5, struct.pack(">d", 48000.0)) + ebml_uint(0x9F, 2)))
    return ebml_element(0xAE, b"".join(fields))


def mkv_header(tracks: Iterable[HandTrack], timecode_scale_ns: int = 1_000_000) -> bytes:
    """EBML header, unknown-size Segment, Info and Tracks: everything before the first Cluster."""
    ebml = ebml_element(
        ID_EBML,
        ebml_uint(0x4286, 1)  # EBMLVersion
        + ebml_uint(0x42F7, 1)  # EBMLReadVersion
        + ebml_uint(0x42F2, 4)  # EBMLMaxIDLength
        + ebml_uint(0x42F3, 8)  # EBMLMaxSizeLength
        + ebml_text(0x4282, "matroska")
        + ebml_uint(0x4287, 2)  # DocTypeVersion
        + ebml_uint(0x4285, 2),  # DocTypeReadVersion
    )
    info = ebml_element(
        ID_INFO,
        ebml_element(0x73A4, bytes(range(16)))  # SegmentUID
        + ebml_uint(ID_TIMECODE_SCALE, timecode_scale_ns, width=8)
        + ebml_text(0x7BA9, "framelog media tests")  # Title
        + ebml_text(0x4D80, "media_fixtures.py")
        + ebml_text(0x5741, "media_fixtures.py"),
    )
    tracks_element = ebml_element(ID_TRACKS, b"".join(map(_track_entry, tracks)))
    return ebml + ebml_id(ID_SEGMENT) + UNKNOWN_SIZE + info + tracks_element


@dataclass(frozen=True)
class HandFrame:
    track: int
    time: int  # in TimecodeScale units, absolute within the segment (cluster timecode + block timecode)
    payload: bytes
    keyframe: bool = False


def simple_block_header(track: int, relative_timecode: int, keyframe: bool, payload_len: int) -> bytes:
    """SimpleBlock ID and size, track number (one-byte vint), int16 timecode and flags; the frame follows."""
    head = bytes([0x80 | track]) + relative_timecode.to_bytes(2, "big", signed=True) + bytes([0x80 if keyframe else 0])
    return ebml_id(ID_SIMPLE_BLOCK) + ebml_size(len(head) + payload_len) + head


def cluster_timecode_element(timecode: int) -> bytes:
    return ebml_uint(ID_TIMECODE, timecode, width=8)


def tags_element(pairs: list[tuple[str, str]]) -> bytes:
    """A Tags element with one Tag of SimpleTags: the fragment metadata a producer sends before a cluster."""
    simple_tags = b"".join(
        ebml_element(ID_SIMPLE_TAG, ebml_text(ID_TAG_NAME, name) + ebml_text(ID_TAG_STRING, value))
        for name, value in pairs
    )
    return ebml_element(ID_TAGS, ebml_element(ID_TAG, simple_tags))


def with_tags(body: bytes, tags: dict[int, list[tuple[str, str]]]) -> bytes:
    """An MKV upload with a Tags element written before each given cluster (by index)."""
    clusters = parse_mkv_chunks(body)[0].clusters
    pieces, at = [], 0
    for index, pairs in sorted(tags.items()):
        pieces += [body[at : clusters[index].start], tags_element(pairs)]
        at = clusters[index].start
    return b"".join(pieces) + body[at:]


def mkv_cluster(timecode: int, frames: Iterable[HandFrame], known_size: bool = False) -> bytes:
    """A Cluster: 8-byte Timecode, then one SimpleBlock per frame in the given order. Unknown size, as the
    producer SDK writes it, unless `known_size` (as matroskamux does)."""
    body = cluster_timecode_element(timecode) + b"".join(
        simple_block_header(f.track, f.time - timecode, f.keyframe, len(f.payload)) + f.payload for f in frames
    )
    return ebml_id(ID_CLUSTER) + (ebml_size(len(body)) if known_size else UNKNOWN_SIZE) + body


# ------------------------------------------------------------------------------------------------
# PutMedia
# ------------------------------------------------------------------------------------------------


@dataclass
class PutMediaResult:
    status: int
    headers: dict[str, str]  # lower-cased names
    acks: list[dict]
    ack_lines: list[str]
    body: bytes  # the raw response body (for non-200 answers)
    send_error: BaseException | None = None
    read_error: BaseException | None = None
    ended: bool = False  # the server ended the response (EOF) before the client gave up

    def events(self, event_type: str) -> list[dict]:
        return [a for a in self.acks if a.get("EventType") == event_type]

    def persisted_numbers(self) -> list[str]:
        return [a["FragmentNumber"] for a in self.events("PERSISTED")]


def format_producer_start(seconds: float) -> str:
    """`<sec>.<ms>` as kvssink sends it."""
    millis = round(seconds * 1000)
    return f"{millis // 1000}.{millis % 1000:03d}"


def put_media_headers(stream: str, timecode_type: str, producer_start: float | str) -> dict[str, str]:
    start = producer_start if isinstance(producer_start, str) else format_producer_start(producer_start)
    return {
        "x-amzn-stream-name": stream,
        "x-amzn-fragment-timecode-type": timecode_type,
        "x-amzn-producer-start-timestamp": start,
        "x-amzn-fragment-acknowledgment-required": "1",
        "Authorization": KVS_MEDIA_AUTHORIZATION,
        "X-Amz-Date": "20261125T000000Z",
        "Content-Type": "application/octet-stream",
        "Connection": "keep-alive",
    }


def _as_bytes(data: bytes | Path) -> bytes:
    return data if isinstance(data, (bytes, bytearray)) else Path(data).read_bytes()


def _body_pieces(data: bytes | Path | Iterable[bytes], chunk_size: int) -> Iterator[memoryview]:
    """The body in pieces of at most chunk_size bytes. An iterable of byte strings is consumed lazily, so a
    generator can stream a body far larger than the test wants to hold in memory."""
    sources = [_as_bytes(data)] if isinstance(data, (bytes, bytearray, Path)) else data
    for source in sources:
        view = memoryview(source)
        for start in range(0, len(view), chunk_size):
            yield view[start : start + chunk_size]


def put_media(
    endpoint: str,
    stream: str,
    data: bytes | Path | Iterable[bytes],
    *,
    timecode_type: str = "RELATIVE",
    producer_start: float | str = 1_700_000_000.0,
    chunk_size: int = 64 * 1024,
    pace_s: float = 0.0,
    timeout: float = 60.0,
    on_ack: Callable[[dict], None] | None = None,
    extra_headers: dict[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    sign: Callable[[str, dict[str, str]], dict[str, str]] | None = None,
) -> PutMediaResult:
    """Streams `data` to POST {endpoint}/putMedia with chunked transfer encoding while reading the
    streamed response concurrently; returns the status and the parsed ack lines.

    A sender thread writes the body in `chunk_size` HTTP chunks (sleeping `pace_s` between them) and
    the terminating zero chunk; this thread reads the status line and then one JSON ack per line until
    the server ends the response, or until `timeout`. `on_ack` is called with each ack as it arrives.
    `data` may be an iterable of byte strings (e.g. a generator), read only as it is sent.
    An https:// endpoint is reached over TLS with `ssl_context` (e.g. one trusting a test CA). `sign`, when given,
    is called with the request URL and the headers about to be sent and returns the headers to send instead (a
    server started with --credentials wants a real SigV4 signature, not the dummy Authorization)."""
    url = urlsplit(endpoint)
    if url.scheme == "https":
        conn = http.client.HTTPSConnection(url.hostname, url.port, timeout=timeout, context=ssl_context)
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    conn.putrequest("POST", "/putMedia", skip_accept_encoding=True)
    headers = put_media_headers(stream, timecode_type, producer_start)
    headers.update(extra_headers or {})
    if sign is not None:
        headers = sign(f"{url.scheme}://{url.netloc}/putMedia", headers)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    sock = conn.sock
    send_error: list[BaseException] = []
    stop_sending = threading.Event()

    def send() -> None:
        try:
            for piece in _body_pieces(data, chunk_size):
                if stop_sending.is_set():
                    return
                sock.sendall(b"".join((b"%x\r\n" % len(piece), piece, b"\r\n")))
                if pace_s:
                    time.sleep(pace_s)
            sock.sendall(b"0\r\n\r\n")
        except OSError as err:  # the server may answer and close before reading the whole body
            send_error.append(err)

    sender = threading.Thread(target=send, name=f"putmedia-send-{stream}", daemon=True)
    if url.scheme == "https":
        # One TLS connection must not be written and read by two threads at once (OpenSSL's rule), so over TLS the
        # whole body goes first and the acks, which wait in the socket meanwhile, are read after it.
        send()
    else:
        sender.start()
    acks: list[dict] = []
    lines: list[str] = []
    raw = b""
    read_error = None
    ended = False
    status = 0
    response_headers: dict[str, str] = {}
    try:
        response = conn.getresponse()
        status = response.status
        response_headers = {k.lower(): v for k, v in response.getheaders()}
        if status != 200:
            raw = response.read()
            ended = True
        else:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                line = response.readline()
                if not line:
                    ended = True
                    break
                raw += line
                text = line.decode("utf-8").rstrip("\r\n")
                if not text.strip():
                    continue
                lines.append(text)
                ack = json.loads(text)
                acks.append(ack)
                if on_ack is not None:
                    on_ack(ack)
    except (OSError, http.client.HTTPException) as err:
        read_error = err
    finally:
        stop_sending.set()
        conn.close()
        if sender.ident is not None:  # started (plain HTTP)
            sender.join(timeout=10)
    return PutMediaResult(
        status=status,
        headers=response_headers,
        acks=acks,
        ack_lines=lines,
        body=raw,
        send_error=send_error[0] if send_error else None,
        read_error=read_error,
        ended=ended,
    )


class PutMediaConnection:
    """One PutMedia request driven step by step from the test thread: send body bytes, read acks until a
    condition holds, then end the body or drop the connection. For tests of what the server does at a given
    point of an upload, where put_media()'s send-everything-and-read is too coarse."""

    def __init__(
        self,
        endpoint: str,
        stream: str,
        *,
        timecode_type: str = "RELATIVE",
        producer_start: float | str = 1_700_000_000.0,
        timeout: float = 20.0,
    ):
        url = urlsplit(endpoint)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        self.conn.putrequest("POST", "/putMedia", skip_accept_encoding=True)
        for name, value in put_media_headers(stream, timecode_type, producer_start).items():
            self.conn.putheader(name, value)
        self.conn.putheader("Transfer-Encoding", "chunked")
        self.conn.endheaders()
        self.sock = self.conn.sock
        # The server answers 200 before reading any of the body (docs/spec/kvs.md#putmedia-acks).
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.acks: list[dict] = []
        self.ack_lines: list[str] = []

    def events(self, event_type: str) -> list[dict]:
        return [a for a in self.acks if a.get("EventType") == event_type]

    def send(self, data: bytes) -> None:
        """Sends `data` as one HTTP chunk."""
        self.sock.sendall(b"%x\r\n" % len(data) + data + b"\r\n")

    def read_acks_until(self, done: Callable[[list[dict]], bool]) -> list[dict]:
        """Reads ack lines until done(acks so far) holds; fails on EOF or the connection timeout."""
        while not done(self.acks):
            try:
                line = self.response.readline()
            except (OSError, http.client.HTTPException) as err:
                raise AssertionError(f"no more acks ({err!r}); so far: {self.ack_lines}") from err
            if not line:
                raise AssertionError(f"the server ended the ack stream; acks: {self.ack_lines}")
            text = line.decode("utf-8").strip()
            if text:
                self.ack_lines.append(text)
                self.acks.append(json.loads(text))
        return self.acks

    def abort(self) -> None:
        """Drops the connection mid-body with a TCP reset (SO_LINGER 0), as a crashed or killed producer
        does: no terminating zero chunk, no FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The response's file object holds a reference to the socket: the descriptor closes (and the RST
        # goes out) only once every holder has closed it.
        self.response.close()
        self.conn.close()
        self.sock.close()


def put_media_curl(
    endpoint: str,
    stream: str,
    path: Path,
    *,
    timecode_type: str = "RELATIVE",
    producer_start: float | str = 1_700_000_000.0,
    timeout: float = 60.0,
) -> tuple[subprocess.CompletedProcess, list[dict], list[str]]:
    """`curl -sS -N -X POST ... --data-binary @file -H 'Transfer-Encoding: chunked'`; returns
    (process, acks, ack lines) parsed from curl's stdout."""
    curl = shutil.which("curl")
    if not curl:
        pytest.fail("curl not found", pytrace=False)
    cmd = [curl, "-sS", "-N", "-X", "POST", f"{endpoint}/putMedia", "--data-binary", f"@{path}"]
    for name, value in put_media_headers(stream, timecode_type, producer_start).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd += ["-H", "Transfer-Encoding: chunked", "--max-time", str(int(timeout))]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout + 10)
    lines = [line for line in proc.stdout.decode("utf-8").splitlines() if line.strip()]
    return proc, [json.loads(line) for line in lines], lines


# ------------------------------------------------------------------------------------------------
# Data-plane clients and GetMedia reading
# ------------------------------------------------------------------------------------------------


def data_client(
    kinesisvideo, service: str, stream: str, api_name: str, read_timeout: float | None = None, validate: bool = True
):
    """A boto3 data-plane client pointed at GetDataEndpoint(APIName), as a real KVS client does. With validate=False
    botocore sends values it would refuse itself, so the server has to refuse them."""
    data_endpoint = kinesisvideo.get_data_endpoint(StreamName=stream, APIName=api_name)["DataEndpoint"]
    config = client_config().merge(Config(parameter_validation=validate))
    if read_timeout is not None:
        config = config.merge(Config(read_timeout=read_timeout))
    return boto3.client(
        service,
        endpoint_url=data_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config,
    )


class GetMediaReader:
    """Calls GetMedia in a background thread and keeps appending the endless payload to a buffer.

    The payload is read with urllib3's `read1`, which returns whatever has arrived instead of waiting
    for a full block. `wait_for_chunks(n)` polls until n complete chunks were parsed or a timeout;
    `close()` ends the connection."""

    def __init__(self, media_client, stream: str, start_selector: dict):
        self.client = media_client
        self.stream = stream
        self.start_selector = start_selector
        self.data = bytearray()
        self.lock = threading.Lock()
        self.response: dict | None = None
        self.error: BaseException | None = None
        self.eof = False
        self.started = threading.Event()
        self._closing = False
        self._sock = None
        self.thread = threading.Thread(target=self._run, name=f"getmedia-{stream}", daemon=True)

    def start(self) -> "GetMediaReader":
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.response = self.client.get_media(StreamName=self.stream, StartSelector=self.start_selector)
            self.started.set()
            raw = self.response["Payload"]._raw_stream
            connection = getattr(raw, "_connection", None)
            self._sock = getattr(connection, "sock", None)
            while not self._closing:
                piece = raw.read1(65536)
                if not piece:
                    self.eof = True
                    return
                with self.lock:
                    self.data.extend(piece)
        except BaseException as err:  # noqa: BLE001 - reported to the test thread
            if not self._closing:
                self.error = err
        finally:
            self.started.set()

    def snapshot(self) -> bytes:
        with self.lock:
            return bytes(self.data)

    def complete_chunks(self) -> list[MkvChunk]:
        return [c for c in parse_mkv_chunks(self.snapshot()) if c.complete]

    def wait_for_chunks(self, count: int, timeout: float) -> list[MkvChunk]:
        deadline = time.monotonic() + timeout
        while True:
            chunks = self.complete_chunks()
            if len(chunks) >= count or self.error is not None or self.eof or time.monotonic() > deadline:
                return chunks
            time.sleep(0.05)

    def close(self) -> None:
        """Ends the endless response. The socket is shut down first: closing the payload alone would
        wait for the reader thread's blocked read (they share the buffered reader's lock)."""
        self._closing = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(timeout=10)
        if self.response is not None:
            try:
                self.response["Payload"].close()
            except Exception:  # noqa: BLE001 - best effort while tearing down
                pass
        self.thread.join(timeout=10)


def chunk_bytes(data: bytes, chunks: Iterable[MkvChunk]) -> bytes:
    return b"".join(data[c.start : c.end] for c in chunks)


# ------------------------------------------------------------------------------------------------
# ffprobe / ffmpeg
# ------------------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """The path of an ffmpeg tool (ffprobe, ffmpeg) on PATH; a missing one fails the test, it never skips."""
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found (install ffmpeg)", pytrace=False)
    return found


def ffprobe_streams(path: Path, count_frames: bool = True) -> list[dict]:
    """ffprobe's stream list (codec_type, codec_name, nb_read_frames when counted)."""
    ffprobe = shutil.which("ffprobe")
    if not ffprobe:
        pytest.fail("ffprobe not found (install ffmpeg)", pytrace=False)
    cmd = [ffprobe, "-v", "error", "-show_entries", "stream=codec_type,codec_name,nb_read_frames", "-of", "json"]
    if count_frames:
        cmd.insert(1, "-count_frames")
    proc = subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"ffprobe failed on {path}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout).get("streams", [])


def video_frame_count(path: Path) -> int:
    videos = [s for s in ffprobe_streams(path) if s.get("codec_type") == "video"]
    assert len(videos) == 1, f"expected one video stream in {path}: {videos}"
    return int(videos[0].get("nb_read_frames", 0))
