"""ML consumer hooks end to end: consumers created through the rest-json API
(`/createConsumer`, `/describeConsumer`, `/listConsumers`, `/updateConsumer`, `/deleteConsumer`,
`/listConsumerDeadLetters`) deliver selected frames of a real stream to a webhook run by the test.

The webhook receiver (WebhookReceiver) records every call with its arrival time and can answer 2xx,
answer errors for a while or for good, delay its answers, or be down (listening socket closed).
Expected frames come from the source media (ffprobe's packet list, shifted by the producer start of the
upload) or from ListFragments / GetMediaForFragmentList, never from the server under test; pictures are
decoded with ffmpeg and compared with the source frame at the same time (h264_420_aac.mkv scrolls 4 px a
frame, so a neighbouring frame does not match).
"""

from __future__ import annotations

import base64
import collections
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from consumer_helpers import (
    SECOND_UPLOAD_START_MS,
    api_ok,
    assert_pictures_are_the_source_frames,
    consumer_api,
    consumer_request,
    describe,
    ms,
    settle,
    source_video,
    summarize_calls,
    timed_upload,
)
import kds_helpers
from kvs_helpers import (
    PRODUCER_START_MS,
    archive,
    assert_full_ack_sequence,
    create_stream,
    epoch_ms,
    list_all_fragments,
    upload,
)
from media_fixtures import (
    ID_CLUSTER,
    ID_TRACKS,
    cluster_blocks,
    parse_mkv_chunks,
    read_header,
    with_tags,
)

FRAGMENT_ID_TAG = "FRAMELOG_FRAGMENT_ID"
# Tags written before these clusters of the shared upload (the fragment's MKV tags).
FRAGMENT_TAGS = {
    2: [("event", "motion"), ("camera", "front-door")],
    5: [("event", "person")],
    7: [("event", "motion"), (FRAGMENT_ID_TAG, "consumer-tests/7")],
    8: [("label", "cat")],
}


# ------------------------------------------------------------------------------------------------
# The consumer API (the shared calls are in consumer_helpers.py)
# ------------------------------------------------------------------------------------------------


def dead_letters(endpoint: str, stream: str, name: str) -> list[dict]:
    return api_ok(endpoint, "listConsumerDeadLetters", {"StreamName": stream, "ConsumerName": name})["DeadLetters"]


def wait_for_metric(
    endpoint: str, stream: str, name: str, metric: str, predicate: Callable[[int], bool], timeout: float = 15.0
) -> dict:
    """Polls describeConsumer until Metrics[metric] satisfies predicate; returns the consumer."""
    deadline = time.monotonic() + timeout
    while True:
        consumer = describe(endpoint, stream, name)
        if predicate(consumer["Metrics"][metric]):
            return consumer
        if time.monotonic() > deadline:
            raise AssertionError(f"{metric} never satisfied the condition: {json.dumps(consumer, indent=1)}")
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------
# Source media and stored fragments
# ------------------------------------------------------------------------------------------------


def key_frame_times(path: Path, start_ms: int = PRODUCER_START_MS) -> list[int]:
    return [start_ms + t for t, key in source_video(path) if key]


def rate_selection(path: Path, interval_ms: float, start_ms: int = PRODUCER_START_MS) -> list[int]:
    """The frames a rate or interval selection takes over the whole upload: a frame when at least
    interval_ms (less half a millisecond: frame times are whole ms) passed since the last one taken."""
    taken: list[int] = []
    for t, _ in source_video(path):
        t += start_ms
        if not taken or t + 0.5 >= taken[-1] + interval_ms:
            taken.append(t)
    return taken


def track_entries(data: bytes, chunk_start: int) -> list[dict]:
    """number, type, codec id and CodecPrivate of each TrackEntry of the chunk starting at chunk_start."""
    _, size, body = read_header(data, chunk_start)
    _, seg_size, pos = read_header(data, body + size)
    while True:
        eid, size, child = read_header(data, pos)
        if eid == ID_CLUSTER:
            raise AssertionError("no Tracks before the first Cluster")
        if eid == ID_TRACKS:
            break
        pos = child + size
    entries = []
    at, end = child, child + size
    while at < end:
        _, entry_size, entry = read_header(data, at)
        fields: dict = {}
        inner = entry
        while inner < entry + entry_size:
            cid, csize, cbody = read_header(data, inner)
            value = data[cbody : cbody + csize]
            if cid == 0xD7:
                fields["number"] = int.from_bytes(value, "big")
            elif cid == 0x83:
                fields["type"] = int.from_bytes(value, "big")
            elif cid == 0x86:
                fields["codec_id"] = value.decode()
            elif cid == 0x63A2:
                fields["codec_private"] = bytes(value)
            inner = cbody + csize
        entries.append(fields)
        at = entry + entry_size
    return entries


