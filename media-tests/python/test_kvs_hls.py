"""KVS HLS playback (fragmented MP4) end to end: GetHLSStreamingSessionURL through boto3, then the /hls/v1 playlist
and segment URLs fetched over plain HTTP as a browser player does, checked with an M3U8 parser, ffprobe and ffmpeg.

Expected values come from /work/shared/spec/kvs.md §4.3 and facts 16-19 (session parameters, modes, errors, URLs,
playlist shapes), from RFC 8216 (HLS) and RFC 9110 (byte ranges), and from the test media itself: codec
configuration, resolution, frame counts and first timestamps are read from the source file with ffprobe. Uploads are
RELATIVE with the producer start PRODUCER_START_MS, so fragment k starts at PRODUCER_START_MS + 2000 * k and the MP4
timeline (absolute producer time) starts at the producer start.
"""

from __future__ import annotations

import functools
import json
import math
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import pytest
from botocore.exceptions import ClientError

from media_fixtures import (
    FIXTURE_CLUSTER_TIMECODES,
    ID_TRACKS,
    HandTrack,
    data_client,
    ebml_element,
    ebml_text,
    ebml_uint,
    mkv_cluster,
    mkv_header,
    with_tags,
)
from test_kvs_ingest_edges import frames
from test_kvs_media import (
    FRAGMENT_COUNT,
    PRODUCER_START_MS,
    assert_full_ack_sequence,
    at_ms,
    create_stream,
    epoch_ms,
    list_all_fragments,
    producer_range,
    server_range,
    upload,
)

HLS_API = "GET_HLS_STREAMING_SESSION_URL"
# The fixtures' fragments start every 2 s; the last one starts at +18 s.
UPLOAD_RANGE_MS = FIXTURE_CLUSTER_TIMECODES[-1] + 2000
PLAYLIST_TYPES = {"application/x-mpegurl", "application/vnd.apple.mpegurl"}
NO_FRAGMENTS_MESSAGE = "No fragments found in the stream for the streaming request."
# fixture name -> extra PutMedia headers
VOD_UPLOADS = {
    "h264_aac_mkv": {},
    "h265_mkv": {},
    "h264_aac_mp4": {"Content-Type": "video/mp4"},
}


# ------------------------------------------------------------------------------------------------
# Session and HTTP helpers
# ------------------------------------------------------------------------------------------------


def hls_client(kinesisvideo, stream: str, validate: bool = True):
    """An archived-media client on GetDataEndpoint(GET_HLS_STREAMING_SESSION_URL). With validate=False botocore
    sends out-of-range values (Expires=10, MaxMediaPlaylistFragmentResults=0) so the server has to refuse them."""
    return data_client(kinesisvideo, "kinesis-video-archived-media", stream, HLS_API, validate=validate)


def session_url(kinesisvideo, stream: str, **params) -> str:
    response = hls_client(kinesisvideo, stream).get_hls_streaming_session_url(StreamName=stream, **params)
    url = response["HLSStreamingSessionURL"]
    assert urlsplit(url).path.endswith("/hls/v1/getHLSMasterPlaylist.m3u8"), url
    assert "SessionToken" in parse_qs(urlsplit(url).query), url
    return url


def on_demand_url(kinesisvideo, stream: str, **params) -> str:
    """ON_DEMAND over the whole RELATIVE upload, by producer time."""
    selector = producer_range(PRODUCER_START_MS, PRODUCER_START_MS + UPLOAD_RANGE_MS)
    return session_url(kinesisvideo, stream, PlaybackMode="ON_DEMAND", HLSFragmentSelector=selector, **params)


