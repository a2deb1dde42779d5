"""KVS GetClip and GetImages end to end: uploads over PutMedia, then boto3 (`kinesis-video-archived-media` on the
GetDataEndpoint answer for GET_CLIP / GET_IMAGES), raw JSON for shapes boto3 refuses, and the AWS CLI.

Expected values come from docs/spec/kvs.md (protocol, errors and retention; GetClip: a regular MP4 of the
fragments starting in an inclusive range, at most 200 fragments / 100 MB, the errors; GetImages: one
entry per sampling instant, NO_MEDIA / MEDIA_ERROR, 25 per page, JPEGQuality, sizes, the limits), and from the
source media itself, never from the server:
- frame counts are ffprobe's (`-count_frames`) on the source file; per-fragment counts assign each source packet to
  the Matroska Cluster (= fragment) holding its bytes (ffprobe packet positions, media_fixtures.parse_mkv_chunks);
- pictures are compared with the source frame on screen at the same media time, decoded by ffmpeg. The fixtures are
  videotestsrc's SMPTE bars, whose bottom-right corner is fresh random noise in every frame: comparing that corner
  tells neighbouring frames apart (the test also shows the comparison fails on the wrong frame).
Uploads are RELATIVE with the producer start PRODUCER_START_MS, so fragment k starts at PRODUCER_START_MS + 2000 * k
and media time t of the source is producer time PRODUCER_START_MS + t.
"""

from __future__ import annotations

import base64
import bisect
import functools
import json
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from hls_helpers import (
    NO_FRAGMENTS_MESSAGE,
    UPLOAD_RANGE_MS,
    VOD_UPLOADS,
    counted_streams,
    ffmpeg_decode_errors,
    ffprobe_json,
    iso8601_ms,
)
from kvs_helpers import (
    AUDIO,
    PRODUCER_START_MS,
    VIDEO,
    assert_full_ack_sequence,
    at_ms,
    create_stream,
    epoch_ms,
    frames,
    list_all_fragments,
    producer_range,
    server_range,
    upload,
)
from media_fixtures import (
    AAC_TRACK,
    H264_TRACK,
    KVS_MEDIA_AUTHORIZATION,
    data_client,
    mkv_cluster,
    mkv_header,
    parse_mkv_chunks,
    tool,
)

CLIP_API = "GET_CLIP"
IMAGES_API = "GET_IMAGES"
# fixture name -> extra PutMedia headers (the fMP4 fixtures go up as video/mp4)
CLIP_UPLOADS = {**VOD_UPLOADS, "h264_bframes_aac_mp4": {"Content-Type": "video/mp4"}}
LAST_FRAGMENT_MS = UPLOAD_RANGE_MS - 2000  # start of the last fixture fragment (offset from the producer start)
WHOLE_UPLOAD = producer_range(PRODUCER_START_MS, PRODUCER_START_MS + LAST_FRAGMENT_MS)
MAX_CLIP_FRAGMENTS = 200  # docs/spec/kvs.md#getclip
MAX_IMAGES_PER_PAGE = 25  # docs/spec/kvs.md#getimages
# The SMPTE pattern's noise corner, as fractions of the width and height (with a margin to its edges).
NOISE_CORNER = (0.78, 0.78)
SAME_FRAME_MAX_DIFF = 12.0  # mean absolute difference per channel, 0-255
OTHER_FRAME_MIN_DIFF = 40.0


# ------------------------------------------------------------------------------------------------
# Clients, uploads and raw requests
# ------------------------------------------------------------------------------------------------


def archived(kinesisvideo, stream: str, api: str, validate: bool = True):
    """An archived-media client on GetDataEndpoint(api). With validate=False botocore sends values it would refuse,
    so the server has to."""
    return data_client(kinesisvideo, "kinesis-video-archived-media", stream, api, validate=validate)


def api_error(call) -> tuple[str, int]:
    """(error code, HTTP status) of a boto3 call that must fail."""
    with pytest.raises(ClientError) as excinfo:
        call()
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def post_json(kinesisvideo, stream: str, api: str, path: str, document: dict) -> tuple[str, int]:
    """POSTs `document` as JSON to {data endpoint}{path}; returns (x-amzn-ErrorType without its suffix, status)."""
    endpoint = kinesisvideo.get_data_endpoint(StreamName=stream, APIName=api)["DataEndpoint"]
    headers = {
        "Content-Type": "application/json",
        "Authorization": KVS_MEDIA_AUTHORIZATION,
        "X-Amz-Date": "20261125T000000Z",
    }
    request = urllib.request.Request(endpoint + path, json.dumps(document).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return "", response.status
    except urllib.error.HTTPError as err:
        return err.headers.get("x-amzn-ErrorType", "").split(":")[0], err.code


@dataclass
class Upload:
    source: Path
    stream: str
    numbers: list[str]  # PERSISTED fragment numbers in upload order


@pytest.fixture(scope="module")
def uploaded(request, kinesisvideo):
    """uploaded(fixture name) -> the fixture uploaded (RELATIVE, PRODUCER_START_MS) to a new stream; made on first
    use, then shared by the module."""
    uploads: dict[str, Upload] = {}

    def get(name: str) -> Upload:
        if name not in uploads:
            source = request.getfixturevalue(name)
            stream = create_stream(kinesisvideo, prefix="clip")
            result = upload(kinesisvideo, stream, source, extra_headers=CLIP_UPLOADS[name])
            uploads[name] = Upload(source, stream, assert_full_ack_sequence(result))
        return uploads[name]

    return get


@pytest.fixture(scope="module")
def paced_upload(kinesisvideo, h264_mkv) -> tuple[Upload, list[dict]]:
    """h264.mkv sent slowly (about 0.15 s per fragment), so every fragment has its own server timestamp; with the
    fragments ListFragments returns, in upload order."""
    stream = create_stream(kinesisvideo, prefix="clip-paced")
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv, chunk_size=32 * 1024, pace_s=0.02))
    fragments = list_all_fragments(kinesisvideo, stream)
    assert [f["FragmentNumber"] for f in fragments] == numbers
    arrivals = [epoch_ms(f["ServerTimestamp"]) for f in fragments]
    assert arrivals == sorted(set(arrivals)), f"server timestamps are not distinct and increasing: {arrivals}"
    return Upload(h264_mkv, stream, numbers), fragments


