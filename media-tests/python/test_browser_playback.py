"""Browser playback: LIVE and ON_DEMAND HLS sessions played by hls.js and by the web console in headless Chromium
(Debian's /usr/bin/chromium driven by playwright-core through media-tests/browser/play.mjs).

Each playback asserts that video.currentTime advanced (4 s for LIVE and the console, the whole clip minus a margin
for ON_DEMAND through hls.js) without a seek, that no player error fired (hls.js ERROR events, fatal or not, video
'error' events, uncaught page errors; for the console window.framelogConsole.errors), that the video has the
source's size, and that the screenshots show a picture (a PNG of non-trivial size whose pixels are not uniform).
Screenshots are written under the test's tmp_path and copied to media-tests/browser/screenshots/ (gitignored).

The media is h264_420_aac.mkv: 8-bit 4:2:0 H.264 High + AAC LC, the H.264 format browsers and hardware decoders
generally support (the other fixtures are High 4:4:4 10-bit). LIVE streams are fed in real time by LiveProducer.
docs/playback.md ("Browsers") documents the Chromium configuration that plays.
The console's DOM contract is the one play.mjs documents (#streams, #live, #timeline, #still, video#player).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from hls_helpers import FRAGMENT_TAGS, brief, ffprobe_json, on_demand_url, session_url, source_media, video_playlist
from kds_helpers import REPO_ROOT
from kvs_helpers import (
    assert_full_ack_sequence,
    create_stream,
    epoch_ms,
    list_all_fragments,
    producer_range,
    put_endpoint,
    upload,
)
from media_fixtures import (
    ID_CLUSTER,
    ID_TIMECODE,
    PutMediaResult,
    cluster_timecode_element,
    ebml_id,
    ebml_size,
    parse_mkv_chunks,
    put_media,
    read_header,
    tool,
    with_tags,
)

PLAY_MJS = REPO_ROOT / "media-tests" / "browser" / "play.mjs"
SCREENSHOTS = REPO_ROOT / "media-tests" / "browser" / "screenshots"
HLS_JS_FILE = REPO_ROOT / "server" / "console" / "node_modules" / "hls.js" / "dist" / "hls.min.js"
BROWSER_RUN_TIMEOUT_S = 60  # play.mjs bounds itself at 55 s
LIVE_SECONDS = 4.0
ON_DEMAND_MARGIN_S = 1.5  # the end of an ON_DEMAND clip not waited for (startup, last frame)
MIN_PNG_BYTES = 10_000
MIN_PIXEL_STDDEV = 20.0  # of the grey levels (0-255); the test pattern is far above, a blank frame is ~0
LIVE_PREROLL_FRAGMENTS = 3  # persisted before the player starts: hls.js starts 3 target durations behind the edge


# ------------------------------------------------------------------------------------------------
# play.mjs
# ------------------------------------------------------------------------------------------------


def node_path() -> str:
    found = shutil.which("node")
    if not found:
        pytest.fail("node not found: the browser tests run media-tests/browser/play.mjs (scripts/setup.sh)", pytrace=False)
    return found


def run_play(name: str, tmp_path: Path, mode: str, *args: str, seconds: float | None = None) -> dict:
    """`node play.mjs <mode> <args...> <tmp_path>/<name>.png [seconds]`, bounded by BROWSER_RUN_TIMEOUT_S. Returns
    play.mjs's JSON result; its pictures (<name>.png: the page, <name>.video.png: the video element alone, and for the
    console <name>.still.png: the page showing the still, <name>.still-image.jpg: the still, for console-script the
    pages its steps asked for) are copied to media-tests/browser/screenshots/."""
    screenshot = tmp_path / f"{name}.png"
    cmd = [node_path(), str(PLAY_MJS), mode, *args, str(screenshot)]
    if seconds is not None:
        cmd.append(f"{seconds:g}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_RUN_TIMEOUT_S, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"play.mjs ran over {BROWSER_RUN_TIMEOUT_S} s: {' '.join(cmd)}\n{err.stdout}\n{err.stderr}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode in (0, 1) and lines, (
        f"play.mjs exited {proc.returncode} without a result: {' '.join(cmd)}\n"
        f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )
    result = json.loads(lines[-1])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pictures = [result.get(key) for key in ("screenshot", "videoScreenshot", "stillScreenshot", "stillImage")]
    for picture in [*pictures, *result.get("stepScreenshots", [])]:  # stepScreenshots: console-script mode
        if picture and Path(picture).is_file():
            shutil.copyfile(picture, SCREENSHOTS / Path(picture).name)
    return result


def summary(result: dict) -> str:
    """The result for an assertion message, session tokens shortened."""
    return brief(json.dumps(result, indent=1))


def grey_levels(png: Path) -> bytes:
    """The picture as 8-bit grey pixels (ffmpeg)."""
    cmd = [tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(png), "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout, f"ffmpeg cannot read {png}: {proc.stderr.decode(errors='replace')}"
    return proc.stdout


def assert_picture(png: Path, min_bytes: int = MIN_PNG_BYTES) -> None:
    """A PNG (or the console's JPEG still) of non-trivial size whose pixels are not uniform (not a blank, black or
    single-colour frame)."""
    assert png.is_file(), f"no screenshot at {png}"
    magic = png.read_bytes()[:8]
    assert magic == b"\x89PNG\r\n\x1a\n" or (png.suffix == ".jpg" and magic[:3] == b"\xff\xd8\xff"), (png, magic)
    assert png.stat().st_size > min_bytes, (png, png.stat().st_size)
    pixels = grey_levels(png)
    count = len(pixels)
    mean = sum(pixels) / count
    variance = sum(p * p for p in pixels) / count - mean * mean
    assert variance**0.5 > MIN_PIXEL_STDDEV, f"{png} is (nearly) uniform: mean {mean:.1f}, stddev {variance**0.5:.2f}"


def assert_played(result: dict, seconds: float, width: int, height: int) -> None:
    text = summary(result)
    assert result["errors"] == [], text
    assert result["start"] is not None, text
    assert result["played"] >= seconds, text
    assert result["end"] - result["start"] >= seconds - 0.5, text  # no seek ate the played time
    assert (result["width"], result["height"]) == (width, height), text
    assert result["ok"] is True, text
    assert_picture(Path(result["screenshot"]))
    assert_picture(Path(result["videoScreenshot"]))


# ------------------------------------------------------------------------------------------------
# Media and uploads
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    path: Path
    width: int
    height: int
    length_s: float


@pytest.fixture(scope="module")
def source(h264_420_aac_mkv) -> Source:
    media = source_media(h264_420_aac_mkv)
    video = media.streams["video"]
    assert video["codec_name"] == "h264" and video.get("profile") == "High", video
    assert media.codecs.lower() == "avc1.64001e,mp4a.40.2", media.codecs
    return Source(h264_420_aac_mkv, int(video["width"]), int(video["height"]), media.length_s)


def split_clusters(data: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    """(everything before the first Cluster, [(cluster timecode, the cluster's children after its Timecode)])."""
    chunk = parse_mkv_chunks(data)[0]
    header = data[: chunk.clusters[0].start]
    clusters = []
    ends = [c.start for c in chunk.clusters[1:]] + [chunk.end]
    for cluster, end in zip(chunk.clusters, ends):
        eid, size, body = read_header(data, cluster.start)
        assert eid == ID_CLUSTER, hex(eid)
        end = end if size is None else body + size  # matroskamux streamable=true: unknown size
        children, pos = [], body
        while pos < end:
            cid, csize, cbody = read_header(data, pos)
            if cid != ID_TIMECODE:
                children.append(data[pos : cbody + csize])
            pos = cbody + csize
        clusters.append((cluster.timecode, b"".join(children)))
    return header, clusters


def retimed_cluster(timecode: int, children: bytes) -> bytes:
    body = cluster_timecode_element(timecode) + children
    return ebml_id(ID_CLUSTER) + ebml_size(len(body)) + body


class LiveProducer:
    """Streams the fixture to PutMedia over one connection at real-time pace, as a camera does: the header, then one
    2 s cluster every 2 s, looping over the fixture with increasing timecodes (RELATIVE to a producer start of now,
    so fragment k's producer time is now + 2 k s and it arrives at that time). A background thread runs put_media
    with a generator body; stop() ends the body and waits for the server to answer the last fragment."""

    def __init__(self, kinesisvideo, stream: str, source: Path):
        self.stream = stream
        self.endpoint = put_endpoint(kinesisvideo, stream)
        self.header, self.clusters = split_clusters(source.read_bytes())
        self.period_ms = self.clusters[1][0] - self.clusters[0][0]
        self.loop_ms = self.clusters[-1][0] + self.period_ms
        self.stop_event = threading.Event()
        self.persisted = 0
        self.persisted_numbers: list[str] = []
        self.sent = 0
        self.persisted_event = threading.Condition()
        self.result: PutMediaResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"live-producer-{stream}", daemon=True)

    def _body(self):
        yield self.header
        origin = time.monotonic()
        index = 0
        while not self.stop_event.is_set():
            loop, position = divmod(index, len(self.clusters))
            timecode, children = self.clusters[position]
            due = origin + (loop * self.loop_ms + timecode) / 1000
            if self.stop_event.wait(max(0.0, due - time.monotonic())):
                return
            yield retimed_cluster(loop * self.loop_ms + timecode, children)
            self.sent += 1
            index += 1

    def _on_ack(self, ack: dict) -> None:
        if ack.get("EventType") == "PERSISTED":
            with self.persisted_event:
                self.persisted += 1
                self.persisted_numbers.append(ack["FragmentNumber"])
                self.persisted_event.notify_all()

    def _run(self) -> None:
        try:
            self.result = put_media(
                self.endpoint,
                self.stream,
                self._body(),
                timecode_type="RELATIVE",
                producer_start=time.time(),
                timeout=300,
                on_ack=self._on_ack,
            )
        except BaseException as err:  # noqa: BLE001 - reported by stop()
            self.error = err
        finally:
            with self.persisted_event:
                self.persisted_event.notify_all()

    def start(self) -> "LiveProducer":
        self.thread.start()
        return self

    def wait_for_persisted(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.persisted_event:
            while self.persisted < count and self.thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.persisted_event.wait(left)
        assert self.persisted >= count, (
            f"only {self.persisted} fragments persisted within {timeout} s (error {self.error!r}, "
            f"acks {self.result.ack_lines[-5:] if self.result else None})"
        )

    def stop(self) -> PutMediaResult:
        """Ends the body and returns put_media's result (the server must have persisted every cluster sent)."""
        self.stop_event.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the producer's PutMedia did not end within 30 s of its body"
        assert self.error is None, repr(self.error)
        assert self.result is not None
        return self.result


@pytest.fixture
def live_stream(kinesisvideo, source) -> LiveProducer:
    """A stream fed in real time while the test runs (producer.stream): LIVE_PREROLL_FRAGMENTS are persisted before
    the test body starts; the producer is stopped (and its acks checked) at the end."""
    stream = create_stream(kinesisvideo, prefix="browser-live")
    producer = LiveProducer(kinesisvideo, stream, source.path).start()
    try:
        producer.wait_for_persisted(LIVE_PREROLL_FRAGMENTS, timeout=20)
        yield producer
    finally:
        result = producer.stop()
    assert result.status == 200, (result.status, result.body[:500])
    assert not result.events("ERROR"), result.ack_lines
    assert len(result.persisted_numbers()) == producer.sent, (producer.sent, result.ack_lines[-10:])


@pytest.fixture(scope="module")
def vod_stream(kinesisvideo, source) -> str:
    """The fixture uploaded at once (RELATIVE, the HLS suite's producer start): ON_DEMAND through hls.js."""
    stream = create_stream(kinesisvideo, prefix="browser-vod")
    assert_full_ack_sequence(upload(kinesisvideo, stream, source.path))
    return stream


# ------------------------------------------------------------------------------------------------
# hls.js
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["FRAGMENTED_MP4", "MPEG_TS"])
def test_hls_js_plays_on_demand_to_the_end_of_the_clip(request, tmp_path, kinesisvideo, source, vod_stream, container):
    url = on_demand_url(kinesisvideo, vod_stream, ContainerFormat=container)
    seconds = source.length_s - ON_DEMAND_MARGIN_S

    result = run_play(request.node.name, tmp_path, "hls", url, seconds=seconds)

    assert result["mse"]["h264_aac"] is True, summary(result)
    assert result["levels"] == [{"codecs": "avc1.64001e,mp4a.40.2", "width": source.width, "height": source.height}], (
        summary(result)
    )
    assert result["live"] is False, summary(result)
    assert_played(result, seconds, source.width, source.height)
    assert result["httpErrors"] == [], summary(result)


def assert_followed_the_live_edge(result: dict, before: list[str]) -> None:
    """The player fetched at least one fragment persisted after it started: it played what arrived meanwhile. A
    low-latency player (the console's live view) may fetch only parts, named by media sequence number: the stream's
    fragments are numbered from 0, so a part of segment len(before) or later is of a fragment that came later."""
    fetched = result.get("fragmentNumbers") or []
    later_parts = [msn for msn in result.get("partSegments") or [] if msn >= len(before)]
    assert set(fetched) - set(before) or later_parts, (before, fetched, result.get("partSegments"))


def test_hls_js_plays_live_fmp4(request, tmp_path, kinesisvideo, source, live_stream):
    url = session_url(kinesisvideo, live_stream.stream, PlaybackMode="LIVE")
    assert not video_playlist(url).endlist
    before = list(live_stream.persisted_numbers)

    result = run_play(request.node.name, tmp_path, "hls", url, seconds=LIVE_SECONDS)

    assert result["live"] is True, summary(result)
    assert_played(result, LIVE_SECONDS, source.width, source.height)
    assert result["httpErrors"] == [], summary(result)
    assert_followed_the_live_edge(result, before)


# ------------------------------------------------------------------------------------------------
# The web console
# ------------------------------------------------------------------------------------------------


def test_console_serves_hls_js(server):
    with urllib.request.urlopen(f"{server.endpoint}/console/hls.min.js", timeout=30) as response:
        status, content_type, body = response.status, response.headers.get("content-type", ""), response.read()

    assert status == 200
    assert "javascript" in content_type, content_type
    assert body == HLS_JS_FILE.read_bytes(), "not the hls.js of server/console/node_modules"


@pytest.mark.parametrize("which, transport", [("live", "webrtc"), ("live-hls", "ll-hls")])
def test_console_plays_live(request, tmp_path, server, source, live_stream, which, transport):
    """Live in the console is WebRTC (WHEP) where the browser has it; `?live=hls` makes it Low-Latency HLS."""
    before = list(live_stream.persisted_numbers)

    result = run_play(
        request.node.name, tmp_path, "console", server.endpoint, live_stream.stream, which, seconds=LIVE_SECONDS
    )

    assert result["fragments"] >= LIVE_PREROLL_FRAGMENTS, summary(result)
    assert_played(result, LIVE_SECONDS, source.width, source.height)
    assert result["transport"] == transport, summary(result)
    if transport == "ll-hls":
        assert_followed_the_live_edge(result, before)


@pytest.fixture(scope="module")
def console_vod(kinesisvideo, source) -> str:
    """The fixture uploaded at once, recorded by a camera in the last half minute (producer start now - 25 s)."""
    stream = create_stream(kinesisvideo, prefix="browser-console")
    assert_full_ack_sequence(upload(kinesisvideo, stream, source.path, producer_start=time.time() - 25))
    return stream


@pytest.fixture(scope="module")
def console_on_demand(tmp_path_factory, server, console_vod) -> dict:
    """One console run on console_vod: a click on the first fragment, 4 s of ON_DEMAND playback, then #still."""
    directory = tmp_path_factory.mktemp("console-vod")
    return run_play("console_on_demand", directory, "console", server.endpoint, console_vod, "ondemand")


def test_console_plays_on_demand_from_a_timeline_click(console_on_demand, source):
    result = console_on_demand

    assert result["fragments"] == len(source_fragment_timecodes(source)), summary(result)
    assert result["clicked"]["fragmentStartMs"] <= result["clicked"]["atMs"] < result["clicked"]["fragmentEndMs"]
    assert_played(result, LIVE_SECONDS, source.width, source.height)


def test_console_still_has_the_source_dimensions(console_on_demand, source):
    result = console_on_demand

    assert result["still"] is not None, summary(result)
    assert (result["still"]["naturalWidth"], result["still"]["naturalHeight"]) == (source.width, source.height), (
        summary(result)
    )
    # The image file itself: that size, and a picture (not a uniform frame).
    image = Path(result["stillImage"])
    probed = ffprobe_json(image, "-show_entries", "stream=codec_name,width,height")["streams"]
    assert [(s["width"], s["height"]) for s in probed] == [(source.width, source.height)], probed
    assert_picture(image, min_bytes=5_000)


def source_fragment_timecodes(source: Source) -> list[int]:
    return [timecode for timecode, _ in split_clusters(source.path.read_bytes())[1]]


GAP_S = 10


@pytest.fixture(scope="module")
def gapped_tagged_stream(kinesisvideo, source) -> tuple[str, list[dict], list[dict]]:
    """Two uploads of the fixture GAP_S apart (producer time), the first with FRAGMENT_TAGS before clusters 3 and 7:
    (stream, ListFragments of the first upload, of the second)."""
    body = source.path.read_bytes()
    tagged = with_tags(body, FRAGMENT_TAGS)
    stream = create_stream(kinesisvideo, prefix="browser-gap")
    first_start = time.time() - 2 * source.length_s - GAP_S - 5
    first = assert_full_ack_sequence(upload(kinesisvideo, stream, tagged, producer_start=first_start))
    second_start = first_start + source.length_s + GAP_S
    second = assert_full_ack_sequence(upload(kinesisvideo, stream, body, producer_start=second_start))
    listed = {f["FragmentNumber"]: f for f in list_all_fragments(kinesisvideo, stream)}
    return stream, [listed[n] for n in first], [listed[n] for n in second]


@pytest.fixture(scope="module")
def console_gap(tmp_path_factory, server, source, gapped_tagged_stream) -> dict:
    """One console run on gapped_tagged_stream: a click on the first fragment, then ON_DEMAND playback across the
    hole into the second upload (gap_play_s)."""
    directory = tmp_path_factory.mktemp("console-gap")
    stream = gapped_tagged_stream[0]
    return run_play("console_gap", directory, "console", server.endpoint, stream, "ondemand", seconds=gap_play_s(source))


def gap_play_s(source: Source) -> float:
    return source.length_s + 4  # 4 s past the hole


def test_console_timeline_shows_fragments_gap_and_events(console_gap, gapped_tagged_stream):
    _, first, second = gapped_tagged_stream
    result = console_gap

    text = summary(result)
    assert result["fragments"] == len(first) + len(second), text
    # The timeline is drawn on producer or on server time; either way it holds exactly the stored fragments.
    starts = sorted(f["start"] for f in result["fragmentTimes"])
    by_producer = sorted(epoch_ms(f["ProducerTimestamp"]) for f in first + second)
    by_server = sorted(epoch_ms(f["ServerTimestamp"]) for f in first + second)
    assert starts in (by_producer, by_server), text
    # One hole: between the end of the first upload and the start of the second.
    assert result["gaps"] == 1, text
    gap = result["gapTimes"][0]
    if gap["start"] is not None and gap["end"] is not None and starts == by_producer:
        last = first[-1]
        first_end = epoch_ms(last["ProducerTimestamp"]) + round(last["FragmentLengthInMilliseconds"])
        assert abs(gap["start"] - first_end) <= 100, (gap, first_end)
        assert abs(gap["end"] - epoch_ms(second[0]["ProducerTimestamp"])) <= 100, (gap, second[0])
    # Every fragment tag sent, once; the muxer's own tags (ENCODER, before the first cluster) may show too.
    shown = [(e["name"], e["value"]) for e in result["events"]]
    sent = [pair for _, pairs in sorted(FRAGMENT_TAGS.items()) for pair in pairs]
    for pair in sent:
        assert shown.count(pair) == 1, (pair, shown)


def test_console_plays_on_demand_across_the_gap(console_gap, source):
    assert_played(console_gap, gap_play_s(source), source.width, source.height)


def test_hls_js_plays_across_a_gap_with_on_discontinuity(request, tmp_path, kinesisvideo, source, gapped_tagged_stream):
    # With DiscontinuityMode ON_DISCONTINUITY the playlist declares the hole, so hls.js resets its timeline there
    # and plays on into the second upload. (With NEVER, the default for PRODUCER_TIMESTAMP, the media timestamps
    # jump by GAP_S without an EXT-X-DISCONTINUITY, as in AWS; hls.js then reports bufferAppendNoProgress when it
    # plays across the hole: see docs/playback.md.)
    stream, first, second = gapped_tagged_stream
    start_ms = epoch_ms(first[0]["ProducerTimestamp"])
    end_ms = epoch_ms(second[-1]["ProducerTimestamp"]) + round(second[-1]["FragmentLengthInMilliseconds"])
    selector = producer_range(start_ms, end_ms)
    url = session_url(
        kinesisvideo, stream, PlaybackMode="ON_DEMAND", HLSFragmentSelector=selector, DiscontinuityMode="ON_DISCONTINUITY"
    )
    playlist = video_playlist(url)
    assert [i for i, s in enumerate(playlist.segments) if s.discontinuity] == [len(first)], brief(playlist.text)
    seconds = source.length_s + 5  # 5 s past the hole

    result = run_play(request.node.name, tmp_path, "hls", url, seconds=seconds)

    assert_played(result, seconds, source.width, source.height)
    assert result["httpErrors"] == [], summary(result)
