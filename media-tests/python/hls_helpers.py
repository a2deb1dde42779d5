"""Shared helpers of the KVS playback suites (test_kvs_hls.py, test_kvs_ts_dash.py, test_kvs_clip_images.py,
test_browser_playback.py): GetHLSStreamingSessionURL sessions, playback URLs fetched as a player fetches them, an
M3U8 parser (RFC 8216), ffprobe / ffmpeg readings of the source media, and the ON_DEMAND uploads behind the `vod`
fixture (conftest.py).

Uploads are RELATIVE with the producer start PRODUCER_START_MS (kvs_helpers.py), so fragment k starts at
PRODUCER_START_MS + 2000 * k.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from kvs_helpers import PRODUCER_START_MS, assert_full_ack_sequence, at_ms, create_stream, producer_range, upload
from media_fixtures import FIXTURE_CLUSTER_TIMECODES, data_client, tool

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
# Fragment index -> the fragment metadata sent before its cluster (test_kvs_hls.py, test_browser_playback.py).
FRAGMENT_TAGS = {3: [("camera", "front-door"), ("event", "motion")], 7: [("label", "person")]}


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


def assert_cors_preflight(url: str) -> None:
    """An OPTIONS preflight from another origin asking for GET with Range: a 2xx (browsers take any), GET and
    Range allowed."""
    headers = {
        "Origin": "https://player.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range",
    }
    response = fetch(url, method="OPTIONS", headers=headers)
    assert 200 <= response.status < 300, response
    methods = {m.strip().upper() for m in response.headers.get("access-control-allow-methods", "").split(",")}
    assert "GET" in methods, response.headers
    allowed = {h.strip().lower() for h in response.headers.get("access-control-allow-headers", "").split(",")}
    assert "range" in allowed or "*" in allowed, response.headers


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
# ON_DEMAND uploads (the vod fixture in conftest.py: one per test media file and module, downloaded once)
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


def vod_upload(kinesisvideo, source: Path, headers: dict[str, str], directory: Path) -> VodUpload:
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