def session_error(kinesisvideo, stream: str, **params) -> tuple[str, int, str]:
    """(error code, HTTP status, message) of a GetHLSStreamingSessionURL call that must fail."""
    client = hls_client(kinesisvideo, stream, validate=False)
    with pytest.raises(ClientError) as excinfo:
        client.get_hls_streaming_session_url(StreamName=stream, **params)
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Response:
    """One request to a playback URL. Every answer, errors included, must allow any origin (browser players)."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            response = Response(answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read())
    except urllib.error.HTTPError as err:
        response = Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())
    assert response.headers.get("access-control-allow-origin") == "*", (method, url, response.status, response.headers)
    return response


def get_playlist(url: str) -> str:
    response = fetch(url)
    assert response.status == 200, (url, response.status, response.body[:500])
    assert response.headers.get("content-type", "").lower() in PLAYLIST_TYPES, response.headers
    return response.body.decode("utf-8")


def get_segment(url: str) -> bytes:
    response = fetch(url)
    assert response.status == 200, (url, response.status, response.body[:500])
    assert response.headers.get("content-type") in ("video/mp4", "audio/mp4"), response.headers
    assert response.body, url
    return response.body


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def with_query(url: str, drop: str = "", replace: dict[str, str] | None = None) -> str:
    """The URL without the query parameter `drop` and with the values in `replace`."""
    parts = urlsplit(url)
    pairs = [(k, (replace or {}).get(k, v)) for k, v in parse_qsl(parts.query) if k != drop]
    return urlunsplit(parts._replace(query=urlencode(pairs)))


def tampered(url: str) -> str:
    """The URL with one character in the middle of its SessionToken changed."""
    token = query(url)["SessionToken"]
    middle = len(token) // 2
    flipped = token[:middle] + ("B" if token[middle] == "A" else "A") + token[middle + 1 :]
    return with_query(url, replace={"SessionToken": flipped})


def brief(text: str) -> str:
    """A playlist for an assertion message: session tokens shortened to "T"."""
    return re.sub(r"SessionToken=[^&\"\s]+", "SessionToken=T", text)


# ------------------------------------------------------------------------------------------------
# M3U8 parsing (RFC 8216)
# ------------------------------------------------------------------------------------------------

_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def attributes(text: str) -> dict[str, str]:
    """An attribute list (RFC 8216 §4.2), quotes removed."""
    return {name: value.strip('"') for name, value in _ATTRIBUTE.findall(text)}


@dataclass
class MasterPlaylist:
    url: str
    text: str
    variants: list[tuple[dict[str, str], str]]  # (EXT-X-STREAM-INF attributes, absolute URI)
    renditions: list[dict[str, str]]  # EXT-X-MEDIA attributes

    def media_playlist_urls(self) -> list[str]:
        urls = [uri for _, uri in self.variants]
        return urls + [urljoin(self.url, r["URI"]) for r in self.renditions if "URI" in r]


def parse_master(url: str, text: str) -> MasterPlaylist:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0] == "#EXTM3U", brief(text)
    variants, renditions = [], []
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            uri = lines[index + 1]
            assert not uri.startswith("#"), brief(text)
            variants.append((attributes(line.partition(":")[2]), urljoin(url, uri)))
        elif line.startswith("#EXT-X-MEDIA:"):
            renditions.append(attributes(line.partition(":")[2]))
    return MasterPlaylist(url, text, variants, renditions)


@dataclass
class Segment:
    uri: str  # as written in the playlist
    url: str  # absolute
    duration: float
    map_uri: str | None
    discontinuity: bool
    program_date_times: list[str]
    dateranges: list[dict[str, str]]

    @property
    def fragment_number(self) -> str:
        return query(self.url)["FragmentNumber"]


@dataclass
class MediaPlaylist:
    url: str
    text: str
    tags: dict[str, str]  # playlist-wide tags by name (without '#'), e.g. EXT-X-TARGETDURATION
    segments: list[Segment]
    endlist: bool
    map_uris: list[str] = field(default_factory=list)  # every EXT-X-MAP URI, in order

    @property
    def track_number(self) -> int:
        return int(query(self.url)["TrackNumber"])


def parse_media(url: str, text: str) -> MediaPlaylist:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0] == "#EXTM3U", brief(text)
    tags: dict[str, str] = {}
    segments: list[Segment] = []
    map_uris: list[str] = []
    endlist = False
    current_map = None
    pending: dict = {"duration": None, "discontinuity": False, "pdt": [], "dateranges": []}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name == "#EXTINF":
            pending["duration"] = float(value.split(",")[0])
        elif line == "#EXT-X-DISCONTINUITY":
            pending["discontinuity"] = True
        elif name == "#EXT-X-MAP":
            current_map = attributes(value)["URI"]
            map_uris.append(current_map)
        elif name == "#EXT-X-PROGRAM-DATE-TIME":
            pending["pdt"].append(value)
        elif name == "#EXT-X-DATERANGE":
            pending["dateranges"].append(attributes(value))
        elif line == "#EXT-X-ENDLIST":
            endlist = True
        elif line.startswith("#"):
            tags[name[1:]] = value
        else:
            assert pending["duration"] is not None, f"segment {line} without #EXTINF:\n{brief(text)}"
            segments.append(
                Segment(
                    uri=line,
                    url=urljoin(url, line),
                    duration=pending["duration"],
                    map_uri=current_map,
                    discontinuity=pending["discontinuity"],
                    program_date_times=pending["pdt"],
                    dateranges=pending["dateranges"],
                )
            )
            pending = {"duration": None, "discontinuity": False, "pdt": [], "dateranges": []}
    return MediaPlaylist(url, text, tags, segments, endlist, map_uris)


def media_playlist(url: str) -> MediaPlaylist:
    return parse_media(url, get_playlist(url))


def video_playlist(master_url: str) -> MediaPlaylist:
    master = parse_master(master_url, get_playlist(master_url))
    assert len(master.variants) == 1, brief(master.text)
    return media_playlist(master.variants[0][1])


def download_track(playlist: MediaPlaylist) -> bytes:
    """The init segment (again whenever the EXT-X-MAP URI changes) followed by every media segment."""
    parts, current_map = [], None
    for segment in playlist.segments:
        assert segment.map_uri is not None, f"segment before any EXT-X-MAP:\n{brief(playlist.text)}"
        if segment.map_uri != current_map:
            parts.append(get_segment(urljoin(playlist.url, segment.map_uri)))
            current_map = segment.map_uri
        parts.append(get_segment(segment.url))
    return b"".join(parts)


def iso8601_ms(ms: int) -> str:
    return at_ms(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# ------------------------------------------------------------------------------------------------
# ffprobe / ffmpeg
# ------------------------------------------------------------------------------------------------


def tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found (install ffmpeg)", pytrace=False)
    return found


def ffprobe_json(path: Path, *args: str) -> dict:
    """ffprobe -v error ... -of json; fails on any error output."""
    cmd = [tool("ffprobe"), "-v", "error", *args, "-of", "json", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and not proc.stderr.strip(), f"{' '.join(cmd)}:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def counted_streams(path: Path) -> list[dict]:
    """Each stream's type, codec and decoded frame count (`ffprobe -count_frames`, which must print nothing)."""
    entries = "stream=index,codec_type,codec_name,profile,width,height,nb_read_frames,extradata"
    return ffprobe_json(path, "-count_frames", "-show_data", "-show_entries", entries)["streams"]