def hand_made_upload(kinesisvideo, header: bytes, clusters: list[bytes], prefix: str) -> Upload:
    """One connection: `header`, then the clusters (timecodes 1000 * i ms, as written by the caller)."""
    stream = create_stream(kinesisvideo, prefix=prefix)
    result = upload(kinesisvideo, stream, header + b"".join(clusters), timeout=120)
    numbers = assert_full_ack_sequence(result, [1000 * i for i in range(len(clusters))])
    return Upload(Path("hand-made"), stream, numbers)


def source_header(source: Path) -> bytes:
    """The bytes of a fixture before its first Cluster (EBML header, Segment, Info, Tracks with real codec data)."""
    data = source.read_bytes()
    return data[: parse_mkv_chunks(data)[0].clusters[0].start]


# ------------------------------------------------------------------------------------------------
# The source media, read with ffprobe / ffmpeg
# ------------------------------------------------------------------------------------------------


@dataclass
class SourceFragment:
    frames: Counter  # codec_type -> packets whose bytes lie in this Cluster
    leading: int  # video frames presented before the Cluster's key frame (open-GOP leading pictures)


@functools.cache
def source_fragments(source: Path) -> list[SourceFragment]:
    """Per Matroska Cluster of a fixture (= per uploaded fragment): its packets by type, from their byte positions."""
    starts = [c.start for c in parse_mkv_chunks(source.read_bytes())[0].clusters]
    probe = ffprobe_json(source, "-show_entries", "stream=index,codec_type:packet=stream_index,pos,pts_time,flags")
    types = {s["index"]: s["codec_type"] for s in probe["streams"]}
    counts = [Counter() for _ in starts]
    video_pts: list[list[tuple[float, bool]]] = [[] for _ in starts]
    for packet in probe["packets"]:
        index = bisect.bisect_right(starts, int(packet["pos"])) - 1
        kind = types[packet["stream_index"]]
        counts[index][kind] += 1
        if kind == "video":
            video_pts[index].append((float(packet["pts_time"]), "K" in packet["flags"]))
    out = []
    for count, pts in zip(counts, video_pts, strict=True):
        key_pts = min(p for p, key in pts if key)
        out.append(SourceFragment(count, sum(1 for p, _ in pts if p < key_pts)))
    return out


@functools.cache
def source_frame_counts(source: Path) -> dict[str, int]:
    return {s["codec_type"]: int(s["nb_read_frames"]) for s in counted_streams(source)}


@functools.cache
def source_size(source: Path) -> tuple[int, int]:
    video = ffprobe_json(source, "-select_streams", "v:0", "-show_entries", "stream=width,height")["streams"][0]
    return int(video["width"]), int(video["height"])


@functools.cache
def video_times_ms(source: Path) -> list[int]:
    """Presentation times (ms) of the source's video frames, in presentation order."""
    packets = ffprobe_json(source, "-select_streams", "v:0", "-show_entries", "packet=pts_time")["packets"]
    return sorted(round(float(p["pts_time"]) * 1000) for p in packets)


def frame_on_screen(source: Path, offset_ms: int) -> int:
    """Index (presentation order) of the source frame shown at media time offset_ms: the last one presented at or
    before it."""
    return bisect.bisect_right(video_times_ms(source), offset_ms) - 1


