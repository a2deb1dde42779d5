"""framelog-edge recording a real RTSP camera into the real server.

The camera is rtsp_camera.py (GStreamer's RTSP server through the system python's gi), serving in a
loop a 10 s H.264 clip whose every frame is different: a moving ball with the frame's timestamp burned
in (timeoverlay), 320x240 at 30 fps, a key frame every 30 frames. Its frames identify themselves by
their bytes, so each frame the server stored can be found in the clip: what the agent recorded must
be a contiguous run of the clip's frames in loop order (nothing invented, nothing dropped in the
middle, no duplicate), cut into 1 s fragments at key frames, with producer timestamps on wall time.

The agent is the real `framelog-edge` (FRAMELOG_EDGE_BIN, else next to FRAMELOG_BIN, else the shared
release build) with a config of its own per test (its own buffer_dir and status port), stopped with
SIGTERM at the end of each test. Every wait is bounded; every process is stopped in the teardown.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from botocore.exceptions import ClientError

from kds_helpers import new_stream_name
from media_fixtures import cluster_blocks, data_client, parse_mkv_chunks
from rtsp_helpers import (
    EdgeAgent,
    RtspCamera,
    check_system_gi,
    edge_config,
    free_port,
    make_clip,
    picture_nals,
)

FPS = 30
GOP_FRAMES = 30
CLIP_FRAMES = 300  # 10 s: a recording of 12 s goes through the loop point
CLIP_PIPELINE = (
    f"videotestsrc num-buffers={CLIP_FRAMES} pattern=ball "
    f"! video/x-raw,width=320,height=240,framerate={FPS}/1,format=I420 "
    '! timeoverlay font-desc="Sans 24" '
    f"! x264enc key-int-max={GOP_FRAMES} bitrate=300 speed-preset=ultrafast option-string=scenecut=0 bframes=0 "
    "! h264parse ! matroskamux"
)
FRAGMENT_MS = 1000
USER, PASSWORD = "viewer", "s3cret"
RETENTION_HOURS = 2
# Producer timestamps are the agent's wall clock pinned at the first frame: within this of the server's.
WALL_CLOCK_SLACK_MS = 5000
# What the agent logs when the server answers a fragment with an ERROR ack (4004: timecode went back).
FRAGMENT_REFUSED = r"server error|\b4004\b| ERROR "


# ------------------------------------------------------------------------------------------------
# The source clip
# ------------------------------------------------------------------------------------------------


@dataclass
class Clip:
    path: Path
    pictures: list[tuple[bytes, ...]]  # picture NAL units of each frame, in file order
    keyframes: list[bool]
    position: dict[tuple[bytes, ...], int]  # picture -> index in the file

    def __len__(self) -> int:
        return len(self.pictures)


def mkv_frames(data: bytes) -> list[tuple[int | None, int, bool, bytes]]:
    """(cluster timecode, block relative timecode, keyframe, frame bytes) of every SimpleBlock."""
    frames = []
    for chunk in parse_mkv_chunks(data):
        for cluster in chunk.clusters:
            frames.extend(
                (cluster.timecode, b.relative_timecode, b.keyframe, b.payload) for b in cluster_blocks(data, cluster)
            )
    return frames


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Clip:
    check_system_gi()
    path = make_clip(tmp_path_factory.mktemp("edge-clip") / "ball.mkv", CLIP_PIPELINE)
    frames = mkv_frames(path.read_bytes())
    pictures = [picture_nals(data) for _, _, _, data in frames]
    keyframes = [key for _, _, key, _ in frames]
    assert len(pictures) == CLIP_FRAMES, f"{path} has {len(pictures)} frames"
    assert [i for i, key in enumerate(keyframes) if key] == list(range(0, CLIP_FRAMES, GOP_FRAMES))
    position = {picture: i for i, picture in enumerate(pictures)}
    assert len(position) == CLIP_FRAMES, "every frame of the clip must be different for frames to identify themselves"
    return Clip(path, pictures, keyframes, position)


# ------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def cameras(tmp_path):
    """start_camera(clip_path, **RtspCamera kwargs) -> a started camera, killed at teardown."""
    started: list[RtspCamera] = []

    def start_camera(clip_path: Path, **kwargs) -> RtspCamera:
        camera = RtspCamera(clip_path, tmp_path / "camera", **kwargs).start()
        started.append(camera)
        return camera

    yield start_camera
    for camera in started:
        camera.kill()


@pytest.fixture
def agents(tmp_path, server):
    """start_agent(streams) -> a started framelog-edge uploading to the shared server; its own
    buffer_dir and status port. Agents still running at teardown get SIGTERM (SIGKILL after 30 s)."""
    started: list[EdgeAgent] = []

    def start_agent(streams: list[dict]) -> EdgeAgent:
        directory = tmp_path / f"edge-{len(started)}"
        status_listen = f"127.0.0.1:{free_port()}"
        text = edge_config(server.endpoint, directory / "buffer", status_listen, streams)
        agent = EdgeAgent(text, directory, status_listen).start()
        started.append(agent)
        return agent

    yield start_agent
    for agent in started:
        agent.stop()


def rtsp_stream(name: str, source: str, transport: str = "tcp") -> dict:
    return {
        "name": name,
        "source": source,
        "rtsp_transport": transport,
        "fragment_duration_ms": FRAGMENT_MS,
        "stream_retention_hours": RETENTION_HOURS,
    }


def wait_for(
    what: str, timeout: float, check: Callable[[], object], agent: EdgeAgent | None = None, note: str = ""
):
    """Polls `check` until it returns something truthy (returned) or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    detail = ""
    if agent is not None:
        detail = f"\nstatus: {agent.status() if agent.alive else 'agent exited'}\nagent log:\n{agent.log()}"
    note = f"\n{note}" if note else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r}){note}{detail}", pytrace=False)