def first_pts_ms(path: Path) -> dict[str, int]:
    """codec_type -> the earliest packet presentation time (ms) of that stream."""
    streams = ffprobe_json(path, "-show_entries", "stream=index,codec_type")["streams"]
    types = {s["index"]: s["codec_type"] for s in streams}
    packets = ffprobe_json(path, "-show_entries", "packet=stream_index,pts_time")["packets"]
    out: dict[str, int] = {}
    for packet in packets:
        if packet.get("pts_time") not in (None, "N/A"):
            kind = types[packet["stream_index"]]
            out[kind] = min(out.get(kind, 1 << 62), round(float(packet["pts_time"]) * 1000))
    return out


def ffmpeg_decode_errors(path: Path) -> str:
    """What `ffmpeg -v error -i file -f null -` prints (nothing for a clean decode)."""
    cmd = [tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return proc.stderr.strip() + ("" if proc.returncode == 0 else f"\n(exit {proc.returncode})")


def hexdump_bytes(dump: str) -> bytes:
    """The bytes of ffprobe's `-show_data` hexdump ("00000000: 01f4 001e ...  ascii")."""
    return bytes.fromhex("".join(line[10:49].replace(" ", "") for line in dump.splitlines() if line.strip()))


def avc_codecs(avcc: bytes) -> str:
    """RFC 6381 `avc1.PPCCLL` from the first SPS in an avcC record (profile_idc, constraint flags, level_idc)."""
    assert avcc[0] == 1 and avcc[5] & 0x1F >= 1, avcc.hex()
    sps_len = int.from_bytes(avcc[6:8], "big")
    sps = avcc[8 : 8 + sps_len]
    assert sps[0] & 0x1F == 7, "not an SPS"
    return f"avc1.{sps[1]:02x}{sps[2]:02x}{sps[3]:02x}"


def hevc_codecs(hvcc: bytes) -> str:
    """ISO/IEC 14496-15 Annex E `hvc1.<space><profile>.<compat, bit-reversed>.<tier><level>[.<constraints>]`."""
    space = ("", "A", "B", "C")[hvcc[1] >> 6]
    tier = "H" if hvcc[1] & 0x20 else "L"
    compatibility = int(f"{int.from_bytes(hvcc[2:6], 'big'):032b}"[::-1], 2)
    constraints = list(hvcc[6:12])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    fields = [f"{space}{hvcc[1] & 0x1F}", f"{compatibility:X}", f"{tier}{hvcc[12]}", *(f"{b:X}" for b in constraints)]
    return "hvc1." + ".".join(fields)


@dataclass
class SourceMedia:
    """What ffprobe reads from a fixture file: the yardstick for the HLS output."""

    streams: dict[str, dict]  # codec_type -> ffprobe stream
    first_pts_ms: dict[str, int]  # codec_type -> earliest presentation time (ms, relative)
    length_s: float  # from the earliest presentation to the end of the last frame

    @property
    def codecs(self) -> str:
        video = self.streams["video"]
        config = hexdump_bytes(video["extradata"])
        codecs = avc_codecs(config) if video["codec_name"] == "h264" else hevc_codecs(config)
        if "audio" in self.streams:
            assert self.streams["audio"]["profile"] == "LC", self.streams["audio"]
            codecs += ",mp4a.40.2"
        return codecs


@functools.cache
def source_media(path: Path) -> SourceMedia:
    streams = {s["codec_type"]: s for s in counted_streams(path)}
    packets = ffprobe_json(path, "-show_entries", "packet=pts_time,duration_time")["packets"]
    starts = [float(p["pts_time"]) for p in packets]
    ends = [float(p["pts_time"]) + float(p.get("duration_time", 0)) for p in packets]
    return SourceMedia(streams, first_pts_ms(path), max(ends) - min(starts))


# ------------------------------------------------------------------------------------------------
# ON_DEMAND uploads shared by the module (one per fixture, downloaded once)
# ------------------------------------------------------------------------------------------------


@dataclass
class HlsTrack:
    playlist: MediaPlaylist
    path: Path  # init segment + every media segment, concatenated


@dataclass
class VodUpload:
    source: Path
    stream: str
    numbers: list[str]  # PERSISTED fragment numbers in upload order
    master: MasterPlaylist
    tracks: dict[int, HlsTrack]


def _vod_upload(kinesisvideo, source: Path, headers: dict[str, str], directory: Path) -> VodUpload:
    stream = create_stream(kinesisvideo, prefix="hls")
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, source, extra_headers=headers))
    # ALWAYS: an EXT-X-MAP per segment, so the init segment URIs of a whole playlist can be compared.
    url = on_demand_url(kinesisvideo, stream, DiscontinuityMode="ALWAYS")
    master = parse_master(url, get_playlist(url))
    tracks = {}
    for playlist_url in master.media_playlist_urls():
        playlist = media_playlist(playlist_url)
        path = directory / f"track{playlist.track_number}.mp4"
        path.write_bytes(download_track(playlist))
        tracks[playlist.track_number] = HlsTrack(playlist, path)
    return VodUpload(source, stream, numbers, master, tracks)