def rgb_frame(path: Path, index: int, size: tuple[int, int] | None = None, extra_filter: str = "") -> bytes:
    """Frame `index` (presentation order) of a media file as rgb24, optionally scaled bilinearly to `size`."""
    filters = [f"select=eq(n\\,{index})"]
    if size:
        filters.append(f"scale={size[0]}:{size[1]}:flags=bilinear")
    if extra_filter:
        filters.append(extra_filter)
    cmd = [tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-vf", ",".join(filters), "-frames:v", "1"]
    proc = subprocess.run([*cmd, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout, f"{' '.join(cmd)}: {proc.stderr.decode()[-2000:]}"
    return proc.stdout


@dataclass
class Picture:
    codec: str  # ffprobe codec name: png or mjpeg
    width: int
    height: int
    rgb: bytes


def decode_picture(content: str, path: Path) -> Picture:
    """A GetImages ImageContent (base64) decoded by ffprobe / ffmpeg, which must report no error."""
    path.write_bytes(base64.b64decode(content, validate=True))
    stream = ffprobe_json(path, "-show_entries", "stream=codec_name,width,height")["streams"][0]
    cmd = [tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr.decode()[-2000:]
    picture = Picture(stream["codec_name"], int(stream["width"]), int(stream["height"]), proc.stdout)
    assert len(picture.rgb) == picture.width * picture.height * 3
    return picture


def mean_diff(a: bytes, b: bytes, width: int, corner: tuple[float, float] | None = None) -> float:
    """Mean absolute difference per channel of two rgb24 pictures of one size; only the bottom-right area from
    `corner` (fractions of width and height) when given."""
    assert len(a) == len(b), (len(a), len(b))
    height = len(a) // (3 * width)
    x0, y0 = (0, 0) if corner is None else (int(width * corner[0]), int(height * corner[1]))
    total = count = 0
    for y in range(y0, height):
        row = slice((y * width + x0) * 3, (y + 1) * width * 3)
        total += sum(abs(p - q) for p, q in zip(a[row], b[row]))
        count += (width - x0) * 3
    return total / count


# ------------------------------------------------------------------------------------------------
# MP4 (ISO BMFF) structure
# ------------------------------------------------------------------------------------------------


def mp4_boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[str, int, int]]:
    """(type, body offset, end offset) of each box in data[start:end]; every box must fit exactly."""
    end = len(data) if end is None else end
    boxes, pos = [], start
    while pos < end:
        size, kind, header = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8].decode("latin-1"), 8
        if size == 1:
            size, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        assert header <= size and pos + size <= end, f"box {kind!r} at {pos} (size {size}) overruns {end}"
        boxes.append((kind, pos + header, pos + size))
        pos += size
    return boxes


def children(data: bytes, box: tuple[str, int, int], kind: str) -> list[tuple[str, int, int]]:
    return [b for b in mp4_boxes(data, box[1], box[2]) if b[0] == kind]


def track_sample_counts(data: bytes) -> dict[str, int]:
    """handler type (vide / soun) -> samples in the track's stsz, for each trak of the moov."""
    moov = next(b for b in mp4_boxes(data) if b[0] == "moov")
    out = {}
    for trak in children(data, moov, "trak"):
        mdia = children(data, trak, "mdia")[0]
        handler = data[children(data, mdia, "hdlr")[0][1] + 8 : children(data, mdia, "hdlr")[0][1] + 12].decode()
        stbl = children(data, children(data, children(data, mdia, "minf")[0], "stbl")[0], "stsz")[0]
        out[handler] = int.from_bytes(data[stbl[1] + 8 : stbl[1] + 12], "big")
    return out


def assert_regular_mp4(response: dict, body: bytes) -> None:
    """video/mp4, Content-Length = the body, and `ftyp`, `moov`, `mdat` and nothing else: no fragments (no `moof`,
    no `mvex`)."""
    assert response["ContentType"] == "video/mp4"
    assert int(response["ResponseMetadata"]["HTTPHeaders"]["content-length"]) == len(body)
    top = mp4_boxes(body)
    assert [kind for kind, _, _ in top] == ["ftyp", "moov", "mdat"], top
    assert not children(body, top[1], "mvex"), "a regular MP4 has no mvex"


def get_clip(kinesisvideo, stream: str, selector: dict) -> tuple[dict, bytes]:
    response = archived(kinesisvideo, stream, CLIP_API).get_clip(StreamName=stream, ClipFragmentSelector=selector)
    return response, response["Payload"].read()


def decoded_counts(path: Path) -> dict[str, int]:
    """codec_type -> frames ffmpeg decodes; the decode must be clean."""
    assert ffmpeg_decode_errors(path) == ""
    return {s["codec_type"]: int(s["nb_read_frames"]) for s in counted_streams(path)}


# ------------------------------------------------------------------------------------------------
# GetClip
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", list(CLIP_UPLOADS))
def test_clip_of_the_whole_upload_is_a_regular_mp4_with_every_source_frame(kinesisvideo, uploaded, fixture, tmp_path):
    up = uploaded(fixture)

    # EndTimestamp = the last fragment's start: the range is inclusive.
    response, body = get_clip(kinesisvideo, up.stream, WHOLE_UPLOAD)

    assert_regular_mp4(response, body)
    path = tmp_path / "clip.mp4"
    path.write_bytes(body)
    source_codecs = sorted(s["codec_name"] for s in counted_streams(up.source))
    assert sorted(s["codec_name"] for s in counted_streams(path)) == source_codecs
    assert decoded_counts(path) == source_frame_counts(up.source)


@pytest.mark.parametrize("fixture", ["h264_aac_mkv", "h265_mkv"])
def test_clip_of_a_producer_sub_range_holds_exactly_those_fragments(kinesisvideo, uploaded, fixture, tmp_path):
    up = uploaded(fixture)
    first, last = 2, 4

    response, body = get_clip(
        kinesisvideo, up.stream, producer_range(PRODUCER_START_MS + 2000 * first, PRODUCER_START_MS + 2000 * last)
    )

    assert_regular_mp4(response, body)
    wanted = source_fragments(up.source)[first : last + 1]
    packets = sum((f.frames for f in wanted), Counter())
    handlers = {"video": "vide", "audio": "soun"}
    assert track_sample_counts(body) == {handlers[kind]: count for kind, count in packets.items()}
    path = tmp_path / "sub.mp4"
    path.write_bytes(body)
    # A clip starting at an open-GOP key frame cannot show the frames that lead it (they reference the fragment
    # before): HEVC decoders drop them (H.265 §8.1.3, RASL). Every other frame must come out.
    expected = dict(packets, video=packets["video"] - wanted[0].leading)
    assert decoded_counts(path) == expected
    # The first picture is the key frame of fragment 2, not of a neighbour.
    key_index = frame_on_screen(up.source, 2000 * first)
    width = source_size(up.source)[0]
    clip_first = rgb_frame(path, 0)
    assert mean_diff(clip_first, rgb_frame(up.source, key_index), width, NOISE_CORNER) < SAME_FRAME_MAX_DIFF
    assert mean_diff(clip_first, rgb_frame(up.source, key_index + 1), width, NOISE_CORNER) > OTHER_FRAME_MIN_DIFF


def test_clip_by_server_timestamp_selects_fragments_by_arrival(kinesisvideo, paced_upload, tmp_path):
    up, fragments = paced_upload
    first, last = 3, 6

    response, body = get_clip(
        kinesisvideo,
        up.stream,
        server_range(epoch_ms(fragments[first]["ServerTimestamp"]), epoch_ms(fragments[last]["ServerTimestamp"])),
    )

    assert_regular_mp4(response, body)
    path = tmp_path / "server.mp4"
    path.write_bytes(body)
    wanted = sum((f.frames for f in source_fragments(up.source)[first : last + 1]), Counter())
    assert decoded_counts(path) == dict(wanted)
    key_index = frame_on_screen(up.source, 2000 * first)
    width = source_size(up.source)[0]
    assert mean_diff(rgb_frame(path, 0), rgb_frame(up.source, key_index), width, NOISE_CORNER) < SAME_FRAME_MAX_DIFF


def test_clip_holds_at_most_the_first_200_fragments(kinesisvideo, h264_mkv):
    # 201 one-second fragments of ten small frames each (real codec data in the header; the clip is not decoded).
    clusters = [
        mkv_cluster(1000 * i, frames(VIDEO, range(1000 * i, 1000 * i + 1000, 100), seed=i, sizes=(40, 80)))
        for i in range(MAX_CLIP_FRAGMENTS + 1)
    ]
    up = hand_made_upload(kinesisvideo, source_header(h264_mkv), clusters, "clip-201")

    response, body = get_clip(
        kinesisvideo, up.stream, producer_range(PRODUCER_START_MS, PRODUCER_START_MS + 1000 * MAX_CLIP_FRAGMENTS)
    )

    assert_regular_mp4(response, body)
    assert track_sample_counts(body) == {"vide": 10 * MAX_CLIP_FRAGMENTS}


def test_clip_holds_at_most_the_first_100_mb(kinesisvideo, h264_mkv):
    # 7 MB fragments: 14 fit in 100 MB (whether MB means 10^6 or 2^20 bytes), the 15th does not.
    clusters = [
        mkv_cluster(1000 * i, frames(VIDEO, range(1000 * i, 1000 * i + 1000, 100), seed=i, sizes=(700_000, 700_000)))
        for i in range(16)
    ]
    up = hand_made_upload(kinesisvideo, source_header(h264_mkv), clusters, "clip-100mb")
    sizes = [f["FragmentSizeInBytes"] for f in list_all_fragments(kinesisvideo, up.stream)]

    def fitting(limit: int) -> int:
        return sum(1 for i in range(len(sizes)) if sum(sizes[: i + 1]) <= limit)

    assert fitting(100 * 10**6) == fitting(100 * 2**20) < len(sizes), sizes

    response, body = get_clip(kinesisvideo, up.stream, producer_range(PRODUCER_START_MS, PRODUCER_START_MS + 15_000))

    assert_regular_mp4(response, body)
    assert track_sample_counts(body) == {"vide": 10 * fitting(100 * 10**6)}


def test_clip_range_without_fragments_is_resource_not_found(kinesisvideo, uploaded):
    stream = uploaded("h264_aac_mkv").stream
    hour = 3_600_000
    selector = producer_range(PRODUCER_START_MS - 2 * hour, PRODUCER_START_MS - hour)
    client = archived(kinesisvideo, stream, CLIP_API)

    with pytest.raises(ClientError) as excinfo:
        client.get_clip(StreamName=stream, ClipFragmentSelector=selector)

    error = excinfo.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ResourceNotFoundException", 404)
    assert error["Error"]["Message"] == NO_FRAGMENTS_MESSAGE


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param(producer_range(PRODUCER_START_MS + 4000, PRODUCER_START_MS + 3999), id="end-before-start"),
        pytest.param(producer_range(PRODUCER_START_MS, PRODUCER_START_MS + 24 * 3_600_000 + 1), id="over-24-hours"),
        pytest.param({**WHOLE_UPLOAD, "FragmentSelectorType": "ARRIVAL_TIMESTAMP"}, id="unknown-selector-type"),
    ],
)
def test_invalid_clip_selector_is_invalid_argument(kinesisvideo, uploaded, selector):
    # On a stream with fragments in the whole upload's range, so only the refused parameter can be the reason.
    stream = uploaded("h264_aac_mkv").stream
    client = archived(kinesisvideo, stream, CLIP_API, validate=False)

    error = api_error(lambda: client.get_clip(StreamName=stream, ClipFragmentSelector=selector))

    assert error == ("InvalidArgumentException", 400)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({}, id="no-selector"),
        pytest.param({"ClipFragmentSelector": {"FragmentSelectorType": "PRODUCER_TIMESTAMP"}}, id="no-range"),
        pytest.param(
            {
                "ClipFragmentSelector": {
                    "FragmentSelectorType": "PRODUCER_TIMESTAMP",
                    "TimestampRange": {"StartTimestamp": PRODUCER_START_MS / 1000},
                }
            },
            id="no-end",
        ),
    ],
)
def test_clip_request_missing_required_members_is_invalid_argument(kinesisvideo, uploaded, document):
    # botocore refuses to send these shapes, so they go out as raw JSON.
    stream = uploaded("h264_aac_mkv").stream

    error = post_json(kinesisvideo, stream, CLIP_API, "/getClip", {"StreamName": stream, **document})

    assert error == ("InvalidArgumentException", 400)


