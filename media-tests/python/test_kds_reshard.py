"""Resharding through real clients (boto3, AWS CLI) against the real binary: SplitShard,
MergeShards and UpdateShardCount, shard lineage, ListShards filters, the end of a closed shard,
writers racing a reshard, random reshard sequences read back through the lineage, and kill -9
while a reshard is pending."""

from __future__ import annotations

import base64
import random
import threading
import time

import pytest
from botocore.exceptions import ClientError

from consumer_helpers import events, kds_request, wait_for_records
from kds_helpers import (
    HASH_KEY_SPACE,
    FramelogServer,
    framelog_bin,
    new_stream_name,
    partition_key_hash,
    shard_id,
)

HALF = str(HASH_KEY_SPACE // 2)


def all_shards(client, stream: str, **kwargs) -> list[dict]:
    """Every shard ListShards returns, following NextToken."""
    response = client.list_shards(StreamName=stream, MaxResults=2, **kwargs)
    shards = list(response["Shards"])
    while response.get("NextToken"):
        response = client.list_shards(NextToken=response["NextToken"], MaxResults=2)
        shards.extend(response["Shards"])
    return shards


def is_open(shard: dict) -> bool:
    return "EndingSequenceNumber" not in shard["SequenceNumberRange"]


def assert_one_cover(shards: list[dict]) -> None:
    """Open shards cover the whole hash key space exactly once."""
    ranges = sorted(
        (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in shards if is_open(s)
    )
    expected = 0
    for start, end in ranges:
        assert start == expected, ranges
        expected = end + 1
    assert expected == HASH_KEY_SPACE, ranges


def wait_active(client, stream: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return
        time.sleep(0.05)
    raise AssertionError(f"{stream} still {status} after {timeout_s} s")


def read_to_end(client, stream: str, shard: str) -> tuple[list[dict], list[dict] | None]:
    """Reads a shard from TRIM_HORIZON: (records, ChildShards) for a closed shard read to its end,
    (records, None) for an open shard once caught up."""
    iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    records: list[dict] = []
    for _ in range(1000):
        response = client.get_records(ShardIterator=iterator, Limit=1000)
        records.extend(response["Records"])
        if response.get("NextShardIterator") is None:
            return records, response.get("ChildShards", [])
        iterator = response["NextShardIterator"]
        if not response["Records"] and response["MillisBehindLatest"] == 0:
            return records, None
    raise AssertionError(f"{stream}/{shard} not read to its end")


def read_through_lineage(client, stream: str) -> list[dict]:
    """Every record, walking from the first shards to their children (parents before children)."""
    shards = all_shards(client, stream)
    by_id = {s["ShardId"]: s for s in shards}
    done: set[str] = set()
    records: list[dict] = []
    pending = [s["ShardId"] for s in shards if "ParentShardId" not in s]
    while pending:
        shard = pending.pop(0)
        if shard in done:
            continue
        parents = [by_id[shard].get(k) for k in ("ParentShardId", "AdjacentParentShardId")]
        if any(p and p not in done for p in parents):
            pending.append(shard)
            continue
        done.add(shard)
        found, children = read_to_end(client, stream, shard)
        records.extend(found)
        if children is not None:
            assert not is_open(by_id[shard]), f"{shard} ended but is not closed"
            pending.extend(c["ShardId"] for c in children)
    assert done == set(by_id), f"shards never reached through lineage: {set(by_id) - done}"
    return records


def test_split_and_merge_show_lineage_and_route_records_by_the_new_map(kinesis, make_stream):
    stream = make_stream(1)
    kinesis.put_record(StreamName=stream, PartitionKey="before", Data=b"0")
    kinesis.split_shard(StreamName=stream, ShardToSplit=shard_id(0), NewStartingHashKey=HALF)
    wait_active(kinesis, stream)

    shards = all_shards(kinesis, stream)
    assert [s["ShardId"] for s in shards] == [shard_id(0), shard_id(1), shard_id(2)]
    assert not is_open(shards[0]) and is_open(shards[1]) and is_open(shards[2])
    assert shards[1]["ParentShardId"] == shard_id(0) and "AdjacentParentShardId" not in shards[1]
    assert shards[2]["HashKeyRange"]["StartingHashKey"] == HALF
    assert_one_cover(shards)

    low = kinesis.put_record(StreamName=stream, PartitionKey="k", ExplicitHashKey="7", Data=b"low")
    high = kinesis.put_record(StreamName=stream, PartitionKey="k", ExplicitHashKey=HALF, Data=b"high")
    assert (low["ShardId"], high["ShardId"]) == (shard_id(1), shard_id(2))
    assert int(low["SequenceNumber"]) < int(shards[1]["SequenceNumberRange"].get("EndingSequenceNumber", "9" * 60))

    kinesis.merge_shards(StreamName=stream, ShardToMerge=shard_id(1), AdjacentShardToMerge=shard_id(2))
    wait_active(kinesis, stream)
    merged = all_shards(kinesis, stream)[3]
    assert (merged["ParentShardId"], merged["AdjacentParentShardId"]) == (shard_id(1), shard_id(2))
    assert (merged["HashKeyRange"]["StartingHashKey"], merged["HashKeyRange"]["EndingHashKey"]) == (
        "0",
        str(HASH_KEY_SPACE - 1),
    )
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 1

    records, children = read_to_end(kinesis, stream, shard_id(0))
    assert [r["Data"] for r in records] == [b"0"]
    assert [c["ShardId"] for c in children] == [shard_id(1), shard_id(2)]
    assert children[0]["ParentShards"] == [shard_id(0)]
    _, children = read_to_end(kinesis, stream, shard_id(2))
    assert children == [
        {
            "ShardId": shard_id(3),
            "ParentShards": [shard_id(1), shard_id(2)],
            "HashKeyRange": merged["HashKeyRange"],
        }
    ]


def test_reshard_errors_are_typed_as_kds_types_them(kinesis, make_stream):
    stream = make_stream(3)

    def error_of(call, **kwargs) -> tuple[str, str]:
        with pytest.raises(ClientError) as caught:
            call(StreamName=stream, **kwargs)
        return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]

    code, message = error_of(kinesis.merge_shards, ShardToMerge=shard_id(0), AdjacentShardToMerge=shard_id(2))
    assert code == "InvalidArgumentException"
    assert message.endswith("are not an adjacent pair of shards eligible for merging")
    code, _ = error_of(kinesis.split_shard, ShardToSplit=shard_id(7), NewStartingHashKey="5")
    assert code == "ResourceNotFoundException"
    code, message = error_of(kinesis.split_shard, ShardToSplit=shard_id(0), NewStartingHashKey="0")
    assert code == "InvalidArgumentException" and "is not both greater than one plus" in message
    code, message = error_of(kinesis.update_shard_count, TargetShardCount=7, ScalingType="UNIFORM_SCALING")
    assert code == "LimitExceededException" and "double" in message
    code, message = error_of(kinesis.update_shard_count, TargetShardCount=1, ScalingType="UNIFORM_SCALING")
    assert code == "LimitExceededException" and "half" in message

    on_demand = new_stream_name("ondemand")
    kinesis.create_stream(StreamName=on_demand, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    with pytest.raises(ClientError) as caught:
        kinesis.update_shard_count(StreamName=on_demand, TargetShardCount=5, ScalingType="UNIFORM_SCALING")
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_update_shard_count_reaches_even_ranges_and_list_shards_filters_by_history(kinesis, make_stream):
    stream = make_stream(4)
    created = time.time()
    time.sleep(1.1)
    answer = kinesis.update_shard_count(StreamName=stream, TargetShardCount=6, ScalingType="UNIFORM_SCALING")
    assert (answer["CurrentShardCount"], answer["TargetShardCount"]) == (4, 6)
    wait_active(kinesis, stream)
    shards = all_shards(kinesis, stream)
    open_shards = [s for s in shards if is_open(s)]
    step = HASH_KEY_SPACE // 6
    starts = sorted(int(s["HashKeyRange"]["StartingHashKey"]) for s in open_shards)
    assert starts == [i * step for i in range(6)]
    assert_one_cover(shards)

    at_latest = all_shards(kinesis, stream, ShardFilter={"Type": "AT_LATEST"})
    assert [s["ShardId"] for s in at_latest] == [s["ShardId"] for s in open_shards]
    at_start = kinesis.list_shards(StreamName=stream, ShardFilter={"Type": "AT_TIMESTAMP", "Timestamp": created})
    assert [s["ShardId"] for s in at_start["Shards"]] == [shard_id(i) for i in range(4)]
    after = kinesis.list_shards(StreamName=stream, ShardFilter={"Type": "AFTER_SHARD_ID", "ShardId": shard_id(3)})
    assert all(int(s["ShardId"].split("-")[1]) > 3 for s in after["Shards"]) and after["Shards"]
    with pytest.raises(ClientError) as caught:
        kinesis.list_shards(StreamName=stream, ShardFilter={"Type": "AT_TIMESTAMP"})
    assert caught.value.response["Error"]["Code"] == "InvalidArgumentException"


def test_writers_racing_update_shard_count_never_fail_and_lose_nothing(kinesis, make_stream):
    stream = make_stream(4)
    stop = threading.Event()
    acknowledged: list[bytes] = []
    failures: list[object] = []

    def writer(worker: int) -> None:
        batch_no = 0
        while not stop.is_set():
            records = [
                {"PartitionKey": f"w{worker}-{i}", "Data": f"{worker}:{batch_no}:{i}".encode()} for i in range(50)
            ]
            try:
                response = kinesis.put_records(StreamName=stream, Records=records)
            except ClientError as error:
                failures.append(error.response["Error"])
                return
            failed = [r for r in response["Records"] if "ErrorCode" in r]
            failures.extend(failed)
            acknowledged.extend(r["Data"] for r, result in zip(records, response["Records"]) if "ErrorCode" not in result)
            batch_no += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    kinesis.update_shard_count(StreamName=stream, TargetShardCount=8, ScalingType="UNIFORM_SCALING")
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(acknowledged) > 0
    read = [r["Data"] for r in read_through_lineage(kinesis, stream)]
    assert sorted(read) == sorted(acknowledged), "every acknowledged record once, nothing else"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_reshard_sequences_keep_every_record_once_and_in_key_order(kinesis, make_stream, seed):
    """A property test over random operation sequences: after PutRecords, SplitShard, MergeShards and
    UpdateShardCount in any order, walking the lineage from TRIM_HORIZON reads every acknowledged
    record exactly once, and each partition key's records in the order they were put."""
    rng = random.Random(seed)
    stream = make_stream(rng.randint(1, 3))
    put_order: dict[str, list[bytes]] = {}
    counter = 0
    for _ in range(14):
        op = rng.choice(["put", "put", "split", "merge", "scale"])
        shards = all_shards(kinesis, stream)
        open_shards = [s for s in shards if is_open(s)]
        if op == "put":
            records = []
            for _ in range(rng.randint(1, 40)):
                key = f"pk{rng.randint(0, 11)}"
                counter += 1
                records.append({"PartitionKey": key, "Data": f"{key}#{counter}".encode()})
            response = kinesis.put_records(StreamName=stream, Records=records)
            assert response["FailedRecordCount"] == 0
            for record in records:
                put_order.setdefault(record["PartitionKey"], []).append(record["Data"])
        elif op == "split" and len(open_shards) < 12:
            shard = rng.choice(open_shards)
            start, end = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
            if end - start > 4:
                at = rng.randint(start + 2, end - 1)
                kinesis.split_shard(StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str(at))
        elif op == "merge" and len(open_shards) > 1:
            ordered = sorted(open_shards, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
            i = rng.randrange(len(ordered) - 1)
            kinesis.merge_shards(
                StreamName=stream, ShardToMerge=ordered[i]["ShardId"], AdjacentShardToMerge=ordered[i + 1]["ShardId"]
            )
        elif op == "scale":
            current = len(open_shards)
            target = rng.randint(max(1, (current + 1) // 2), min(2 * current, 12))
            kinesis.update_shard_count(StreamName=stream, TargetShardCount=target, ScalingType="UNIFORM_SCALING")
        assert_one_cover(all_shards(kinesis, stream))

    records = read_through_lineage(kinesis, stream)
    read_order: dict[str, list[bytes]] = {}
    for record in records:
        read_order.setdefault(record["PartitionKey"], []).append(record["Data"])
    assert read_order == put_order
    # Each record sits in the shard whose range held its key when it was put: never in a closed one
    # after its close (walking the lineage in order would have shown it out of key order).
    assert sum(len(v) for v in read_order.values()) == counter


def test_kill_9_while_a_reshard_is_pending_leaves_one_consistent_shard_map(tmp_path):
    config = tmp_path / "framelog.toml"
    config.write_text("[kds]\nreshard_delay_ms = 1500\n")
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path, extra_args=["--config", str(config)]).start()
    try:
        client = server.client()
        stream = new_stream_name("reshard-kill")
        client.create_stream(StreamName=stream, ShardCount=2)
        keys = [f"key-{i}" for i in range(200)]
        client.put_records(StreamName=stream, Records=[{"PartitionKey": k, "Data": k.encode()} for k in keys])
        client.update_shard_count(StreamName=stream, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
        status = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
        assert status == "UPDATING"
        # Accepted while UPDATING: these land in the parents, which are still open.
        during = client.put_record(StreamName=stream, PartitionKey="during", Data=b"during")
        assert during["ShardId"] in (shard_id(0), shard_id(1))
        server.kill()
        server.start()
        client = server.client()
        wait_active(client, stream)
        shards = all_shards(client, stream)
        assert_one_cover(shards)
        assert len([s for s in shards if is_open(s)]) == 4
        read = sorted(r["Data"] for r in read_through_lineage(client, stream))
        assert read == sorted([k.encode() for k in keys] + [b"during"])
        after = client.put_record(StreamName=stream, PartitionKey="after", Data=b"after")
        assert after["ShardId"] not in (shard_id(0), shard_id(1))
        step = HASH_KEY_SPACE // 4
        assert int(after["ShardId"].split("-")[1]) >= 2
        assert partition_key_hash("after") // step == [
            int(s["HashKeyRange"]["StartingHashKey"]) // step for s in shards if s["ShardId"] == after["ShardId"]
        ][0]
    finally:
        server.stop_and_check_clean_exit()


def test_the_aws_cli_splits_and_merges(aws_cli, kinesis, make_stream):
    stream = make_stream(2)
    aws_cli.run("kinesis", "split-shard", "--stream-name", stream, "--shard-to-split", shard_id(0), "--new-starting-hash-key", "1000")
    aws_cli.run(
        "kinesis",
        "merge-shards",
        "--stream-name",
        stream,
        "--shard-to-merge",
        shard_id(2),
        "--adjacent-shard-to-merge",
        shard_id(3),
    )
    listed = aws_cli.json("kinesis", "list-shards", "--stream-name", stream, "--shard-filter", "Type=AT_LATEST")
    assert [s["ShardId"] for s in listed["Shards"]] == [shard_id(1), shard_id(4)]


@pytest.mark.parametrize("created", ["before", "after"])
def test_a_record_consumer_follows_splits_and_merges_parents_before_children(
    server, kinesis, make_stream, hooks, record_consumers, created
):
    """A consumer created before the reshards follows new shards as they appear; one created after
    them from TRIM_HORIZON starts every shard at once, and still holds children back until their
    parents are delivered."""
    stream = make_stream(1)
    hook = hooks()
    request = kds_request(stream, "follow", hook.url, Batching={"MaxRecords": 20, "MaxWaitMs": 100})
    if created == "before":
        record_consumers(server.endpoint, request)
    put_order: dict[str, list[str]] = {}
    counter = 0

    def put(count: int) -> None:
        nonlocal counter
        records = []
        for _ in range(count):
            counter += 1
            key_name = f"k{counter % 7}"
            records.append({"PartitionKey": key_name, "Data": f"{key_name}#{counter}".encode()})
            put_order.setdefault(key_name, []).append(f"{key_name}#{counter}")
        assert kinesis.put_records(StreamName=stream, Records=records)["FailedRecordCount"] == 0

    put(40)
    kinesis.split_shard(StreamName=stream, ShardToSplit=shard_id(0), NewStartingHashKey=HALF)
    put(40)
    kinesis.merge_shards(StreamName=stream, ShardToMerge=shard_id(1), AdjacentShardToMerge=shard_id(2))
    put(40)
    if created == "after":
        record_consumers(server.endpoint, request)
    wait_for_records(hook, 120)

    delivered_order: dict[str, list[str]] = {}
    for call in hook.delivered_calls():
        for event in events(call):
            data = base64.b64decode(event["kinesis"]["data"]).decode()
            delivered_order.setdefault(event["kinesis"]["partitionKey"], []).append(data)
    assert delivered_order == put_order, "each record once, and each key's records in the order they were put"


def test_the_aws_cli_scales_registers_consumers_and_reports_typed_errors(aws_cli, make_stream):
    stream = make_stream(2)
    scaled = aws_cli.json(
        "kinesis", "update-shard-count", "--stream-name", stream, "--target-shard-count", "4",
        "--scaling-type", "UNIFORM_SCALING",
    )
    assert (scaled["CurrentShardCount"], scaled["TargetShardCount"]) == (2, 4)
    arn = aws_cli.json("kinesis", "describe-stream-summary", "--stream-name", stream)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    consumer = aws_cli.json("kinesis", "register-stream-consumer", "--stream-arn", arn, "--consumer-name", "cli")
    assert consumer["Consumer"]["ConsumerStatus"] == "ACTIVE"
    listed = aws_cli.json("kinesis", "list-stream-consumers", "--stream-arn", arn)
    assert [c["ConsumerName"] for c in listed["Consumers"]] == ["cli"]
    refused = aws_cli.run(
        "kinesis", "update-shard-count", "--stream-name", stream, "--target-shard-count", "9",
        "--scaling-type", "UNIFORM_SCALING", check=False,
    )
    assert refused.returncode != 0 and "LimitExceededException" in refused.stderr