@pytest.fixture(scope="module")
def vod(request, kinesisvideo, tmp_path_factory):
    """vod(fixture name) -> the fixture uploaded (RELATIVE, PRODUCER_START_MS) to a new stream, its ON_DEMAND master
    playlist and every track downloaded through its media playlist. Made on first use, then shared."""
    uploads: dict[str, VodUpload] = {}

    def get(name: str) -> VodUpload:
        if name not in uploads:
            source = request.getfixturevalue(name)
            uploads[name] = _vod_upload(kinesisvideo, source, VOD_UPLOADS[name], tmp_path_factory.mktemp(name))
        return uploads[name]

    return get


def kind_of(track: int) -> str:
    return "video" if track == 1 else "audio"


# ------------------------------------------------------------------------------------------------
# ON_DEMAND playlists and segments
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_master_playlist_names_codecs_resolution_and_audio_rendition(vod, fixture):
    uploaded = vod(fixture)
    source = source_media(uploaded.source)
    master = uploaded.master

    assert len(master.variants) == 1, brief(master.text)
    variant, variant_url = master.variants[0]
    assert variant["CODECS"].lower() == source.codecs.lower(), brief(master.text)
    assert variant["CODECS"].startswith("avc1." if source.streams["video"]["codec_name"] == "h264" else "hvc1.")
    video = source.streams["video"]
    assert variant["RESOLUTION"] == f"{video['width']}x{video['height']}", brief(master.text)
    assert int(variant["BANDWIDTH"]) > 0, brief(master.text)
    assert query(variant_url)["TrackNumber"] == "1", brief(master.text)
    if "audio" in source.streams:
        assert len(master.renditions) == 1, brief(master.text)
        audio = master.renditions[0]
        assert audio["TYPE"] == "AUDIO", brief(master.text)
        assert audio["GROUP-ID"] == variant["AUDIO"], brief(master.text)
        assert query(urljoin(master.url, audio["URI"]))["TrackNumber"] == "2", brief(master.text)
    else:
        assert master.renditions == [] and "AUDIO" not in variant, brief(master.text)
    assert sorted(uploaded.tracks) == sorted([1, 2] if "audio" in source.streams else [1])


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_vod_media_playlists_list_every_fragment_once(vod, fixture):
    uploaded = vod(fixture)
    length_s = source_media(uploaded.source).length_s

    for number, track in uploaded.tracks.items():
        playlist = track.playlist
        text = brief(playlist.text)
        assert playlist.tags.get("EXT-X-PLAYLIST-TYPE") == "VOD", text
        assert playlist.endlist, text
        assert int(playlist.tags["EXT-X-MEDIA-SEQUENCE"]) >= 0, text
        # One segment per stored fragment, in upload order, each of this track.
        assert [s.fragment_number for s in playlist.segments] == uploaded.numbers, text
        assert {query(s.url)["TrackNumber"] for s in playlist.segments} == {str(number)}, text
        durations = [s.duration for s in playlist.segments]
        assert abs(sum(durations) - length_s) <= 0.1, (number, durations, length_s)
        assert int(playlist.tags["EXT-X-TARGETDURATION"]) >= math.ceil(max(durations)), text


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_vod_tracks_decode_cleanly_to_every_source_frame(vod, fixture):
    uploaded = vod(fixture)
    source = source_media(uploaded.source)

    for number, track in uploaded.tracks.items():
        streams = counted_streams(track.path)
        expected = source.streams[kind_of(number)]
        assert [(s["codec_type"], s["codec_name"]) for s in streams] == [(kind_of(number), expected["codec_name"])]
        assert int(streams[0]["nb_read_frames"]) == int(expected["nb_read_frames"]), (number, streams)
        assert ffmpeg_decode_errors(track.path) == "", number


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_vod_tracks_start_at_the_producer_timestamp(vod, fixture):
    # The MP4 timeline is the absolute producer time in ms: a track's first frame is presented at the producer
    # start plus the frame's own offset in the source (0 for every fixture track).
    uploaded = vod(fixture)
    source = source_media(uploaded.source)

    for number, track in uploaded.tracks.items():
        kind = kind_of(number)
        assert first_pts_ms(track.path) == {kind: PRODUCER_START_MS + source.first_pts_ms[kind]}, number


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_init_segment_uri_is_the_same_for_every_segment_while_the_codec_data_is(vod, fixture):
    # The fixtures keep one codec configuration throughout, so players can cache one init segment per track.
    for number, track in vod(fixture).tracks.items():
        playlist = track.playlist
        assert playlist.map_uris, brief(playlist.text)
        assert len(set(playlist.map_uris)) == 1, (number, sorted(set(playlist.map_uris)))
        assert query(urljoin(playlist.url, playlist.map_uris[0]))["TrackNumber"] == str(number)