@dataclass
class StoredStream:
    stream: str
    source: Path
    numbers: list[str]  # in upload order
    producer_ms: dict[str, int]  # fragment number -> ListFragments ProducerTimestamp (ms)
    server_ms: dict[str, int]
    tags: dict[str, dict[str, str]]  # fragment number -> the fragment's own MKV tags, as stored
    blocks: dict[str, dict[int, tuple[bytes, bool]]] = field(default_factory=dict)  # number -> rel ms -> video AU
    avcc: bytes = b""
    video_track: int = 0

    def fragment_of(self, frame_ms: int) -> str:
        """The fragment whose producer time span holds frame_ms (the last one starting at or before it)."""
        starts = [n for n in self.numbers if self.producer_ms[n] <= frame_ms]
        return starts[-1]


def stored_stream(kinesisvideo, stream: str, source: Path, numbers: list[str]) -> StoredStream:
    fragments = list_all_fragments(kinesisvideo, stream)
    assert [f["FragmentNumber"] for f in fragments] == numbers
    payload = archive(kinesisvideo, stream).get_media_for_fragment_list(StreamName=stream, Fragments=numbers)[
        "Payload"
    ].read()
    chunks = parse_mkv_chunks(payload)
    assert [c.fragment_number for c in chunks] == numbers
    tracks = track_entries(payload, chunks[0].start)
    video = next(t for t in tracks if t["type"] == 1)
    stored = StoredStream(
        stream=stream,
        source=source,
        numbers=numbers,
        producer_ms={f["FragmentNumber"]: epoch_ms(f["ProducerTimestamp"]) for f in fragments},
        server_ms={f["FragmentNumber"]: epoch_ms(f["ServerTimestamp"]) for f in fragments},
        tags={c.fragment_number: dict(c.post_cluster_tags) for c in chunks},
        avcc=video["codec_private"],
        video_track=video["number"],
    )
    for chunk in chunks:
        (cluster,) = chunk.clusters
        stored.blocks[chunk.fragment_number] = {
            b.relative_timecode: (b.payload, b.keyframe)
            for b in cluster_blocks(payload, cluster)
            if b.track == stored.video_track
        }
    return stored


@pytest.fixture(scope="module")
def tagged(kinesisvideo, h264_420_aac_mkv) -> StoredStream:
    """h264_420_aac.mkv (scrolling pattern, plus audio) uploaded once with FRAGMENT_TAGS, shared by the
    tests that only read it (each with consumers of its own)."""
    stream = create_stream(kinesisvideo, prefix="consumers")
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, with_tags(h264_420_aac_mkv.read_bytes(), FRAGMENT_TAGS)))
    return stored_stream(kinesisvideo, stream, h264_420_aac_mkv, numbers)


def frame_times(frames: list[dict]) -> list[int]:
    return [ms(f["FrameTimestamp"]) for f in frames]


def without_data(frame: dict) -> dict:
    return {k: v for k, v in frame.items() if k not in ("Data", "CodecPrivateData")}


# ------------------------------------------------------------------------------------------------
# 1. The simplest request
# ------------------------------------------------------------------------------------------------


def test_simplest_request_delivers_every_key_frame_as_a_jpeg_with_its_fragment(server, tagged, hooks, consumers, tmp_path):
    hook = hooks()
    request = {
        "StreamName": tagged.stream,
        "ConsumerName": "detector",
        "StartSelector": {"StartSelectorType": "EARLIEST"},
        "Selection": {"Type": "KEY_FRAMES"},
        "Output": {"Format": "JPEG"},
        "Webhook": {"Url": hook.url},
    }
    created = consumers(server.endpoint, request)
    assert created == {"ConsumerName": "detector", "StreamName": tagged.stream}

    frames = hook.wait_for_frames(len(tagged.numbers), timeout=30)
    consumer = wait_for_metric(server.endpoint, tagged.stream, "detector", "DeliveredFrames", lambda n: n >= 10)
    settle(hook)
    frames = hook.delivered_frames()

    # One frame per fragment, each fragment's key frame, in order.
    expected_times = [tagged.producer_ms[n] for n in tagged.numbers]
    assert expected_times == key_frame_times(tagged.source)
    assert frame_times(frames) == expected_times, [without_data(f) for f in frames]
    assert [f["FragmentNumber"] for f in frames] == tagged.numbers
    for frame, number in zip(frames, tagged.numbers):
        assert frame["StreamName"] == tagged.stream
        assert frame["KeyFrame"] is True
        assert frame["Format"] == "JPEG"
        assert ms(frame["ProducerTimestamp"]) == tagged.producer_ms[number]
        assert ms(frame["ServerTimestamp"]) == tagged.server_ms[number]
        stored = tagged.tags[number]
        expected_tags = {k: v for k, v in stored.items() if k != FRAGMENT_ID_TAG}
        assert frame["Tags"] == expected_tags, (number, frame["Tags"], stored)
        assert FRAGMENT_ID_TAG not in frame["Tags"]
    # The test's own tags are there (and the identity tag was stored, so its absence above means something).
    by_index = {i: f["Tags"] for i, f in enumerate(frames)}
    for index, pairs in FRAGMENT_TAGS.items():
        for name, value in pairs:
            if name != FRAGMENT_ID_TAG:
                assert by_index[index].get(name) == value, (index, by_index[index])
    assert tagged.tags[tagged.numbers[7]].get(FRAGMENT_ID_TAG) == "consumer-tests/7"
    for call in hook.delivered_calls():
        assert call.path == "/frames"
        assert call.headers.get("content-type", "").startswith("application/json")
        assert call.body["StreamName"] == tagged.stream and call.body["ConsumerName"] == "detector"
        assert len(call.frames) == 1  # MaxFrames defaults to 1
    assert_pictures_are_the_source_frames(frames, "JPEG", tagged.source, tmp_path)

    consumer = describe(server.endpoint, tagged.stream, "detector")
    assert consumer["State"] == "ACTIVE"
    assert consumer["Metrics"]["DeliveredFrames"] == 10
    assert consumer["Metrics"]["DeliveredBatches"] == 10
    assert consumer["Metrics"]["DeadLetteredBatches"] == 0
    assert consumer["Metrics"]["LagFragments"] == 0
    # Defaults filled in as documented.
    assert consumer["Batching"] == {"MaxFrames": 1, "MaxWaitMs": 1000}
    assert consumer["LagPolicy"] == {"Type": "BLOCK"}
    assert consumer["Retry"] == {"MaxAttempts": 5}
    assert consumer["Output"]["Format"] == "JPEG"
    listed = api_ok(server.endpoint, "listConsumers", {"StreamName": tagged.stream})["Consumers"]
    assert "detector" in [c["ConsumerName"] for c in listed]


