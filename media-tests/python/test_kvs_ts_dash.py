"""KVS HLS with ContainerFormat=MPEG_TS and KVS DASH, end to end: GetHLSStreamingSessionURL and
GetDASHStreamingSessionURL through boto3 (and the AWS CLI), then the /hls/v1 and /dash/v1 URLs fetched over plain
HTTP as a player does, checked with an M3U8 parser, an MPEG-TS packet parser, xml.etree, ffprobe and ffmpeg.

Where the expected values come from:
- docs/spec/kvs.md#hls-and-dash-sessions: session parameters, URLs, modes, defaults (5 fragments for
  LIVE), errors (InvalidArgumentException, 403 on a bad or expired token), and the MPEG-TS size overhead (AWS's
  documented 5-25 %; checked here as at most 30 %, at least the TS packet header share 188/184);
- RFC 8216 (HLS playlists), ISO/IEC 13818-1 (TS packets of 188 bytes opening with 0x47, PAT on PID 0, PMT, stream
  types, CRC-32/MPEG-2, 33-bit PTS on a 90 kHz clock), ISO/IEC 23009-1 (MPD, SegmentTimeline S@t/@d/@r, S@t being the
  segment's earliest presentation time), RFC 9110 (byte ranges);
- the source media, read with ffprobe: codecs, resolution, frame counts, frame durations;
- ListFragments: fragment numbers, producer timestamps and FragmentLengthInMilliseconds of the session's range;
- GetMediaForFragmentList: each stored fragment's own frame counts and earliest presentation times;
- the fMP4 HLS session of the same stream: its CODECS and its segment sizes.
The uploads are the fMP4 suite's (the vod fixture, conftest.py): RELATIVE with the producer start PRODUCER_START_MS.
An expired token is made by re-sealing a real one with an expiry in the past (see expired_token), since Expires is at
least 300 s.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import re
import statistics
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from fractions import Fraction
from io import StringIO
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from botocore.exceptions import ClientError

from hls_helpers import (
    UPLOAD_RANGE_MS,
    VOD_UPLOADS,
    MasterPlaylist,
    MediaPlaylist,
    assert_cors_preflight,
    brief,
    counted_streams,
    fetch,
    ffmpeg_decode_errors,
    ffprobe_json,
    get_playlist,
    get_segment,
    hls_client,
    media_playlist,
    parse_master,
    query,
    source_media,
    tampered,
    with_query,
)
from kvs_helpers import (
    PRODUCER_START_MS,
    archive,
    assert_full_ack_sequence,
    at_ms,
    create_stream,
    epoch_ms,
    list_all_fragments,
    producer_range,
    upload,
)
from media_fixtures import data_client, parse_mkv_chunks

DASH_API = "GET_DASH_STREAMING_SESSION_URL"
MPD_NS = "urn:mpeg:dash:schema:mpd:2011"
TS_PACKET = 188
PTS_WRAP = 1 << 33
# ISO/IEC 13818-1 Table 2-34 stream_type for each ffprobe codec name.
TS_STREAM_TYPES = {"h264": 0x1B, "hevc": 0x24, "aac": 0x0F}
WHOLE_UPLOAD = producer_range(PRODUCER_START_MS, PRODUCER_START_MS + UPLOAD_RANGE_MS)


# ------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------


def session_fragments(kinesisvideo, stream: str) -> list[dict]:
    """ListFragments over the sessions' producer range, oldest producer time first."""
    listed = list_all_fragments(kinesisvideo, stream, FragmentSelector=WHOLE_UPLOAD)
    return sorted(listed, key=lambda f: (f["ProducerTimestamp"], int(f["FragmentNumber"])))


@functools.cache
def frame_durations_ms(path: Path) -> dict[str, float]:
    """codec_type -> the median packet duration (ms) of that stream in a source file."""
    probed = ffprobe_json(path, "-show_entries", "stream=index,codec_type")["streams"]
    streams = {s["index"]: s["codec_type"] for s in probed}
    packets = ffprobe_json(path, "-show_entries", "packet=stream_index,duration_time")["packets"]
    durations: dict[str, list[float]] = {}
    for packet in packets:
        if packet.get("duration_time") not in (None, "N/A"):
            durations.setdefault(streams[packet["stream_index"]], []).append(float(packet["duration_time"]) * 1000)
    return {kind: statistics.median(values) for kind, values in durations.items()}


def frame_counts(path: Path | str) -> dict[str, int]:
    """codec_type -> decoded frames (`ffprobe -count_frames`, which must print nothing)."""
    return {s["codec_type"]: int(s["nb_read_frames"]) for s in counted_streams(path)}


def selected_frame_count(url: str, kind: str) -> int:
    """Decoded frames of the one stream of this codec_type, the others not read (`ffprobe -select_streams`)."""
    entries = ("-show_entries", "stream=codec_type,nb_read_frames")
    streams = ffprobe_json(url, "-count_frames", "-select_streams", kind[0], *entries)["streams"]
    assert [s["codec_type"] for s in streams] == [kind], streams
    return int(streams[0]["nb_read_frames"])