@pytest.mark.parametrize(
    "selector_type, mode, discontinuities",
    [
        # Spec fact 17: the default is ALWAYS with SERVER_TIMESTAMP and NEVER with PRODUCER_TIMESTAMP.
        pytest.param("PRODUCER_TIMESTAMP", None, False, id="producer-default-never"),
        pytest.param("SERVER_TIMESTAMP", None, True, id="server-default-always"),
        pytest.param("PRODUCER_TIMESTAMP", "ALWAYS", True, id="producer-always"),
        pytest.param("SERVER_TIMESTAMP", "NEVER", False, id="server-never"),
        # A contiguous upload has no gap (its A/V fragments overlap by under 50 ms).
        pytest.param("PRODUCER_TIMESTAMP", "ON_DISCONTINUITY", False, id="producer-on-discontinuity"),
    ],
)
def test_discontinuity_mode(vod, kinesisvideo, selector_type, mode, discontinuities):
    uploaded = vod("h264_aac_mkv")
    if selector_type == "PRODUCER_TIMESTAMP":
        selector = producer_range(PRODUCER_START_MS, PRODUCER_START_MS + UPLOAD_RANGE_MS)
    else:
        server_ms = [epoch_ms(f["ServerTimestamp"]) for f in list_all_fragments(kinesisvideo, uploaded.stream)]
        selector = server_range(min(server_ms), max(server_ms))
    params = {"DiscontinuityMode": mode} if mode else {}

    url = session_url(kinesisvideo, uploaded.stream, PlaybackMode="ON_DEMAND", HLSFragmentSelector=selector, **params)
    playlist = video_playlist(url)

    assert [s.fragment_number for s in playlist.segments] == uploaded.numbers, brief(playlist.text)
    assert [s.discontinuity for s in playlist.segments] == [discontinuities] * FRAGMENT_COUNT, brief(playlist.text)
    assert playlist.segments[0].map_uri is not None, brief(playlist.text)


# ------------------------------------------------------------------------------------------------
# LIVE
# ------------------------------------------------------------------------------------------------