# ------------------------------------------------------------------------------------------------
# 2. Selection modes and outputs
# ------------------------------------------------------------------------------------------------


def test_frames_per_second_takes_the_frames_of_the_rate_rule_across_fragments(server, tagged, hooks, consumers, tmp_path):
    hook = hooks()
    consumers(
        server.endpoint,
        consumer_request(
            tagged.stream, "fps2", hook.url,
            Selection={"Type": "FRAMES_PER_SECOND", "FramesPerSecond": 2},
            Batching={"MaxFrames": 5, "MaxWaitMs": 500},
        ),
    )
    expected = rate_selection(tagged.source, 1000 / 2)
    assert 38 <= len(expected) <= 42, len(expected)

    hook.wait_for_frames(len(expected), timeout=60)
    settle(hook, 1.2)
    frames = hook.delivered_frames()

    assert frame_times(frames) == expected
    keys = set(key_frame_times(tagged.source))
    for frame in frames:
        t = ms(frame["FrameTimestamp"])
        assert frame["KeyFrame"] is (t in keys), without_data(frame)
        assert frame["FragmentNumber"] == tagged.fragment_of(t), without_data(frame)
        assert ms(frame["ProducerTimestamp"]) == tagged.producer_ms[frame["FragmentNumber"]]
    assert_pictures_are_the_source_frames(frames, "JPEG", tagged.source, tmp_path)


def test_sampling_interval_takes_one_frame_per_interval_as_png(server, tagged, hooks, consumers, tmp_path):
    hook = hooks()
    consumers(
        server.endpoint,
        consumer_request(
            tagged.stream, "every700", hook.url,
            Selection={"Type": "SAMPLING_INTERVAL", "SamplingIntervalMs": 700},
            Output={"Format": "PNG"},
            Batching={"MaxFrames": 10, "MaxWaitMs": 300},
        ),
    )
    expected = rate_selection(tagged.source, 700)

    hook.wait_for_frames(len(expected), timeout=60)
    settle(hook, 1.0)
    frames = hook.delivered_frames()

    assert frame_times(frames) == expected
    assert {f["Format"] for f in frames} == {"PNG"}
    for frame in frames:
        assert frame["FragmentNumber"] == tagged.fragment_of(ms(frame["FrameTimestamp"])), without_data(frame)
    assert_pictures_are_the_source_frames(frames, "PNG", tagged.source, tmp_path)


def test_tag_selection_takes_the_key_frames_of_matching_fragments_only(server, tagged, hooks, consumers):
    motion, labelled = hooks(), hooks()
    consumers(
        server.endpoint,
        consumer_request(tagged.stream, "motion", motion.url,
                         Selection={"Type": "TAG", "TagName": "event", "TagValue": "motion"}, Output={"Format": "RAW"}),
    )
    consumers(
        server.endpoint,
        consumer_request(tagged.stream, "labelled", labelled.url,
                         Selection={"Type": "TAG", "TagName": "label"}, Output={"Format": "RAW"}),
    )
    # From the stored fragments' tags.
    want_motion = [n for n in tagged.numbers if tagged.tags[n].get("event") == "motion"]
    want_label = [n for n in tagged.numbers if "label" in tagged.tags[n]]
    assert len(want_motion) == 2 and len(want_label) == 1, tagged.tags

    motion.wait_for_frames(len(want_motion), timeout=30)
    labelled.wait_for_frames(len(want_label), timeout=30)
    # Every fragment has been looked at once the position passed the last one.
    for name in ("motion", "labelled"):
        deadline = time.monotonic() + 10
        while describe(server.endpoint, tagged.stream, name)["Metrics"]["LagFragments"] and time.monotonic() < deadline:
            time.sleep(0.1)
    settle(motion)
    settle(labelled)

    for hook, numbers in ((motion, want_motion), (labelled, want_label)):
        frames = hook.delivered_frames()
        assert [f["FragmentNumber"] for f in frames] == numbers, [without_data(f) for f in frames]
        assert frame_times(frames) == [tagged.producer_ms[n] for n in numbers]
        assert all(f["KeyFrame"] is True for f in frames)


