"""KPL aggregation against AWS's own published library (aws_kinesis_agg on PyPI), both ways, through a
real server: records the SDK's producer aggregates (sdk/examples/kpl_producer.rs) are unpacked by AWS's
deaggregator; records AWS's aggregator packs are unpacked by the SDK's consumer-group worker
(sdk/examples/kcl_worker.rs) and by a record consumer with `Deaggregate`."""

from __future__ import annotations

import base64
import time

from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from consumer_helpers import events, kds_request, wait_for_records
from kcl_helpers import WorkerProcess, produce, read_processed
from kds_helpers import SHARD_ZERO, read_shard

RECORDS = 2000


def aws_aggregated(count: int) -> list[tuple[str, str, bytes]]:
    """(partition key, explicit hash key, bytes) of the aggregated records AWS's library makes of
    `count` user records `a<i>` holding `payload <i>`."""
    # 8 KiB records: several of them, so they spread over the shards.
    aggregator, out = RecordAggregator(max_size=8192), []
    for i in range(count):
        full = aggregator.add_user_record(f"a{i}", f"payload {i}".encode())
        if full:
            out.append(full.get_contents())
    out.append(aggregator.clear_and_get().get_contents())
    return out


def put_aws_aggregated(kinesis, stream: str, count: int) -> int:
    packed = aws_aggregated(count)
    for key, hash_key, data in packed:
        routing = {"ExplicitHashKey": hash_key} if hash_key is not None else {}
        kinesis.put_record(StreamName=stream, PartitionKey=key, Data=data, **routing)
    return len(packed)


def test_records_the_sdk_aggregates_are_unpacked_by_awss_deaggregator(server, kinesis, make_stream):
    stream = make_stream(1)
    result = produce(server.endpoint, stream, RECORDS, size=100, aggregate=True)
    assert (result["acknowledged"], result["failed"]) == (RECORDS, 0), result
    stored = read_shard(kinesis, stream, SHARD_ZERO)
    assert len(stored) == result["kinesis_records"] and len(stored) <= RECORDS // 20, (len(stored), result)
    users = list(iter_deaggregate_records(stored, data_format="Boto3"))
    keys = [u["kinesis"]["partitionKey"] for u in users]
    assert keys == [f"r{i}" for i in range(RECORDS)], "every record, once, in the order sent"
    for i, user in enumerate(users):
        data = base64.b64decode(user["kinesis"]["data"])
        assert data.startswith(f"{i} ".encode()) and len(data) == 100, (i, data[:20])
    subs = [u["kinesis"]["subSequenceNumber"] for u in users if u["kinesis"]["sequenceNumber"] == stored[0]["SequenceNumber"]]
    assert subs == list(range(len(subs))) and len(subs) > 1, subs


def test_records_awss_aggregator_packs_are_processed_one_by_one_by_the_sdk_worker(server, kinesis, make_stream,
                                                                                  tmp_path):
    stream = make_stream(2)
    packed = put_aws_aggregated(kinesis, stream, RECORDS)
    assert packed < RECORDS // 10, packed
    out = tmp_path / "processed.txt"
    worker = WorkerProcess(server.endpoint, stream, "interop", out, "solo", tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len(read_processed(out)) < RECORDS:
            assert time.monotonic() < deadline, f"{len(read_processed(out))} of {RECORDS} processed"
            time.sleep(0.2)
        assert worker.terminate() == 0
    finally:
        worker.stop_quietly()
    processed = read_processed(out)
    assert sorted(p.key for p in processed) == sorted(f"a{i}" for i in range(RECORDS)), "each user record once"
    by_sequence: dict[int, list[int]] = {}
    for p in processed:
        by_sequence.setdefault(p.sequence, []).append(p.sub)
    assert all(subs == list(range(len(subs))) for subs in by_sequence.values()), "sub-sequence numbers 0..n-1"
    assert len(by_sequence) == packed


def test_a_record_consumer_with_deaggregate_delivers_the_user_records_as_awss_library_reads_them(
        server, kinesis, make_stream, hooks, record_consumers):
    stream = make_stream(1)
    put_aws_aggregated(kinesis, stream, 300)
    kinesis.put_record(StreamName=stream, PartitionKey="plain", Data=b"not aggregated")
    hook = hooks()
    record_consumers(server.endpoint, kds_request(stream, "unpacked", hook.url, Deaggregate=True,
                                                  Batching={"MaxRecords": 100, "MaxWaitMs": 200}))
    wait_for_records(hook, 301)
    delivered = [e for call in hook.delivered_calls() for e in events(call)]
    stored = read_shard(kinesis, stream, SHARD_ZERO)
    expected = list(iter_deaggregate_records(stored, data_format="Boto3"))
    assert len(delivered) == len(expected) == 301
    for got, want in zip(delivered, expected):
        got_k, want_k = got["kinesis"], want["kinesis"]
        assert got_k["partitionKey"] == want_k["partitionKey"]
        assert got_k["sequenceNumber"] == want_k["sequenceNumber"]
        # AWS's library re-encodes the user records it unpacks; a plain record keeps boto3's bytes.
        want_data = base64.b64decode(want_k["data"]) if want_k.get("aggregated") else want_k["data"]
        assert base64.b64decode(got_k["data"]) == want_data
        assert got_k.get("subSequenceNumber") == want_k.get("subSequenceNumber"), (got_k, want_k)
    assert delivered[-1]["kinesis"]["partitionKey"] == "plain" and "subSequenceNumber" not in delivered[-1]["kinesis"]
