"""PutMedia ingest edge cases against a real server process: an oversized fragment, a producer that vanishes
mid-fragment, the per-track rules (4011, 4004), fMP4 with B-frames, retention 0, request validation, and
where GetMedia starts and which Cluster Timecode it returns.

Expected values come from docs/spec/kvs.md: PutMedia (acks; 4001, 4004, 4011), GetMedia (start selectors and
chunk layout), ListFragments (the selector), Protocol (StreamName or StreamARN, not both) and Retention
(retention 0). Hand-made Matroska is written the way the producer SDK writes it (media_fixtures.mkv_header /
mkv_cluster, docs/spec/kvs.md#producer-matroska); the shared PutMedia, archive and GetMedia helpers come
from kvs_helpers.py.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from typing import Iterable, Iterator

import pytest
from botocore.exceptions import ClientError

from kvs_helpers import (
    fragments_to_file,
    AUDIO,
    FRAGMENT_COUNT,
    PRODUCER_START_MS,
    READ_TIMEOUT_S,
    VIDEO,
    archive,
    assert_ack_lines_well_formed,
    assert_full_ack_sequence,
    at_ms,
    create_stream,
    frames,
    get_media_chunks,
    list_all_fragments,
    media,
    put_endpoint,
    server_range,
    single_error,
    upload,
)
from media_fixtures import (
    AAC_TRACK,
    FIXTURE_CLUSTER_TIMECODES,
    FIXTURE_FRAMES,
    H264_TRACK,
    ID_CLUSTER,
    UNKNOWN_SIZE,
    GetMediaReader,
    HandFrame,
    HandTrack,
    PutMediaConnection,
    cluster_blocks,
    cluster_timecode_element,
    ebml_id,
    ebml_size,
    ffprobe_streams,
    mkv_cluster,
    mkv_header,
    parse_mkv_chunks,
    simple_block_header,
    tags_element,
)

VIDEO_FRAME_MS = 40  # 25 fps in the hand-made clusters
AUDIO_FRAME_MS = 50
# Over the 50 MB fragment limit (docs/spec/kvs.md#limits), sent as 1 MiB frames.
BIG_CLUSTER_BYTES = 60_000_000
BIG_FRAME_BYTES = 1 << 20


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def error_after_first_fragment(result, error_id: int, error_code: str) -> dict:
    """The upload ended cleanly with fragment 0 PERSISTED, then exactly one ERROR of this kind."""
    assert result.status == 200
    assert result.ended, f"the server did not end the response after the error: {result.read_error!r}"
    assert_ack_lines_well_formed(result)
    persisted = result.events("PERSISTED")
    assert [a["FragmentTimecode"] for a in persisted] == [0], result.ack_lines
    error = single_error(result)
    assert (error["ErrorId"], error["ErrorCode"]) == (error_id, error_code)
    assert result.acks.index(error) > result.acks.index(persisted[0])
    return error


def av_frames(video_times: Iterable[int], audio_times: Iterable[int], seed: int) -> list[HandFrame]:
    """Video and audio frames interleaved in time order, as a muxer writes them."""
    mixed = frames(VIDEO, video_times, seed) + frames(AUDIO, audio_times, seed + 1)
    return sorted(mixed, key=lambda f: (f.time, f.track))


def expected_blocks(timecode: int, sent: list[HandFrame]) -> list[tuple[int, int, bytes]]:
    """(track, cluster-relative timecode, frame bytes) of each frame of a cluster, as sent."""
    return [(f.track, f.time - timecode, f.payload) for f in sent]


def stored_blocks(kinesisvideo, stream: str, numbers: list[str]) -> list[list[tuple[int, int, bytes]]]:
    """Per fragment, (track, block timecode, frame bytes) of every block GetMediaForFragmentList returns."""
    response = archive(kinesisvideo, stream).get_media_for_fragment_list(StreamName=stream, Fragments=numbers)
    payload = response["Payload"].read()
    chunks = parse_mkv_chunks(payload)
    assert [c.fragment_number for c in chunks] == numbers
    assert [len(c.clusters) for c in chunks] == [1] * len(numbers)
    blocks = [cluster_blocks(payload, c.clusters[0]) for c in chunks]
    return [[(b.track, b.relative_timecode, b.payload) for b in fragment] for fragment in blocks]


def listed_numbers(kinesisvideo, stream: str) -> list[str]:
    return [f["FragmentNumber"] for f in list_all_fragments(kinesisvideo, stream)]


def error_code_and_status(excinfo) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def assert_server_alive(server) -> None:
    assert server.proc is not None and server.proc.poll() is None, f"the server exited:\n{server.log_tail()}"


def count(acks: list[dict], event_type: str, timecode: int | None = None) -> int:
    """How many acks of that type (and FragmentTimecode, when given) arrived."""
    return sum(
        a["EventType"] == event_type and (timecode is None or a.get("FragmentTimecode") == timecode) for a in acks
    )


def producer_ms(chunk) -> int:
    return round(float(chunk.pre_cluster_tags["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"]) * 1000)


# ------------------------------------------------------------------------------------------------
# 4001: a fragment over 50 MB
# ------------------------------------------------------------------------------------------------


def big_cluster(timecode: int, total_bytes: int, known_size: bool) -> Iterator[bytes]:
    """A cluster of about `total_bytes` of 1 MiB video frames, yielded piece by piece. The same frame object
    is yielded again and again, so the test never holds more than one frame of it."""
    frame = random.Random(4001).randbytes(BIG_FRAME_BYTES)
    count = -(-total_bytes // BIG_FRAME_BYTES)
    # 33 ms apart: 58 frames last under 2 s, far from the 20 s duration limit (4002).
    heads = [simple_block_header(VIDEO, i * 33, i == 0, len(frame)) for i in range(count)]
    timecode_element = cluster_timecode_element(timecode)
    if known_size:
        size = len(timecode_element) + sum(len(head) + len(frame) for head in heads)
        yield ebml_id(ID_CLUSTER) + ebml_size(size)
    else:
        yield ebml_id(ID_CLUSTER) + UNKNOWN_SIZE
    yield timecode_element
    for head in heads:
        yield head
        yield frame


# Producers write unknown-size clusters (the server finds the limit while the cluster grows); muxers such as
# matroskamux write known sizes (the server can refuse from the size field alone).
@pytest.mark.parametrize("known_size", [False, True], ids=["unknown-size-clusters", "known-size-clusters"])
def test_60_mb_cluster_is_error_4001_after_the_fragment_before_it_persisted(server, kinesisvideo, known_size):
    stream = create_stream(kinesisvideo)
    good_frames = frames(VIDEO, range(0, 2000, VIDEO_FRAME_MS), seed=1)

    def body() -> Iterator[bytes]:
        yield mkv_header([H264_TRACK])
        yield mkv_cluster(0, good_frames, known_size)
        yield from big_cluster(2000, BIG_CLUSTER_BYTES, known_size)

    result = upload(kinesisvideo, stream, body(), chunk_size=256 * 1024, timeout=60)

    error = error_after_first_fragment(result, 4001, "MAX_FRAGMENT_SIZE_REACHED")
    persisted = result.events("PERSISTED")
    # The oversized fragment is never received (let alone stored); an ERROR that names a timecode names it.
    assert [a["FragmentTimecode"] for a in result.events("RECEIVED")] == [0], result.ack_lines
    if "FragmentTimecode" in error:
        assert error["FragmentTimecode"] == 2000, error
    # The server is still up, and the fragment before is listed and readable as sent.
    assert_server_alive(server)
    numbers = [persisted[0]["FragmentNumber"]]
    assert listed_numbers(kinesisvideo, stream) == numbers
    assert stored_blocks(kinesisvideo, stream, numbers) == [expected_blocks(0, good_frames)]


# ------------------------------------------------------------------------------------------------
# A producer that disappears mid-fragment
# ------------------------------------------------------------------------------------------------


def test_producer_vanishing_mid_fragment_keeps_exactly_the_acknowledged_fragments(server, kinesisvideo):
    stream = create_stream(kinesisvideo)
    header = mkv_header([H264_TRACK])
    sent = {tc: frames(VIDEO, range(tc, tc + 1000, VIDEO_FRAME_MS), seed=tc) for tc in (0, 1000, 2000, 3000)}
    # Known sizes: an unknown-size cluster only ends when the next one starts, and this producer waits for
    # the PERSISTED acks of the first two before it sends anything of the third.
    clusters = {tc: mkv_cluster(tc, f, known_size=True) for tc, f in sent.items()}

    producer = PutMediaConnection(put_endpoint(kinesisvideo, stream), stream, producer_start=PRODUCER_START_MS / 1000)
    try:
        assert producer.status == 200
        producer.send(header + clusters[0] + clusters[1000])
        producer.read_acks_until(lambda acks: count(acks, "PERSISTED") == 2 or count(acks, "ERROR"))
        third = clusters[2000]
        producer.send(third[: len(third) // 2])
        # Its BUFFERING ack shows the server is inside the third fragment when the connection drops.
        producer.read_acks_until(lambda acks: count(acks, "BUFFERING", 2000) or count(acks, "ERROR"))
    finally:
        producer.abort()

    assert producer.events("ERROR") == [], producer.ack_lines
    persisted = producer.events("PERSISTED")
    assert [a["FragmentTimecode"] for a in persisted] == [0, 1000], producer.ack_lines
    numbers = [a["FragmentNumber"] for a in persisted]
    assert_server_alive(server)
    assert kinesisvideo.describe_stream(StreamName=stream)["StreamInfo"]["Status"] == "ACTIVE"
    # Exactly the two acknowledged fragments, frame for frame; nothing of the half-sent one.
    assert listed_numbers(kinesisvideo, stream) == numbers
    assert stored_blocks(kinesisvideo, stream, numbers) == [expected_blocks(tc, sent[tc]) for tc in (0, 1000)]

    # The producer reconnects and sends the lost fragment and the next one: a normal upload.
    again = upload(kinesisvideo, stream, header + clusters[2000] + clusters[3000], timeout=30)
    new_numbers = assert_full_ack_sequence(again, [2000, 3000])
    assert listed_numbers(kinesisvideo, stream) == numbers + new_numbers
    assert stored_blocks(kinesisvideo, stream, new_numbers) == [expected_blocks(tc, sent[tc]) for tc in (2000, 3000)]


# ------------------------------------------------------------------------------------------------
# Per-track rules: 4011 and 4004
# ------------------------------------------------------------------------------------------------


def test_fragment_without_frames_of_a_declared_track_is_error_4011(kinesisvideo):
    stream = create_stream(kinesisvideo)
    both = av_frames(range(0, 1000, VIDEO_FRAME_MS), range(0, 1000, AUDIO_FRAME_MS), seed=11)
    video_only = frames(VIDEO, range(1000, 2000, VIDEO_FRAME_MS), seed=12)
    # Tracks declares video (1) and audio (2); the second cluster has no audio, but every track needs at
    # least one frame in each fragment (docs/spec/kvs.md#putmedia-body).
    body = mkv_header([H264_TRACK, AAC_TRACK]) + mkv_cluster(0, both) + mkv_cluster(1000, video_only)

    result = upload(kinesisvideo, stream, body, timeout=30)

    error = error_after_first_fragment(result, 4011, "FRAMES_MISSING_FOR_TRACK")
    assert error["FragmentTimecode"] == 1000
    assert listed_numbers(kinesisvideo, stream) == [result.events("PERSISTED")[0]["FragmentNumber"]]


# First fragment of the 4004 tests: last video frame at 1000 ms, last audio frame at 900 ms.
FIRST_AV_FRAGMENT = (0, range(0, 1001, VIDEO_FRAME_MS), range(0, 901, AUDIO_FRAME_MS))


def av_upload_body(fragments: list[tuple[int, range, range]]) -> tuple[bytes, list[list[HandFrame]]]:
    """Header plus one unknown-size cluster per (cluster timecode, video times, audio times)."""
    sent = [av_frames(video, audio, seed=i * 10) for i, (_, video, audio) in enumerate(fragments)]
    body = mkv_header([H264_TRACK, AAC_TRACK]) + b"".join(
        mkv_cluster(tc, f) for (tc, _, _), f in zip(fragments, sent, strict=True)
    )
    return body, sent


def test_audio_may_start_before_the_previous_fragments_last_video_frame(kinesisvideo):
    # docs/spec/kvs.md#putmedia-body: a fragment's first frame must be strictly later than the previous
    # fragment's last; per track, since a muxer interleaves audio that starts before the video key frame
    # opening the fragment.
    fragments = [
        FIRST_AV_FRAGMENT,
        # Audio from 950 ms: before video's 1000 ms, after audio's 900 ms. Video from 1040 ms.
        (950, range(1040, 2001, VIDEO_FRAME_MS), range(950, 1951, AUDIO_FRAME_MS)),
        # The same again: audio from 1960 ms (video ended at 2000, audio at 1950), video from 2040 ms.
        (1960, range(2040, 3001, VIDEO_FRAME_MS), range(1960, 2961, AUDIO_FRAME_MS)),
    ]
    body, sent = av_upload_body(fragments)
    stream = create_stream(kinesisvideo)

    result = upload(kinesisvideo, stream, body, timeout=30)

    numbers = assert_full_ack_sequence(result, [0, 950, 1960])
    assert listed_numbers(kinesisvideo, stream) == numbers
    assert stored_blocks(kinesisvideo, stream, numbers) == [
        expected_blocks(tc, f) for (tc, _, _), f in zip(fragments, sent, strict=True)
    ]


@pytest.mark.parametrize(
    "second",
    [
        # Every case starts the second cluster with audio later than all earlier audio, so only a check of
        # each track's own first frame catches the track that went back.
        pytest.param(
            (950, range(1000, 2001, VIDEO_FRAME_MS), range(950, 1951, AUDIO_FRAME_MS)),
            id="video-repeats-its-last-time",
        ),
        pytest.param(
            (950, range(980, 2001, VIDEO_FRAME_MS), range(950, 1951, AUDIO_FRAME_MS)),
            id="video-goes-back",
        ),
        pytest.param(
            (900, range(1040, 2001, VIDEO_FRAME_MS), range(900, 1951, AUDIO_FRAME_MS)),
            id="audio-repeats-its-last-time",
        ),
    ],
)
def test_a_track_not_moving_forward_across_fragments_is_error_4004(kinesisvideo, second):
    stream = create_stream(kinesisvideo)
    body, _ = av_upload_body([FIRST_AV_FRAGMENT, second])

    result = upload(kinesisvideo, stream, body, timeout=30)

    error = error_after_first_fragment(result, 4004, "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS")
    assert error["FragmentTimecode"] == second[0]
    assert listed_numbers(kinesisvideo, stream) == [result.events("PERSISTED")[0]["FragmentNumber"]]


# ------------------------------------------------------------------------------------------------
# Fragmented MP4 with B-frames and audio
# ------------------------------------------------------------------------------------------------


def video_packet_times(path) -> list[tuple[int, int]]:
    """(pts, dts) of every video packet, in the stream's time base, without decoding."""
    ffprobe = shutil.which("ffprobe")
    if not ffprobe:
        pytest.fail("ffprobe not found (install ffmpeg)", pytrace=False)
    cmd = [ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts,dts", "-of", "csv=p=0"]
    proc = subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [tuple(int(v) for v in line.split(",")[:2]) for line in proc.stdout.split()]


def test_fragmented_mp4_with_b_frames_and_audio_acks_every_fragment_in_order(
    kinesisvideo, h264_bframes_aac_mp4, tmp_path
):
    # The fixture must really reorder frames, or this is just the plain fMP4 test again.
    assert any(pts != dts for pts, dts in video_packet_times(h264_bframes_aac_mp4))
    stream = create_stream(kinesisvideo)

    result = upload(kinesisvideo, stream, h264_bframes_aac_mp4, extra_headers={"Content-Type": "video/mp4"})

    # B-frames present after the next key frame decodes, and audio runs next to them: neither may be taken
    # for a timecode going back (4004). Every fragment gets BUFFERING, RECEIVED, PERSISTED, in that order
    # per timecode, for the same set of timecodes, and no ERROR.
    timecodes = [a["FragmentTimecode"] for a in result.events("BUFFERING")]
    numbers = assert_full_ack_sequence(result, timecodes)
    # One fragment per 2 s GOP, each starting close to its key frame.
    assert len(timecodes) == FRAGMENT_COUNT, result.ack_lines
    assert all(abs(tc - 2000 * i) <= 100 for i, tc in enumerate(timecodes)), timecodes
    assert listed_numbers(kinesisvideo, stream) == numbers
    path = fragments_to_file(kinesisvideo, stream, numbers, tmp_path / "bframes.mkv")
    streams = ffprobe_streams(path)
    assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"]
    video = next(s for s in streams if s["codec_name"] == "h264")
    assert int(video["nb_read_frames"]) == FIXTURE_FRAMES


# ------------------------------------------------------------------------------------------------
# Retention 0
# ------------------------------------------------------------------------------------------------


def test_zero_retention_stream_has_no_archive_but_get_media_reads_its_live_buffer(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo, retention_hours=0)

    result = upload(kinesisvideo, stream, h264_mkv)

    # docs/spec/kvs.md#retention: nothing is persisted, so no PERSISTED ack and no archive reads...
    assert result.status == 200 and result.ended
    assert_ack_lines_well_formed(result)
    assert [a["FragmentTimecode"] for a in result.events("BUFFERING")] == FIXTURE_CLUSTER_TIMECODES
    assert [a["FragmentTimecode"] for a in result.events("RECEIVED")] == FIXTURE_CLUSTER_TIMECODES
    assert result.events("PERSISTED") == [] and result.events("ERROR") == []
    client = archive(kinesisvideo, stream)
    everything = server_range(0, int(time.time() * 1000) + 86_400_000)
    with pytest.raises(ClientError) as listed:
        client.list_fragments(StreamName=stream, FragmentSelector=everything)
    assert error_code_and_status(listed) == ("NoDataRetentionException", 400)
    with pytest.raises(ClientError) as fetched:
        client.get_media_for_fragment_list(StreamName=stream, Fragments=[str(10**46)])
    assert error_code_and_status(fetched) == ("NoDataRetentionException", 400)
    # ...but GetMedia still serves the fragments from the live buffer.
    chunks, _ = get_media_chunks(kinesisvideo, stream, {"StartSelectorType": "EARLIEST"}, count=FRAGMENT_COUNT)
    assert [producer_ms(c) for c in chunks] == [PRODUCER_START_MS + tc for tc in FIXTURE_CLUSTER_TIMECODES]
    assert [c.clusters[0].blocks for c in chunks] == [60] * FRAGMENT_COUNT


# ------------------------------------------------------------------------------------------------
# Request validation
# ------------------------------------------------------------------------------------------------


def test_list_fragments_without_selector_or_next_token_is_invalid_argument(kinesisvideo):
    stream = create_stream(kinesisvideo)

    # docs/spec/kvs.md#listfragments: the selector is required unless NextToken is given (boto3 lets both be left out).
    with pytest.raises(ClientError) as excinfo:
        archive(kinesisvideo, stream).list_fragments(StreamName=stream)

    assert error_code_and_status(excinfo) == ("InvalidArgumentException", 400)


BOTH_NAME_AND_ARN = {
    "DescribeStream": lambda kvs, name, arn: kvs.describe_stream(StreamName=name, StreamARN=arn),
    "GetDataEndpoint": lambda kvs, name, arn: kvs.get_data_endpoint(
        StreamName=name, StreamARN=arn, APIName="GET_MEDIA"
    ),
    "ListTagsForStream": lambda kvs, name, arn: kvs.list_tags_for_stream(StreamName=name, StreamARN=arn),
    "ListFragments": lambda kvs, name, arn: archive(kvs, name).list_fragments(
        StreamName=name, StreamARN=arn, FragmentSelector=server_range(0, int(time.time() * 1000))
    ),
}


@pytest.mark.parametrize("operation", list(BOTH_NAME_AND_ARN))
def test_stream_name_and_arn_together_are_invalid_argument(kinesisvideo, operation):
    stream = create_stream(kinesisvideo)
    arn = kinesisvideo.describe_stream(StreamName=stream)["StreamInfo"]["StreamARN"]
    # Each alone names the stream, so the refusal below is about giving both (docs/spec/kvs.md#protocol).
    assert kinesisvideo.describe_stream(StreamARN=arn)["StreamInfo"]["StreamName"] == stream

    with pytest.raises(ClientError) as excinfo:
        BOTH_NAME_AND_ARN[operation](kinesisvideo, stream, arn)

    assert error_code_and_status(excinfo) == ("InvalidArgumentException", 400)


def test_put_media_with_stream_name_and_arn_headers_is_400_invalid_argument(kinesisvideo):
    stream = create_stream(kinesisvideo)
    arn = kinesisvideo.describe_stream(StreamName=stream)["StreamInfo"]["StreamARN"]
    body = mkv_header([H264_TRACK]) + mkv_cluster(0, frames(VIDEO, range(0, 1000, VIDEO_FRAME_MS), seed=7))

    # docs/spec/kvs.md#putmedia-request: x-amzn-stream-name or x-amzn-stream-arn, one of them, never both.
    result = upload(kinesisvideo, stream, body, extra_headers={"x-amzn-stream-arn": arn}, timeout=30)

    assert result.status == 400, result.ack_lines
    assert result.acks == []
    assert result.headers.get("x-amzn-errortype", "").startswith("InvalidArgumentException"), result.headers
    assert listed_numbers(kinesisvideo, stream) == []


# ------------------------------------------------------------------------------------------------
# GetMedia: where it starts, and the Cluster Timecode it returns
# ------------------------------------------------------------------------------------------------


def test_get_media_now_starts_with_the_newest_stored_fragment(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))

    reader = GetMediaReader(media(kinesisvideo, stream), stream, {"StartSelectorType": "NOW"}).start()
    try:
        first = reader.wait_for_chunks(1, READ_TIMEOUT_S)
        # Nothing older may follow: after the newest chunk NOW only tails, and nothing new is uploaded.
        settled = reader.wait_for_chunks(2, 1.0)
        assert reader.error is None, f"GetMedia failed: {reader.error!r}"
    finally:
        reader.close()

    # docs/spec/kvs.md#getmedia-start-selectors: NOW is the newest fragment stored, not the next one to arrive.
    assert [c.fragment_number for c in first] == numbers[-1:]
    assert [c.fragment_number for c in settled] == numbers[-1:]