def test_aws_cli_get_clip_writes_the_same_mp4_as_boto3(aws_cli, kinesisvideo, uploaded, tmp_path):
    up = uploaded("h264_aac_mkv")
    data_endpoint = aws_cli.json(
        "kinesisvideo", "get-data-endpoint", "--stream-name", up.stream, "--api-name", CLIP_API
    )["DataEndpoint"]
    assert data_endpoint == aws_cli.endpoint_url, "the CLI is pointed at the base URL; it must be the data endpoint"
    # Whole seconds: AWS CLI v1 sends timestamps without their milliseconds. Fragments 2-4 start at +4.25 s .. +8.25 s.
    start_ms = (PRODUCER_START_MS + 4000) // 1000 * 1000
    end_ms = (PRODUCER_START_MS + 9000) // 1000 * 1000
    selector = {
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": iso8601_ms(start_ms), "EndTimestamp": iso8601_ms(end_ms)},
    }
    outfile = tmp_path / "cli.mp4"

    printed = aws_cli.json(
        "kinesis-video-archived-media", "get-clip", "--stream-name", up.stream,
        "--clip-fragment-selector", json.dumps(selector), str(outfile),
    )  # fmt: skip

    assert printed == {"ContentType": "video/mp4"}
    _, body = get_clip(kinesisvideo, up.stream, producer_range(start_ms, end_ms))
    assert outfile.read_bytes() == body
    assert track_sample_counts(body)["vide"] == sum(f.frames["video"] for f in source_fragments(up.source)[2:5])