def uploaded(agent: EdgeAgent, stream: str) -> int:
    return agent.stream_status(stream)["uploaded_fragments"]


def stop_cleanly(agent: EdgeAgent) -> None:
    code = agent.stop()
    assert code == 0, f"framelog-edge exited with {code} on SIGTERM (None: killed after 30 s):\n{agent.log()}"


# ------------------------------------------------------------------------------------------------
# What the server stored
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFrame:
    fragment_number: str
    producer_ms: int  # cluster timecode + block offset: the frame's producer time in ms
    keyframe: bool
    data: bytes


def list_fragments(kinesisvideo, stream: str) -> list[dict]:
    """Every fragment of the stream (ListFragments, all pages), in fragment-number order."""
    client = data_client(kinesisvideo, "kinesis-video-archived-media", stream, "LIST_FRAGMENTS")
    selector = {
        "FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": 0, "EndTimestamp": time.time() + 86_400},
    }
    request = {"StreamName": stream, "FragmentSelector": selector}
    fragments: list[dict] = []
    for _ in range(100):
        response = client.list_fragments(**request)
        fragments.extend(response["Fragments"])
        if not response.get("NextToken"):
            return sorted(fragments, key=lambda f: int(f["FragmentNumber"]))
        request = {"StreamName": stream, "NextToken": response["NextToken"]}
    raise AssertionError("ListFragments kept returning NextToken")


def stored_frames(kinesisvideo, stream: str, fragments: list[dict]) -> list[StoredFrame]:
    """The frames of `fragments` in their order, read back with GetMediaForFragmentList."""
    client = data_client(kinesisvideo, "kinesis-video-archived-media", stream, "GET_MEDIA_FOR_FRAGMENT_LIST")
    numbers = [f["FragmentNumber"] for f in fragments]
    frames: list[StoredFrame] = []
    for at in range(0, len(numbers), 100):
        batch = numbers[at : at + 100]
        payload = client.get_media_for_fragment_list(StreamName=stream, Fragments=batch)["Payload"].read()
        chunks = parse_mkv_chunks(payload)
        assert [c.fragment_number for c in chunks] == batch, "one chunk per requested fragment, in order"
        for chunk in chunks:
            assert chunk.timecode_scale in (None, 1_000_000), f"timecode scale {chunk.timecode_scale}"
            for cluster in chunk.clusters:
                for block in cluster_blocks(payload, cluster):
                    producer_ms = cluster.timecode + block.relative_timecode
                    frames.append(StoredFrame(chunk.fragment_number, producer_ms, block.keyframe, block.payload))
    return frames


