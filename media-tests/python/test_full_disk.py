"""A full disk (docs/operations.md "Disk space"): the data dir on a small tmpfs, filled through
PutMedia and PutRecords. Writes are refused with typed errors once free space falls under the
watermark, nothing acknowledged is lost, reads keep working, the server stays up; when a deleted
stream frees space, writes succeed again without a restart.

The tmpfs is mounted by the test (CI runs as root, like the rest of the suite's set-up).
"""

from __future__ import annotations

import random
import subprocess

import pytest
from botocore.exceptions import ClientError

from kds_helpers import FramelogServer, framelog_bin, read_shard
from kvs_helpers import PRODUCER_START_MS, VIDEO, archive, list_all_fragments, put_endpoint
from media_fixtures import H264_TRACK, HandFrame, cluster_blocks, mkv_cluster, mkv_header, parse_mkv_chunks, put_media

DISK_MIB = 256
WATERMARK_MIB = 32
FRAGMENT_KEY_BYTES = 1_000_000
RECORD_BYTES = 100_000


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def server_on_small_disk(small_disk, tmp_path):
    config = tmp_path / "framelog.toml"
    config.write_text(f"[engine]\nmin_free_disk_bytes = {WATERMARK_MIB << 20}\n")
    server = FramelogServer(framelog_bin(), small_disk / "data", tmp_path, extra_args=["--config", str(config)])
    yield server.start()
    server.stop_and_check_clean_exit()


def fragment_frames(index: int) -> list[HandFrame]:
    rng = random.Random(index)
    frames = [HandFrame(VIDEO, index * 1_000, rng.randbytes(FRAGMENT_KEY_BYTES), keyframe=True)]
    return frames + [HandFrame(VIDEO, index * 1_000 + 100 * i, rng.randbytes(2_000)) for i in range(1, 10)]


def upload(kinesisvideo, stream: str, first: int, count: int):
    """Sends fragments first..first+count-1 on one PutMedia connection; returns the result."""
    body = mkv_header([H264_TRACK]) + b"".join(
        mkv_cluster(index * 1_000, fragment_frames(index)) for index in range(first, first + count)
    )
    return put_media(put_endpoint(kinesisvideo, stream), stream, body, producer_start=PRODUCER_START_MS / 1000)


