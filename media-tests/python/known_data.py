"""A known data set, written through the public APIs and checked byte for byte: the upgrade fixture
(a data dir written by an older Framelog, committed under media-tests/fixtures/) and the backup and
restore tests both use it.

Everything in it is derived from fixed seeds, so a checker needs only the manifest that `write`
returns (the sequence numbers and fragment numbers the server gave out) to know what every record
and fragment must hold. Sizes are chosen so every payload placement of the engine is exercised:
records and fragments inline in the index (under 4 KiB), in RocksDB blob files, and fragments in
segment files (256 KiB and over).
"""

from __future__ import annotations

import random
import time

from kds_helpers import read_shard
from kvs_helpers import PRODUCER_START_MS, VIDEO, archive, list_all_fragments, put_endpoint
from media_fixtures import H264_TRACK, HandFrame, cluster_blocks, mkv_cluster, mkv_header, parse_mkv_chunks, put_media

RECORD_STREAM = "known-ledger"
RECORD_SHARDS = 2
RECORD_COUNT = 60
# KDS's longest retention: the records of a committed fixture stay readable for a year (with the
# default 24 hours the v1 fixture's records expired a day after it was made, and the upgrade test
# with them).
RECORD_RETENTION_HOURS = 8_760
VIDEO_STREAM = "known-camera"
FRAGMENT_SPACING_MS = 2_000
# Per fragment: the key frame's size and the size of each of its 9 delta frames.
FRAGMENT_FRAME_BYTES = [(200, 100), (2_000, 1_500), (8_000, 1_000), (200_000, 7_500), (300, 200)]


def record(index: int) -> tuple[str, bytes]:
    """The partition key and data of record `index`: mostly small, every tenth 8 KB (a blob)."""
    rng = random.Random(1_000 + index)
    size = 8_000 if index % 10 == 9 else rng.randint(1, 3_000)
    return f"key-{index}", rng.randbytes(size)


def fragment(index: int) -> tuple[int, list[HandFrame]]:
    """The cluster timecode and frames of fragment `index` (ten frames, 100 ms apart)."""
    rng = random.Random(2_000 + index)
    key_bytes, delta_bytes = FRAGMENT_FRAME_BYTES[index]
    timecode = index * FRAGMENT_SPACING_MS
    sent = [HandFrame(VIDEO, timecode, rng.randbytes(key_bytes), keyframe=True)]
    sent += [HandFrame(VIDEO, timecode + 100 * i, rng.randbytes(delta_bytes)) for i in range(1, 10)]
    return timecode, sent


def write(kinesis, kinesisvideo) -> dict:
    """Writes the data set to a server and returns its manifest (JSON-serialisable)."""
    kinesis.create_stream(StreamName=RECORD_STREAM, ShardCount=RECORD_SHARDS)
    kinesis.get_waiter("stream_exists").wait(StreamName=RECORD_STREAM, WaiterConfig={"Delay": 0.2})
    kinesis.increase_stream_retention_period(StreamName=RECORD_STREAM, RetentionPeriodHours=RECORD_RETENTION_HOURS)
    written_at_ms = int(time.time() * 1000)
    records = []
    for index in range(RECORD_COUNT):
        key, data = record(index)
        answer = kinesis.put_record(StreamName=RECORD_STREAM, PartitionKey=key, Data=data)
        records.append({"index": index, "shard": answer["ShardId"], "sequence": answer["SequenceNumber"]})

    kinesisvideo.create_stream(StreamName=VIDEO_STREAM, DataRetentionInHours=24 * 365 * 10)
    body = mkv_header([H264_TRACK]) + b"".join(
        mkv_cluster(*fragment(index)) for index in range(len(FRAGMENT_FRAME_BYTES))
    )
    result = put_media(put_endpoint(kinesisvideo, VIDEO_STREAM), VIDEO_STREAM, body, producer_start=PRODUCER_START_MS / 1000)
    persisted = result.events("PERSISTED")
    assert len(persisted) == len(FRAGMENT_FRAME_BYTES), result.acks
    fragments = [{"index": i, "number": ack["FragmentNumber"]} for i, ack in enumerate(persisted)]
    return {"records": records, "fragments": fragments, "written_at_ms": written_at_ms,
            "record_retention_hours": RECORD_RETENTION_HOURS}


def check(kinesis, kinesisvideo, manifest: dict) -> None:
    """Asserts every record and fragment of the manifest reads back byte for byte, in order."""
    check_records(kinesis, manifest["records"])
    check_fragments(kinesisvideo, manifest["fragments"])


def check_records(kinesis, records: list[dict]) -> None:
    shards = sorted({r["shard"] for r in records})
    for shard in shards:
        expected = [
            (r["sequence"], *record(r["index"])) for r in records if r["shard"] == shard
        ]
        stored = [(r["SequenceNumber"], r["PartitionKey"], r["Data"]) for r in read_shard(kinesis, RECORD_STREAM, shard)]
        assert stored[: len(expected)] == expected, f"{RECORD_STREAM}/{shard}: records differ from what was acknowledged"


def check_fragments(kinesisvideo, fragments: list[dict]) -> None:
    numbers = [f["number"] for f in fragments]
    listed = {f["FragmentNumber"] for f in list_all_fragments(kinesisvideo, VIDEO_STREAM)}
    assert set(numbers) <= listed, f"fragments lost: {set(numbers) - listed}"
    payload = (
        archive(kinesisvideo, VIDEO_STREAM)
        .get_media_for_fragment_list(StreamName=VIDEO_STREAM, Fragments=numbers)["Payload"]
        .read()
    )
    chunks = parse_mkv_chunks(payload)
    assert [c.fragment_number for c in chunks] == numbers
    for entry, chunk in zip(fragments, chunks):
        timecode, sent = fragment(entry["index"])
        stored = [(b.track, b.relative_timecode, b.payload) for b in cluster_blocks(payload, chunk.clusters[0])]
        assert stored == [(f.track, f.time - timecode, f.payload) for f in sent], f"fragment {entry['number']} changed"