# Fragment 2 of the fixture starts at producer time +4000 ms and its last frame is at about +5967 ms.
@pytest.mark.parametrize("offset_ms", [4001, 5000], ids=["just-after-its-start", "middle"])
def test_get_media_producer_timestamp_inside_a_fragment_starts_at_that_fragment(kinesisvideo, h264_mkv, offset_ms):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))

    chunks, _ = get_media_chunks(
        kinesisvideo,
        stream,
        {"StartSelectorType": "PRODUCER_TIMESTAMP", "StartTimestamp": at_ms(PRODUCER_START_MS + offset_ms)},
        count=FRAGMENT_COUNT - 2,
    )

    # docs/spec/kvs.md#getmedia-start-selectors: a timestamp selects the fragment that contains StartTimestamp.
    assert [c.fragment_number for c in chunks] == numbers[2:]
    assert producer_ms(chunks[0]) == PRODUCER_START_MS + 4000


def test_get_media_cluster_timecode_is_absolute_for_a_relative_upload(kinesisvideo, h264_mkv):
    source = h264_mkv.read_bytes()
    source_chunk = parse_mkv_chunks(source)[0]
    assert source_chunk.timecode_scale == 1_000_000  # 1 ms, so timecodes read as milliseconds
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, source, timecode_type="RELATIVE"))

    chunks, data = get_media_chunks(kinesisvideo, stream, {"StartSelectorType": "EARLIEST"}, count=FRAGMENT_COUNT)

    assert [c.fragment_number for c in chunks] == numbers
    assert [c.timecode_scale for c in chunks] == [1_000_000] * FRAGMENT_COUNT
    # docs/spec/kvs.md#getmedia-chunks: the Cluster Timecode is the absolute producer time (start + relative
    # timecode), the same instant as the AWS_KINESISVIDEO_PRODUCER_TIMESTAMP tag; not the relative 0, 2000, ...
    # sent.
    timecodes = [c.clusters[0].timecode for c in chunks]
    assert timecodes == [PRODUCER_START_MS + tc for tc in FIXTURE_CLUSTER_TIMECODES]
    assert timecodes == [producer_ms(c) for c in chunks]
    # Only the Timecode changes: every block keeps its bytes and its cluster-relative timecode.
    assert [cluster_blocks(data, c.clusters[0]) for c in chunks] == [
        cluster_blocks(source, c) for c in source_chunk.clusters
    ]