# ------------------------------------------------------------------------------------------------
# GetImages
# ------------------------------------------------------------------------------------------------


def images_request(start_ms: int, end_ms: int, **params) -> dict:
    params.setdefault("SamplingInterval", 1000)
    params.setdefault("Format", "PNG")
    return dict(
        ImageSelectorType="PRODUCER_TIMESTAMP", StartTimestamp=at_ms(start_ms), EndTimestamp=at_ms(end_ms), **params
    )


def all_images(kinesisvideo, stream: str, request: dict) -> tuple[list[dict], list[int]]:
    """Every image of a request, following NextToken (the other parameters repeated); and the page sizes."""
    client = archived(kinesisvideo, stream, IMAGES_API)
    images: list[dict] = []
    sizes: list[int] = []
    token = None
    for _ in range(200):
        response = client.get_images(StreamName=stream, **request, **({"NextToken": token} if token else {}))
        images.extend(response["Images"])
        sizes.append(len(response["Images"]))
        token = response.get("NextToken")
        if not token:
            return images, sizes
    raise AssertionError("GetImages kept returning NextToken")


def image_at(kinesisvideo, stream: str, instant_ms: int, **params) -> dict:
    """The one image of a request for exactly one instant."""
    images, _ = all_images(kinesisvideo, stream, images_request(instant_ms, instant_ms, **params))
    assert [epoch_ms(i["TimeStamp"]) for i in images] == [instant_ms], images
    return images[0]


def outcome(image: dict) -> str:
    """IMAGE when the entry carries a picture and no error, else its Error."""
    if "ImageContent" in image:
        assert "Error" not in image, image.keys()
        return "IMAGE"
    return image["Error"]


def sampling_grid(start_ms: int, end_ms: int, step_ms: int) -> list[int]:
    return list(range(start_ms, end_ms + 1, step_ms))


def test_images_one_entry_per_instant_with_no_media_outside_the_upload(kinesisvideo, uploaded):
    up = uploaded("h264_aac_mkv")
    # From 2.4 s before the first fragment to 1.1 s after the last frame, every 500 ms (49 instants).
    start, end = PRODUCER_START_MS - 2400, PRODUCER_START_MS + UPLOAD_RANGE_MS + 1100

    images, sizes = all_images(
        kinesisvideo, up.stream, images_request(start, end, SamplingInterval=500, Format="JPEG", WidthPixels=64)
    )

    grid = sampling_grid(start, end, 500)
    assert [epoch_ms(i["TimeStamp"]) for i in images] == grid
    recorded = range(PRODUCER_START_MS, PRODUCER_START_MS + UPLOAD_RANGE_MS)
    assert [outcome(i) for i in images] == ["IMAGE" if t in recorded else "NO_MEDIA" for t in grid]
    assert sizes == [MAX_IMAGES_PER_PAGE, len(grid) - MAX_IMAGES_PER_PAGE]