def test_raw_output_is_the_stored_access_unit_with_its_codec_configuration(server, tagged, hooks, consumers):
    hook = hooks()
    consumers(
        server.endpoint,
        consumer_request(
            tagged.stream, "raw3", hook.url,
            Selection={"Type": "FRAMES_PER_SECOND", "FramesPerSecond": 3},
            Output={"Format": "RAW"},
            Batching={"MaxFrames": 10, "MaxWaitMs": 300},
        ),
    )
    expected = rate_selection(tagged.source, 1000 / 3)

    hook.wait_for_frames(len(expected), timeout=30)
    settle(hook)
    frames = hook.delivered_frames()

    assert frame_times(frames) == expected
    assert tagged.avcc[0] == 1, tagged.avcc[:8].hex()  # an avcC record
    for frame in frames:
        number = frame["FragmentNumber"]
        t = ms(frame["FrameTimestamp"])
        assert number == tagged.fragment_of(t)
        data, keyframe = tagged.blocks[number][t - tagged.producer_ms[number]]
        assert frame["Format"] == "RAW"
        assert base64.b64decode(frame["Data"]) == data, without_data(frame)
        assert frame["KeyFrame"] is keyframe
        assert base64.b64decode(frame["CodecPrivateData"]) == tagged.avcc
        assert frame["CodecId"] == f"avc1.{tagged.avcc[1:4].hex()}"
        assert (frame["WidthPixels"], frame["HeightPixels"]) == (640, 360)


# ------------------------------------------------------------------------------------------------
# 3. Batching
# ------------------------------------------------------------------------------------------------


def test_batches_hold_max_frames_and_the_last_partial_batch_goes_after_max_wait(server, tagged, hooks, consumers):
    hook = hooks()
    max_wait_ms = 2500
    consumers(
        server.endpoint,
        consumer_request(tagged.stream, "batched", hook.url, Output={"Format": "RAW"},
                         Batching={"MaxFrames": 4, "MaxWaitMs": max_wait_ms}),
    )
    expected = key_frame_times(tagged.source)

    hook.wait_for_frames(len(expected), timeout=30)
    settle(hook, 1.0)
    calls = hook.delivered_calls()

    assert [len(c.frames) for c in calls] == [4, 4, 2], summarize_calls(calls)
    assert [ms(f["FrameTimestamp"]) for c in calls for f in c.frames] == expected
    # Full batches go as soon as they are full; the partial one waits MaxWaitMs for more frames.
    assert calls[1].at - calls[0].at < max_wait_ms / 1000 - 0.3, (calls[0].at, calls[1].at)
    gap = calls[2].at - calls[1].at
    assert max_wait_ms / 1000 - 0.1 <= gap <= max_wait_ms / 1000 + 3.0, gap
    consumer = describe(server.endpoint, tagged.stream, "batched")
    assert consumer["Metrics"]["DeliveredBatches"] == 3
    assert consumer["Metrics"]["DeliveredFrames"] == 10


# ------------------------------------------------------------------------------------------------
# 4. kill -9 mid-delivery
# ------------------------------------------------------------------------------------------------


