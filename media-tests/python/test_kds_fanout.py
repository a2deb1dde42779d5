"""Enhanced fan-out through boto3 against the real binary: consumer registration as AWS shows it, and
SubscribeToShard event streams (records pushed as they commit, continuation, ChildShards at the end of a
split shard, one subscription per consumer and shard, errors as exception events)."""

from __future__ import annotations

import re
import threading
import time

import pytest
from botocore.exceptions import ClientError, EventStreamError

from kds_helpers import ACCOUNT_ID, REGION, shard_id

HALF = str(2**127)
CONSUMER_ARN = re.compile(rf"^arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/(?P<stream>[^/]+)/consumer/(?P<name>[^:]+):\d+$")


def stream_arn(kinesis, stream: str) -> str:
    return kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]


def register(kinesis, stream: str, name: str) -> str:
    consumer = kinesis.register_stream_consumer(StreamARN=stream_arn(kinesis, stream), ConsumerName=name)["Consumer"]
    return consumer["ConsumerARN"]


def subscribe(kinesis, consumer_arn: str, shard: str = shard_id(0), **position):
    position = position or {"Type": "TRIM_HORIZON"}
    return kinesis.subscribe_to_shard(ConsumerARN=consumer_arn, ShardId=shard, StartingPosition=position)["EventStream"]


def error_code(call, **kwargs) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"]


def test_consumers_register_describe_list_and_deregister_as_aws_shows_them(kinesis, make_stream):
    stream = make_stream(1)
    arn = stream_arn(kinesis, stream)
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="fan.out-1")["Consumer"]
    match = CONSUMER_ARN.match(consumer["ConsumerARN"])
    assert match and match["stream"] == stream and match["name"] == "fan.out-1", consumer
    assert consumer["ConsumerStatus"] == "ACTIVE"
    assert abs(consumer["ConsumerCreationTimestamp"].timestamp() - time.time()) < 60

    by_arn = kinesis.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])["ConsumerDescription"]
    by_name = kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="fan.out-1")["ConsumerDescription"]
    assert by_arn == by_name and by_arn["StreamARN"] == arn
    assert error_code(kinesis.register_stream_consumer, StreamARN=arn, ConsumerName="fan.out-1") == "ResourceInUseException"

    for i in range(2, 21):
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName=f"c{i:02d}")
    assert error_code(kinesis.register_stream_consumer, StreamARN=arn, ConsumerName="one-too-many") == "LimitExceededException"
    page = kinesis.list_stream_consumers(StreamARN=arn, MaxResults=15)
    rest = kinesis.list_stream_consumers(StreamARN=arn, NextToken=page["NextToken"])
    names = [c["ConsumerName"] for c in page["Consumers"] + rest["Consumers"]]
    assert sorted(names) == names and len(names) == 20 and "fan.out-1" in names
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert summary["ConsumerCount"] == 20

    assert error_code(kinesis.delete_stream, StreamName=stream) == "ResourceInUseException"
    kinesis.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    assert error_code(kinesis.describe_stream_consumer, ConsumerARN=consumer["ConsumerARN"]) == "ResourceNotFoundException"
    kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)


