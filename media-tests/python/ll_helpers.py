"""Low-Latency HLS helpers: a camera that uploads frame by frame in real time (so the server's live edge has frames
before each fragment completes), and a checker that asserts the LL-HLS rules (RFC 8216bis) of a media playlist from
its text.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from hls_helpers import attributes, brief
from kvs_helpers import create_stream, put_endpoint
from media_fixtures import (
    ID_CLUSTER,
    PutMediaResult,
    cluster_blocks,
    cluster_timecode_element,
    ebml_id,
    parse_mkv_chunks,
    put_media,
    simple_block_header,
)

UNKNOWN_SIZE = bytes([0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])


class PacedCamera:
    """Streams a Matroska fixture to PutMedia over one connection as a camera does: each frame is sent when it is
    captured. Timecodes are RELATIVE to a producer start taken when the body starts, so a frame's producer time is
    the wall-clock time it is sent; the fixture loops with increasing timecodes. Clusters have unknown sizes (each ends
    where the next begins), as the KVS producer SDK writes them. stop() sends the rest of the fragment in flight, ends
    the body and returns put_media's result."""

    def __init__(self, kinesisvideo, stream: str, source: Path):
        self.stream = stream
        self.endpoint = put_endpoint(kinesisvideo, stream)
        data = source.read_bytes()
        chunk = parse_mkv_chunks(data)[0]
        self.header = data[: chunk.clusters[0].start]
        self.clusters = [(c.timecode, cluster_blocks(data, c)) for c in chunk.clusters]
        self.period_ms = self.clusters[1][0] - self.clusters[0][0]
        self.loop_ms = self.clusters[-1][0] + self.period_ms
        self.stop_event = threading.Event()
        self.persisted: list[str] = []
        self.persisted_changed = threading.Condition()
        self.result: PutMediaResult | None = None
        self.error: BaseException | None = None
        self.producer_start_s = 0.0
        self.thread = threading.Thread(target=self._run, name=f"paced-camera-{stream}", daemon=True)

    def _body(self, origin: float):
        yield self.header
        index = 0
        while not self.stop_event.is_set():
            loop, position = divmod(index, len(self.clusters))
            timecode, blocks = self.clusters[position]
            timecode += loop * self.loop_ms
            yield ebml_id(ID_CLUSTER) + UNKNOWN_SIZE + cluster_timecode_element(timecode)
            due = origin
            for block in blocks:
                # Blocks come in decode order; with B-frames a later block may present earlier: never send early.
                # Once stopped, the rest of the cluster goes at once: a camera ends on a whole fragment.
                due = max(due, origin + (timecode + block.relative_timecode) / 1000)
                if not self.stop_event.is_set():
                    self.stop_event.wait(max(0.0, due - time.monotonic()))
                yield simple_block_header(block.track, block.relative_timecode, block.keyframe, len(block.payload))
                yield block.payload
            index += 1

    def _on_ack(self, ack: dict) -> None:
        if ack.get("EventType") == "PERSISTED":
            with self.persisted_changed:
                self.persisted.append(ack["FragmentNumber"])
                self.persisted_changed.notify_all()

    def _run(self) -> None:
        self.producer_start_s = time.time()
        origin = time.monotonic()
        try:
            self.result = put_media(
                self.endpoint,
                self.stream,
                self._body(origin),
                timecode_type="RELATIVE",
                producer_start=self.producer_start_s,
                timeout=300,
                on_ack=self._on_ack,
            )
        except BaseException as err:  # noqa: BLE001 - reported by stop()
            self.error = err
        finally:
            with self.persisted_changed:
                self.persisted_changed.notify_all()

    def start(self) -> "PacedCamera":
        self.thread.start()
        return self

    def wait_for_persisted(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.persisted_changed:
            while len(self.persisted) < count and self.thread.is_alive() and time.monotonic() < deadline:
                self.persisted_changed.wait(max(0.0, deadline - time.monotonic()))
        assert len(self.persisted) >= count, f"{len(self.persisted)} fragments persisted in {timeout} s: {self.error!r}"

    def stop(self) -> PutMediaResult:
        self.stop_event.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the camera's PutMedia did not end within 30 s of its body"
        assert self.error is None, repr(self.error)
        assert self.result is not None
        return self.result


# ------------------------------------------------------------------------------------------------
# The LL-HLS playlist checker
# ------------------------------------------------------------------------------------------------


@dataclass
class LlPart:
    msn: int
    index: int
    duration: float
    independent: bool
    uri: str


@dataclass
class LlSegment:
    msn: int
    parts: list[LlPart] = field(default_factory=list)
    duration: float | None = None  # EXTINF; None while the segment is still being received
    uri: str | None = None
    program_date_time: str | None = None


@dataclass
class LlPlaylist:
    text: str
    target_s: int
    part_target_s: float
    part_hold_back_s: float
    skip_until_s: float
    skipped: int
    segments: list[LlSegment]
    hint: tuple[int, int]  # (MSN, part) of the preload hint

    def last_part(self) -> tuple[int, int] | None:
        with_parts = [s for s in self.segments if s.parts]
        return (with_parts[-1].msn, with_parts[-1].parts[-1].index) if with_parts else None


@contextlib.contextmanager
def paced_camera(kinesisvideo, source: Path, prefix: str, preroll_fragments: int):
    """A PacedCamera on a new stream, once `preroll_fragments` are stored; stopped after, its upload checked."""
    camera = PacedCamera(kinesisvideo, create_stream(kinesisvideo, prefix=prefix), source).start()
    try:
        camera.wait_for_persisted(preroll_fragments, timeout=20)
        yield camera
    finally:
        result = camera.stop()
    assert result.status == 200, (result.status, result.body[:500])
    assert not result.events("ERROR"), result.ack_lines


def _msn_and_part(uri: str) -> tuple[int, int]:
    params = parse_qs(urlsplit(uri).query)
    return int(params["MSN"][0]), int(params["Part"][0])


def check_ll_media_playlist(text: str, skip_requested: bool = False, video: bool = True) -> LlPlaylist:
    """Parses an LL-HLS media playlist and asserts the rules of RFC 8216bis that a server must keep (each assertion
    names its rule). Returns the parsed playlist."""
    lines = [line for line in text.splitlines() if line.strip()]
    shown = brief(text)
    assert lines[0] == "#EXTM3U", shown
    tags = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("#EXT-X-VERSION", "#EXT-X-TARGETDURATION", "#EXT-X-SERVER-CONTROL", "#EXT-X-PART-INF",
                    "#EXT-X-MEDIA-SEQUENCE", "#EXT-X-SKIP"):
            assert name not in tags, f"{name} appears twice\n{shown}"
            tags[name] = value
    assert int(tags["#EXT-X-VERSION"]) >= 9, f"EXT-X-SKIP and delta updates need version 9\n{shown}"
    target_s = int(tags["#EXT-X-TARGETDURATION"])
    control = attributes(tags["#EXT-X-SERVER-CONTROL"])
    part_target_s = float(attributes(tags["#EXT-X-PART-INF"])["PART-TARGET"])
    assert control["CAN-BLOCK-RELOAD"] == "YES", shown
    part_hold_back_s = float(control["PART-HOLD-BACK"])
    assert part_hold_back_s >= 2 * part_target_s, f"PART-HOLD-BACK must be at least twice PART-TARGET\n{shown}"
    skip_until_s = float(control["CAN-SKIP-UNTIL"])
    assert skip_until_s >= 6 * target_s, f"CAN-SKIP-UNTIL must be at least six target durations\n{shown}"
    skipped = int(attributes(tags["#EXT-X-SKIP"])["SKIPPED-SEGMENTS"]) if "#EXT-X-SKIP" in tags else 0
    assert skipped == 0 or skip_requested, f"EXT-X-SKIP without _HLS_skip\n{shown}"

    msn = int(tags["#EXT-X-MEDIA-SEQUENCE"]) + skipped
    segments: list[LlSegment] = []
    current = LlSegment(msn)
    hints = []
    for number, line in enumerate(lines):
        name, _, value = line.partition(":")
        if name == "#EXT-X-PROGRAM-DATE-TIME":
            current.program_date_time = value
        elif name == "#EXT-X-PART":
            attrs = attributes(value)
            part_msn, index = _msn_and_part(attrs["URI"])
            assert part_msn == current.msn, f"a part of segment {part_msn} listed in segment {current.msn}\n{shown}"
            assert index == len(current.parts), f"part {index} out of order in segment {current.msn}\n{shown}"
            duration = float(attrs["DURATION"])
            assert 0 < duration <= part_target_s, f"part duration {duration} over PART-TARGET\n{shown}"
            current.parts.append(LlPart(part_msn, index, duration, attrs.get("INDEPENDENT") == "YES", attrs["URI"]))
        elif name == "#EXTINF":
            current.duration = float(value.split(",")[0])
            assert round(current.duration) <= target_s, f"EXTINF {current.duration} over the target\n{shown}"
        elif not line.startswith("#"):
            assert current.duration is not None, f"segment URI without EXTINF\n{shown}"
            current.uri = line
            segments.append(current)
            current = LlSegment(current.msn + 1)
        elif name == "#EXT-X-PRELOAD-HINT":
            attrs = attributes(value)
            assert attrs["TYPE"] == "PART", shown
            assert number == len(lines) - 1, f"the preload hint is the playlist's last line\n{shown}"
            hints.append(_msn_and_part(attrs["URI"]))
    if current.parts:
        segments.append(current)
    assert len(hints) == 1, f"one preload hint\n{shown}"

    for segment in segments:
        assert segment.program_date_time, f"segment {segment.msn} has no PROGRAM-DATE-TIME\n{shown}"
        if video and segment.parts:
            assert segment.parts[0].independent, f"segment {segment.msn} does not start with a key frame\n{shown}"
        if segment.parts and segment.duration is not None:
            total = sum(p.duration for p in segment.parts)
            allowed = 0.0015 * len(segment.parts)  # each DURATION is rounded to the ms
            assert abs(total - segment.duration) <= allowed, (
                f"segment {segment.msn}: parts sum to {total}, EXTINF {segment.duration}\n{shown}"
            )
    dates = [s.program_date_time for s in segments]
    assert dates == sorted(dates), f"PROGRAM-DATE-TIMEs go back\n{shown}"
    flags = [bool(s.parts) for s in segments]
    assert flags == sorted(flags), f"parts are listed for the newest segments only, without holes\n{shown}"
    with_parts = sum((s.duration or sum(p.duration for p in s.parts)) for s in segments if s.parts)
    every = sum((s.duration or sum(p.duration for p in s.parts)) for s in segments)
    assert with_parts >= min(3 * target_s, every) - 0.5, f"parts cover less than three target durations\n{shown}"
    # The next part: of the segment still being received, or, once that one is complete (its parts all listed, not
    # yet stored, which a playlist's text cannot tell), the next segment's first.
    last = segments[-1] if segments else None
    next_segment = (msn + len(segments), 0)
    expected = {(last.msn, len(last.parts)), next_segment} if last and last.duration is None else {next_segment}
    assert hints[0] in expected, f"preload hint {hints[0]}, the next part is one of {expected}\n{shown}"
    return LlPlaylist(text, target_s, part_target_s, part_hold_back_s, skip_until_s, skipped, segments, hints[0])


def playlist_url(media_url: str, **directives) -> str:
    """The media playlist URL with delivery directives (_HLS_msn, _HLS_part, _HLS_skip) added."""
    extra = "&".join(f"_HLS_{re.sub('^_*', '', name)}={value}" for name, value in directives.items())
    return f"{media_url}&{extra}" if extra else media_url