# ------------------------------------------------------------------------------------------------
# Idempotent replays (FRAMELOG_FRAGMENT_ID, docs/edge-agent.md)
# ------------------------------------------------------------------------------------------------

FRAGMENT_ID_TAG = "FRAMELOG_FRAGMENT_ID"


def identified_cluster(timecode: int, fragment_id: str | None, seed: int) -> bytes:
    """A tagged (or untagged) one-second video cluster: the Tags element before a cluster belongs to it."""
    tags = tags_element([(FRAGMENT_ID_TAG, fragment_id)]) if fragment_id is not None else b""
    return tags + mkv_cluster(timecode, frames(VIDEO, range(timecode, timecode + 1000, VIDEO_FRAME_MS), seed=seed))


@pytest.mark.parametrize(
    ("second_id", "stored_once"),
    [("agent-7/cam/41", True), ("agent-7/cam/42", False), (None, False)],
    ids=["same-identity", "other-identity", "untagged"],
)
def test_a_replayed_fragment_with_the_same_identity_is_stored_once(kinesisvideo, second_id, stored_once):
    stream = create_stream(kinesisvideo)
    first_id = "agent-7/cam/41" if second_id is not None else None
    # The same fragment (same producer time and bytes) on two connections, as a producer replays
    # one whose PERSISTED ack it never saw.
    first = upload(kinesisvideo, stream, mkv_header([H264_TRACK]) + identified_cluster(0, first_id, seed=5))
    second = upload(kinesisvideo, stream, mkv_header([H264_TRACK]) + identified_cluster(0, second_id, seed=5))

    first_numbers = assert_full_ack_sequence(first, [0])
    second_numbers = assert_full_ack_sequence(second, [0])
    listed = listed_numbers(kinesisvideo, stream)
    if stored_once:
        assert second_numbers == first_numbers, "the replay is acknowledged with the stored fragment's number"
        assert listed == first_numbers
    else:
        assert second_numbers != first_numbers
        assert sorted(listed) == sorted(first_numbers + second_numbers)