def test_subscribe_to_shard_pushes_stored_then_live_records_with_a_continuation(kinesis, make_stream):
    stream = make_stream(1)
    for i in range(5):
        kinesis.put_record(StreamName=stream, PartitionKey=f"k{i}", Data=f"stored-{i}".encode())
    consumer = register(kinesis, stream, "pusher")
    events = iter(subscribe(kinesis, consumer))
    first = next(events)["SubscribeToShardEvent"]
    assert [r["Data"] for r in first["Records"]] == [f"stored-{i}".encode() for i in range(5)]
    assert first["ContinuationSequenceNumber"] == first["Records"][-1]["SequenceNumber"]
    assert first["MillisBehindLatest"] == 0

    put_at: dict[bytes, float] = {}

    def put_later() -> None:
        time.sleep(0.3)
        for i in range(3):
            put_at[f"live-{i}".encode()] = time.monotonic()
            kinesis.put_record(StreamName=stream, PartitionKey="live", Data=f"live-{i}".encode())

    writer = threading.Thread(target=put_later)
    writer.start()
    live: list[bytes] = []
    while len(live) < 3:
        event = next(events)["SubscribeToShardEvent"]
        live.extend(r["Data"] for r in event["Records"])
        arrived = time.monotonic()
        for data in (r["Data"] for r in event["Records"]):
            # Pushed from the commit watch, not found by a poll: well under a second on loopback.
            assert arrived - put_at[data] < 1.0, data
    writer.join()
    assert live == [b"live-0", b"live-1", b"live-2"]

    # Subscribing after a continuation starts exactly after the last record seen (a second consumer,
    # as this one's subscription is still live).
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"after")
    other = register(kinesis, stream, "resumer")
    again = iter(subscribe(kinesis, other, Type="AFTER_SEQUENCE_NUMBER", SequenceNumber=first["ContinuationSequenceNumber"]))
    resumed = next(again)["SubscribeToShardEvent"]
    assert [r["Data"] for r in resumed["Records"]] == [b"live-0", b"live-1", b"live-2", b"after"]


def test_a_second_subscription_of_the_same_consumer_and_shard_is_refused(kinesis, make_stream):
    stream = make_stream(2)
    consumer = register(kinesis, stream, "single")
    held = subscribe(kinesis, consumer)
    next(iter(held))
    assert error_code(
        kinesis.subscribe_to_shard, ConsumerARN=consumer, ShardId=shard_id(0), StartingPosition={"Type": "LATEST"}
    ) == "ResourceInUseException"
    other_shard = subscribe(kinesis, consumer, shard_id(1))
    assert "SubscribeToShardEvent" in next(iter(other_shard))
    assert error_code(
        kinesis.subscribe_to_shard, ConsumerARN=consumer + "9", ShardId=shard_id(0), StartingPosition={"Type": "LATEST"}
    ) == "ResourceNotFoundException"


def test_a_subscription_ends_at_a_split_with_the_child_shards(kinesis, make_stream):
    stream = make_stream(1)
    consumer = register(kinesis, stream, "lineage")
    kinesis.put_record(StreamName=stream, PartitionKey="a", Data=b"before")
    events = iter(subscribe(kinesis, consumer))
    assert [r["Data"] for r in next(events)["SubscribeToShardEvent"]["Records"]] == [b"before"]
    kinesis.split_shard(StreamName=stream, ShardToSplit=shard_id(0), NewStartingHashKey=HALF)
    last = next(events)["SubscribeToShardEvent"]
    assert [c["ShardId"] for c in last["ChildShards"]] == [shard_id(1), shard_id(2)]
    assert all(c["ParentShards"] == [shard_id(0)] for c in last["ChildShards"])
    assert list(events) == [], "the stream ends at the end of the closed shard"

    child = iter(subscribe(kinesis, consumer, shard_id(2)))
    kinesis.put_record(StreamName=stream, PartitionKey="b", ExplicitHashKey=HALF, Data=b"child")
    seen: list[bytes] = []
    while not seen:
        seen.extend(r["Data"] for r in next(child)["SubscribeToShardEvent"]["Records"])
    assert seen == [b"child"]


def test_deregistering_the_consumer_ends_its_subscription_with_an_exception_event(kinesis, make_stream):
    stream = make_stream(1)
    consumer = register(kinesis, stream, "leaving")
    events = iter(subscribe(kinesis, consumer))
    next(events)
    kinesis.deregister_stream_consumer(ConsumerARN=consumer)
    with pytest.raises(EventStreamError) as caught:
        for _ in range(10):
            next(events)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_subscription_older_than_five_seconds_is_taken_over_by_a_new_one(kinesis, make_stream):
    stream = make_stream(1)
    consumer = register(kinesis, stream, "takeover")
    old = iter(subscribe(kinesis, consumer))
    next(old)
    time.sleep(5.2)
    new = iter(subscribe(kinesis, consumer, Type="LATEST"))
    assert "SubscribeToShardEvent" in next(new)
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"wake")
    with pytest.raises(EventStreamError) as caught:
        for _ in range(10):
            next(old)
    assert caught.value.response["Error"]["Code"] == "ResourceInUseException"