def test_live_playlist_is_a_sliding_window_of_the_newest_fragments(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo, prefix="hls-live")
    # LIVE needs a fragment that arrived in the last 30 s (server time); producer times only have to grow.
    first_start = time.time() - 40
    first = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv, producer_start=first_start))
    url = session_url(kinesisvideo, stream, PlaybackMode="LIVE", MaxMediaPlaylistFragmentResults=3)

    before = video_playlist(url)
    second = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv, producer_start=first_start + 20))
    after = video_playlist(url)

    for playlist, numbers in ((before, first), (after, second)):
        assert [s.fragment_number for s in playlist.segments] == numbers[-3:], brief(playlist.text)
        assert not playlist.endlist, brief(playlist.text)
        assert "EXT-X-PLAYLIST-TYPE" not in playlist.tags, brief(playlist.text)
        assert re.fullmatch(r"\d+", playlist.tags["EXT-X-MEDIA-SEQUENCE"]), brief(playlist.text)
    # RFC 8216 §6.2.1: a segment keeps its media sequence number, so the window moved by the 10 new fragments.
    old_sequence, new_sequence = int(before.tags["EXT-X-MEDIA-SEQUENCE"]), int(after.tags["EXT-X-MEDIA-SEQUENCE"])
    assert new_sequence > old_sequence
    assert new_sequence - old_sequence == len(second), (old_sequence, new_sequence)
    assert after.segments[-1].fragment_number == second[-1]


# ------------------------------------------------------------------------------------------------
# Fragment timestamps and fragment metadata
# ------------------------------------------------------------------------------------------------

# Fragment index -> the fragment metadata sent before its cluster.
FRAGMENT_TAGS = {3: [("camera", "front-door"), ("event", "motion")], 7: [("label", "person")]}


@pytest.fixture(scope="module")
def tagged_upload(kinesisvideo, h264_mkv) -> tuple[str, list[str]]:
    """h264.mkv with FRAGMENT_TAGS written before clusters 3 and 7: (stream, fragment numbers)."""
    stream = create_stream(kinesisvideo, prefix="hls-tags")
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, with_tags(h264_mkv.read_bytes(), FRAGMENT_TAGS)))
    return stream, numbers


def test_display_fragment_timestamp_and_fragment_metadata(kinesisvideo, tagged_upload):
    stream, numbers = tagged_upload
    listed = list_all_fragments(kinesisvideo, stream)
    producer_ms = {f["FragmentNumber"]: epoch_ms(f["ProducerTimestamp"]) for f in listed}

    playlist = video_playlist(on_demand_url(kinesisvideo, stream, DisplayFragmentTimestamp="ALWAYS"))

    assert [s.fragment_number for s in playlist.segments] == numbers, brief(playlist.text)
    for index, segment in enumerate(playlist.segments):
        start = iso8601_ms(producer_ms[segment.fragment_number])
        assert start == iso8601_ms(PRODUCER_START_MS + FIXTURE_CLUSTER_TIMECODES[index])
        assert segment.program_date_times == [start], (index, brief(playlist.text))
        if index == 0:
            continue  # the muxer's own Tags (ENCODER) precede the first cluster
        sent = FRAGMENT_TAGS.get(index, [])
        assert [(d["X-KVS-NAME"], d["X-KVS-VALUE"]) for d in segment.dateranges] == sent, (index, brief(playlist.text))
        assert all(d["START-DATE"] == start for d in segment.dateranges), (index, brief(playlist.text))
    ids = [d["ID"] for s in playlist.segments for d in s.dateranges]
    assert len(ids) == len(set(ids)), ids


def test_dateranges_come_with_a_program_date_time(kinesisvideo, tagged_upload):
    # RFC 8216 §4.3.2.7: a playlist with an EXT-X-DATERANGE tag MUST also contain an EXT-X-PROGRAM-DATE-TIME tag,
    # whatever DisplayFragmentTimestamp (default NEVER) says.
    stream, _ = tagged_upload

    playlist = video_playlist(on_demand_url(kinesisvideo, stream))

    has_dateranges = any(s.dateranges for s in playlist.segments)
    has_program_date_time = any(s.program_date_times for s in playlist.segments)
    assert has_program_date_time or not has_dateranges, brief(playlist.text)


# ------------------------------------------------------------------------------------------------
# GetHLSStreamingSessionURL errors
# ------------------------------------------------------------------------------------------------


def test_live_on_a_stream_without_fragments_is_resource_not_found(kinesisvideo):
    stream = create_stream(kinesisvideo, prefix="hls-empty")

    code, status, _ = session_error(kinesisvideo, stream, PlaybackMode="LIVE")

    assert (code, status) == ("ResourceNotFoundException", 404)


def test_on_demand_range_without_fragments_is_resource_not_found(kinesisvideo, vod):
    stream = vod("h264_aac_mkv").stream
    hour = 3_600_000
    selector = producer_range(PRODUCER_START_MS - 2 * hour, PRODUCER_START_MS - hour)

    error = session_error(kinesisvideo, stream, PlaybackMode="ON_DEMAND", HLSFragmentSelector=selector)

    assert error == ("ResourceNotFoundException", 404, NO_FRAGMENTS_MESSAGE)