def test_images_in_a_gap_between_uploads_are_no_media(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo, prefix="images-gap")
    assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    # A second connection 40 s later: nothing covers producer times +20 s .. +40 s.
    assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv, producer_start=(PRODUCER_START_MS + 40_000) / 1000))
    start, end = PRODUCER_START_MS + 11_000, PRODUCER_START_MS + 46_000

    images, _ = all_images(kinesisvideo, stream, images_request(start, end, SamplingInterval=5000, WidthPixels=64))

    assert [epoch_ms(i["TimeStamp"]) for i in images] == sampling_grid(start, end, 5000)
    assert [outcome(i) for i in images] == ["IMAGE"] * 2 + ["NO_MEDIA"] * 4 + ["IMAGE"] * 2


@pytest.mark.parametrize("max_results", [1, 7, 25, 100])
def test_images_pages_hold_min_of_max_results_and_25_and_tokens_visit_each_instant_once(
    kinesisvideo, uploaded, max_results
):
    up = uploaded("h264_aac_mkv")
    start, end = PRODUCER_START_MS + 1000, PRODUCER_START_MS + 15_400  # 37 instants every 400 ms
    request = images_request(start, end, SamplingInterval=400, Format="JPEG", WidthPixels=32, MaxResults=max_results)

    images, sizes = all_images(kinesisvideo, up.stream, request)

    grid = sampling_grid(start, end, 400)
    assert [epoch_ms(i["TimeStamp"]) for i in images] == grid
    assert all(outcome(i) == "IMAGE" for i in images)
    page = min(max_results, MAX_IMAGES_PER_PAGE)
    assert sizes == [page] * (len(grid) // page) + ([len(grid) % page] if len(grid) % page else [])


def test_images_paginator_collects_every_instant(kinesisvideo, uploaded):
    up = uploaded("h264_aac_mkv")
    start, end = PRODUCER_START_MS, PRODUCER_START_MS + 9000
    paginator = archived(kinesisvideo, up.stream, IMAGES_API).get_paginator("get_images")

    pages = list(
        paginator.paginate(
            StreamName=up.stream,
            **images_request(start, end, Format="JPEG", WidthPixels=32),
            PaginationConfig={"PageSize": 3},
        )
    )

    assert [len(p["Images"]) for p in pages] == [3, 3, 3, 1]
    assert [epoch_ms(i["TimeStamp"]) for p in pages for i in p["Images"]] == sampling_grid(start, end, 1000)


@pytest.mark.parametrize(
    "size",
    [
        pytest.param({"WidthPixels": 123, "HeightPixels": 77}, id="both"),
        pytest.param({"WidthPixels": 500}, id="width-only"),
        pytest.param({"HeightPixels": 100}, id="height-only"),
        pytest.param({}, id="neither"),
    ],
)
@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_image_size(kinesisvideo, uploaded, size, image_format, tmp_path):
    up = uploaded("h264_aac_mkv")
    source_w, source_h = source_size(up.source)

    image = image_at(kinesisvideo, up.stream, PRODUCER_START_MS + 3000, Format=image_format, **size)

    picture = decode_picture(image["ImageContent"], tmp_path / "image")
    assert picture.codec == {"JPEG": "mjpeg", "PNG": "png"}[image_format]
    # One side given: the other keeps the source's aspect ratio, rounded to the nearest pixel; none: the source size.
    width, height = size.get("WidthPixels"), size.get("HeightPixels")
    if width is None and height is None:
        width, height = source_w, source_h
    elif height is None:
        height = int(width * source_h / source_w + 0.5)
    elif width is None:
        width = int(height * source_w / source_h + 0.5)
    assert (picture.width, picture.height) == (width, height)


@pytest.mark.parametrize("offset_ms", [6000, 7020], ids=["fragment-start", "between-frames"])
@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_png_image_is_the_source_frame_on_screen_at_the_instant(kinesisvideo, uploaded, fixture, offset_ms, tmp_path):
    up = uploaded(fixture)
    index = frame_on_screen(up.source, offset_ms)

    image = image_at(kinesisvideo, up.stream, PRODUCER_START_MS + offset_ms, Format="PNG")

    picture = decode_picture(image["ImageContent"], tmp_path / "image.png")
    assert (picture.width, picture.height) == source_size(up.source)
    expected = rgb_frame(up.source, index)
    assert mean_diff(picture.rgb, expected, picture.width) < SAME_FRAME_MAX_DIFF
    assert mean_diff(picture.rgb, expected, picture.width, NOISE_CORNER) < SAME_FRAME_MAX_DIFF
    # The comparison tells frames apart: the next frame's noise differs.
    neighbour = rgb_frame(up.source, index + 1)
    assert mean_diff(picture.rgb, neighbour, picture.width, NOISE_CORNER) > OTHER_FRAME_MIN_DIFF


def test_resized_jpeg_is_the_scaled_source_frame(kinesisvideo, uploaded, tmp_path):
    up = uploaded("h264_aac_mkv")
    size = (320, 180)
    index = frame_on_screen(up.source, 10_000)

    image = image_at(
        kinesisvideo,
        up.stream,
        PRODUCER_START_MS + 10_000,
        Format="JPEG",
        FormatConfig={"JPEGQuality": "95"},
        WidthPixels=size[0],
        HeightPixels=size[1],
    )

    picture = decode_picture(image["ImageContent"], tmp_path / "image.jpg")
    assert picture.codec == "mjpeg"
    assert mean_diff(picture.rgb, rgb_frame(up.source, index, size), size[0]) < SAME_FRAME_MAX_DIFF
    # A mirrored picture of the same frame is far off: the check compares the picture, not its colours.
    assert mean_diff(picture.rgb, rgb_frame(up.source, index, size, "hflip"), size[0]) > OTHER_FRAME_MIN_DIFF


def test_images_by_server_timestamp_show_the_fragment_that_arrived_then(kinesisvideo, paced_upload, tmp_path):
    up, fragments = paced_upload
    width = source_size(up.source)[0]
    pictures = {}
    for k in (3, 6):
        arrival = epoch_ms(fragments[k]["ServerTimestamp"])
        client = archived(kinesisvideo, up.stream, IMAGES_API)
        response = client.get_images(
            StreamName=up.stream,
            ImageSelectorType="SERVER_TIMESTAMP",
            StartTimestamp=at_ms(arrival),
            EndTimestamp=at_ms(arrival),
            SamplingInterval=1000,
            Format="PNG",
        )
        assert [epoch_ms(i["TimeStamp"]) for i in response["Images"]] == [arrival]
        pictures[k] = decode_picture(response["Images"][0]["ImageContent"], tmp_path / f"{k}.png").rgb

    for k, rgb in pictures.items():
        expected = rgb_frame(up.source, frame_on_screen(up.source, 2000 * k))
        assert mean_diff(rgb, expected, width, NOISE_CORNER) < SAME_FRAME_MAX_DIFF, k
    assert mean_diff(pictures[3], pictures[6], width, NOISE_CORNER) > OTHER_FRAME_MIN_DIFF


def test_jpeg_quality_sets_the_compression(kinesisvideo, uploaded):
    up = uploaded("h264_aac_mkv")
    instant = PRODUCER_START_MS + 5000

    def jpeg(**params) -> bytes:
        return base64.b64decode(image_at(kinesisvideo, up.stream, instant, Format="JPEG", **params)["ImageContent"])

    low, high = jpeg(FormatConfig={"JPEGQuality": "10"}), jpeg(FormatConfig={"JPEGQuality": "95"})
    assert low[:3] == high[:3] == b"\xff\xd8\xff"
    assert len(low) < len(high)
    # Without FormatConfig the quality is 80 (docs/spec/kvs.md#getimages).
    assert jpeg() == jpeg(FormatConfig={"JPEGQuality": "80"})


def test_images_at_the_limits_are_accepted(kinesisvideo, uploaded):
    up = uploaded("h264_aac_mkv")
    # A 300 s range sampled every 200 ms (the minimum), first page of 2, JPEGQuality 1.
    request = images_request(
        PRODUCER_START_MS,
        PRODUCER_START_MS + 300_000,
        SamplingInterval=200,
        Format="JPEG",
        FormatConfig={"JPEGQuality": "1"},
        WidthPixels=3840,
        HeightPixels=2160,
        MaxResults=2,
    )

    response = archived(kinesisvideo, up.stream, IMAGES_API).get_images(StreamName=up.stream, **request)

    assert [epoch_ms(i["TimeStamp"]) for i in response["Images"]] == [PRODUCER_START_MS, PRODUCER_START_MS + 200]
    assert [outcome(i) for i in response["Images"]] == ["IMAGE", "IMAGE"]
    assert response.get("NextToken")


VALID_IMAGES = images_request(PRODUCER_START_MS, PRODUCER_START_MS + 4000, Format="JPEG", WidthPixels=32)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"FormatConfig": {"PNGQuality": "50"}}, id="format-config-other-key"),
        pytest.param({"FormatConfig": {"JPEGQuality": "0"}}, id="jpeg-quality-0"),
        pytest.param({"FormatConfig": {"JPEGQuality": "101"}}, id="jpeg-quality-101"),
        pytest.param({"FormatConfig": {"JPEGQuality": "high"}}, id="jpeg-quality-word"),
        pytest.param({"SamplingInterval": 199}, id="sampling-199"),
        pytest.param({"EndTimestamp": at_ms(PRODUCER_START_MS + 300_001)}, id="range-over-300-s"),
        pytest.param({"EndTimestamp": at_ms(PRODUCER_START_MS - 1)}, id="end-before-start"),
        pytest.param({"Format": "GIF"}, id="format-gif"),
        pytest.param({"ImageSelectorType": "ARRIVAL_TIMESTAMP"}, id="unknown-selector-type"),
        pytest.param({"WidthPixels": 3841}, id="width-3841"),
        pytest.param({"HeightPixels": 2161}, id="height-2161"),
        pytest.param({"MaxResults": 101}, id="max-results-101"),
        pytest.param({"NextToken": "bm90LWEtdG9rZW4="}, id="foreign-next-token"),
    ],
)
def test_invalid_images_request_is_invalid_argument(kinesisvideo, uploaded, params):
    # On a stream with video in the range, so only the refused parameter can be the reason.
    stream = uploaded("h264_aac_mkv").stream
    client = archived(kinesisvideo, stream, IMAGES_API, validate=False)

    error = api_error(lambda: client.get_images(StreamName=stream, **{**VALID_IMAGES, **params}))

    assert error == ("InvalidArgumentException", 400)


