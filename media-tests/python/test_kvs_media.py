"""KVS media data plane end to end: PutMedia (raw chunked HTTP and curl), ListFragments,
GetMediaForFragmentList and GetMedia through boto3, checked with ffprobe and an EBML parser.

Expected values come from docs/spec/kvs.md (PutMedia, GetMedia, ListFragments, GetMediaForFragmentList and
producer Matroska), and from the shape of the test media (media_fixtures.py): 10 clusters at timecodes 0, 2000,
..., 18000 ms, 600 video frames. Data-plane clients are pointed at GetDataEndpoint's answer, as real clients do.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from kds_helpers import new_stream_name
from kvs_helpers import (
    fragments_to_file,
    FRAGMENT_COUNT,
    PRODUCER_START_MS,
    READ_TIMEOUT_S,
    archive,
    assert_ack_lines_well_formed,
    assert_full_ack_sequence,
    at_ms,
    create_stream,
    epoch_ms,
    get_media_chunks,
    is_fragment_number,
    list_all_fragments,
    media,
    producer_range,
    put_endpoint,
    server_range,
    single_error,
    upload,
)
from media_fixtures import (
    FIXTURE_CLUSTER_TIMECODES,
    FIXTURE_FRAMES,
    GetMediaReader,
    PutMediaResult,
    chunk_bytes,
    ffprobe_streams,
    parse_mkv_chunks,
    put_media,
    put_media_curl,
    video_frame_count,
)

NOT_FOUND_MESSAGE = "The requested stream is not found or not active."
GET_MEDIA_TAGS = [
    "AWS_KINESISVIDEO_FRAGMENT_NUMBER",
    "AWS_KINESISVIDEO_SERVER_TIMESTAMP",
    "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP",
    "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW",
    "AWS_KINESISVIDEO_CONTINUATION_TOKEN",
]
TRUNCATED_BYTES = 700_000


# ------------------------------------------------------------------------------------------------
# Helpers (the shared ones are in kvs_helpers.py)
# ------------------------------------------------------------------------------------------------


def frame_count_of(tmp_path: Path, name: str, payload: bytes) -> int:
    path = tmp_path / name
    path.write_bytes(payload)
    return video_frame_count(path)


# ------------------------------------------------------------------------------------------------
# PutMedia acks
# ------------------------------------------------------------------------------------------------


def test_put_media_acks_buffering_received_persisted_for_every_cluster(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)

    result = upload(kinesisvideo, stream, h264_mkv, chunk_size=16 * 1024)

    numbers = assert_full_ack_sequence(result)
    assert len(numbers) == FRAGMENT_COUNT
    assert all(is_fragment_number(n) for n in numbers), numbers


def test_absolute_timecodes_are_echoed_and_become_producer_timestamps(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)

    result = upload(kinesisvideo, stream, h264_mkv, timecode_type="ABSOLUTE")

    numbers = assert_full_ack_sequence(result)
    fragments = list_all_fragments(kinesisvideo, stream)
    assert [f["FragmentNumber"] for f in fragments] == numbers
    # ABSOLUTE: producer timestamp = cluster timecode (ms since the epoch), docs/spec/kvs.md#putmedia-timestamps.
    assert [epoch_ms(f["ProducerTimestamp"]) for f in fragments] == FIXTURE_CLUSTER_TIMECODES


def test_put_media_to_missing_stream_is_404_before_any_ack(endpoint, h264_mkv):
    result = put_media(endpoint, new_stream_name("missing"), h264_mkv)

    assert result.status == 404
    assert result.acks == []
    assert json.loads(result.body) == {"Message": NOT_FOUND_MESSAGE}
    assert result.headers.get("x-amzn-errortype", "").startswith("ResourceNotFoundException"), result.headers


def test_put_media_with_unknown_timecode_type_is_400_invalid_argument(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)

    result = upload(kinesisvideo, stream, h264_mkv, timecode_type="WEIRD")

    assert result.status == 400
    assert result.acks == []
    assert result.headers.get("x-amzn-errortype", "").startswith("InvalidArgumentException"), result.headers
    assert "Message" in json.loads(result.body)
    assert list_all_fragments(kinesisvideo, stream) == []


@pytest.mark.parametrize("start", ["inf", "nan", "-5", "1e300", "soon"])
def test_put_media_with_an_impossible_producer_start_is_400_invalid_argument(kinesisvideo, h264_mkv, start):
    stream = create_stream(kinesisvideo)

    result = upload(kinesisvideo, stream, h264_mkv, timecode_type="RELATIVE", producer_start=start)

    assert result.status == 400, result.ack_lines
    assert result.headers.get("x-amzn-errortype", "").startswith("InvalidArgumentException"), result.headers
    assert list_all_fragments(kinesisvideo, stream) == []


def test_more_than_ten_fragment_tags_is_error_4009(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    body = h264_mkv.read_bytes()
    clusters = parse_mkv_chunks(body)[0].clusters
    tags = _tags_element([(f"label{i}", "x") for i in range(11)])
    # Header and the first cluster, then eleven tags before the second cluster.
    result = upload(kinesisvideo, stream, body[: clusters[1].start] + tags + body[clusters[1].start :])

    persisted = result.events("PERSISTED")
    assert [a["FragmentTimecode"] for a in persisted] == FIXTURE_CLUSTER_TIMECODES[:1]
    error = single_error(result)
    assert (error["ErrorId"], error["ErrorCode"]) == (4009, "FRAGMENT_METADATA_LIMIT_REACHED")


def _ebml(element_id: bytes, payload: bytes) -> bytes:
    # An 8-byte size field (0x01 marker), as producers write them.
    return element_id + (0x0100000000000000 | len(payload)).to_bytes(8, "big") + payload


def _tags_element(pairs: list[tuple[str, str]]) -> bytes:
    simple = b"".join(
        _ebml(b"\x67\xC8", _ebml(b"\x45\xA3", name.encode()) + _ebml(b"\x44\x87", value.encode()))
        for name, value in pairs
    )
    return _ebml(b"\x12\x54\xC3\x67", _ebml(b"\x73\x73", simple))


def test_garbage_body_gets_one_invalid_mkv_error_and_earlier_fragments_stay(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))

    garbage = random.Random(4006).randbytes(10 * 1024)
    result = upload(kinesisvideo, stream, garbage, timeout=30)

    assert result.status == 200
    assert result.ended, f"the server did not end the response after the error: {result.read_error!r}"
    assert_ack_lines_well_formed(result)
    assert len(result.acks) == 1, result.ack_lines
    error = result.acks[0]
    assert error["EventType"] == "ERROR"
    assert (error["ErrorId"], error["ErrorCode"]) == (4006, "INVALID_MKV_DATA")
    # The server is still up and the stream keeps what it had.
    assert kinesisvideo.describe_stream(StreamName=stream)["StreamInfo"]["Status"] == "ACTIVE"
    assert [f["FragmentNumber"] for f in list_all_fragments(kinesisvideo, stream)] == numbers


def test_same_file_on_a_second_connection_is_accepted_again(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)

    first = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    second = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))

    # Replays on a new connection (docs/spec/kvs.md#putmedia-replays) restart at timecode 0 and are stored as new
    # fragments.
    assert int(second[0]) > int(first[-1])
    listed = [f["FragmentNumber"] for f in list_all_fragments(kinesisvideo, stream)]
    assert listed == first + second
    assert len(listed) == 2 * FRAGMENT_COUNT


def test_cluster_timecode_going_back_within_one_connection_is_error_4004(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    body = h264_mkv.read_bytes()
    clusters = parse_mkv_chunks(body)[0].clusters
    # Header and clusters 0-2 (0, 2000, 4000 ms), then cluster 1 (2000 ms) again in the same Segment.
    replayed = body[: clusters[3].start] + body[clusters[1].start : clusters[2].start]
    result = upload(kinesisvideo, stream, replayed, timecode_type="ABSOLUTE")

    assert result.status == 200
    assert result.ended
    assert_ack_lines_well_formed(result)
    persisted = result.events("PERSISTED")
    assert [a["FragmentTimecode"] for a in persisted] == FIXTURE_CLUSTER_TIMECODES[:3]
    error = single_error(result)
    assert (error["ErrorId"], error["ErrorCode"]) == (4004, "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS")
    assert error["FragmentTimecode"] == FIXTURE_CLUSTER_TIMECODES[1]
    assert result.acks.index(error) > result.acks.index(persisted[-1])
    listed = [f["FragmentNumber"] for f in list_all_fragments(kinesisvideo, stream)]
    assert listed == [a["FragmentNumber"] for a in persisted]


def test_a_second_segment_within_one_connection_is_error_4006(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    body = h264_mkv.read_bytes()

    # The whole file and then the same bytes again: a second EBML header + Segment (docs/spec/kvs.md#putmedia-body).
    result = upload(kinesisvideo, stream, body + body, timecode_type="ABSOLUTE")

    assert result.status == 200
    assert result.ended
    assert_ack_lines_well_formed(result)
    persisted = result.events("PERSISTED")
    assert [a["FragmentTimecode"] for a in persisted] == FIXTURE_CLUSTER_TIMECODES
    error = single_error(result)
    assert (error["ErrorId"], error["ErrorCode"]) == (4006, "INVALID_MKV_DATA")
    listed = [f["FragmentNumber"] for f in list_all_fragments(kinesisvideo, stream)]
    assert listed == [a["FragmentNumber"] for a in persisted]


def test_truncated_upload_persists_complete_clusters_then_error_4006(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    body = h264_mkv.read_bytes()
    clusters = parse_mkv_chunks(body)[0].clusters
    # A cluster is complete in the truncated body when the next cluster starts inside it.
    complete = sum(1 for nxt in clusters[1:] if nxt.start <= TRUNCATED_BYTES)
    assert 1 <= complete < FRAGMENT_COUNT

    result = upload(kinesisvideo, stream, body[:TRUNCATED_BYTES], timeout=30)

    assert result.status == 200
    assert result.ended
    assert_ack_lines_well_formed(result)
    persisted = result.events("PERSISTED")
    assert [a["FragmentTimecode"] for a in persisted] == FIXTURE_CLUSTER_TIMECODES[:complete]
    error = single_error(result)
    assert (error["ErrorId"], error["ErrorCode"]) == (4006, "INVALID_MKV_DATA")
    assert result.acks[-1] == error
    listed = [f["FragmentNumber"] for f in list_all_fragments(kinesisvideo, stream)]
    assert listed == [a["FragmentNumber"] for a in persisted]


def test_curl_streams_the_file_and_prints_the_acks(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)

    proc, acks, lines = put_media_curl(put_endpoint(kinesisvideo, stream), stream, h264_mkv, producer_start="1763000000.250")

    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    result = PutMediaResult(status=200, headers={}, acks=acks, ack_lines=lines, body=proc.stdout, ended=True)
    numbers = assert_full_ack_sequence(result)
    assert [f["FragmentNumber"] for f in list_all_fragments(kinesisvideo, stream)] == numbers


# ------------------------------------------------------------------------------------------------
# ListFragments
# ------------------------------------------------------------------------------------------------


def test_list_fragments_returns_every_fragment_with_size_timestamps_and_length(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    before = time.time()
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    after = time.time()

    selector = server_range(int(before * 1000) - 1000, int(after * 1000) + 1000)
    response = archive(kinesisvideo, stream).list_fragments(StreamName=stream, FragmentSelector=selector)

    assert "NextToken" not in response or not response["NextToken"]
    fragments = sorted(response["Fragments"], key=lambda f: int(f["FragmentNumber"]))
    assert [f["FragmentNumber"] for f in fragments] == numbers
    for fragment in fragments:
        assert set(fragment) == {
            "FragmentNumber",
            "FragmentSizeInBytes",
            "ProducerTimestamp",
            "ServerTimestamp",
            "FragmentLengthInMilliseconds",
        }, fragment
        assert fragment["FragmentSizeInBytes"] > 0
        # The last frame counts: two seconds of 30 fps video are ~2000 ms long, not ~1967.
        assert 1990 <= fragment["FragmentLengthInMilliseconds"] <= 2010, fragment
        assert before - 1 <= fragment["ServerTimestamp"].timestamp() <= after + 1, fragment
    # RELATIVE: producer timestamp = producer start + cluster timecode (docs/spec/kvs.md#putmedia-timestamps).
    assert [epoch_ms(f["ProducerTimestamp"]) for f in fragments] == [
        PRODUCER_START_MS + tc for tc in FIXTURE_CLUSTER_TIMECODES
    ]
    server_ms = [epoch_ms(f["ServerTimestamp"]) for f in fragments]
    assert server_ms == sorted(server_ms)


def test_list_fragments_producer_timestamp_range_is_inclusive(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))

    selector = producer_range(PRODUCER_START_MS + 2000, PRODUCER_START_MS + 10000)
    fragments = list_all_fragments(kinesisvideo, stream, FragmentSelector=selector)

    assert [f["FragmentNumber"] for f in fragments] == numbers[1:6]
    assert [epoch_ms(f["ProducerTimestamp"]) for f in fragments] == [
        PRODUCER_START_MS + s * 1000 for s in (2, 4, 6, 8, 10)
    ]


def test_list_fragments_max_results_pages_with_next_token(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    client = archive(kinesisvideo, stream)
    selector = producer_range(PRODUCER_START_MS + 2000, PRODUCER_START_MS + 10000)

    pages = []
    response = client.list_fragments(StreamName=stream, FragmentSelector=selector, MaxResults=2)
    pages.append(response["Fragments"])
    for _ in range(10):
        if not response.get("NextToken"):
            break
        response = client.list_fragments(StreamName=stream, NextToken=response["NextToken"], MaxResults=2)
        pages.append(response["Fragments"])

    assert not response.get("NextToken")
    assert all(len(page) <= 2 for page in pages), pages
    assert [len(page) for page in pages if page] == [2, 2, 1]
    paged = [f["FragmentNumber"] for page in pages for f in page]
    assert len(paged) == len(set(paged))
    full = client.list_fragments(StreamName=stream, FragmentSelector=selector)["Fragments"]
    assert sorted(paged) == sorted(f["FragmentNumber"] for f in full) == numbers[1:6]


def test_list_fragments_server_timestamp_pages_stay_inside_the_range(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=2)
    first = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    time.sleep(1.5)
    end = dt.datetime.now(dt.timezone.utc) - dt.timedelta(milliseconds=500)
    second = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    client = archive(kinesisvideo, stream)
    selector = {
        "FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": start, "EndTimestamp": end},
    }

    response = client.list_fragments(StreamName=stream, FragmentSelector=selector, MaxResults=3)
    paged = [f["FragmentNumber"] for f in response["Fragments"]]
    for _ in range(10):
        if not response.get("NextToken"):
            break
        # The selector is required unless NextToken is given (docs/spec/kvs.md#listfragments): the token
        # carries the range.
        response = client.list_fragments(StreamName=stream, NextToken=response["NextToken"], MaxResults=3)
        paged += [f["FragmentNumber"] for f in response["Fragments"]]

    assert not response.get("NextToken")
    assert not set(paged) & set(second), "fragments after EndTimestamp were listed"
    assert sorted(paged, key=int) == first


def test_list_fragments_paginator_collects_every_fragment(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    selector = producer_range(PRODUCER_START_MS, PRODUCER_START_MS + 18000)

    paginator = archive(kinesisvideo, stream).get_paginator("list_fragments")
    pages = list(paginator.paginate(StreamName=stream, FragmentSelector=selector, PaginationConfig={"PageSize": 3}))

    collected = [f["FragmentNumber"] for page in pages for f in page["Fragments"]]
    assert sorted(collected, key=int) == numbers
    assert len(pages) >= 4


def test_list_fragments_server_timestamp_range(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=2)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)

    around = list_all_fragments(
        kinesisvideo,
        stream,
        FragmentSelector={
            "FragmentSelectorType": "SERVER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": before, "EndTimestamp": after},
        },
    )
    earlier = list_all_fragments(
        kinesisvideo,
        stream,
        FragmentSelector={
            "FragmentSelectorType": "SERVER_TIMESTAMP",
            "TimestampRange": {
                "StartTimestamp": before - dt.timedelta(hours=1),
                "EndTimestamp": before - dt.timedelta(minutes=1),
            },
        },
    )

    assert [f["FragmentNumber"] for f in around] == numbers
    assert earlier == []


# ------------------------------------------------------------------------------------------------
# GetMediaForFragmentList
# ------------------------------------------------------------------------------------------------


def test_get_media_for_fragment_list_decodes_to_every_frame(kinesisvideo, h264_mkv, tmp_path):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    listed = sorted((f["FragmentNumber"] for f in list_all_fragments(kinesisvideo, stream)), key=int)

    response = archive(kinesisvideo, stream).get_media_for_fragment_list(StreamName=stream, Fragments=listed)
    payload = response["Payload"].read()

    assert response["ContentType"] == "video/webm"
    chunks = parse_mkv_chunks(payload)
    # One chunk per fragment, in the requested order, tagged with its fragment number
    # (docs/spec/kvs.md#getmediaforfragmentlist).
    assert [c.fragment_number for c in chunks] == numbers
    assert [len(c.clusters) for c in chunks] == [1] * FRAGMENT_COUNT
    assert frame_count_of(tmp_path, "fragments.mkv", payload) == FIXTURE_FRAMES
    streams = ffprobe_streams(tmp_path / "fragments.mkv", count_frames=False)
    assert [s["codec_name"] for s in streams] == ["h264"]


def test_get_media_for_fragment_list_keeps_the_audio_track(kinesisvideo, h264_aac_mkv, tmp_path):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_aac_mkv))

    path = fragments_to_file(kinesisvideo, stream, numbers, tmp_path / "av.mkv")

    streams = ffprobe_streams(path)
    assert sorted((s["codec_type"], s["codec_name"]) for s in streams) == [("audio", "aac"), ("video", "h264")]
    assert video_frame_count(path) == FIXTURE_FRAMES
    audio = next(s for s in streams if s["codec_type"] == "audio")
    assert int(audio["nb_read_frames"]) > 0


def test_get_media_for_unknown_fragment_number_is_resource_not_found(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    missing = str(int(numbers[-1]) + 1000).zfill(47)
    assert missing not in numbers

    with pytest.raises(ClientError) as excinfo:
        archive(kinesisvideo, stream).get_media_for_fragment_list(StreamName=stream, Fragments=[missing])

    error = excinfo.value.response
    assert error["Error"]["Code"] == "ResourceNotFoundException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404


# ------------------------------------------------------------------------------------------------
# GetMedia
# ------------------------------------------------------------------------------------------------


def test_get_media_earliest_returns_one_tagged_chunk_per_fragment_in_order(kinesisvideo, h264_mkv, tmp_path):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))

    reader = GetMediaReader(media(kinesisvideo, stream), stream, {"StartSelectorType": "EARLIEST"}).start()
    try:
        chunks = reader.wait_for_chunks(FRAGMENT_COUNT, READ_TIMEOUT_S)
        time.sleep(0.5)  # nothing more may follow: the stream holds exactly 10 fragments
        chunks = reader.complete_chunks()
        assert reader.error is None, f"GetMedia failed: {reader.error!r}"
        data = reader.snapshot()
        content_type = reader.response["ContentType"]
    finally:
        reader.close()

    assert content_type == "video/webm"
    assert data[:4] == bytes.fromhex("1A45DFA3")
    assert len(chunks) == FRAGMENT_COUNT, [c.fragment_number for c in chunks]
    for chunk in chunks:
        raw = data[chunk.start : chunk.end]
        assert raw[:4] == bytes.fromhex("1A45DFA3")
        for tag in GET_MEDIA_TAGS:
            assert tag.encode() in raw, tag
        assert len(chunk.clusters) == 1
    assert [c.fragment_number for c in chunks] == numbers
    assert [c.clusters[0].blocks for c in chunks] == [60] * FRAGMENT_COUNT
    # Pre-cluster tags carry the timestamps as decimal seconds (docs/spec/kvs.md#getmedia-chunks).
    producer = [round(float(c.pre_cluster_tags["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"]) * 1000) for c in chunks]
    assert producer == [PRODUCER_START_MS + tc for tc in FIXTURE_CLUSTER_TIMECODES]
    path = tmp_path / "get_media.mkv"
    path.write_bytes(chunk_bytes(data, chunks))
    assert video_frame_count(path) == FIXTURE_FRAMES


def test_get_media_now_tails_fragments_uploaded_after_it_started(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    reader = GetMediaReader(media(kinesisvideo, stream), stream, {"StartSelectorType": "NOW"}).start()
    try:
        reader.started.wait(timeout=1.0)  # the server may hold the headers until the first chunk
        time.sleep(0.3)
        # Paced (about 1 s in all) so the fragments arrive while the reader is tailing.
        result = upload(kinesisvideo, stream, h264_mkv, chunk_size=32 * 1024, pace_s=0.01)
        numbers = assert_full_ack_sequence(result)
        chunks = reader.wait_for_chunks(FRAGMENT_COUNT, 15.0)
        assert reader.error is None, f"GetMedia failed: {reader.error!r}"
    finally:
        reader.close()

    received = [c.fragment_number for c in chunks]
    assert set(received) <= set(numbers), received
    assert len(received) >= FRAGMENT_COUNT - 1, received
    assert received == sorted(received, key=int)
    assert received == numbers[-len(received) :]


def test_get_media_after_fragment_number_starts_at_the_next_fragment(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))

    chunks, _ = get_media_chunks(
        kinesisvideo,
        stream,
        {"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": numbers[2]},
        count=FRAGMENT_COUNT - 3,
    )

    assert [c.fragment_number for c in chunks] == numbers[3:]


def test_get_media_continuation_token_resumes_after_its_fragment(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    first, _ = get_media_chunks(kinesisvideo, stream, {"StartSelectorType": "EARLIEST"}, count=5)
    assert [c.fragment_number for c in first[:5]] == numbers[:5]
    token = first[4].post_cluster_tags["AWS_KINESISVIDEO_CONTINUATION_TOKEN"]

    chunks, _ = get_media_chunks(
        kinesisvideo,
        stream,
        {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": token},
        count=FRAGMENT_COUNT - 5,
    )

    assert [c.fragment_number for c in chunks] == numbers[5:]


def test_get_media_producer_timestamp_starts_at_the_fragment_of_that_time(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))

    chunks, _ = get_media_chunks(
        kinesisvideo,
        stream,
        {"StartSelectorType": "PRODUCER_TIMESTAMP", "StartTimestamp": at_ms(PRODUCER_START_MS + 10000)},
        count=FRAGMENT_COUNT - 5,
    )

    assert [c.fragment_number for c in chunks] == numbers[5:]
    assert round(float(chunks[0].pre_cluster_tags["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"]) * 1000) == (
        PRODUCER_START_MS + 10000
    )


# ------------------------------------------------------------------------------------------------
# H.265
# ------------------------------------------------------------------------------------------------


def test_h265_upload_round_trips_to_hevc_with_every_frame(kinesisvideo, h265_mkv, tmp_path):
    stream = create_stream(kinesisvideo)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h265_mkv))

    path = fragments_to_file(kinesisvideo, stream, numbers, tmp_path / "h265.mkv")

    streams = ffprobe_streams(path)
    assert [s["codec_name"] for s in streams] == ["hevc"]
    assert int(streams[0]["nb_read_frames"]) == FIXTURE_FRAMES


def test_fragmented_mp4_upload_is_stored_as_fragments_with_every_frame(kinesisvideo, h264_aac_mp4, tmp_path):
    stream = create_stream(kinesisvideo)
    result = upload(kinesisvideo, stream, h264_aac_mp4, extra_headers={"Content-Type": "video/mp4"})
    numbers = assert_full_ack_sequence(result)

    fragments = list_all_fragments(kinesisvideo, stream)
    assert [f["FragmentNumber"] for f in fragments] == numbers
    starts = [round(f["ProducerTimestamp"].timestamp() * 1000) for f in fragments]
    assert starts == [PRODUCER_START_MS + t for t in FIXTURE_CLUSTER_TIMECODES]
    path = fragments_to_file(kinesisvideo, stream, numbers, tmp_path / "from_mp4.mkv")
    streams = ffprobe_streams(path)
    assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"]
    video = next(s for s in streams if s["codec_name"] == "h264")
    assert int(video["nb_read_frames"]) == FIXTURE_FRAMES


# ------------------------------------------------------------------------------------------------
# Durability
# ------------------------------------------------------------------------------------------------


def test_fragments_survive_a_graceful_restart(private_server, h264_mkv, tmp_path):
    kvs = private_server.kinesisvideo_client()
    stream = create_stream(kvs)
    numbers = assert_full_ack_sequence(upload(kvs, stream, h264_mkv))

    private_server.restart()
    kvs = private_server.kinesisvideo_client()

    fragments = list_all_fragments(kvs, stream)
    assert [f["FragmentNumber"] for f in fragments] == numbers
    response = archive(kvs, stream).get_media_for_fragment_list(StreamName=stream, Fragments=numbers)
    assert frame_count_of(tmp_path, "restarted.mkv", response["Payload"].read()) == FIXTURE_FRAMES


def test_every_persisted_fragment_survives_kill_9(private_server, h264_mkv):
    kvs = private_server.kinesisvideo_client()
    stream = create_stream(kvs)
    persisted: list[str] = []
    killed = threading.Event()

    def on_ack(ack: dict) -> None:
        if ack["EventType"] == "PERSISTED":
            persisted.append(ack["FragmentNumber"])
            if len(persisted) == FRAGMENT_COUNT and not killed.is_set():
                private_server.kill()  # SIGKILL right after the last PERSISTED ack was read
                killed.set()

    result = upload(kvs, stream, h264_mkv, timeout=30, on_ack=on_ack)
    assert killed.is_set(), f"only {len(persisted)} PERSISTED acks: {result.ack_lines}"

    private_server.start()
    kvs = private_server.kinesisvideo_client()

    listed = [f["FragmentNumber"] for f in list_all_fragments(kvs, stream)]
    assert listed == persisted