def test_session_on_a_missing_stream_is_resource_not_found(kinesisvideo, vod):
    # The data endpoint comes from an existing stream; the call names one that does not exist.
    client = hls_client(kinesisvideo, vod("h264_aac_mkv").stream)

    with pytest.raises(ClientError) as excinfo:
        client.get_hls_streaming_session_url(StreamName="hls-no-such-stream", PlaybackMode="LIVE")

    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


WHOLE_UPLOAD = producer_range(PRODUCER_START_MS, PRODUCER_START_MS + UPLOAD_RANGE_MS)
START_ONLY = {
    "FragmentSelectorType": "PRODUCER_TIMESTAMP",
    "TimestampRange": {"StartTimestamp": at_ms(PRODUCER_START_MS)},
}


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"PlaybackMode": "LIVE", "HLSFragmentSelector": WHOLE_UPLOAD}, id="live-with-range"),
        pytest.param({"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": START_ONLY}, id="on-demand-without-end"),
        pytest.param({"PlaybackMode": "ON_DEMAND"}, id="on-demand-without-selector"),
        pytest.param(
            {
                "PlaybackMode": "ON_DEMAND",
                "HLSFragmentSelector": producer_range(PRODUCER_START_MS, PRODUCER_START_MS - 1),
            },
            id="end-before-start",
        ),
        pytest.param(
            {
                "PlaybackMode": "ON_DEMAND",
                "HLSFragmentSelector": producer_range(PRODUCER_START_MS, PRODUCER_START_MS + 24 * 3_600_000 + 1),
            },
            id="range-over-24-hours",
        ),
        pytest.param({"PlaybackMode": "LIVE_REPLAY"}, id="live-replay-without-start"),
        pytest.param(
            {"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": WHOLE_UPLOAD, "Expires": 10}, id="expires-10"
        ),
        pytest.param(
            {"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": WHOLE_UPLOAD, "Expires": 43_201}, id="expires-43201"
        ),
        pytest.param(
            {"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": WHOLE_UPLOAD, "ContainerFormat": "MP4"},
            id="unknown-container-format",
        ),
        pytest.param(
            {"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": WHOLE_UPLOAD, "MaxMediaPlaylistFragmentResults": 0},
            id="max-results-0",
        ),
        pytest.param(
            {"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": WHOLE_UPLOAD, "MaxMediaPlaylistFragmentResults": 5001},
            id="max-results-5001",
        ),
    ],
)
def test_invalid_session_request_is_invalid_argument(kinesisvideo, vod, params):
    # On a stream with fragments in the range, so only the refused parameter can be the reason.
    code, status, _ = session_error(kinesisvideo, vod("h264_aac_mkv").stream, **params)

    assert (code, status) == ("InvalidArgumentException", 400)


def test_zero_retention_stream_is_no_data_retention(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo, retention_hours=0, prefix="hls-r0")
    result = upload(kinesisvideo, stream, h264_mkv)
    assert result.status == 200 and result.events("RECEIVED"), result.ack_lines

    code, status, _ = session_error(kinesisvideo, stream, PlaybackMode="LIVE")

    assert (code, status) == ("NoDataRetentionException", 400)


def one_cluster_upload(kinesisvideo, header: bytes, prefix: str) -> str:
    """A stream holding one fragment: `header` (one video track) and one second of hand-made frames."""
    stream = create_stream(kinesisvideo, prefix=prefix)
    body = header + mkv_cluster(0, frames(1, range(0, 1000, 40), seed=41))
    assert_full_ack_sequence(upload(kinesisvideo, stream, body), [0])
    return stream


def test_vp8_stream_is_unsupported_stream_media_type(kinesisvideo):
    stream = one_cluster_upload(kinesisvideo, mkv_header([HandTrack(1, "V_VP8", 1)]), "hls-vp8")

    code, status, _ = session_error(kinesisvideo, stream, PlaybackMode="LIVE")

    assert (code, status) == ("UnsupportedStreamMediaTypeException", 400)