def test_kill_9_mid_delivery_resumes_without_skipping_a_frame(private_server, h264_mkv, hooks, consumers, monkeypatch):
    kvs = private_server.kinesisvideo_client()
    stream = create_stream(kvs, prefix="consumer-kill")
    assert_full_ack_sequence(upload(kvs, stream, h264_mkv))
    expected = rate_selection(h264_mkv, 1000 / 5)
    assert len(expected) >= 90
    hook = hooks(delay_s=0.15)
    # Kill while the webhook holds a frame in the middle of the third fragment (at 5 fps, 10 frames a
    # fragment): the last committed checkpoint is then inside a fragment, not at its end.
    per_fragment = len([t for t in expected if t < PRODUCER_START_MS + 2000])
    kill_after = 2 * per_fragment + per_fragment // 2
    reached = threading.Event()
    hook.on_call = lambda call: reached.set() if len(hook.calls) >= kill_after else None
    consumers(
        lambda: private_server.endpoint,
        consumer_request(stream, "killed", hook.url, Selection={"Type": "FRAMES_PER_SECOND", "FramesPerSecond": 5},
                         Output={"Format": "RAW"}, Batching={"MaxFrames": 1, "MaxWaitMs": 100}),
    )

    assert reached.wait(timeout=30), summarize_calls(hook.snapshot())
    private_server.kill()  # while the webhook holds call number kill_after (it answers after 150 ms)
    before = hook.snapshot()
    port = private_server.port
    monkeypatch.setattr(kds_helpers, "_free_port", lambda: port)
    private_server.start()
    assert private_server.port == port

    # Until every expected frame came, or the consumer caught up (position at the tip) without them.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if set(expected) <= {ms(f["FrameTimestamp"]) for c in hook.snapshot() for f in c.frames}:
            break
        if describe(private_server.endpoint, stream, "killed")["Metrics"]["LagFragments"] == 0:
            break
        time.sleep(0.2)
    settle(hook, 1.0)
    calls = hook.snapshot()
    after = calls[len(before):]
    seen = [ms(f["FrameTimestamp"]) for c in calls for f in c.frames]
    before_times = [ms(f["FrameTimestamp"]) for c in before for f in c.frames]
    after_times = [ms(f["FrameTimestamp"]) for c in after for f in c.frames]
    missing = sorted(set(expected) - set(seen))
    extra = sorted(set(seen) - set(expected))
    duplicates = {t: n for t, n in collections.Counter(seen).items() if n > 1}
    report = (
        f"before kill: {len(before)} calls, last {[t - PRODUCER_START_MS for t in before_times[-3:]]}; "
        f"after restart: first {[t - PRODUCER_START_MS for t in after_times[:5]]}; "
        f"missing (ms from start) {[t - PRODUCER_START_MS for t in missing]}; "
        f"extra {[t - PRODUCER_START_MS for t in extra]}; duplicates {duplicates}; "
        f"consumer {json.dumps(describe(private_server.endpoint, stream, 'killed'))}"
    )
    assert before_times == expected[: len(before_times)], report
    assert not missing, report
    assert not extra, report
    assert len(duplicates) <= 2 and all(n == 2 for n in duplicates.values()), report
    # Duplicates come only from the batch in flight at the kill: the last calls before it.
    assert set(duplicates) <= set(before_times[-2:]), report
    assert after_times == sorted(after_times), report
    consumer = describe(private_server.endpoint, stream, "killed")
    assert consumer["Metrics"]["DeliveredFrames"] == len(expected), report


# ------------------------------------------------------------------------------------------------
# 5. and 6. Webhook down, webhook failing
# ------------------------------------------------------------------------------------------------


def test_webhook_down_for_a_while_is_retried_then_caught_up_exactly_once(server, tagged, hooks, consumers):
    hook = hooks()
    hook.down()
    went_down = time.monotonic()
    consumers(
        server.endpoint,
        consumer_request(tagged.stream, "patient", hook.url, Output={"Format": "RAW"}, Retry={"MaxAttempts": 20}),
    )
    time.sleep(5)
    assert hook.snapshot() == []
    hook.up()
    came_back = time.monotonic()

    expected = key_frame_times(tagged.source)
    hook.wait_for_frames(len(expected), timeout=30)
    consumer = wait_for_metric(server.endpoint, tagged.stream, "patient", "DeliveredFrames", lambda n: n >= 10)
    settle(hook)
    frames = hook.delivered_frames()

    assert frame_times(frames) == expected, summarize_calls(hook.snapshot())
    assert all(c.at >= came_back for c in hook.snapshot())
    assert came_back - went_down >= 5
    consumer = describe(server.endpoint, tagged.stream, "patient")
    metrics = consumer["Metrics"]
    assert metrics["RetriedCalls"] > 0, consumer
    assert metrics["DeadLetteredBatches"] == 0, consumer
    assert metrics["DeliveredFrames"] == 10 and metrics["DeliveredBatches"] == 10, consumer
    assert dead_letters(server.endpoint, tagged.stream, "patient") == []


