"""KDS over CBOR (`application/x-amz-cbor-1.1`), the default wire format of the AWS Java SDKs and the KCL.

AWS's CBOR differs from RFC 8949 for timestamps: tag(1) carries INTEGER epoch MILLISECONDS, in both
directions (docs/spec/kds.md#cbor). Requests are encoded the way the Java SDK does; responses are decoded
with tag(1) left raw so the tests can check it is an integer number of milliseconds.
"""

from __future__ import annotations

import time

import cbor2

from kds_helpers import ACCOUNT_ID, SHARD_ZERO, expected_shard, is_sequence_number, raw_post, read_shard

CBOR_CONTENT_TYPE = "application/x-amz-cbor-1.1"


def decode(body: bytes):
    """CBOR decode, keeping tag(1) as a raw CBORTag instead of cbor2's seconds-based datetime."""
    return cbor2.loads(body, semantic_decoders={1: lambda value, immutable: cbor2.CBORTag(1, value)})


def cbor_call(endpoint: str, operation: str, payload: dict) -> tuple[int, dict, object]:
    status, headers, body = raw_post(
        endpoint, f"Kinesis_20131202.{operation}", cbor2.dumps(payload), CBOR_CONTENT_TYPE
    )
    assert headers.get("content-type", "").startswith(CBOR_CONTENT_TYPE), (operation, status, headers, body[:200])
    assert headers.get("x-amzn-requestid"), headers
    return status, headers, decode(body) if body else None


def cbor_ok(endpoint: str, operation: str, payload: dict):
    status, _, document = cbor_call(endpoint, operation, payload)
    assert status == 200, (operation, document)
    return document


def now_ms() -> int:
    return int(time.time() * 1000)


def assert_epoch_millis_tag(value, lower_ms: int, upper_ms: int) -> int:
    assert isinstance(value, cbor2.CBORTag) and value.tag == 1, f"expected tag(1), got {value!r}"
    assert isinstance(value.value, int) and not isinstance(value.value, bool), f"tag(1) must hold an integer: {value!r}"
    assert lower_ms <= value.value <= upper_ms, (value.value, lower_ms, upper_ms)
    return value.value


def test_cbor_put_record_answers_in_cbor_with_shard_and_sequence_number(endpoint, make_stream):
    name = make_stream(shard_count=2)

    result = cbor_ok(endpoint, "PutRecord", {"StreamName": name, "Data": b"\x00\x01cbor\xff", "PartitionKey": "cam-7"})

    assert result["ShardId"] == expected_shard("cam-7", 2)
    assert is_sequence_number(result["SequenceNumber"]), result


def test_cbor_records_are_byte_exact_when_read_back_over_json(endpoint, kinesis, make_stream):
    name = make_stream(shard_count=1)
    payloads = [bytes(range(256)), b"\x00" * 3, b"end"]

    result = cbor_ok(
        endpoint,
        "PutRecords",
        {"StreamName": name, "Records": [{"Data": p, "PartitionKey": f"k{i}"} for i, p in enumerate(payloads)]},
    )

    assert result["FailedRecordCount"] == 0
    assert [r["ShardId"] for r in result["Records"]] == [SHARD_ZERO] * 3
    assert [r["Data"] for r in read_shard(kinesis, name, SHARD_ZERO)] == payloads


def test_cbor_at_timestamp_takes_integer_milliseconds_and_get_records_returns_them(endpoint, make_stream):
    name = make_stream(shard_count=1)
    cbor_ok(endpoint, "PutRecord", {"StreamName": name, "Data": b"before", "PartitionKey": "k"})
    time.sleep(0.3)
    start_ms = now_ms()
    put = cbor_ok(endpoint, "PutRecord", {"StreamName": name, "Data": b"\xffafter\x00", "PartitionKey": "k"})

    iterator = cbor_ok(
        endpoint,
        "GetShardIterator",
        {
            "StreamName": name,
            "ShardId": SHARD_ZERO,
            "ShardIteratorType": "AT_TIMESTAMP",
            "Timestamp": cbor2.CBORTag(1, start_ms),
        },
    )["ShardIterator"]
    response = cbor_ok(endpoint, "GetRecords", {"ShardIterator": iterator, "Limit": 100})

    records = response["Records"]
    assert len(records) == 1, records
    record = records[0]
    assert record["Data"] == b"\xffafter\x00"
    assert isinstance(record["Data"], bytes), "Data must be a CBOR byte string"
    assert record["PartitionKey"] == "k"
    assert record["SequenceNumber"] == put["SequenceNumber"]
    arrival = assert_epoch_millis_tag(record["ApproximateArrivalTimestamp"], start_ms - 1000, now_ms() + 1000)
    assert abs(arrival - now_ms()) < 5000
    assert isinstance(response["MillisBehindLatest"], int)
    assert isinstance(response["NextShardIterator"], str) and response["NextShardIterator"]


def test_cbor_stream_creation_timestamp_is_integer_milliseconds(endpoint, make_stream):
    before = now_ms()
    name = make_stream(shard_count=1)

    summary = cbor_ok(endpoint, "DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]

    assert summary["StreamName"] == name
    assert summary["OpenShardCount"] == 1
    assert_epoch_millis_tag(summary["StreamCreationTimestamp"], before - 5000, now_ms() + 1000)


def test_cbor_error_is_a_cbor_map_with_type_and_message(endpoint):
    status, _, document = cbor_call(endpoint, "DescribeStream", {"StreamName": "nope"})

    assert status == 400
    assert isinstance(document, dict), document
    assert document["__type"] == "ResourceNotFoundException"
    assert document.get("message", document.get("Message")) == f"Stream nope under account {ACCOUNT_ID} not found."


def test_cbor_tampered_iterator_is_invalid_argument(endpoint, make_stream):
    name = make_stream(shard_count=1)
    iterator = cbor_ok(
        endpoint, "GetShardIterator", {"StreamName": name, "ShardId": SHARD_ZERO, "ShardIteratorType": "LATEST"}
    )["ShardIterator"]
    middle = len(iterator) // 2
    tampered = iterator[:middle] + ("B" if iterator[middle] == "A" else "A") + iterator[middle + 1 :]

    status, _, document = cbor_call(endpoint, "GetRecords", {"ShardIterator": tampered})

    assert status == 400
    assert document["__type"] == "InvalidArgumentException"
    assert document.get("message", document.get("Message")) == "Invalid ShardIterator."