def h264_header_without_codec_private() -> bytes:
    """mkv_header with one H.264 TrackEntry that has no CodecPrivate element at all."""
    entry = ebml_element(
        0xAE,
        ebml_uint(0xD7, 1)
        + ebml_uint(0x73C5, 0x1001, width=8)
        + ebml_uint(0x83, 1)
        + ebml_text(0x86, "V_MPEG4/ISO/AVC")
        + ebml_element(0xE0, ebml_uint(0xB0, 640) + ebml_uint(0xBA, 360)),
    )
    no_tracks = mkv_header([])
    empty = ebml_element(ID_TRACKS, b"")
    assert no_tracks.endswith(empty)
    return no_tracks[: -len(empty)] + ebml_element(ID_TRACKS, entry)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(h264_header_without_codec_private(), id="no-codec-private-element"),
        pytest.param(mkv_header([HandTrack(1, "V_MPEG4/ISO/AVC", 1, b"")]), id="empty-codec-private"),
    ],
)
def test_h264_without_codec_private_data_is_missing_codec_private_data(kinesisvideo, header):
    stream = one_cluster_upload(kinesisvideo, header, "hls-nocpd")

    code, status, _ = session_error(kinesisvideo, stream, PlaybackMode="LIVE")

    assert (code, status) == ("MissingCodecPrivateDataException", 400)


# ------------------------------------------------------------------------------------------------
# Playback URLs: token, parameters, CORS, byte ranges
# ------------------------------------------------------------------------------------------------


def playback_urls(vod) -> dict[str, str]:
    """One URL of each kind from the A/V upload's video playlist."""
    uploaded = vod("h264_aac_mkv")
    playlist = uploaded.tracks[1].playlist
    return {
        "master": uploaded.master.url,
        "media-playlist": playlist.url,
        "init-segment": urljoin(playlist.url, playlist.segments[0].map_uri),
        "media-segment": playlist.segments[0].url,
    }


@pytest.mark.parametrize("kind", ["master", "media-playlist", "init-segment", "media-segment"])
def test_tampered_session_token_is_403(vod, kind):
    url = playback_urls(vod)[kind]
    assert fetch(url).status == 200

    response = fetch(tampered(url))

    assert response.status == 403, (response.status, response.body[:300])


@pytest.mark.parametrize("kind", ["media-playlist", "init-segment", "media-segment"])
def test_missing_track_number_is_400(vod, kind):
    url = playback_urls(vod)[kind]

    response = fetch(with_query(url, drop="TrackNumber"))

    assert response.status == 400, (response.status, response.body[:300])


def assert_cors_preflight(url: str) -> None:
    """An OPTIONS preflight from another origin asking for GET with Range: 204, GET and Range allowed."""
    headers = {
        "Origin": "https://player.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range",
    }
    response = fetch(url, method="OPTIONS", headers=headers)
    assert response.status == 204, response
    methods = {m.strip().upper() for m in response.headers.get("access-control-allow-methods", "").split(",")}
    assert "GET" in methods, response.headers
    allowed = {h.strip().lower() for h in response.headers.get("access-control-allow-headers", "").split(",")}
    assert "range" in allowed or "*" in allowed, response.headers


@pytest.mark.parametrize("kind", ["master", "media-segment"])
def test_cors_preflight_is_204_and_allows_get_with_range(vod, kind):
    assert_cors_preflight(playback_urls(vod)[kind])


def test_media_segment_byte_ranges(vod):
    url = playback_urls(vod)["media-segment"]
    full = get_segment(url)
    assert len(full) > 100

    first = fetch(url, headers={"Range": "bytes=0-99"})
    suffix = fetch(url, headers={"Range": "bytes=-100"})
    beyond = fetch(url, headers={"Range": f"bytes={len(full)}-"})

    assert first.status == 206, first.status
    assert first.headers.get("content-range") == f"bytes 0-99/{len(full)}", first.headers
    assert first.body == full[:100]
    assert suffix.status == 206, suffix.status
    assert suffix.headers.get("content-range") == f"bytes {len(full) - 100}-{len(full) - 1}/{len(full)}"
    assert suffix.body == full[-100:]
    assert beyond.status == 416, beyond.status
    assert beyond.headers.get("content-range") == f"bytes */{len(full)}", beyond.headers


def test_aws_cli_get_hls_streaming_session_url_plays_the_upload(aws_cli, vod):
    # The AWS CLI v1 sends whole-second timestamps, so the range is widened to whole seconds.
    uploaded = vod("h264_aac_mkv")
    selector = {
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {
            "StartTimestamp": PRODUCER_START_MS // 1000,
            "EndTimestamp": (PRODUCER_START_MS + UPLOAD_RANGE_MS) // 1000 + 1,
        },
    }

    answer = aws_cli.json(
        "kinesis-video-archived-media",
        "get-hls-streaming-session-url",
        "--stream-name",
        uploaded.stream,
        "--playback-mode",
        "ON_DEMAND",
        "--hls-fragment-selector",
        json.dumps(selector),
    )

    url = answer["HLSStreamingSessionURL"]
    assert urlsplit(url).path.endswith("/hls/v1/getHLSMasterPlaylist.m3u8"), answer
    playlist = video_playlist(url)
    assert [s.fragment_number for s in playlist.segments] == uploaded.numbers, brief(playlist.text)