def test_webhook_failing_forever_dead_letters_each_batch_and_delivery_goes_on(kinesisvideo, server, h264_mkv, hooks, consumers):
    stream = create_stream(kinesisvideo, prefix="consumer-dead")
    first = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    hook = hooks()
    hook.fail_always(500)
    consumers(
        server.endpoint,
        consumer_request(stream, "unlucky", hook.url, Output={"Format": "RAW"}, Retry={"MaxAttempts": 2}),
    )

    consumer = wait_for_metric(server.endpoint, stream, "unlucky", "DeadLetteredBatches", lambda n: n >= 10, timeout=30)
    letters = dead_letters(server.endpoint, stream, "unlucky")
    failed_calls = hook.snapshot()
    fragments = list_all_fragments(kinesisvideo, stream)
    producer = {f["FragmentNumber"]: epoch_ms(f["ProducerTimestamp"]) for f in fragments}

    assert consumer["Metrics"]["DeadLetteredBatches"] == 10, consumer
    assert consumer["Metrics"]["DeliveredFrames"] == 0, consumer
    assert consumer["Metrics"]["RetriedCalls"] == 10, consumer  # one retry per batch with MaxAttempts 2
    assert len(letters) == 10, letters
    assert [l["FragmentNumbers"] for l in letters] == [[n] for n in first], letters
    assert [[ms(t) for t in l["FrameTimestamps"]] for l in letters] == [[producer[n]] for n in first], letters
    assert all(l["Attempts"] == 2 and "500" in l["Error"] for l in letters), letters
    # Every batch was tried exactly twice, in order.
    tried = [ms(f["FrameTimestamp"]) for c in failed_calls for f in c.frames]
    assert tried == [t for t in key_frame_times(h264_mkv) for _ in range(2)], summarize_calls(failed_calls)

    # The webhook recovers: later fragments are delivered, the dead-lettered ones are not sent again.
    hook.succeed()
    second = assert_full_ack_sequence(
        upload(kinesisvideo, stream, h264_mkv, producer_start=SECOND_UPLOAD_START_MS / 1000)
    )
    hook.wait_for_frames(len(second), timeout=30)
    settle(hook)
    frames = hook.delivered_frames()
    assert [f["FragmentNumber"] for f in frames] == second
    assert frame_times(frames) == key_frame_times(h264_mkv, SECOND_UPLOAD_START_MS)
    consumer = wait_for_metric(server.endpoint, stream, "unlucky", "DeliveredFrames", lambda n: n >= 10)
    assert consumer["Metrics"]["DeadLetteredBatches"] == 10, consumer


# ------------------------------------------------------------------------------------------------
# 7. Pause, resume, delete and API errors
# ------------------------------------------------------------------------------------------------


def test_pause_resume_and_delete(kinesisvideo, server, h264_mkv, hooks, consumers):
    stream = create_stream(kinesisvideo, prefix="consumer-pause")
    hook = hooks()
    consumers(server.endpoint, consumer_request(stream, "pausable", hook.url, Output={"Format": "RAW"}))
    key = {"StreamName": stream, "ConsumerName": "pausable"}

    paused = api_ok(server.endpoint, "updateConsumer", {**key, "State": "PAUSED"})["Consumer"]
    assert paused["State"] == "PAUSED"
    # Update overlays: what was not sent keeps its value.
    assert paused["Selection"] == {"Type": "KEY_FRAMES"} and paused["Output"]["Format"] == "RAW", paused
    assert paused["Webhook"] == {"Url": hook.url}
    first = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    time.sleep(2.0)
    assert hook.snapshot() == [], summarize_calls(hook.snapshot())
    consumer = describe(server.endpoint, stream, "pausable")
    assert consumer["State"] == "PAUSED"
    assert consumer["Metrics"]["LagFragments"] == 10, consumer

    resumed = api_ok(server.endpoint, "updateConsumer", {**key, "State": "ACTIVE", "Batching": {"MaxFrames": 2}})
    assert resumed["Consumer"]["State"] == "ACTIVE"
    assert resumed["Consumer"]["Batching"]["MaxFrames"] == 2
    hook.wait_for_frames(10, timeout=30)
    settle(hook)
    frames = hook.delivered_frames()
    assert [f["FragmentNumber"] for f in frames] == first
    assert [len(c.frames) for c in hook.delivered_calls()] == [2] * 5

    deleted = consumer_api(server.endpoint, "deleteConsumer", key)
    assert deleted.status == 200, deleted
    calls_at_delete = len(hook.snapshot())
    assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv, producer_start=SECOND_UPLOAD_START_MS / 1000))
    time.sleep(2.5)
    assert len(hook.snapshot()) == calls_at_delete, summarize_calls(hook.snapshot())
    gone = consumer_api(server.endpoint, "describeConsumer", key)
    assert (gone.status, gone.error_type) == (404, "ResourceNotFoundException"), gone
    listed = api_ok(server.endpoint, "listConsumers", {"StreamName": stream})["Consumers"]
    assert listed == []