def test_an_identity_counts_only_at_its_own_producer_time(kinesisvideo):
    stream = create_stream(kinesisvideo)
    body = mkv_header([H264_TRACK]) + identified_cluster(0, "agent-7/cam/1", seed=6)
    later = mkv_header([H264_TRACK]) + identified_cluster(5000, "agent-7/cam/1", seed=6)

    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, body), [0]) + assert_full_ack_sequence(
        upload(kinesisvideo, stream, later), [5000]
    )

    assert len(set(numbers)) == 2
    assert sorted(listed_numbers(kinesisvideo, stream)) == sorted(numbers)


# ------------------------------------------------------------------------------------------------
# Picture size limit: 4096x2304 wherever a stream declares its size
# ------------------------------------------------------------------------------------------------


def exp_golomb(value: int) -> str:
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


def baseline_sps(width: int, height: int) -> bytes:
    """An H.264 Baseline SPS NAL unit declaring width x height (multiples of 16, progressive)."""
    bits = "01000010" + "00000000" + "00011110"  # profile_idc 66, constraints, level 30
    bits += "1" + "1" + "1" + "1"  # sps id 0, log2_max_frame_num 4, pic_order_cnt_type 0, log2_max_poc_lsb 4
    bits += exp_golomb(1) + "0"  # one reference frame, no gaps
    bits += exp_golomb(width // 16 - 1) + exp_golomb(height // 16 - 1)
    bits += "1" + "1" + "0" + "0" + "1"  # frame_mbs_only, direct_8x8, no cropping, no VUI, stop bit
    bits += "0" * (-len(bits) % 8)
    return bytes([0x67]) + int(bits, 2).to_bytes(len(bits) // 8, "big")


def avcc(sps: bytes) -> bytes:
    """An avcC record (4-byte NAL lengths) around one SPS and no PPS."""
    return bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps + b"\x00"


def key_frame_with(sps: bytes) -> bytes:
    """A key frame whose access unit carries `sps` before an IDR slice, as some cameras send them."""
    slice_nal = bytes([0x65]) + random.Random(3).randbytes(400)
    return b"".join(len(nal).to_bytes(4, "big") + nal for nal in (sps, slice_nal))


@pytest.mark.parametrize(
    ("record_size", "in_band_size", "accepted"),
    [
        pytest.param((320, 240), (3840, 2160), True, id="4k-uhd-in-frames-is-accepted"),
        pytest.param((320, 240), (8192, 4320), False, id="8k-in-frames-behind-a-small-record"),
        pytest.param((8192, 4320), (320, 240), False, id="8k-in-the-codec-record"),
    ],
)
def test_pictures_over_4096x2304_are_refused_before_anything_is_stored(
    kinesisvideo, record_size, in_band_size, accepted
):
    stream = create_stream(kinesisvideo, prefix="picture-size")
    track = HandTrack(1, "V_MPEG4/ISO/AVC", 1, avcc(baseline_sps(*record_size)))
    key = HandFrame(VIDEO, 0, key_frame_with(baseline_sps(*in_band_size)), keyframe=True)
    body = mkv_header([track]) + mkv_cluster(0, [key] + frames(VIDEO, range(40, 2000, 40), seed=9)[1:])

    result = upload(kinesisvideo, stream, body)

    if accepted:
        assert_full_ack_sequence(result, [0])
    else:
        assert (single_error(result)["ErrorCode"]) == "INVALID_MKV_DATA"
        assert listed_numbers(kinesisvideo, stream) == []


# ------------------------------------------------------------------------------------------------
# kill -9 while fragments are written to segment files
# ------------------------------------------------------------------------------------------------

LARGE_KEY_FRAME_BYTES = 400_000  # with 19 deltas of 10 KB, a fragment well over the 256 KiB segment threshold


def large_cluster(timecode: int, seed: int) -> tuple[bytes, list[HandFrame]]:
    rng = random.Random(seed)
    sent = [HandFrame(VIDEO, timecode, rng.randbytes(LARGE_KEY_FRAME_BYTES), keyframe=True)]
    sent += [HandFrame(VIDEO, timecode + 100 * i, rng.randbytes(10_000)) for i in range(1, 20)]
    return mkv_cluster(timecode, sent), sent


def drain_acks(conn: PutMediaConnection) -> None:
    """Reads whatever acks the server sent before it died."""
    try:
        conn.read_acks_until(lambda _acks: False)
    except AssertionError:
        pass


def test_kill_9_during_large_fragment_writes_keeps_every_persisted_fragment_intact(private_server):
    stream = create_stream(private_server.kinesisvideo_client(), prefix="segments-crash")
    acked: dict[str, tuple[int, list[HandFrame]]] = {}
    for cycle in range(3):
        conn = PutMediaConnection(put_endpoint(private_server.kinesisvideo_client(), stream), stream)
        conn.send(mkv_header([H264_TRACK]))
        clusters = {}
        for index in range(10):
            timecode = cycle * 100_000 + index * 2_000
            body, sent = large_cluster(timecode, seed=cycle * 100 + index)
            clusters[timecode] = sent
            conn.send(body)
            if index == 4:
                conn.read_acks_until(lambda acks: len([a for a in acks if a["EventType"] == "PERSISTED"]) >= 3)
        # The last fragments are being received, appended and synced: kill now.
        private_server.kill()
        drain_acks(conn)
        for ack in conn.events("PERSISTED"):
            acked[ack["FragmentNumber"]] = (ack["FragmentTimecode"], clusters[ack["FragmentTimecode"]])
        private_server.start()

    kinesisvideo = private_server.kinesisvideo_client()
    numbers = sorted(acked, key=int)
    assert len(numbers) >= 9, "three cycles of at least three PERSISTED fragments"
    listed = set(listed_numbers(kinesisvideo, stream))
    assert set(numbers) <= listed, f"acknowledged fragments lost: {set(numbers) - listed}"
    stored = stored_blocks(kinesisvideo, stream, numbers)
    for number, blocks in zip(numbers, stored):
        timecode, sent = acked[number]
        assert blocks == expected_blocks(timecode, sent), f"fragment {number} changed across the crash"
    segment_files = list((private_server.data_dir / "engine" / "segments").rglob("*.seg"))
    assert segment_files, "the fragments went to segment files"