def runs_in_loop_order(frames: list[StoredFrame], clip: Clip) -> list[list[int]]:
    """The clip positions of the stored frames, split where a frame does not follow its predecessor
    in loop order. Fails on a frame that is not in the clip."""
    runs: list[list[int]] = []
    for index, frame in enumerate(frames):
        position = clip.position.get(picture_nals(frame.data))
        assert position is not None, (
            f"stored frame {index} (fragment {frame.fragment_number}, {len(frame.data)} bytes) "
            "is not a frame of the clip"
        )
        if runs and position == (runs[-1][-1] + 1) % len(clip):
            runs[-1].append(position)
        else:
            runs.append([position])
    return runs


def ms(value) -> int:
    return round(value.timestamp() * 1000)


def assert_timestamps(fragments: list[dict], frames: list[StoredFrame], earliest_ms: int, latest_ms: int) -> None:
    """Producer timestamps strictly increase (fragments in arrival order, and every frame), and are
    wall-clock times: inside [earliest, latest] and within WALL_CLOCK_SLACK_MS of the server's."""
    producer = [ms(f["ProducerTimestamp"]) for f in fragments]
    assert all(b > a for a, b in zip(producer, producer[1:])), f"fragment producer timestamps: {producer}"
    frame_ms = [f.producer_ms for f in frames]
    backwards = [i for i in range(1, len(frame_ms)) if frame_ms[i] <= frame_ms[i - 1]]
    assert not backwards, (
        f"frame producer times do not increase at {[(i, frame_ms[i - 1], frame_ms[i]) for i in backwards[:5]]}"
    )
    for fragment in fragments:
        p, s = ms(fragment["ProducerTimestamp"]), ms(fragment["ServerTimestamp"])
        assert earliest_ms <= p <= latest_ms, f"producer {p} outside the test's wall time [{earliest_ms}, {latest_ms}]"
        assert abs(s - p) <= WALL_CLOCK_SLACK_MS, f"producer {p} vs server {s}: not wall time"
    firsts = {}
    for frame in frames:
        firsts.setdefault(frame.fragment_number, frame.producer_ms)
    for fragment in fragments:
        assert firsts[fragment["FragmentNumber"]] == ms(fragment["ProducerTimestamp"]), (
            "a fragment's first frame is at its producer timestamp"
        )


def assert_one_second_fragments(fragments: list[dict], frames: list[StoredFrame]) -> None:
    """Each fragment is one 30-frame GOP of ~1 s that starts with a key frame."""
    by_fragment: dict[str, list[StoredFrame]] = {}
    for frame in frames:
        by_fragment.setdefault(frame.fragment_number, []).append(frame)
    shapes = []
    for fragment in fragments:
        own = by_fragment[fragment["FragmentNumber"]]
        shapes.append((len(own), fragment["FragmentLengthInMilliseconds"], own[0].keyframe))
    wrong = [s for s in shapes if s[0] != GOP_FRAMES or abs(s[1] - FRAGMENT_MS) > 100 or not s[2]]
    assert not wrong, f"(frames, length ms, starts with a key frame) of each fragment: {shapes}"