def test_api_errors(server, tagged, hooks, consumers):
    hook = hooks()
    endpoint = server.endpoint
    stream = tagged.stream
    consumers(endpoint, consumer_request(stream, "taken", hook.url, Output={"Format": "RAW"}))

    duplicate = consumer_api(endpoint, "createConsumer", consumer_request(stream, "taken", hook.url))
    assert (duplicate.status, duplicate.error_type) == (400, "ResourceInUseException"), duplicate
    assert duplicate.body.get("Message")

    for operation in ("describeConsumer", "updateConsumer", "deleteConsumer", "listConsumerDeadLetters"):
        missing = consumer_api(endpoint, operation, {"StreamName": stream, "ConsumerName": "nobody"})
        assert (missing.status, missing.error_type) == (404, "ResourceNotFoundException"), (operation, missing)
        assert missing.body.get("Message"), (operation, missing)
    no_stream = consumer_api(endpoint, "createConsumer", consumer_request("no-such-stream-xyz", "c", hook.url))
    assert (no_stream.status, no_stream.error_type) == (404, "ResourceNotFoundException"), no_stream

    invalid = {
        "empty name": consumer_request(stream, "", hook.url),
        "name with a space": consumer_request(stream, "a b", hook.url),
        "name with a dot": consumer_request(stream, "a.b", hook.url),
        "name too long": consumer_request(stream, "n" * 129, hook.url),
        "no webhook": {k: v for k, v in consumer_request(stream, "c1", hook.url).items() if k != "Webhook"},
        "gopher webhook": consumer_request(stream, "c2", "gopher://127.0.0.1/frames"),
        "ftp webhook": consumer_request(stream, "c3", "ftp://127.0.0.1/frames"),
        "FramesPerSecond 0": consumer_request(stream, "c4", hook.url,
                                              Selection={"Type": "FRAMES_PER_SECOND", "FramesPerSecond": 0}),
        "unknown selection": consumer_request(stream, "c5", hook.url, Selection={"Type": "EVERY_OTHER_FRAME"}),
        "JPEGQuality 0": consumer_request(stream, "c6", hook.url, Output={"Format": "JPEG", "JPEGQuality": 0}),
        "SamplingIntervalMs 0": consumer_request(stream, "c7", hook.url,
                                                 Selection={"Type": "SAMPLING_INTERVAL", "SamplingIntervalMs": 0}),
        "MaxFrames 0": consumer_request(stream, "c8", hook.url, Batching={"MaxFrames": 0}),
        "unknown start": consumer_request(stream, "c9", hook.url, StartSelector={"StartSelectorType": "YESTERDAY"}),
    }
    for what, request in invalid.items():
        result = consumer_api(endpoint, "createConsumer", request)
        assert (result.status, result.error_type) == (400, "InvalidArgumentException"), (what, result)
        assert result.body.get("Message"), (what, result)
    bad_state = consumer_api(endpoint, "updateConsumer", {"StreamName": stream, "ConsumerName": "taken", "State": "ON"})
    assert (bad_state.status, bad_state.error_type) == (400, "InvalidArgumentException"), bad_state
    names = [c["ConsumerName"] for c in api_ok(endpoint, "listConsumers", {"StreamName": stream})["Consumers"]]
    assert not {"c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "a b", "a.b"} & set(names), names


@pytest.mark.parametrize("name", ["checkpoint", "dead"])
def test_a_valid_consumer_name_that_matches_a_state_key_suffix_still_works(server, tagged, hooks, consumers, name):
    # A consumer's spec is stored under `consumer.<name>`, its state under `consumer.<name>.checkpoint` and
    # `.dead`: a consumer named "checkpoint" or "dead" is a valid name and must be an ordinary consumer.
    hook = hooks()
    created = consumer_api(server.endpoint, "createConsumer",
                           consumer_request(tagged.stream, name, hook.url, Output={"Format": "RAW"}))
    if created.status != 200:
        # Refusing the name is acceptable too, as long as it is refused as invalid.
        assert (created.status, created.error_type) == (400, "InvalidArgumentException"), created
        return
    key = {"StreamName": tagged.stream, "ConsumerName": name}
    try:
        deadline = time.monotonic() + 4
        while len(hook.delivered_frames()) < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        described = consumer_api(server.endpoint, "describeConsumer", key)
        listed = [c["ConsumerName"] for c in api_ok(server.endpoint, "listConsumers", {"StreamName": tagged.stream})["Consumers"]]
        report = (f"createConsumer {created.status}; describeConsumer {described.status} {described.body}; "
                  f"listConsumers {listed}; frames delivered in 4 s: {len(hook.delivered_frames())}")
        assert described.status == 200, report
        assert name in listed, report
        assert frame_times(hook.delivered_frames()) == key_frame_times(tagged.source), report
    finally:
        consumer_api(server.endpoint, "deleteConsumer", key)


# ------------------------------------------------------------------------------------------------
# 8. NOW
# ------------------------------------------------------------------------------------------------


def test_now_delivers_only_fragments_uploaded_after_creation(kinesisvideo, server, h264_mkv, hooks, consumers):
    stream = create_stream(kinesisvideo, prefix="consumer-now")
    first = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    hook = hooks()
    consumers(
        server.endpoint,
        consumer_request(stream, "live", hook.url, StartSelector={"StartSelectorType": "NOW"}, Output={"Format": "RAW"}),
    )
    time.sleep(1.5)  # long enough for a wrong start to show
    assert hook.snapshot() == [], summarize_calls(hook.snapshot())

    second = assert_full_ack_sequence(
        upload(kinesisvideo, stream, h264_mkv, producer_start=SECOND_UPLOAD_START_MS / 1000)
    )
    hook.wait_for_frames(len(second), timeout=30)
    settle(hook)
    frames = hook.delivered_frames()

    assert not set(first) & {f["FragmentNumber"] for f in frames}
    assert [f["FragmentNumber"] for f in frames] == second
    assert frame_times(frames) == key_frame_times(h264_mkv, SECOND_UPLOAD_START_MS)


@pytest.mark.parametrize("selector", ["FRAGMENT_NUMBER", "PRODUCER_TIMESTAMP"])
def test_start_after_a_fragment_number_or_at_a_producer_timestamp(server, tagged, hooks, consumers, selector):
    hook = hooks()
    if selector == "FRAGMENT_NUMBER":
        start = {"StartSelectorType": selector, "AfterFragmentNumber": tagged.numbers[4]}
        want = tagged.numbers[5:]
    else:
        start = {"StartSelectorType": selector, "StartTimestamp": tagged.producer_ms[tagged.numbers[3]] / 1000}
        want = tagged.numbers[3:]
    name = f"from-{selector.lower().replace('_', '-')}"
    consumers(server.endpoint, consumer_request(tagged.stream, name, hook.url, StartSelector=start,
                                                Output={"Format": "RAW"}))

    hook.wait_for_frames(len(want), timeout=20)
    settle(hook)
    frames = hook.delivered_frames()

    assert [f["FragmentNumber"] for f in frames] == want, [without_data(f) for f in frames]
    assert describe(server.endpoint, tagged.stream, name)["StartSelector"]["StartSelectorType"] == selector


# ------------------------------------------------------------------------------------------------
# 9. LATEST lag policy
# ------------------------------------------------------------------------------------------------


def test_latest_lag_policy_skips_to_the_newest_fragment_and_counts_the_skips(kinesisvideo, server, h264_mkv, hooks, consumers):
    stream = create_stream(kinesisvideo, prefix="consumer-lag")
    hook = hooks(delay_s=1.0)
    consumers(
        server.endpoint,
        consumer_request(stream, "slow", hook.url, Output={"Format": "RAW"},
                         LagPolicy={"Type": "LATEST", "MaxLagMs": 1500}),
    )
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))

    hook.wait_for(lambda calls: any(f["FragmentNumber"] == numbers[-1] for c in calls for f in c.frames),
                  timeout=30, what="the last fragment's key frame")
    consumer = wait_for_metric(server.endpoint, stream, "slow", "LagFragments", lambda n: n == 0)
    time.sleep(1.5)
    settle(hook)
    frames = hook.delivered_frames()
    consumer = describe(server.endpoint, stream, "slow")
    metrics = consumer["Metrics"]

    delivered = [f["FragmentNumber"] for f in frames]
    report = f"delivered fragments (upload index) {[numbers.index(n) for n in delivered]}; metrics {metrics}"
    assert metrics["SkippedFragments"] > 0, report
    assert delivered[-1] == numbers[-1], report
    assert delivered == sorted(set(delivered), key=int), report  # in order, no repeats
    assert len(delivered) < len(numbers), report
    # Every fragment was either delivered or skipped, once.
    assert len(delivered) + metrics["SkippedFragments"] == len(numbers), report
    assert metrics["SkippedFrames"] >= metrics["SkippedFragments"], report
    assert metrics["DeliveredFrames"] == len(delivered), report