def assert_byte_ranges(url: str) -> None:
    """RFC 9110 §14: a prefix, a suffix and an unsatisfiable range of a segment (as the fMP4 suite checks them)."""
    full = fetch(url)
    assert full.status == 200 and len(full.body) > 100, (full.status, len(full.body))
    size = len(full.body)

    first = fetch(url, headers={"Range": "bytes=0-99"})
    suffix = fetch(url, headers={"Range": "bytes=-100"})
    beyond = fetch(url, headers={"Range": f"bytes={size}-"})

    assert (first.status, first.headers.get("content-range")) == (206, f"bytes 0-99/{size}")
    assert first.body == full.body[:100]
    assert (suffix.status, suffix.headers.get("content-range"), suffix.body) == (
        206,
        f"bytes {size - 100}-{size - 1}/{size}",
        full.body[-100:],
    )
    assert (beyond.status, beyond.headers.get("content-range")) == (416, f"bytes */{size}")


# ------------------------------------------------------------------------------------------------
# MPEG-TS (ISO/IEC 13818-1)
# ------------------------------------------------------------------------------------------------


def ts_packets(data: bytes) -> list[bytes]:
    assert data and len(data) % TS_PACKET == 0, f"{len(data)} bytes is not a whole number of 188-byte packets"
    packets = [data[at : at + TS_PACKET] for at in range(0, len(data), TS_PACKET)]
    bad = [index for index, packet in enumerate(packets) if packet[0] != 0x47]
    assert not bad, f"packets without the 0x47 sync byte: {bad[:10]}"
    return packets


def packet_pid(packet: bytes) -> int:
    return (packet[1] & 0x1F) << 8 | packet[2]