def fill_with_video(kinesisvideo, stream: str) -> tuple[dict[str, int], list[dict]]:
    """Uploads until the server refuses: the PERSISTED fragments (number -> index) and the errors."""
    persisted: dict[str, int] = {}
    for batch in range(DISK_MIB // 10 + 10):
        result = upload(kinesisvideo, stream, batch * 10, 10)
        for ack in result.events("PERSISTED"):
            persisted[ack["FragmentNumber"]] = ack["FragmentTimecode"] // 1_000
        if result.events("ERROR"):
            return persisted, result.events("ERROR")
    raise AssertionError(f"{len(persisted)} fragments of 1 MB persisted on a {DISK_MIB} MiB disk without an error")


def assert_fragments_intact(kinesisvideo, stream: str, persisted: dict[str, int]) -> None:
    listed = {f["FragmentNumber"] for f in list_all_fragments(kinesisvideo, stream)}
    assert set(persisted) <= listed, f"acknowledged fragments lost: {set(persisted) - listed}"
    numbers = sorted(persisted, key=int)
    for start in range(0, len(numbers), 50):
        chunk_numbers = numbers[start : start + 50]
        payload = (
            archive(kinesisvideo, stream)
            .get_media_for_fragment_list(StreamName=stream, Fragments=chunk_numbers)["Payload"]
            .read()
        )
        for number, chunk in zip(chunk_numbers, parse_mkv_chunks(payload)):
            stored = [b.payload for b in cluster_blocks(payload, chunk.clusters[0])]
            assert stored == [f.payload for f in fragment_frames(persisted[number])], f"fragment {number} changed"


def put_records_until_refused(kinesis, stream: str) -> tuple[list[tuple[str, bytes]], ClientError]:
    acked: list[tuple[str, bytes]] = []
    rng = random.Random(99)
    for _ in range(DISK_MIB * 20):
        data = rng.randbytes(RECORD_BYTES)
        try:
            answer = kinesis.put_record(StreamName=stream, Data=data, PartitionKey="k")
        except ClientError as error:
            return acked, error
        acked.append((answer["SequenceNumber"], data))
    raise AssertionError("PutRecord never refused on a full disk")


def test_a_full_disk_refuses_writes_with_typed_errors_keeps_everything_and_recovers(server_on_small_disk):
    server = server_on_small_disk
    kinesis, kinesisvideo = server.client(), server.kinesisvideo_client()
    kinesis.create_stream(StreamName="ledger", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="ledger", WaiterConfig={"Delay": 0.2})
    for name in ("kept", "filler"):
        kinesisvideo.create_stream(StreamName=name, DataRetentionInHours=24)

    first = upload(kinesisvideo, "kept", 0, 5)
    kept = {ack["FragmentNumber"]: ack["FragmentTimecode"] // 1_000 for ack in first.events("PERSISTED")}
    assert len(kept) == 5, first.acks
    filled, errors = fill_with_video(kinesisvideo, "filler")
    assert len(filled) > 100, f"only {len(filled)} fragments fitted"
    print(f"{len(filled)} fragments of 1 MB fitted before the refusal")
    assert {(e["ErrorId"], e["ErrorCode"]) for e in errors} == {(5000, "INTERNAL_ERROR")}, errors

    records, refusal = put_records_until_refused(kinesis, "ledger")
    error = refusal.response["Error"]
    assert (error["Code"], refusal.response["ResponseMetadata"]["HTTPStatusCode"]) == ("InternalFailure", 500), error
    assert "nearly full" in error["Message"], error
    batch = kinesis.put_records(StreamName="ledger", Records=[{"Data": bytes(RECORD_BYTES), "PartitionKey": "k"}] * 3)
    assert batch["FailedRecordCount"] == 3
    assert {(r["ErrorCode"], "nearly full" in r["ErrorMessage"]) for r in batch["Records"]} == {("InternalFailure", True)}

    # Reads go on, and nothing acknowledged is lost.
    assert server.proc.poll() is None, server.log_tail()
    assert_fragments_intact(kinesisvideo, "kept", kept)
    assert_fragments_intact(kinesisvideo, "filler", filled)
    stored = [(r["SequenceNumber"], r["Data"]) for r in read_shard(kinesis, "ledger", "shardId-000000000000")]
    assert stored == records

    # Deleting a stream frees its space; writes resume without a restart.
    kinesisvideo.delete_stream(StreamARN=kinesisvideo.describe_stream(StreamName="filler")["StreamInfo"]["StreamARN"])
    again = kinesis.put_record(StreamName="ledger", Data=b"after the space came back", PartitionKey="k")
    assert int(again["SequenceNumber"]) > int(records[-1][0])
    more = upload(kinesisvideo, "kept", 100_000, 3)
    assert len(more.events("PERSISTED")) == 3 and not more.events("ERROR"), more.acks
    assert_fragments_intact(kinesisvideo, "kept", kept)
    assert server.starts == 1, "no restart was needed"


def test_the_watermark_setting_is_read_from_the_config(tmp_path):
    """A watermark above the disk's size refuses the first write (the setting takes effect)."""
    config = tmp_path / "framelog.toml"
    config.write_text(f"[engine]\nmin_free_disk_bytes = {1 << 62}\n")
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path, extra_args=["--config", str(config)]).start()
    try:
        kinesis = server.client()
        kinesis.create_stream(StreamName="s", ShardCount=1)
        kinesis.get_waiter("stream_exists").wait(StreamName="s", WaiterConfig={"Delay": 0.2})
        with pytest.raises(ClientError) as refused:
            kinesis.put_record(StreamName="s", Data=b"x", PartitionKey="k")
        assert refused.value.response["Error"]["Code"] == "InternalFailure"
    finally:
        server.stop_and_check_clean_exit()
