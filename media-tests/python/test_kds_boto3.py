"""KDS data plane through boto3 (the same JSON 1.1 wire format the AWS CLI and aws-sdk-rust use).

Expected values are computed from AWS's documented behaviour (docs/spec/kds.md), not read back from the server.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time

import pytest
from botocore.exceptions import ClientError

from kds_helpers import (
    ACCOUNT_ID,
    HASH_KEY_SPACE,
    SHARD_ZERO,
    expected_hash_ranges,
    expected_shard,
    is_sequence_number,
    new_stream_name,
    put_records_in_batches,
    raw_post,
    read_shard,
    shard_id,
    stream_arn,
)

ONE_MIB = 1024 * 1024
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


def error_of(excinfo) -> tuple[str, str]:
    """(code, message) of a botocore ClientError."""
    error = excinfo.value.response["Error"]
    return error["Code"], error.get("Message", "")


def summary(kinesis, name: str) -> dict:
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# ------------------------------------------------------------------------------------------------
# Stream lifecycle
# ------------------------------------------------------------------------------------------------


def test_create_stream_is_active_immediately_with_account_arn(kinesis, make_stream):
    name = make_stream(shard_count=2)

    description = kinesis.describe_stream(StreamName=name)["StreamDescription"]

    assert description["StreamName"] == name
    assert description["StreamARN"] == f"arn:aws:kinesis:us-east-1:{ACCOUNT_ID}:stream/{name}"
    assert description["StreamStatus"] == "ACTIVE"
    assert description["RetentionPeriodHours"] == 24
    assert description["HasMoreShards"] is False
    assert [s["ShardId"] for s in description["Shards"]] == ["shardId-000000000000", "shardId-000000000001"]
    assert isinstance(description["StreamCreationTimestamp"], dt.datetime)
    assert abs((now_utc() - description["StreamCreationTimestamp"]).total_seconds()) < 60


def test_stream_exists_waiter_succeeds_on_first_poll(kinesis, make_stream):
    name = make_stream(shard_count=1)
    started = time.monotonic()

    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 5, "MaxAttempts": 1})

    assert time.monotonic() - started < 5


@pytest.mark.parametrize("shard_count", [1, 3, 4, 7])
def test_new_stream_shards_split_the_hash_key_space_evenly(kinesis, make_stream, shard_count):
    name = make_stream(shard_count=shard_count)

    shards = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]

    assert len(shards) == shard_count
    for index, (shard, (start, end)) in enumerate(zip(shards, expected_hash_ranges(shard_count))):
        assert shard["ShardId"] == shard_id(index)
        assert shard["HashKeyRange"] == {"StartingHashKey": str(start), "EndingHashKey": str(end)}
        assert "ParentShardId" not in shard
        assert is_sequence_number(shard["SequenceNumberRange"]["StartingSequenceNumber"]), shard
        assert "EndingSequenceNumber" not in shard["SequenceNumberRange"]
    assert shards[-1]["HashKeyRange"]["EndingHashKey"] == str(HASH_KEY_SPACE - 1)


def test_describe_stream_summary_reports_provisioned_defaults(kinesis, make_stream):
    name = make_stream(shard_count=3)

    result = summary(kinesis, name)

    assert result["StreamName"] == name
    assert result["StreamARN"] == stream_arn(name)
    assert result["StreamStatus"] == "ACTIVE"
    assert result["OpenShardCount"] == 3
    assert result["RetentionPeriodHours"] == 24
    assert result["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert result["ConsumerCount"] == 0
    assert result["EncryptionType"] == "NONE"
    assert isinstance(result["StreamCreationTimestamp"], dt.datetime)


def test_on_demand_stream_without_shard_count_gets_four_shards(kinesis, new_stream_name):
    name = new_stream_name("ondemand")

    kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})

    result = summary(kinesis, name)
    assert result["StreamStatus"] == "ACTIVE"
    assert result["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert result["OpenShardCount"] == 4
    shards = kinesis.list_shards(StreamName=name)["Shards"]
    assert [
        (s["ShardId"], int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in shards
    ] == [(shard_id(i), start, end) for i, (start, end) in enumerate(expected_hash_ranges(4))]


def test_provisioned_stream_without_shard_count_is_rejected(kinesis, new_stream_name):
    name = new_stream_name("noshards")

    with pytest.raises(ClientError) as excinfo:
        kinesis.create_stream(StreamName=name)

    code, _ = error_of(excinfo)
    assert code in ("ValidationException", "InvalidArgumentException")
    with pytest.raises(ClientError) as excinfo:
        kinesis.describe_stream_summary(StreamName=name)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def test_creating_an_existing_stream_is_resource_in_use(kinesis, make_stream):
    name = make_stream(shard_count=1)

    with pytest.raises(ClientError) as excinfo:
        kinesis.create_stream(StreamName=name, ShardCount=2)

    assert error_of(excinfo) == (
        "ResourceInUseException",
        f"Stream {name} under account {ACCOUNT_ID} already exists.",
    )
    assert summary(kinesis, name)["OpenShardCount"] == 1


def test_stream_can_be_addressed_by_arn(kinesis, make_stream):
    name = make_stream(shard_count=1)

    put = kinesis.put_record(StreamARN=stream_arn(name), Data=b"by-arn", PartitionKey="k")
    result = kinesis.describe_stream_summary(StreamARN=stream_arn(name))["StreamDescriptionSummary"]

    assert put["ShardId"] == SHARD_ZERO
    assert result["StreamName"] == name
    assert [r["Data"] for r in read_shard(kinesis, name, SHARD_ZERO)] == [b"by-arn"]


def test_deleted_stream_is_gone_and_recreating_it_starts_empty(kinesis, make_stream):
    name = make_stream(shard_count=1)
    for i in range(3):
        kinesis.put_record(StreamName=name, Data=f"old-{i}".encode(), PartitionKey="k")

    kinesis.delete_stream(StreamName=name)

    with pytest.raises(ClientError) as excinfo:
        kinesis.describe_stream(StreamName=name)
    assert error_of(excinfo) == ("ResourceNotFoundException", f"Stream {name} under account {ACCOUNT_ID} not found.")
    listed = [n for page in kinesis.get_paginator("list_streams").paginate() for n in page["StreamNames"]]
    assert name not in listed

    kinesis.create_stream(StreamName=name, ShardCount=1)
    assert read_shard(kinesis, name, SHARD_ZERO) == []
    kinesis.put_record(StreamName=name, Data=b"new", PartitionKey="k")
    assert [r["Data"] for r in read_shard(kinesis, name, SHARD_ZERO)] == [b"new"]


def test_deleting_an_unknown_stream_is_resource_not_found(kinesis):
    with pytest.raises(ClientError) as excinfo:
        kinesis.delete_stream(StreamName="nope")

    assert error_of(excinfo) == ("ResourceNotFoundException", "Stream nope under account 000000000000 not found.")


# ------------------------------------------------------------------------------------------------
# Writing: routing, sequence numbers, limits
# ------------------------------------------------------------------------------------------------


def test_put_record_routes_by_md5_of_partition_key(kinesis, make_stream):
    name = make_stream(shard_count=4)
    keys = [f"user-{i}" for i in range(60)] + ["ключ", "clé-ü", "🎥 camera 7", "a" * 256]

    routed = {}
    for key in keys:
        result = kinesis.put_record(StreamName=name, Data=key.encode(), PartitionKey=key)
        routed[key] = result["ShardId"]
        assert is_sequence_number(result["SequenceNumber"]), result

    assert routed == {key: expected_shard(key, 4) for key in keys}
    assert len(set(routed.values())) == 4, "60+ keys should hit every one of 4 shards"


def test_explicit_hash_key_overrides_partition_key(kinesis, make_stream):
    name = make_stream(shard_count=4)
    partition_key = "always-the-same-key"
    natural_shard = expected_shard(partition_key, 4)

    for index, (start, end) in enumerate(expected_hash_ranges(4)):
        for hash_key in (start, end):
            result = kinesis.put_record(
                StreamName=name, Data=b"x", PartitionKey=partition_key, ExplicitHashKey=str(hash_key)
            )
            assert result["ShardId"] == shard_id(index), (hash_key, natural_shard)


def test_put_records_honours_explicit_hash_key_per_entry(kinesis, make_stream):
    name = make_stream(shard_count=2)
    ranges = expected_hash_ranges(2)
    entries = [
        {"Data": b"to-0", "PartitionKey": "k", "ExplicitHashKey": str(ranges[0][1])},
        {"Data": b"to-1", "PartitionKey": "k", "ExplicitHashKey": str(ranges[1][0])},
        {"Data": b"natural", "PartitionKey": "k"},
    ]

    results = put_records_in_batches(kinesis, name, entries)

    assert [r["ShardId"] for r in results] == [shard_id(0), shard_id(1), expected_shard("k", 2)]


def test_explicit_hash_key_outside_the_key_space_is_invalid_argument(kinesis, make_stream):
    name = make_stream(shard_count=1)
    too_big = str(HASH_KEY_SPACE)

    with pytest.raises(ClientError) as excinfo:
        kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="k", ExplicitHashKey=too_big)

    assert error_of(excinfo) == (
        "InvalidArgumentException",
        f"Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {too_big}",
    )


def test_sequence_numbers_are_56_digits_and_strictly_increase_within_a_shard(kinesis, make_stream):
    name = make_stream(shard_count=1)

    sequence_numbers = [
        kinesis.put_record(StreamName=name, Data=b"single", PartitionKey=f"k{i}")["SequenceNumber"] for i in range(25)
    ]
    batch = [{"Data": b"batched", "PartitionKey": f"b{i}"} for i in range(25)]
    sequence_numbers += [r["SequenceNumber"] for r in put_records_in_batches(kinesis, name, batch)]
    sequence_numbers += [
        kinesis.put_record(StreamName=name, Data=b"single", PartitionKey=f"z{i}")["SequenceNumber"] for i in range(5)
    ]

    assert all(is_sequence_number(s) for s in sequence_numbers), sequence_numbers
    as_ints = [int(s) for s in sequence_numbers]
    assert all(a < b for a, b in zip(as_ints, as_ints[1:])), sequence_numbers
    starting = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"][0]["SequenceNumberRange"]
    assert int(starting["StartingSequenceNumber"]) <= as_ints[0]


def test_put_records_returns_one_result_per_entry_in_request_order(kinesis, make_stream):
    name = make_stream(shard_count=4)
    rng = random.Random(7)
    entries = [{"Data": rng.randbytes(rng.randint(1, 64)), "PartitionKey": f"pk-{rng.random()}"} for _ in range(500)]

    response = kinesis.put_records(StreamName=name, Records=entries)

    assert response["FailedRecordCount"] == 0
    assert len(response["Records"]) == 500
    for entry, result in zip(entries, response["Records"]):
        assert "ErrorCode" not in result, result
        assert result["ShardId"] == expected_shard(entry["PartitionKey"], 4)
        assert is_sequence_number(result["SequenceNumber"])
    for shard in {r["ShardId"] for r in response["Records"]}:
        in_shard = [int(r["SequenceNumber"]) for r in response["Records"] if r["ShardId"] == shard]
        assert in_shard == sorted(in_shard) and len(set(in_shard)) == len(in_shard)


def test_put_record_accepts_one_mib_and_rejects_larger_data(kinesis, make_stream):
    name = make_stream(shard_count=1)
    largest = random.Random(1).randbytes(ONE_MIB - 1)  # + 1-byte partition key = exactly 1 MiB

    kinesis.put_record(StreamName=name, Data=largest, PartitionKey="a")
    with pytest.raises(ClientError) as excinfo:
        kinesis.put_record(StreamName=name, Data=b"\0" * (ONE_MIB + 1), PartitionKey="a")

    assert error_of(excinfo)[0] == "ValidationException"
    assert [r["Data"] for r in read_shard(kinesis, name, SHARD_ZERO)] == [largest]


# ------------------------------------------------------------------------------------------------
# Reading: iterators and GetRecords
# ------------------------------------------------------------------------------------------------


def put_numbered(kinesis, name: str, count: int, prefix: str = "r") -> list[tuple[bytes, str]]:
    """PutRecord `count` records (one shard stream); returns [(data, sequence_number)] in put order."""
    out = []
    for i in range(count):
        data = f"{prefix}-{i}".encode()
        out.append((data, kinesis.put_record(StreamName=name, Data=data, PartitionKey=f"{prefix}{i}")["SequenceNumber"]))
    return out


def test_get_records_returns_data_partition_key_sequence_and_arrival_time(kinesis, make_stream):
    name = make_stream(shard_count=1)
    put = [kinesis.put_record(StreamName=name, Data=bytes([i]) * (i + 1), PartitionKey=f"key-{i}") for i in range(3)]
    iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD_ZERO, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]

    response = kinesis.get_records(ShardIterator=iterator)

    records = response["Records"]
    assert [(r["Data"], r["PartitionKey"], r["SequenceNumber"]) for r in records] == [
        (bytes([i]) * (i + 1), f"key-{i}", put[i]["SequenceNumber"]) for i in range(3)
    ]
    for record in records:
        arrival = record["ApproximateArrivalTimestamp"]
        assert isinstance(arrival, dt.datetime)
        assert abs((now_utc() - arrival).total_seconds()) < 30
    assert isinstance(response["NextShardIterator"], str) and response["NextShardIterator"]
    assert isinstance(response["MillisBehindLatest"], int) and response["MillisBehindLatest"] >= 0

    caught_up = kinesis.get_records(ShardIterator=response["NextShardIterator"])
    assert caught_up["Records"] == []
    assert caught_up["MillisBehindLatest"] == 0
    assert caught_up["NextShardIterator"]


def test_trim_horizon_and_sequence_number_iterators_start_where_documented(kinesis, make_stream):
    name = make_stream(shard_count=1)
    put = put_numbered(kinesis, name, 5)
    data = [d for d, _ in put]

    def read(iterator_type, **kwargs):
        return [r["Data"] for r in read_shard(kinesis, name, SHARD_ZERO, iterator_type, **kwargs)]

    assert read("TRIM_HORIZON") == data
    assert read("AT_SEQUENCE_NUMBER", StartingSequenceNumber=put[2][1]) == data[2:]
    assert read("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=put[2][1]) == data[3:]
    assert read("AT_SEQUENCE_NUMBER", StartingSequenceNumber=put[0][1]) == data
    assert read("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=put[4][1]) == []


def test_latest_iterator_sees_only_records_put_after_it(kinesis, make_stream):
    name = make_stream(shard_count=1)
    put_numbered(kinesis, name, 3, prefix="before")
    iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD_ZERO, ShardIteratorType="LATEST")[
        "ShardIterator"
    ]

    empty = kinesis.get_records(ShardIterator=iterator)
    assert empty["Records"] == [] and empty["MillisBehindLatest"] == 0
    after = put_numbered(kinesis, name, 2, prefix="after")
    response = kinesis.get_records(ShardIterator=empty["NextShardIterator"])

    assert [(r["Data"], r["SequenceNumber"]) for r in response["Records"]] == after


def test_at_timestamp_iterator_starts_at_first_record_arriving_at_or_after_it(kinesis, make_stream):
    name = make_stream(shard_count=1)
    before = put_numbered(kinesis, name, 2, prefix="before")
    # Wide margins: botocore may send the timestamp as whole epoch seconds.
    time.sleep(1.5)
    timestamp = now_utc()
    time.sleep(1.5)
    after = put_numbered(kinesis, name, 2, prefix="after")

    records = read_shard(kinesis, name, SHARD_ZERO, "AT_TIMESTAMP", Timestamp=timestamp)
    long_ago = read_shard(kinesis, name, SHARD_ZERO, "AT_TIMESTAMP", Timestamp=timestamp - dt.timedelta(hours=1))

    assert [(r["Data"], r["SequenceNumber"]) for r in records] == after
    assert [(r["Data"], r["SequenceNumber"]) for r in long_ago] == before + after


def test_at_timestamp_in_the_future_is_invalid_argument(kinesis, make_stream):
    name = make_stream(shard_count=1)

    with pytest.raises(ClientError) as excinfo:
        kinesis.get_shard_iterator(
            StreamName=name,
            ShardId=SHARD_ZERO,
            ShardIteratorType="AT_TIMESTAMP",
            Timestamp=now_utc() + dt.timedelta(hours=1),
        )

    code, message = error_of(excinfo)
    assert code == "InvalidArgumentException"
    assert message.startswith(
        "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: "
    ), message


def test_at_sequence_number_without_a_sequence_number_is_invalid_argument(kinesis, make_stream):
    name = make_stream(shard_count=1)

    with pytest.raises(ClientError) as excinfo:
        kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD_ZERO, ShardIteratorType="AT_SEQUENCE_NUMBER")

    assert error_of(excinfo) == (
        "InvalidArgumentException",
        "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or "
        "(2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. "
        "Request specified AT_SEQUENCE_NUMBER and no StartingSequenceNumber.",
    )


def test_shard_iterator_for_a_missing_shard_is_resource_not_found(kinesis, make_stream):
    name = make_stream(shard_count=1)

    with pytest.raises(ClientError) as excinfo:
        kinesis.get_shard_iterator(StreamName=name, ShardId="shardId-000000000009", ShardIteratorType="TRIM_HORIZON")

    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Shard shardId-000000000009 in stream {name} under account {ACCOUNT_ID} does not exist",
    )


def test_get_records_limit_caps_each_batch_and_next_iterator_continues(kinesis, make_stream):
    name = make_stream(shard_count=1)
    put = put_numbered(kinesis, name, 7)
    iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD_ZERO, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]

    batches = []
    for _ in range(3):
        response = kinesis.get_records(ShardIterator=iterator, Limit=3)
        batches.append([(r["Data"], r["SequenceNumber"]) for r in response["Records"]])
        iterator = response["NextShardIterator"]

    assert batches == [put[0:3], put[3:6], put[6:7]]
    assert response["MillisBehindLatest"] == 0


def test_get_records_accepts_limit_10000_and_rejects_10001(kinesis, make_stream):
    name = make_stream(shard_count=1)
    put_numbered(kinesis, name, 2)
    iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD_ZERO, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]

    assert len(kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]) == 2
    with pytest.raises(ClientError) as excinfo:
        kinesis.get_records(ShardIterator=iterator, Limit=10001)
    assert error_of(excinfo)[0] == "ValidationException"


def test_tampered_shard_iterator_is_invalid_argument(kinesis, make_stream):
    name = make_stream(shard_count=1)
    put_numbered(kinesis, name, 1)
    iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD_ZERO, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    middle = len(iterator) // 2
    flipped = "B" if iterator[middle] == "A" else "A"
    tampered = iterator[:middle] + flipped + iterator[middle + 1 :]
    assert tampered != iterator

    with pytest.raises(ClientError) as excinfo:
        kinesis.get_records(ShardIterator=tampered)

    assert error_of(excinfo) == ("InvalidArgumentException", "Invalid ShardIterator.")
    assert len(kinesis.get_records(ShardIterator=iterator)["Records"]) == 1, "the genuine iterator still works"


# ------------------------------------------------------------------------------------------------
# Retention
# ------------------------------------------------------------------------------------------------


def test_retention_period_can_be_increased_and_decreased(kinesis, make_stream):
    name = make_stream(shard_count=1)

    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=168)
    assert summary(kinesis, name)["RetentionPeriodHours"] == 168
    kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
    assert summary(kinesis, name)["RetentionPeriodHours"] == 48
    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=8760)
    assert summary(kinesis, name)["RetentionPeriodHours"] == 8760


@pytest.mark.parametrize("operation", ["increase_stream_retention_period", "decrease_stream_retention_period"])
def test_retention_below_24_hours_is_rejected(kinesis, make_stream, operation):
    name = make_stream(shard_count=1)

    with pytest.raises(ClientError) as excinfo:
        getattr(kinesis, operation)(StreamName=name, RetentionPeriodHours=23)

    assert error_of(excinfo) == (
        "InvalidArgumentException",
        "Minimum allowed retention period is 24 hours. Requested retention period (23 hours) is too short.",
    )
    assert summary(kinesis, name)["RetentionPeriodHours"] == 24


def test_increase_below_current_and_decrease_above_current_are_rejected(kinesis, make_stream):
    name = make_stream(shard_count=1)
    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48)

    with pytest.raises(ClientError) as increase:
        kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=25)
    with pytest.raises(ClientError) as decrease:
        kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=72)

    assert error_of(increase) == (
        "InvalidArgumentException",
        f"Requested retention period (25 hours) for stream {name} can not be shorter than existing retention "
        "period (48 hours). Use DecreaseRetentionPeriod API.",
    )
    assert error_of(decrease) == (
        "InvalidArgumentException",
        f"Requested retention period (72 hours) for stream {name} can not be longer than existing retention "
        "period (48 hours). Use IncreaseRetentionPeriod API.",
    )
    assert summary(kinesis, name)["RetentionPeriodHours"] == 48


# ------------------------------------------------------------------------------------------------
# Tags
# ------------------------------------------------------------------------------------------------


def test_tags_round_trip_sorted_by_key(kinesis, make_stream):
    name = make_stream(shard_count=1)

    kinesis.add_tags_to_stream(StreamName=name, Tags={"zeta": "1", "alpha": "2", "mid": ""})
    listed = kinesis.list_tags_for_stream(StreamName=name)
    assert listed["Tags"] == [
        {"Key": "alpha", "Value": "2"},
        {"Key": "mid", "Value": ""},
        {"Key": "zeta", "Value": "1"},
    ]
    assert listed["HasMoreTags"] is False

    kinesis.add_tags_to_stream(StreamName=name, Tags={"alpha": "overwritten"})
    kinesis.remove_tags_from_stream(StreamName=name, TagKeys=["mid", "not-there"])
    listed = kinesis.list_tags_for_stream(StreamName=name)
    assert listed["Tags"] == [{"Key": "alpha", "Value": "overwritten"}, {"Key": "zeta", "Value": "1"}]
    assert listed["HasMoreTags"] is False


def test_list_tags_pages_with_limit_and_exclusive_start_tag_key(kinesis, make_stream):
    name = make_stream(shard_count=1)
    kinesis.add_tags_to_stream(StreamName=name, Tags={"c": "3", "a": "1", "b": "2"})

    first = kinesis.list_tags_for_stream(StreamName=name, Limit=2)
    rest = kinesis.list_tags_for_stream(StreamName=name, ExclusiveStartTagKey="b")

    assert first["Tags"] == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    assert first["HasMoreTags"] is True
    assert rest["Tags"] == [{"Key": "c", "Value": "3"}]
    assert rest["HasMoreTags"] is False


# ------------------------------------------------------------------------------------------------
# Listing streams and shards
# ------------------------------------------------------------------------------------------------


def test_list_streams_pages_with_limit_next_token_and_exclusive_start_name(private_server):
    kinesis = private_server.client()
    names = [f"list-{letter}" for letter in "abcde"]
    for name in reversed(names):
        kinesis.create_stream(StreamName=name, ShardCount=1)

    page1 = kinesis.list_streams(Limit=2)
    page2 = kinesis.list_streams(Limit=2, NextToken=page1["NextToken"])
    page3 = kinesis.list_streams(Limit=2, NextToken=page2["NextToken"])
    after_b = kinesis.list_streams(Limit=2, ExclusiveStartStreamName="list-b")
    everything = kinesis.list_streams()

    assert (page1["StreamNames"], page1["HasMoreStreams"]) == (names[0:2], True)
    assert (page2["StreamNames"], page2["HasMoreStreams"]) == (names[2:4], True)
    assert (page3["StreamNames"], page3["HasMoreStreams"]) == (names[4:5], False)
    assert "NextToken" not in page3
    assert (after_b["StreamNames"], after_b["HasMoreStreams"]) == (names[2:4], True)
    assert (everything["StreamNames"], everything["HasMoreStreams"]) == (names, False)
    for stream in everything["StreamSummaries"]:
        assert stream["StreamARN"] == stream_arn(stream["StreamName"])
        assert stream["StreamStatus"] == "ACTIVE"
        assert stream["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
        assert isinstance(stream["StreamCreationTimestamp"], dt.datetime)
    assert [s["StreamName"] for s in everything["StreamSummaries"]] == names


def test_list_streams_paginator_collects_every_stream(private_server):
    kinesis = private_server.client()
    names = sorted(new_stream_name("pg") for _ in range(7))
    for name in names:
        kinesis.create_stream(StreamName=name, ShardCount=1)

    pages = list(kinesis.get_paginator("list_streams").paginate(PaginationConfig={"PageSize": 3}))

    assert [len(p["StreamNames"]) for p in pages] == [3, 3, 1]
    assert [n for p in pages for n in p["StreamNames"]] == names
    assert [s["StreamName"] for p in pages for s in p["StreamSummaries"]] == names


def test_list_shards_pages_with_max_results_and_next_token(kinesis, make_stream):
    name = make_stream(shard_count=5)

    page1 = kinesis.list_shards(StreamName=name, MaxResults=2)
    page2 = kinesis.list_shards(NextToken=page1["NextToken"], MaxResults=2)
    page3 = kinesis.list_shards(NextToken=page2["NextToken"], MaxResults=2)

    ids = [s["ShardId"] for page in (page1, page2, page3) for s in page["Shards"]]
    assert ids == [shard_id(i) for i in range(5)]
    assert [len(p["Shards"]) for p in (page1, page2, page3)] == [2, 2, 1]
    assert "NextToken" not in page3
    described = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    assert [s for page in (page1, page2, page3) for s in page["Shards"]] == described
    assert kinesis.list_shards(StreamName=name)["Shards"] == described


def test_list_shards_with_next_token_and_stream_name_is_invalid_argument(kinesis, make_stream):
    name = make_stream(shard_count=3)
    token = kinesis.list_shards(StreamName=name, MaxResults=1)["NextToken"]

    with pytest.raises(ClientError) as excinfo:
        kinesis.list_shards(StreamName=name, NextToken=token)

    assert error_of(excinfo) == ("InvalidArgumentException", "NextToken and StreamName cannot be provided together.")


# ------------------------------------------------------------------------------------------------
# Raw wire envelope (urllib): unknown operations, bad JSON, request ids
# ------------------------------------------------------------------------------------------------


def error_body(body: bytes) -> tuple[str, str | None]:
    document = json.loads(body)
    return document["__type"], document.get("message", document.get("Message"))


def test_unknown_operation_is_400_unknown_operation_exception(endpoint):
    status, headers, body = raw_post(endpoint, "Kinesis_20131202.FrobnicateStream", b"{}", JSON_CONTENT_TYPE)

    assert status == 400
    assert error_body(body)[0] == "UnknownOperationException"
    assert headers.get("x-amzn-requestid")


def test_malformed_json_body_is_400_serialization_exception(endpoint):
    status, headers, body = raw_post(
        endpoint, "Kinesis_20131202.DescribeStream", b'{"StreamName": "x",', JSON_CONTENT_TYPE
    )

    assert status == 400
    assert error_body(body)[0] == "SerializationException"
    assert headers.get("x-amzn-requestid")


def test_every_response_carries_a_request_id_and_the_json_content_type(endpoint):
    ok_status, ok_headers, ok_body = raw_post(endpoint, "Kinesis_20131202.ListStreams", b"{}", JSON_CONTENT_TYPE)
    err_status, err_headers, err_body = raw_post(
        endpoint, "Kinesis_20131202.DescribeStream", b'{"StreamName": "nope"}', JSON_CONTENT_TYPE
    )

    assert ok_status == 200
    assert ok_headers.get("x-amzn-requestid")
    assert ok_headers.get("content-type", "").startswith(JSON_CONTENT_TYPE)
    assert isinstance(json.loads(ok_body)["StreamNames"], list)
    assert err_status == 400
    assert err_headers.get("x-amzn-requestid")
    assert err_headers["x-amzn-requestid"] != ok_headers["x-amzn-requestid"]
    assert err_headers.get("content-type", "").startswith(JSON_CONTENT_TYPE)
    assert error_body(err_body) == (
        "ResourceNotFoundException",
        "Stream nope under account 000000000000 not found.",
    )


# ------------------------------------------------------------------------------------------------
# Durability across restarts (a private server per test)
# ------------------------------------------------------------------------------------------------


def put_random_records(kinesis, name: str, count: int, shard_count: int, rng: random.Random) -> dict[str, list]:
    """PutRecords `count` random records; returns {shard_id: [(partition_key, data, sequence_number)]}."""
    entries = [{"Data": rng.randbytes(rng.randint(1, 300)), "PartitionKey": f"pk-{rng.getrandbits(40)}"} for _ in range(count)]
    results = put_records_in_batches(kinesis, name, entries)
    by_shard: dict[str, list] = {shard_id(i): [] for i in range(shard_count)}
    for entry, result in zip(entries, results):
        assert result["ShardId"] == expected_shard(entry["PartitionKey"], shard_count)
        by_shard[result["ShardId"]].append((entry["PartitionKey"], entry["Data"], result["SequenceNumber"]))
    return by_shard


def read_all_shards(kinesis, name: str, shard_count: int) -> dict[str, list]:
    return {
        shard_id(i): [(r["PartitionKey"], r["Data"], r["SequenceNumber"]) for r in read_shard(kinesis, name, shard_id(i))]
        for i in range(shard_count)
    }


def merge(a: dict[str, list], b: dict[str, list]) -> dict[str, list]:
    return {shard: a.get(shard, []) + b.get(shard, []) for shard in set(a) | set(b)}


def test_stream_metadata_and_records_survive_a_graceful_restart(private_server):
    kinesis = private_server.client()
    name = "durable"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
    kinesis.add_tags_to_stream(StreamName=name, Tags={"owner": "tests"})
    written = put_random_records(kinesis, name, 300, 2, random.Random(11))
    single = kinesis.put_record(StreamName=name, Data=b"last one", PartitionKey="solo")
    written = merge(written, {single["ShardId"]: [("solo", b"last one", single["SequenceNumber"])]})
    shards_before = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]

    private_server.restart()  # SIGTERM, asserts exit code 0, starts again on the same data dir
    kinesis = private_server.client()

    after = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert after["StreamStatus"] == "ACTIVE"
    assert after["RetentionPeriodHours"] == 48
    assert after["Shards"] == shards_before
    assert kinesis.list_tags_for_stream(StreamName=name)["Tags"] == [{"Key": "owner", "Value": "tests"}]
    assert read_all_shards(kinesis, name, 2) == written


def test_acknowledged_records_survive_kill_9_and_sequence_numbers_keep_increasing(private_server):
    kinesis = private_server.client()
    name = "crashy"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    rng = random.Random(12)
    written = put_random_records(kinesis, name, 400, 2, rng)
    private_server.restart()
    kinesis = private_server.client()
    written = merge(written, put_random_records(kinesis, name, 600, 2, rng))

    private_server.kill()  # SIGKILL right after the last PutRecords was acknowledged
    private_server.start()
    kinesis = private_server.client()

    assert read_all_shards(kinesis, name, 2) == written
    for index, (start, _) in enumerate(expected_hash_ranges(2)):
        shard = shard_id(index)
        new = kinesis.put_record(StreamName=name, Data=b"after crash", PartitionKey="x", ExplicitHashKey=str(start))
        assert new["ShardId"] == shard
        assert int(new["SequenceNumber"]) > max(int(seq) for _, _, seq in written[shard])


# ------------------------------------------------------------------------------------------------
# Bulk round trip
# ------------------------------------------------------------------------------------------------


def test_ten_thousand_records_round_trip_byte_exact_in_per_shard_order(kinesis, make_stream):
    name = make_stream(shard_count=4)
    rng = random.Random(20261125)
    entries = [
        {"Data": rng.randbytes(rng.randint(1, 2000)), "PartitionKey": f"device-{rng.getrandbits(32):08x}-{i}"}
        for i in range(10_000)
    ]

    results = put_records_in_batches(kinesis, name, entries, batch_size=500)

    expected: dict[str, list] = {shard_id(i): [] for i in range(4)}
    for entry, result in zip(entries, results):
        assert result["ShardId"] == expected_shard(entry["PartitionKey"], 4), entry["PartitionKey"]
        expected[result["ShardId"]].append((entry["PartitionKey"], entry["Data"], result["SequenceNumber"]))
    assert all(len(v) > 2000 for v in expected.values()), {k: len(v) for k, v in expected.items()}

    actual = read_all_shards(kinesis, name, 4)

    assert sum(len(v) for v in actual.values()) == 10_000
    for shard in expected:
        assert len(actual[shard]) == len(expected[shard]), shard
        for index, (want, got) in enumerate(zip(expected[shard], actual[shard])):
            assert got == want, f"{shard} record {index} differs"
        sequence_numbers = [int(seq) for _, _, seq in actual[shard]]
        assert sequence_numbers == sorted(sequence_numbers)
        assert {expected_shard(partition_key, 4) for partition_key, _, _ in actual[shard]} == {shard}