def describe(kinesisvideo, stream: str) -> dict | None:
    try:
        return kinesisvideo.describe_stream(StreamName=stream)["StreamInfo"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


def test_rtsp_camera_with_credentials_over_tcp_is_stored_frame_for_frame(kinesisvideo, clip, cameras, agents):
    camera = cameras(clip.path, user=USER, password=PASSWORD, transport="tcp")
    stream = new_stream_name("edge-rtsp")
    assert describe(kinesisvideo, stream) is None
    started_ms = round(time.time() * 1000)
    agent = agents([rtsp_stream(stream, camera.url_with(USER, PASSWORD), "tcp")])

    wait_for("recording to start", 20, lambda: agent.stream_status(stream)["recording"], agent)
    recording_ms = round(time.time() * 1000)
    # ~12 s of recording: 11 whole 1 s fragments uploaded (the clip's loop point is at 10 s).
    wait_for("11 uploaded fragments", 40, lambda: uploaded(agent, stream) >= 11, agent)
    assert time.time() * 1000 - recording_ms >= 10_000, "11 s of video cannot be uploaded in under 10 s"
    fragments = list_fragments(kinesisvideo, stream)
    frames = stored_frames(kinesisvideo, stream, fragments)
    latest_ms = round(time.time() * 1000)
    status = agent.stream_status(stream)
    alive = agent.alive
    stop_cleanly(agent)

    assert alive
    info = describe(kinesisvideo, stream)
    assert info is not None and info["Status"] == "ACTIVE", "the agent created the stream"
    assert info["DataRetentionInHours"] == RETENTION_HOURS, info
    assert len(fragments) >= 11, [f["FragmentNumber"] for f in fragments]
    runs = runs_in_loop_order(frames, clip)
    assert len(runs) == 1, (
        "the stored frames are one contiguous run of the clip in loop order; breaks after clip frames "
        f"{[r[-1] for r in runs[:-1]]} (to {[r[0] for r in runs[1:]]})"
    )
    assert len(runs[0]) > len(clip), "the recording went through the clip's loop point"
    assert clip.keyframes[runs[0][0]], "the first stored frame is a key frame"
    assert_one_second_fragments(fragments, frames)
    assert_timestamps(fragments, frames, started_ms, latest_ms)
    assert status["rejected_fragments"] == 0 and status["dropped_fragments"] == 0, status
    assert status["recorded_fragments"] >= len(fragments), status


def test_rtsp_over_udp_records(kinesisvideo, clip, cameras, agents):
    # The camera offers UDP only, so a TCP session cannot succeed by accident.
    camera = cameras(clip.path, transport="udp")
    stream = new_stream_name("edge-udp")
    started_ms = round(time.time() * 1000)
    agent = agents([rtsp_stream(stream, camera.url, "udp")])

    wait_for("5 uploaded fragments", 40, lambda: uploaded(agent, stream) >= 5, agent)
    fragments = list_fragments(kinesisvideo, stream)
    frames = stored_frames(kinesisvideo, stream, fragments)
    latest_ms = round(time.time() * 1000)
    stop_cleanly(agent)

    assert len(fragments) >= 5
    runs = runs_in_loop_order(frames, clip)
    assert len(runs) == 1, f"breaks after clip frames {[r[-1] for r in runs[:-1]]} (to {[r[0] for r in runs[1:]]})"
    # Cut at key frames: one GOP (1 s) each.
    gops = {}
    for frame in frames:
        gops.setdefault(frame.fragment_number, []).append(frame)
    shapes = [(len(own), own[0].keyframe) for own in gops.values()]
    assert all(count == GOP_FRAMES and key for count, key in shapes), f"(frames, starts with a key frame): {shapes}"
    assert_timestamps(fragments, frames, started_ms, latest_ms)


def test_wrong_rtsp_credentials_show_as_a_source_error_and_the_agent_keeps_running(
    kinesisvideo, clip, cameras, agents
):
    camera = cameras(clip.path, user=USER, password=PASSWORD, transport="tcp")
    stream = new_stream_name("edge-auth")
    agent = agents([rtsp_stream(stream, camera.url_with(USER, "wrong-password"), "tcp")])

    status = wait_for(
        "a source error in /status", 20, lambda: (s := agent.stream_status(stream))["last_error"] and s, agent
    )
    assert "source" in status["last_error"].lower(), status["last_error"]
    assert re.search(r"unauthori[sz]ed|401", status["last_error"], re.IGNORECASE), status["last_error"]
    # It keeps trying, and never records: sample /status for 3 s.
    samples = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        samples.append(agent.stream_status(stream))
        time.sleep(0.1)
    assert agent.alive, f"the agent exited:\n{agent.log()}"
    assert [s["recording"] for s in samples if s["recording"]] == [], "recording: true without any frame"
    assert all(s["recorded_fragments"] == 0 and s["uploaded_fragments"] == 0 for s in samples), samples[-1]
    assert samples[-1]["last_error"] and "source" in samples[-1]["last_error"].lower()
    assert describe(kinesisvideo, stream) is None or list_fragments(kinesisvideo, stream) == []
    assert camera.alive
    stop_cleanly(agent)


def test_a_camera_restart_is_reconnected_without_timestamp_errors(kinesisvideo, clip, cameras, agents):
    camera = cameras(clip.path, user=USER, password=PASSWORD, transport="tcp")
    stream = new_stream_name("edge-restart")
    started_ms = round(time.time() * 1000)
    agent = agents([rtsp_stream(stream, camera.url_with(USER, PASSWORD), "tcp")])
    wait_for("3 uploaded fragments", 30, lambda: uploaded(agent, stream) >= 3, agent)

    time.sleep(0.5)  # mid-fragment
    camera.kill()
    killed_ms = round(time.time() * 1000)
    outage = []  # (recording, last_error) while the camera is away
    while time.time() * 1000 < killed_ms + 3000:
        s = agent.stream_status(stream)
        outage.append((s["recording"], (s["last_error"] or "")[:100]))
        time.sleep(0.25)
    camera.start()  # the same port
    restarted_ms = round(time.time() * 1000)

    def after_restart() -> list[dict]:
        later = [f for f in list_fragments(kinesisvideo, stream) if ms(f["ProducerTimestamp"]) >= restarted_ms]
        return later if len(later) >= 3 else []

    noticed = [o for o in outage if not o[0] or o[1]]
    wait_for(
        "3 fragments recorded after the camera restart",
        40,
        after_restart,
        agent,
        note=f"while the camera was away, /status said (recording, last_error): {sorted(set(outage))}"
        + ("" if noticed else " -- the agent never noticed that the camera went away"),
    )
    fragments = list_fragments(kinesisvideo, stream)
    frames = stored_frames(kinesisvideo, stream, fragments)
    latest_ms = round(time.time() * 1000)
    status = agent.stream_status(stream)
    log = agent.full_log()
    stop_cleanly(agent)

    assert status["recording"], f"recording resumed: {status}"
    assert status["rejected_fragments"] == 0, status
    assert not re.search(FRAGMENT_REFUSED, log), "the server refused a fragment:\n" + "\n".join(
        line for line in log.splitlines() if re.search(FRAGMENT_REFUSED, line)
    )
    assert_timestamps(fragments, frames, started_ms, latest_ms)
    producer = [ms(f["ProducerTimestamp"]) for f in fragments]
    assert any(p < killed_ms for p in producer) and any(p >= restarted_ms for p in producer), producer
    runs = runs_in_loop_order(frames, clip)
    # Before the kill, one contiguous run; after the restart (a new camera session), another.
    assert len(runs) == 2, f"runs of clip frames: {[(r[0], r[-1], len(r)) for r in runs]}"
    assert clip.keyframes[runs[0][0]] and clip.keyframes[runs[1][0]], "each session starts at a key frame"


def test_status_command_and_prometheus_metrics_name_the_stream(kinesisvideo, clip, cameras, agents):
    camera = cameras(clip.path, transport="tcp")
    stream = new_stream_name("edge-status")
    agent = agents([rtsp_stream(stream, camera.url, "tcp")])
    wait_for("2 uploaded fragments", 30, lambda: uploaded(agent, stream) >= 2, agent)

    printed = subprocess.run(
        [agent.binary, "status", "--url", agent.status_url], capture_output=True, text=True, timeout=30
    )
    metrics = agent.metrics()
    stop_cleanly(agent)

    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines and lines[0].split()[:2] == ["stream", "state"], printed.stdout
    row = [line for line in lines[1:] if line.split() and line.split()[0] == stream]
    assert len(row) == 1, printed.stdout
    assert row[0].split()[1] in ("recording", "rec+up"), row[0]
    label = rf'\{{stream="{re.escape(stream)}"\}}'
    match = re.search(rf"^framelog_edge_uploaded_fragments_total{label} (\d+)$", metrics, re.M)
    assert match and int(match.group(1)) >= 2, metrics
    assert re.search(rf"^framelog_edge_recording{label} 1$", metrics, re.M), metrics