def test_images_request_without_format_is_invalid_argument(kinesisvideo, uploaded):
    # botocore refuses to send a request without Format, so it goes out as raw JSON.
    stream = uploaded("h264_aac_mkv").stream
    document = {
        "StreamName": stream,
        "ImageSelectorType": "PRODUCER_TIMESTAMP",
        "StartTimestamp": PRODUCER_START_MS / 1000,
        "EndTimestamp": (PRODUCER_START_MS + 4000) / 1000,
        "SamplingInterval": 1000,
    }

    assert post_json(kinesisvideo, stream, IMAGES_API, "/getImages", document) == ("InvalidArgumentException", 400)
    # The same document with a Format is served: only the missing member was the reason.
    assert post_json(kinesisvideo, stream, IMAGES_API, "/getImages", {**document, "Format": "JPEG"}) == ("", 200)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            mkv_header([AAC_TRACK]) + mkv_cluster(0, frames(AUDIO, range(0, 2000, 21), seed=51)), id="audio-only"
        ),
        pytest.param(
            mkv_header([H264_TRACK]) + mkv_cluster(0, frames(VIDEO, range(0, 2000, 40), seed=52)),
            id="undecodable-video",
        ),
    ],
)
def test_images_of_fragments_without_decodable_video_are_media_error(kinesisvideo, body):
    stream = create_stream(kinesisvideo, prefix="images-no-video")
    assert_full_ack_sequence(upload(kinesisvideo, stream, body), [0])
    start, end = PRODUCER_START_MS, PRODUCER_START_MS + 4500

    images, _ = all_images(kinesisvideo, stream, images_request(start, end, SamplingInterval=1500))

    assert [epoch_ms(i["TimeStamp"]) for i in images] == sampling_grid(start, end, 1500)
    # The 2 s fragment covers +0 and +1.5 s; nothing covers +3 s and +4.5 s.
    assert [outcome(i) for i in images] == ["MEDIA_ERROR", "MEDIA_ERROR", "NO_MEDIA", "NO_MEDIA"]


