"""KDS through the AWS CLI v1 (from the project venv) with --endpoint-url and dummy credentials."""

from __future__ import annotations

import base64

from kds_helpers import ACCOUNT_ID, SHARD_ZERO, expected_shard, is_sequence_number, read_shard, stream_arn


def create_stream(aws_cli, name: str, shard_count: int = 1) -> None:
    created = aws_cli.run("kinesis", "create-stream", "--stream-name", name, "--shard-count", str(shard_count))
    assert created.stdout.strip() == "", "CreateStream has an empty response"
    aws_cli.run("kinesis", "wait", "stream-exists", "--stream-name", name)


def describe_summary(aws_cli, name: str) -> dict:
    return aws_cli.json("kinesis", "describe-stream-summary", "--stream-name", name)["StreamDescriptionSummary"]


def test_cli_creates_waits_for_and_describes_a_stream(aws_cli, new_stream_name):
    name = new_stream_name("cli")

    create_stream(aws_cli, name, shard_count=2)
    result = describe_summary(aws_cli, name)

    assert result["StreamName"] == name
    assert result["StreamARN"] == stream_arn(name)
    assert result["StreamStatus"] == "ACTIVE"
    assert result["OpenShardCount"] == 2
    assert result["RetentionPeriodHours"] == 24
    assert result["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}


def test_cli_put_record_text_is_stored_as_raw_bytes_and_read_back_as_base64(aws_cli, kinesis, new_stream_name):
    name = new_stream_name("cli")
    create_stream(aws_cli, name, shard_count=1)

    put = aws_cli.json(
        "kinesis", "put-record", "--stream-name", name, "--partition-key", "cam-1", "--data", "hello world"
    )
    # CLI v1 sends --data text as the record bytes: this is stored as the 8 bytes "aGVsbG8=", not "hello".
    put_b64 = aws_cli.json("kinesis", "put-record", "--stream-name", name, "--partition-key", "cam-1", "--data", "aGVsbG8=")
    iterator = aws_cli.json(
        "kinesis",
        "get-shard-iterator",
        "--stream-name",
        name,
        "--shard-id",
        SHARD_ZERO,
        "--shard-iterator-type",
        "TRIM_HORIZON",
    )["ShardIterator"]
    got = aws_cli.json("kinesis", "get-records", "--shard-iterator", iterator)

    assert put["ShardId"] == SHARD_ZERO
    assert is_sequence_number(put["SequenceNumber"])
    assert int(put_b64["SequenceNumber"]) > int(put["SequenceNumber"])
    assert [(r["Data"], r["PartitionKey"], r["SequenceNumber"]) for r in got["Records"]] == [
        (base64.b64encode(b"hello world").decode(), "cam-1", put["SequenceNumber"]),
        (base64.b64encode(b"aGVsbG8=").decode(), "cam-1", put_b64["SequenceNumber"]),
    ]
    assert got["NextShardIterator"]
    assert got["MillisBehindLatest"] == 0
    # The same bytes through boto3.
    assert [r["Data"] for r in read_shard(kinesis, name, SHARD_ZERO)] == [b"hello world", b"aGVsbG8="]


def test_cli_put_record_routes_by_partition_key(aws_cli, new_stream_name):
    name = new_stream_name("cli")
    create_stream(aws_cli, name, shard_count=4)

    shards = {
        key: aws_cli.json("kinesis", "put-record", "--stream-name", name, "--partition-key", key, "--data", "x")[
            "ShardId"
        ]
        for key in ("alpha", "bravo", "charlie", "delta", "echo")
    }

    assert shards == {key: expected_shard(key, 4) for key in shards}


def test_cli_list_streams_includes_created_streams(aws_cli, new_stream_name):
    names = [new_stream_name("cli-list") for _ in range(2)]
    for name in names:
        create_stream(aws_cli, name)

    listed = aws_cli.json("kinesis", "list-streams")["StreamNames"]

    assert set(names) <= set(listed)
    assert listed == sorted(listed)


def test_cli_tags_round_trip(aws_cli, new_stream_name):
    name = new_stream_name("cli")
    create_stream(aws_cli, name)

    aws_cli.run("kinesis", "add-tags-to-stream", "--stream-name", name, "--tags", "team=video,env=test")
    tags = aws_cli.json("kinesis", "list-tags-for-stream", "--stream-name", name)
    aws_cli.run("kinesis", "remove-tags-from-stream", "--stream-name", name, "--tag-keys", "env")
    remaining = aws_cli.json("kinesis", "list-tags-for-stream", "--stream-name", name)

    assert tags == {"Tags": [{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "video"}], "HasMoreTags": False}
    assert remaining == {"Tags": [{"Key": "team", "Value": "video"}], "HasMoreTags": False}


def test_cli_increases_and_decreases_retention(aws_cli, new_stream_name):
    name = new_stream_name("cli")
    create_stream(aws_cli, name)

    aws_cli.run("kinesis", "increase-stream-retention-period", "--stream-name", name, "--retention-period-hours", "72")
    increased = describe_summary(aws_cli, name)["RetentionPeriodHours"]
    aws_cli.run("kinesis", "decrease-stream-retention-period", "--stream-name", name, "--retention-period-hours", "36")
    decreased = describe_summary(aws_cli, name)["RetentionPeriodHours"]

    assert (increased, decreased) == (72, 36)


def test_cli_delete_stream_then_describe_fails_with_resource_not_found(aws_cli, new_stream_name):
    name = new_stream_name("cli")
    create_stream(aws_cli, name)

    deleted = aws_cli.run("kinesis", "delete-stream", "--stream-name", name)
    described = aws_cli.run("kinesis", "describe-stream-summary", "--stream-name", name, check=False)

    assert deleted.stdout.strip() == ""
    assert described.returncode in (254, 255), described
    assert "ResourceNotFoundException" in described.stderr
    assert f"Stream {name} under account {ACCOUNT_ID} not found." in described.stderr
    assert name not in aws_cli.json("kinesis", "list-streams")["StreamNames"]