# ------------------------------------------------------------------------------------------------
# 10. Ingest is not slowed by a stalled consumer
# ------------------------------------------------------------------------------------------------


def test_a_stalled_consumer_does_not_slow_ingest(kinesisvideo, server, h264_mkv, hooks, consumers):
    # Same shape both times: a first upload, then the timed second upload onto a stream that has data.
    baseline_stream = create_stream(kinesisvideo, prefix="consumer-ingest")
    timed_upload(kinesisvideo, baseline_stream, h264_mkv, PRODUCER_START_MS)
    baseline = timed_upload(kinesisvideo, baseline_stream, h264_mkv, SECOND_UPLOAD_START_MS)

    stream = create_stream(kinesisvideo, prefix="consumer-ingest")
    stalled = [hooks(delay_s=10.0) for _ in range(3)]
    for index, hook in enumerate(stalled):
        consumers(server.endpoint, consumer_request(stream, f"stalled{index}", hook.url,
                                                    Selection={"Type": "FRAMES_PER_SECOND", "FramesPerSecond": 5}))
    timed_upload(kinesisvideo, stream, h264_mkv, PRODUCER_START_MS)
    # Every consumer is now stuck in its first webhook call (answered after 10 s).
    for hook in stalled:
        hook.wait_for(lambda calls: len(calls) >= 1, timeout=5, what="the first (stalled) call")
    with_consumers = timed_upload(kinesisvideo, stream, h264_mkv, SECOND_UPLOAD_START_MS)

    # They were still stuck when the upload ended.
    assert [len(h.snapshot()) for h in stalled] == [1, 1, 1]
    assert with_consumers <= 2 * baseline + 1.0, (baseline, with_consumers)