def test_aws_cli_get_images_pages_through_the_same_pictures_as_boto3(aws_cli, kinesisvideo, uploaded):
    up = uploaded("h264_aac_mkv")
    # Whole seconds: AWS CLI v1 sends timestamps without their milliseconds (+0.75 s .. +5.75 s into the upload).
    start_ms = (PRODUCER_START_MS + 1000) // 1000 * 1000
    end_ms = start_ms + 5000

    printed = aws_cli.json(
        "kinesis-video-archived-media", "get-images", "--stream-name", up.stream,
        "--image-selector-type", "PRODUCER_TIMESTAMP",
        "--start-timestamp", iso8601_ms(start_ms), "--end-timestamp", iso8601_ms(end_ms),
        "--sampling-interval", "1000", "--format", "PNG", "--width-pixels", "160", "--page-size", "4",
    )  # fmt: skip

    cli_images = printed["Images"]
    assert [round(float(i["TimeStamp"]) * 1000) for i in cli_images] == sampling_grid(start_ms, end_ms, 1000)
    boto_images, _ = all_images(kinesisvideo, up.stream, images_request(start_ms, end_ms, WidthPixels=160))
    assert [i["ImageContent"] for i in cli_images] == [i["ImageContent"] for i in boto_images]
    assert all(base64.b64decode(i["ImageContent"])[:8] == b"\x89PNG\r\n\x1a\n" for i in cli_images)


# ------------------------------------------------------------------------------------------------
# Errors shared by both APIs
# ------------------------------------------------------------------------------------------------


def call(kinesisvideo, api: str, stream: str, data_stream: str | None = None):
    """A valid GetClip / GetImages call for `stream` over the whole upload's producer range, on the data endpoint of
    `data_stream` (default: the stream itself)."""
    client = archived(kinesisvideo, data_stream or stream, api)
    if api == CLIP_API:
        return client.get_clip(StreamName=stream, ClipFragmentSelector=WHOLE_UPLOAD)
    return client.get_images(StreamName=stream, **VALID_IMAGES)


@pytest.mark.parametrize("api", [CLIP_API, IMAGES_API])
def test_unknown_stream_is_resource_not_found(kinesisvideo, uploaded, api):
    known = uploaded("h264_aac_mkv").stream

    error = api_error(lambda: call(kinesisvideo, api, "clip-no-such-stream", data_stream=known))

    assert error == ("ResourceNotFoundException", 404)


@pytest.mark.parametrize("api", [CLIP_API, IMAGES_API])
def test_zero_retention_stream_is_no_data_retention(kinesisvideo, h264_mkv, api):
    stream = create_stream(kinesisvideo, retention_hours=0, prefix="clip-r0")
    result = upload(kinesisvideo, stream, h264_mkv)
    assert result.status == 200 and result.events("RECEIVED"), result.ack_lines

    error = api_error(lambda: call(kinesisvideo, api, stream))

    assert error == ("NoDataRetentionException", 400)