def crc32_mpeg2(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def psi_section(packet: bytes) -> bytes:
    """The PSI section a packet starts (payload_unit_start, pointer field), its CRC checked."""
    assert packet[1] & 0x40, "a PSI packet must start a section"
    start = 4 + (1 + packet[4] if packet[3] & 0x20 else 0)
    payload = packet[start:]
    section = payload[1 + payload[0] :]
    length = (section[1] & 0x0F) << 8 | section[2]
    section = section[: 3 + length]
    assert crc32_mpeg2(section) == 0, f"bad CRC-32 in section {section.hex()}"
    return section


def pat_pmt_pid(section: bytes) -> int:
    """The PMT PID of the (single) program in a PAT."""
    assert section[0] == 0x00, f"not a PAT: table id {section[0]:#x}"
    entries = section[8:-4]
    programs = [
        (entries[i] << 8 | entries[i + 1], (entries[i + 2] & 0x1F) << 8 | entries[i + 3])
        for i in range(0, len(entries), 4)
    ]
    pids = [pid for number, pid in programs if number != 0]
    assert len(pids) == 1, programs
    return pids[0]


def pmt_streams(section: bytes) -> dict[int, int]:
    """elementary PID -> stream_type of a PMT."""
    assert section[0] == 0x02, f"not a PMT: table id {section[0]:#x}"
    at = 12 + ((section[10] & 0x0F) << 8 | section[11])
    streams = {}
    while at < len(section) - 4:
        streams[(section[at + 1] & 0x1F) << 8 | section[at + 2]] = section[at]
        at += 5 + ((section[at + 3] & 0x0F) << 8 | section[at + 4])
    return streams


def first_video_packet(path: Path) -> dict:
    """The first video packet in stream (decode) order: its pts_time and flags."""
    entries = ("-show_entries", "packet=pts_time,flags")
    probed = ffprobe_json(path, "-select_streams", "v", *entries, "-read_intervals", "%+#1")
    return probed["packets"][0]


def ts_pts_seconds(producer_ms: int) -> float:
    """Where a producer time lands on the TS clock: 90 kHz, 33 bits, wrapping."""
    return (producer_ms * 90 % PTS_WRAP) / 90_000


# ------------------------------------------------------------------------------------------------
# HLS MPEG_TS sessions on the fMP4 suite's uploads
# ------------------------------------------------------------------------------------------------

_TS_SEGMENT = re.compile(r"getTSFragment\.ts\?FragmentNumber=(\d+)&SessionToken=([^&\s]+)")


@dataclass
class TsSession:
    stream: str
    source: Path
    master: MasterPlaylist
    playlist: MediaPlaylist
    segments: list[Path]  # each TS segment as downloaded, in playlist order
    fragments: list[dict]  # ListFragments over the range, oldest first


@pytest.fixture(scope="module")
def ts(vod, kinesisvideo, tmp_path_factory):
    """ts(fixture name) -> an ON_DEMAND MPEG_TS session over the fMP4 suite's upload of that fixture, its playlists and
    every TS segment downloaded. Made on first use, then shared."""
    sessions: dict[str, TsSession] = {}

    def get(name: str) -> TsSession:
        if name not in sessions:
            uploaded = vod(name)
            client = hls_client(kinesisvideo, uploaded.stream)
            url = client.get_hls_streaming_session_url(
                StreamName=uploaded.stream,
                PlaybackMode="ON_DEMAND",
                HLSFragmentSelector=WHOLE_UPLOAD,
                ContainerFormat="MPEG_TS",
            )["HLSStreamingSessionURL"]
            master = parse_master(url, get_playlist(url))
            assert len(master.variants) == 1, brief(master.text)
            playlist = media_playlist(master.variants[0][1])
            directory = tmp_path_factory.mktemp(f"ts-{name}")
            paths = []
            for index, segment in enumerate(playlist.segments):
                response = fetch(segment.url)
                assert response.status == 200, (segment.url, response.status, response.body[:300])
                assert response.headers.get("content-type") == "video/MP2T", response.headers
                paths.append(directory / f"segment{index}.ts")
                paths[-1].write_bytes(response.body)
            fragments = session_fragments(kinesisvideo, uploaded.stream)
            sessions[name] = TsSession(uploaded.stream, uploaded.source, master, playlist, paths, fragments)
        return sessions[name]

    return get


def fragment_chunks(kinesisvideo, stream: str, numbers: list[str], directory: Path) -> list[Path]:
    """Each fragment as stored: its own GetMediaForFragmentList chunk (MKV, producer times in ms), one file each."""
    response = archive(kinesisvideo, stream).get_media_for_fragment_list(StreamName=stream, Fragments=numbers)
    data = response["Payload"].read()
    chunks = parse_mkv_chunks(data)
    assert [c.fragment_number for c in chunks] == numbers
    paths = []
    for index, chunk in enumerate(chunks):
        paths.append(directory / f"fragment{index}.mkv")
        paths[-1].write_bytes(data[chunk.start : chunk.end])
    return paths


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_ts_master_playlist_is_one_variant_with_every_codec(ts, vod, fixture):
    session = ts(fixture)
    source = source_media(session.source)
    master = session.master
    text = brief(master.text)
    lines = master.text.splitlines()

    assert lines[:2] == ["#EXTM3U", "#EXT-X-VERSION:3"], text
    # TS segments multiplex every track: one variant naming all codecs, no separate audio rendition.
    assert len(master.variants) == 1 and master.renditions == [], text
    assert "#EXT-X-MEDIA:" not in master.text, text
    variant, variant_url = master.variants[0]
    assert variant["CODECS"].lower() == source.codecs.lower(), text
    # The same CODECS as the fMP4 session of the same stream (which lists video then audio).
    assert variant["CODECS"] == vod(fixture).master.variants[0][0]["CODECS"], text
    video = source.streams["video"]
    assert variant["RESOLUTION"] == f"{video['width']}x{video['height']}", text
    assert int(variant["BANDWIDTH"]) > 0, text
    assert "AUDIO" not in variant, text
    assert urlsplit(variant_url).path.endswith("/hls/v1/getHLSMediaPlaylist.m3u8"), text
    assert query(variant_url)["TrackNumber"] == "1", text


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_ts_media_playlist_lists_every_fragment_as_a_ts_segment(ts, fixture):
    session = ts(fixture)
    playlist = session.playlist
    text = brief(playlist.text)
    token = query(session.master.url)["SessionToken"]

    assert playlist.text.splitlines()[:2] == ["#EXTM3U", "#EXT-X-VERSION:3"], text
    assert "#EXT-X-MAP" not in playlist.text and playlist.map_uris == [], text
    assert playlist.tags.get("EXT-X-PLAYLIST-TYPE") == "VOD" and playlist.endlist, text
    assert int(playlist.tags["EXT-X-MEDIA-SEQUENCE"]) >= 0, text
    # Segment URIs name the fragment and the session, nothing else; one per fragment of the range, in order.
    matches = [_TS_SEGMENT.fullmatch(s.uri) for s in playlist.segments]
    assert all(matches), text
    assert [m.group(2) for m in matches] == [token] * len(matches), text
    assert [m.group(1) for m in matches] == [f["FragmentNumber"] for f in session.fragments], text
    # EXTINF is the fragment length in seconds with 3 decimals.
    extinfs = re.findall(r"^#EXTINF:([^,]*),", playlist.text, re.MULTILINE)
    assert extinfs == [f"{f['FragmentLengthInMilliseconds'] / 1000:.3f}" for f in session.fragments], text
    durations = [s.duration for s in playlist.segments]
    assert int(playlist.tags["EXT-X-TARGETDURATION"]) >= math.ceil(max(durations)), text


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_ts_segments_open_with_pat_and_pmt_and_carry_every_track(ts, fixture):
    session = ts(fixture)
    source = source_media(session.source)
    expected_types = sorted(TS_STREAM_TYPES[s["codec_name"]] for s in source.streams.values())

    for index, path in enumerate(session.segments):
        packets = ts_packets(path.read_bytes())
        assert packet_pid(packets[0]) == 0, index
        pmt_pid = pat_pmt_pid(psi_section(packets[0]))
        assert packet_pid(packets[1]) == pmt_pid, index
        streams = pmt_streams(psi_section(packets[1]))
        assert sorted(streams.values()) == expected_types, (index, streams)
        # Every other packet belongs to one of the PMT's elementary streams (or is null padding).
        assert {packet_pid(p) for p in packets[2:]} - {0x1FFF} == set(streams), index
        probed = sorted((s["codec_type"], s["codec_name"]) for s in counted_streams(path))
        assert probed == sorted((kind, s["codec_name"]) for kind, s in source.streams.items()), (index, probed)
        assert ffmpeg_decode_errors(path) == "", index


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_ts_segment_frames_and_first_pts_match_the_fragment(ts, kinesisvideo, fixture, tmp_path):
    session = ts(fixture)
    numbers = [f["FragmentNumber"] for f in session.fragments]
    chunks = fragment_chunks(kinesisvideo, session.stream, numbers, tmp_path)

    for index, (path, fragment) in enumerate(zip(session.segments, session.fragments, strict=True)):
        assert frame_counts(path) == frame_counts(chunks[index]), index
        # The key frame that opens the fragment is presented at its producer time: the absolute producer time on the
        # 90 kHz clock, modulo 33 bits. (Leading pictures of an open GOP that follow it may be presented earlier.)
        expected_s = ts_pts_seconds(epoch_ms(fragment["ProducerTimestamp"]))
        first = first_video_packet(path)
        assert "K" in first["flags"], (index, first)
        assert abs(float(first["pts_time"]) - expected_s) <= 0.001, (index, first, expected_s)


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_whole_ts_session_decodes_to_every_source_frame(ts, fixture):
    session = ts(fixture)
    source = source_media(session.source)

    assert ffmpeg_decode_errors(session.master.url) == ""
    counts = frame_counts(session.master.url)

    assert counts == {kind: int(s["nb_read_frames"]) for kind, s in source.streams.items()}


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_ts_segment_is_larger_than_the_fmp4_segments_by_at_most_30_percent(ts, vod, fixture):
    # AWS puts the MPEG-TS overhead at 5-25 % (docs/spec/kvs.md#hls-playlists). The floor here is structural instead:
    # a 188-byte TS packet carries at most 184 bytes of PES, so a TS segment holding the same samples is at least
    # 188/184 of them; fMP4 box overhead is smaller than that. High-bitrate video-only segments come close to it
    # (see the report).
    session = ts(fixture)
    fmp4_bytes: dict[str, int] = {}
    for track in vod(fixture).tracks.values():
        for segment in track.playlist.segments:
            number = segment.fragment_number
            fmp4_bytes[number] = fmp4_bytes.get(number, 0) + len(get_segment(segment.url))

    ratios = [
        path.stat().st_size / fmp4_bytes[segment.fragment_number]
        for path, segment in zip(session.segments, session.playlist.segments, strict=True)
    ]

    assert all(TS_PACKET / (TS_PACKET - 4) <= r <= 1.30 for r in ratios), [round(r, 4) for r in ratios]


def test_ts_segment_byte_ranges_and_cors(ts):
    session = ts("h264_aac_mkv")
    url = session.playlist.segments[0].url

    assert_byte_ranges(url)
    assert_cors_preflight(url)


@pytest.mark.parametrize("kind", ["master", "media-playlist", "ts-segment"])
def test_ts_urls_with_a_tampered_token_are_403(ts, kind):
    session = ts("h264_aac_mkv")
    urls = {
        "master": session.master.url,
        "media-playlist": session.playlist.url,
        "ts-segment": session.playlist.segments[0].url,
    }
    url = urls[kind]
    assert fetch(url).status == 200

    response = fetch(tampered(url))

    assert response.status == 403, (response.status, response.body[:300])


def test_ts_segment_without_fragment_number_is_400(ts):
    url = ts("h264_aac_mkv").playlist.segments[0].url

    response = fetch(with_query(url, drop="FragmentNumber"))

    assert response.status == 400, (response.status, response.body[:300])


# ------------------------------------------------------------------------------------------------
# DASH: session helpers and MPD parsing (ISO/IEC 23009-1)
# ------------------------------------------------------------------------------------------------


def dash_client(kinesisvideo, stream: str, validate: bool = True):
    """An archived-media client on GetDataEndpoint(GET_DASH_STREAMING_SESSION_URL); validate=False lets botocore send
    out-of-range values so the server has to refuse them."""
    return data_client(kinesisvideo, "kinesis-video-archived-media", stream, DASH_API, validate=validate)


def dash_url(kinesisvideo, stream: str, **params) -> str:
    response = dash_client(kinesisvideo, stream).get_dash_streaming_session_url(StreamName=stream, **params)
    url = response["DASHStreamingSessionURL"]
    assert urlsplit(url).path.endswith("/dash/v1/getDASHManifest.mpd"), url
    assert "SessionToken" in query(url), url
    return url


def dash_error(kinesisvideo, stream: str, **params) -> tuple[str, int]:
    client = dash_client(kinesisvideo, stream, validate=False)
    with pytest.raises(ClientError) as excinfo:
        client.get_dash_streaming_session_url(StreamName=stream, **params)
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


@dataclass
class TimelineEntry:
    t: int
    d: int
    attributes: dict[str, str]  # the S element's other attributes, prefixed names as "prefix:name"


@dataclass
class DashTrack:
    content_type: str  # "video" or "audio", from mimeType
    codecs: str
    timescale: int
    init_url: str
    media_urls: list[str]
    timeline: list[TimelineEntry]  # S elements with repeats expanded


@dataclass
class Mpd:
    url: str
    text: str
    root: ET.Element
    tracks: list[DashTrack]


def _prefixed(name: str, prefixes: dict[str, str]) -> str:
    """`{uri}local` -> `prefix:local` with the document's own prefix for that namespace."""
    if name.startswith("{"):
        uri, local = name[1:].split("}")
        return f"{prefixes[uri]}:{local}"
    return name


def expand_timeline(timeline: ET.Element, prefixes: dict[str, str]) -> list[TimelineEntry]:
    """S elements, each repeated r more times; a missing t continues from the previous segment's end."""
    entries: list[TimelineEntry] = []
    for s in timeline.findall(f"{{{MPD_NS}}}S"):
        t = int(s.get("t", entries[-1].t + entries[-1].d if entries else 0))
        d = int(s.get("d"))
        others = {_prefixed(k, prefixes): v for k, v in s.attrib.items() if k not in ("t", "d", "r")}
        for repeat in range(int(s.get("r", "0")) + 1):
            entries.append(TimelineEntry(t + repeat * d, d, others))
    return entries


def parse_mpd(url: str, text: str) -> Mpd:
    prefixes = {uri: prefix for _, (prefix, uri) in ET.iterparse(StringIO(text), events=("start-ns",))}
    root = ET.fromstring(text)
    assert root.tag == f"{{{MPD_NS}}}MPD", root.tag
    tracks = []
    for adaptation in root.iter(f"{{{MPD_NS}}}AdaptationSet"):
        representations = adaptation.findall(f"{{{MPD_NS}}}Representation")
        assert len(representations) == 1, text
        representation = representations[0]
        segment_list = representation.find(f"{{{MPD_NS}}}SegmentList")
        if segment_list is None:
            segment_list = adaptation.find(f"{{{MPD_NS}}}SegmentList")
        assert segment_list is not None, f"no SegmentList:\n{brief(text)}"
        mime = representation.get("mimeType") or adaptation.get("mimeType")
        init = segment_list.find(f"{{{MPD_NS}}}Initialization")
        timeline = segment_list.find(f"{{{MPD_NS}}}SegmentTimeline")
        tracks.append(
            DashTrack(
                content_type=mime.split("/")[0],
                codecs=representation.get("codecs") or adaptation.get("codecs"),
                timescale=int(segment_list.get("timescale", "1")),
                init_url=urljoin(url, init.get("sourceURL")),
                media_urls=[urljoin(url, s.get("media")) for s in segment_list.findall(f"{{{MPD_NS}}}SegmentURL")],
                timeline=expand_timeline(timeline, prefixes) if timeline is not None else [],
            )
        )
    return Mpd(url, text, root, tracks)


def get_mpd(url: str) -> Mpd:
    response = fetch(url)
    assert response.status == 200, (url, response.status, response.body[:500])
    assert response.headers.get("content-type", "").lower() == "application/dash+xml", response.headers
    return parse_mpd(url, response.body.decode("utf-8"))


def earliest_presentation(path: Path, timescale: int) -> dict[str, Fraction]:
    """codec_type -> the earliest presentation time of that stream, in `timescale` units (exact: pts x time_base)."""
    probed = ffprobe_json(path, "-show_entries", "stream=index,codec_type,time_base:packet=stream_index,pts")
    streams = {s["index"]: (s["codec_type"], Fraction(s["time_base"])) for s in probed["streams"]}
    out: dict[str, Fraction] = {}
    for packet in probed["packets"]:
        if packet.get("pts") not in (None, "N/A"):
            kind, time_base = streams[packet["stream_index"]]
            at = int(packet["pts"]) * time_base * timescale
            out[kind] = min(out.get(kind, at), at)
    return out


# ------------------------------------------------------------------------------------------------
# DASH ON_DEMAND sessions on the fMP4 suite's uploads
# ------------------------------------------------------------------------------------------------


@dataclass
class DashSession:
    stream: str
    source: Path
    mpd: Mpd
    fragments: list[dict]


@pytest.fixture(scope="module")
def dash(vod, kinesisvideo):
    """dash(fixture name) -> an ON_DEMAND DASH session (kvs:ts and kvs:fn on) over the fMP4 suite's upload."""
    sessions: dict[str, DashSession] = {}

    def get(name: str) -> DashSession:
        if name not in sessions:
            uploaded = vod(name)
            url = dash_url(
                kinesisvideo,
                uploaded.stream,
                PlaybackMode="ON_DEMAND",
                DASHFragmentSelector=WHOLE_UPLOAD,
                DisplayFragmentTimestamp="ALWAYS",
                DisplayFragmentNumber="ALWAYS",
            )
            fragments = session_fragments(kinesisvideo, uploaded.stream)
            sessions[name] = DashSession(uploaded.stream, uploaded.source, get_mpd(url), fragments)
        return sessions[name]

    return get


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_dash_on_demand_manifest_has_an_adaptation_set_per_track(dash, vod, fixture):
    session = dash(fixture)
    source = source_media(session.source)
    mpd = session.mpd

    assert mpd.root.get("type") == "static", brief(mpd.text)
    assert sorted(t.content_type for t in mpd.tracks) == sorted(source.streams), brief(mpd.text)
    # Video first then audio, as in the HLS CODECS of the fMP4 session of the same stream.
    by_kind = {t.content_type: t for t in mpd.tracks}
    codecs = ",".join(by_kind[kind].codecs for kind in ("video", "audio") if kind in by_kind)
    assert codecs == vod(fixture).master.variants[0][0]["CODECS"], brief(mpd.text)
    assert codecs.lower() == source.codecs.lower(), brief(mpd.text)
    for track in mpd.tracks:
        assert len(track.timeline) == len(track.media_urls) == len(session.fragments), brief(mpd.text)
        numbers = [query(u)["FragmentNumber"] for u in track.media_urls]
        assert numbers == [f["FragmentNumber"] for f in session.fragments], brief(mpd.text)


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_dash_timeline_matches_the_fragments_and_their_segments(dash, kinesisvideo, fixture, tmp_path):
    # ISO/IEC 23009-1 §5.3.9.6: S@t is the segment's earliest presentation time on the media timeline (the segments
    # carry absolute producer time, so S@t is too). It must be that of the segment fetched from the matching SegmentURL
    # and that of the stored fragment (its GetMediaForFragmentList chunk, whose key frame is at the fragment's
    # ProducerTimestamp). S@d is the fragment length (FragmentLengthInMilliseconds) within one frame of the track.
    session = dash(fixture)
    durations = frame_durations_ms(session.source)
    numbers = [f["FragmentNumber"] for f in session.fragments]
    chunks = fragment_chunks(kinesisvideo, session.stream, numbers, tmp_path)

    for track in session.mpd.tracks:
        kind, scale = track.content_type, track.timescale
        init = get_segment(track.init_url)
        entries = zip(track.timeline, track.media_urls, session.fragments, chunks, strict=True)
        for index, (entry, url, fragment, chunk) in enumerate(entries):
            segment = tmp_path / f"{kind}{index}.mp4"
            segment.write_bytes(init + get_segment(url))
            key_frame_s = float(first_video_packet(chunk)["pts_time"])
            assert abs(key_frame_s * 1000 - epoch_ms(fragment["ProducerTimestamp"])) < 0.5, (index, key_frame_s)
            media = earliest_presentation(segment, scale)[kind]
            stored = earliest_presentation(chunk, scale)[kind]
            where = f"{kind} S[{index}] t={entry.t} d={entry.d} (timescale {scale}); segment {media}, fragment {stored}"
            assert entry.t == media == stored, where
            length_ms = entry.d * 1000 / scale
            assert abs(length_ms - fragment["FragmentLengthInMilliseconds"]) <= durations[kind], where


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_dash_segments_decode_to_every_source_frame(dash, fixture, tmp_path):
    session = dash(fixture)
    source = source_media(session.source)

    for track in session.mpd.tracks:
        path = tmp_path / f"{track.content_type}.mp4"
        path.write_bytes(get_segment(track.init_url) + b"".join(get_segment(u) for u in track.media_urls))
        assert frame_counts(path) == {track.content_type: int(source.streams[track.content_type]["nb_read_frames"])}
        assert ffmpeg_decode_errors(path) == "", track.content_type


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_dash_manifest_plays_in_ffmpeg_to_every_source_frame(dash, fixture):
    session = dash(fixture)
    source = source_media(session.source)

    urls = [u for track in session.mpd.tracks for u in (track.init_url, *track.media_urls)]
    lengths = f"manifest URL: {len(session.mpd.url)} chars, longest segment URL: {max(map(len, urls))} chars"
    assert ffmpeg_decode_errors(session.mpd.url) == "", lengths
    # One stream at a time: ffmpeg's DASH demuxer (5.1) ends at the first representation's end, and the audio of the
    # A/V fixtures outlasts their video by a frame or two.
    counts = {kind: selected_frame_count(session.mpd.url, kind) for kind in source.streams}
    assert counts == {kind: int(s["nb_read_frames"]) for kind, s in source.streams.items()}


@pytest.mark.parametrize(
    "params, with_ts, with_fn",
    [
        pytest.param({"DisplayFragmentTimestamp": "ALWAYS", "DisplayFragmentNumber": "ALWAYS"}, True, True, id="both"),
        pytest.param({"DisplayFragmentTimestamp": "ALWAYS"}, True, False, id="timestamp-only"),
        pytest.param({"DisplayFragmentNumber": "ALWAYS"}, False, True, id="number-only"),
        pytest.param({}, False, False, id="default"),
        pytest.param({"DisplayFragmentTimestamp": "NEVER", "DisplayFragmentNumber": "NEVER"}, False, False, id="never"),
    ],
)
def test_dash_kvs_timestamp_and_fragment_number_attributes(vod, kinesisvideo, params, with_ts, with_fn):
    stream = vod("h264_aac_mkv").stream
    fragments = session_fragments(kinesisvideo, stream)
    url = dash_url(kinesisvideo, stream, PlaybackMode="ON_DEMAND", DASHFragmentSelector=WHOLE_UPLOAD, **params)

    mpd = get_mpd(url)

    expected_ts = [str(epoch_ms(f["ProducerTimestamp"])) for f in fragments]
    expected_fn = [f["FragmentNumber"] for f in fragments]
    assert mpd.tracks, brief(mpd.text)
    absent = [None] * len(fragments)
    for track in mpd.tracks:
        present = [e.attributes for e in track.timeline]
        assert [a.get("kvs:ts") for a in present] == (expected_ts if with_ts else absent), brief(mpd.text)
        assert [a.get("kvs:fn") for a in present] == (expected_fn if with_fn else absent), brief(mpd.text)


def test_max_manifest_fragment_results_limits_the_timeline(vod, kinesisvideo):
    stream = vod("h264_aac_mkv").stream
    fragments = session_fragments(kinesisvideo, stream)
    limit = len(fragments) // 3
    assert limit >= 1

    mpd = get_mpd(
        dash_url(
            kinesisvideo,
            stream,
            PlaybackMode="ON_DEMAND",
            DASHFragmentSelector=WHOLE_UPLOAD,
            MaxManifestFragmentResults=limit,
            DisplayFragmentNumber="ALWAYS",
        )
    )

    for track in mpd.tracks:
        # ON_DEMAND lists the range from its start: the oldest `limit` fragments.
        assert len(track.timeline) == len(track.media_urls) == limit, brief(mpd.text)
        assert [e.attributes["kvs:fn"] for e in track.timeline] == [f["FragmentNumber"] for f in fragments[:limit]]


def test_dash_live_manifest_is_dynamic_and_lists_the_newest_fragments(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo, prefix="dash-live")
    # LIVE needs a fragment that arrived in the last 30 s (server time): a live producer's last 20 s, uploaded now.
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv, producer_start=time.time() - 20))
    listed = {f["FragmentNumber"]: f for f in list_all_fragments(kinesisvideo, stream)}
    params = {"PlaybackMode": "LIVE", "DisplayFragmentNumber": "ALWAYS", "DisplayFragmentTimestamp": "ALWAYS"}

    default = get_mpd(dash_url(kinesisvideo, stream, **params))
    limited = get_mpd(dash_url(kinesisvideo, stream, MaxManifestFragmentResults=3, **params))

    # MaxManifestFragmentResults defaults to 5 for LIVE (docs/spec/kvs.md#session-parameters).
    for mpd, count in ((default, 5), (limited, 3)):
        assert mpd.root.get("type") == "dynamic", brief(mpd.text)
        assert [(t.content_type, t.codecs) for t in mpd.tracks] == [("video", source_media(h264_mkv).codecs)]
        timeline = mpd.tracks[0].timeline
        assert len(mpd.tracks[0].media_urls) == count, brief(mpd.text)
        assert [e.attributes["kvs:fn"] for e in timeline] == numbers[-count:], brief(mpd.text)
        producer_ms = [epoch_ms(listed[n]["ProducerTimestamp"]) for n in numbers[-count:]]
        assert [int(e.attributes["kvs:ts"]) for e in timeline] == producer_ms, brief(mpd.text)
        assert [e.t * 1000 // mpd.tracks[0].timescale for e in timeline] == producer_ms, brief(mpd.text)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(
            {"PlaybackMode": "ON_DEMAND", "DASHFragmentSelector": WHOLE_UPLOAD, "MaxManifestFragmentResults": 0},
            id="max-results-0",
        ),
        pytest.param(
            {"PlaybackMode": "ON_DEMAND", "DASHFragmentSelector": WHOLE_UPLOAD, "MaxManifestFragmentResults": 5001},
            id="max-results-5001",
        ),
        pytest.param({"PlaybackMode": "LIVE", "DASHFragmentSelector": WHOLE_UPLOAD}, id="live-with-range"),
    ],
)
def test_invalid_dash_session_request_is_invalid_argument(vod, kinesisvideo, params):
    # On a stream with fragments in the range, so only the refused parameter can be the reason.
    assert dash_error(kinesisvideo, vod("h264_aac_mkv").stream, **params) == ("InvalidArgumentException", 400)


def dash_urls(mpd: Mpd) -> dict[str, str]:
    video = next(t for t in mpd.tracks if t.content_type == "video")
    return {"manifest": mpd.url, "init-segment": video.init_url, "media-segment": video.media_urls[0]}


@pytest.mark.parametrize("kind", ["manifest", "init-segment", "media-segment"])
def test_dash_urls_with_a_garbled_token_are_403(dash, kind):
    url = dash_urls(dash("h264_aac_mkv").mpd)[kind]
    assert fetch(url).status == 200

    response = fetch(tampered(url))

    assert response.status == 403, (response.status, response.body[:300])


def session_key(root_secret: bytes) -> bytes:
    """The key session tokens are sealed with: derived from the data dir's secret for this one purpose
    (server/src/secret.rs `Secret::derive`), so that no other kind of token can pass for a session."""
    return hmac.new(root_secret, b"framelog key v1\0" + b"kvs streaming session", hashlib.sha256).digest()


def expired_token(token: str, secret: bytes) -> str:
    """The token with its expiry moved 1 s into the past, sealed again as the server seals tokens (payload + the first
    16 bytes of its HMAC-SHA256 under the session key, base64url; expiry = big-endian ms at payload[23:31],
    server/src/kvs/playback/session_codec.rs)."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    payload, mac = raw[:-16], raw[-16:]
    assert hmac.new(secret, payload, hashlib.sha256).digest()[:16] == mac, "the token layout is not the one assumed"
    expires_ms = int.from_bytes(payload[23:31], "big")
    default_expiry_ms = (time.time() + 300) * 1000
    assert abs(expires_ms - default_expiry_ms) < 60_000, f"no default expiry (now + 300 s) at [23:31]: {expires_ms}"
    payload = payload[:23] + int(time.time() * 1000 - 1000).to_bytes(8, "big") + payload[31:]
    sealed = payload + hmac.new(secret, payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


@pytest.mark.parametrize("kind", ["manifest", "init-segment", "media-segment"])
def test_dash_urls_with_an_expired_token_are_403(server, vod, kinesisvideo, kind):
    stream = vod("h264_aac_mkv").stream
    # A session of its own with the default Expires (300 s), which expired_token checks it finds in the token.
    mpd = get_mpd(dash_url(kinesisvideo, stream, PlaybackMode="ON_DEMAND", DASHFragmentSelector=WHOLE_UPLOAD))
    url = dash_urls(mpd)[kind]
    assert fetch(url).status == 200
    secret = session_key((server.data_dir / "iterator-secret").read_bytes())
    expired = with_query(url, replace={"SessionToken": expired_token(query(url)["SessionToken"], secret)})

    response = fetch(expired)

    assert response.status == 403, (response.status, response.body[:300])
    assert "expired" in json.loads(response.body)["Message"].lower(), response.body


def test_aws_cli_get_dash_streaming_session_url(aws_cli, vod, kinesisvideo):
    stream = vod("h264_aac_mkv").stream
    fragments = session_fragments(kinesisvideo, stream)
    selector = {
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {
            "StartTimestamp": at_ms(PRODUCER_START_MS).isoformat(),
            "EndTimestamp": at_ms(PRODUCER_START_MS + UPLOAD_RANGE_MS).isoformat(),
        },
    }

    answer = aws_cli.json(
        "kinesis-video-archived-media",
        "get-dash-streaming-session-url",
        "--stream-name",
        stream,
        "--playback-mode",
        "ON_DEMAND",
        "--dash-fragment-selector",
        json.dumps(selector),
        "--display-fragment-number",
        "ALWAYS",
    )

    url = answer["DASHStreamingSessionURL"]
    assert urlsplit(url).path.endswith("/dash/v1/getDASHManifest.mpd"), answer
    mpd = get_mpd(url)
    assert mpd.root.get("type") == "static", brief(mpd.text)
    for track in mpd.tracks:
        assert [e.attributes["kvs:fn"] for e in track.timeline] == [f["FragmentNumber"] for f in fragments]
