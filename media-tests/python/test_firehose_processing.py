"""Firehose's processors against a real server, driven by boto3: a webhook standing in for a Lambda
function (AWS's transformation event in, `{records: [...]}` out), JSON de-aggregation, jq partition keys,
dynamic partitioning into per-key prefixes, ZIP objects read back with the standard `unzip`, failures as
error records under the ErrorOutputPrefix; and a Kinesis stream source read from TRIM_HORIZON whose KPL
aggregated records are unpacked.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import json
import subprocess
import threading
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from kds_helpers import ACCESS_KEY, REGION, SECRET_KEY, FramelogServer, client_config, framelog_bin
from test_firehose import ROLE, bucket_files, s3_destination, send_json, wait_until

LAMBDA_ARN = "arn:aws:lambda:us-east-1:000000000000:function:shape"


class ShapeFunction:
    """Answers Firehose's transformation event as a Lambda function would: records holding "drop" are
    Dropped, "fail" ProcessingFailed, the rest Ok with the data upper-cased and the partition key
    `shape` from the record's `shape` member (or `none`)."""

    def __init__(self):
        self.events: list[dict] = []
        function = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server interface
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                function.events.append(event)
                send_json(self, 200, {"records": [function.answer(r) for r in event["records"]]})

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def answer(record: dict) -> dict:
        text = base64.b64decode(record["data"]).decode()
        if "drop" in text:
            return {"recordId": record["recordId"], "result": "Dropped"}
        if "fail" in text:
            return {"recordId": record["recordId"], "result": "ProcessingFailed", "data": record["data"]}
        shape = json.loads(text).get("shape", "none") if text.startswith("{") else "none"
        return {"recordId": record["recordId"], "result": "Ok", "data": base64.b64encode(text.upper().encode()).decode(),
                "metadata": {"partitionKeys": {"shape": shape}}}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/fn"


@pytest.fixture
def lambda_server(tmp_path):
    function = ShapeFunction()
    config = tmp_path / "framelog.toml"
    config.write_text(f'[lambda_functions.shape]\nurl = "{function.url}"\n')
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path, extra_args=["--config", str(config)]).start()
    yield server, function
    function.server.shutdown()
    server.stop_and_check_clean_exit()


def firehose(server: FramelogServer):
    return boto3.client("firehose", endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, config=client_config())


def parameter(name: str, value: str) -> dict:
    return {"ParameterName": name, "ParameterValue": value}


def unzip(body: bytes, tmp: Path) -> str:
    """The one entry of a ZIP object, read by the standard tool."""
    archive = tmp / "object.zip"
    archive.write_bytes(body)
    listed = subprocess.run(["unzip", "-Z1", str(archive)], capture_output=True, text=True, check=True).stdout.split()
    assert len(listed) == 1, listed
    return subprocess.run(["unzip", "-p", str(archive)], capture_output=True, check=True).stdout.decode()


def test_lambda_and_jq_keys_partition_zip_objects_and_failures_go_to_their_error_prefix(lambda_server, tmp_path):
    server, function = lambda_server
    fh = firehose(server)
    fh.create_delivery_stream(DeliveryStreamName="shapes", ExtendedS3DestinationConfiguration=s3_destination(
        "shapes", CompressionFormat="ZIP",
        Prefix="shape=!{partitionKeyFromLambda:shape}/color=!{partitionKeyFromQuery:color}/",
        ErrorOutputPrefix="errors/!{firehose:error-output-type}/",
        BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 0},
        DynamicPartitioningConfiguration={"Enabled": True},
        ProcessingConfiguration={"Enabled": True, "Processors": [
            {"Type": "RecordDeAggregation", "Parameters": [parameter("SubRecordType", "JSON")]},
            {"Type": "Lambda", "Parameters": [parameter("LambdaArn", LAMBDA_ARN), parameter("NumberOfRetries", "1")]},
            # The function upper-cases the JSON, so the query reads the upper-case member.
            {"Type": "MetadataExtraction", "Parameters": [parameter("MetadataExtractionQuery", "{color: .COLOR}"),
                                                          parameter("JsonParsingEngine", "JQ-1.6")]},
            {"Type": "AppendDelimiterToRecord"},
        ]}))
    good = [{"shape": s, "color": c, "n": n} for n, (s, c) in enumerate([("round", "red"), ("square", "red"), ("round", "blue")] * 20)]
    # Two objects per put record: de-aggregation splits them before the function sees them.
    packed = [json.dumps(a) + json.dumps(b) for a, b in zip(good[0::2], good[1::2])]
    bad = ["drop this", "fail this", json.dumps({"shape": "round", "n": 99})]
    answer = fh.put_record_batch(DeliveryStreamName="shapes", Records=[{"Data": r.encode()} for r in packed + bad])
    assert answer["FailedPutCount"] == 0
    root = server.data_dir / "buckets" / "shapes"

    expected: dict[str, list[str]] = {}
    for record in good:
        # The query reads the function's upper-cased record, so its key is upper case too.
        folder = f"shape={record['shape']}/color={record['color'].upper()}"
        expected.setdefault(folder, []).append(json.dumps(record).upper())

    def lines_by_folder() -> dict[str, list[str]]:
        by_folder: dict[str, list[str]] = {}
        for name, body in (bucket_files(root).items() if root.exists() else []):
            assert name.endswith(".zip"), name
            by_folder.setdefault(name.rsplit("/", 1)[0], []).extend(unzip(body, tmp_path).splitlines())
        return by_folder

    def settled():
        by_folder = lines_by_folder()
        delivered = sum(len(by_folder.get(folder, [])) for folder in expected)
        errors = [folder for folder in by_folder if folder.startswith("errors/")]
        return by_folder if delivered >= len(good) and len(errors) >= 2 else None

    by_folder = wait_until(settled, what="three partitions and two kinds of error objects")
    for folder, lines in expected.items():
        assert sorted(by_folder.pop(folder)) == sorted(lines), folder

    def errors(kind: str) -> list[dict]:
        return [json.loads(line) for folder, lines in by_folder.items() if folder.startswith(f"errors/{kind}") for line in lines]

    (failed,) = errors("processing-failed")
    assert failed["errorCode"] == "Lambda.ProcessingFailedStatus" and failed["lambdaArn"] == LAMBDA_ARN
    assert base64.b64decode(failed["rawData"]) == b"fail this" and failed["attemptsMade"] == 1
    (no_color,) = errors("partitioning-failed")
    assert json.loads(base64.b64decode(no_color["rawData"])) == {"SHAPE": "ROUND", "N": 99}
    event = function.events[0]
    assert event["deliveryStreamArn"].endswith(":deliverystream/shapes") and event["region"] == REGION
    assert all({"recordId", "approximateArrivalTimestamp", "data"} <= set(r) for r in event["records"])


def test_processor_rules_are_refused_with_aws_messages(lambda_server):
    server, _ = lambda_server
    fh = firehose(server)

    def refused(name: str, **destination) -> str:
        with pytest.raises(ClientError) as error:
            fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=s3_destination("b", **destination))
        assert error.value.response["Error"]["Code"] == "InvalidArgumentException"
        return error.value.response["Error"]["Message"]

    query = {"Type": "MetadataExtraction", "Parameters": [parameter("MetadataExtractionQuery", "{k: .k}"),
                                                          parameter("JsonParsingEngine", "JQ-1.6")]}
    partitioned = dict(Prefix="k=!{partitionKeyFromQuery:k}/", ErrorOutputPrefix="e/!{firehose:error-output-type}/",
                       DynamicPartitioningConfiguration={"Enabled": True})
    assert refused("small", BufferingHints={"SizeInMBs": 5, "IntervalInSeconds": 60},
                   ProcessingConfiguration={"Enabled": True, "Processors": [query]}, **partitioned) \
        == "BufferingHints.SizeInMBs must be at least 64 when Dynamic Partitioning is enabled."
    assert refused("off", Prefix="k=!{partitionKeyFromQuery:k}/", ErrorOutputPrefix="e/!{firehose:error-output-type}/") \
        == "Dynamic Partitioning Namespaces can only be part of a prefix expression when Dynamic Partitioning is enabled."
    unknown = {"Type": "Lambda", "Parameters": [parameter("LambdaArn", "arn:aws:lambda:us-east-1:000000000000:function:nope")]}
    assert "[lambda_functions.nope]" in refused("unknown", ProcessingConfiguration={"Enabled": True, "Processors": [unknown]})
    broken = {"Type": "MetadataExtraction", "Parameters": [parameter("MetadataExtractionQuery", "{k: .k")]}
    assert "not a valid JQ-1.6 query" in refused("broken", BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 60},
                                                 ProcessingConfiguration={"Enabled": True, "Processors": [broken]}, **partitioned)


def kpl_aggregate(records: list[bytes], key: str) -> bytes:
    """A KPL aggregated record, laid out by hand from the published format (magic, protobuf, MD5)."""

    def varint(n: int) -> bytes:
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            out += bytes([byte | (0x80 if n else 0)])
            if not n:
                return out

    def field(number: int, payload: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    message = field(1, key.encode())
    for data in records:
        message += field(3, varint(1 << 3 | 0) + varint(0) + field(3, data))
    return bytes([0xF3, 0x89, 0x9A, 0xC2]) + message + hashlib.md5(message).digest()


def test_a_kinesis_source_from_trim_horizon_unpacks_kpl_records(private_server):
    kinesis = private_server.client()
    kinesis.create_stream(StreamName="kpl", ShardCount=1)
    users = [f"user-{i}".encode() for i in range(30)]
    kinesis.put_record(StreamName="kpl", Data=kpl_aggregate(users[:20], "a"), PartitionKey="a")
    kinesis.put_record(StreamName="kpl", Data=kpl_aggregate(users[20:], "b"), PartitionKey="b")
    fh = firehose(private_server)
    # Created after the records were put: only TRIM_HORIZON reads them.
    fh.create_delivery_stream(
        DeliveryStreamName="unpacked", DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/kpl", "RoleARN": ROLE},
        Tags=[{"Key": "framelog:StartingPosition", "Value": "TRIM_HORIZON"}],
        ExtendedS3DestinationConfiguration=s3_destination(
            "unpacked", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0},
            ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]}))
    root = private_server.data_dir / "buckets" / "unpacked"

    def delivered():
        lines = [line for body in (bucket_files(root).values() if root.exists() else []) for line in body.decode().splitlines()]
        return lines if len(lines) >= len(users) else None

    assert wait_until(delivered, what="30 user records") == [u.decode() for u in users]
    with pytest.raises(ClientError) as bad_tag:
        fh.create_delivery_stream(
            DeliveryStreamName="bad-tag", DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/kpl", "RoleARN": ROLE},
            Tags=[{"Key": "framelog:StartingPosition", "Value": "AT_TIMESTAMP"}],
            ExtendedS3DestinationConfiguration=s3_destination("x"))
    assert bad_tag.value.response["Error"]["Code"] == "InvalidArgumentException"


@pytest.fixture
def parquet_server(tmp_path):
    config = tmp_path / "framelog.toml"
    config.write_text("""
[glue_tables.analytics.events]
columns = [
  { name = "id", type = "bigint" },
  { name = "name", type = "string" },
  { name = "score", type = "double" },
  { name = "ok", type = "boolean" },
  { name = "at", type = "timestamp" },
]
""")
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path, extra_args=["--config", str(config)]).start()
    yield server
    server.stop_and_check_clean_exit()


def test_json_records_become_parquet_that_pyarrow_reads_back_row_by_row(parquet_server):
    import pyarrow as pa
    import pyarrow.parquet as pq

    fh = firehose(parquet_server)
    fh.create_delivery_stream(DeliveryStreamName="columns", ExtendedS3DestinationConfiguration=s3_destination(
        "columns", BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 0}, ErrorOutputPrefix="bad/!{firehose:error-output-type}/",
        Prefix="events/!{timestamp:yyyy}/",
        DataFormatConversionConfiguration={
            "SchemaConfiguration": {"DatabaseName": "analytics", "TableName": "events", "RoleARN": ROLE, "Region": REGION},
            "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
            "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "GZIP"}}},
        }))
    rows = [{"id": i, "Name": f"n{i}", "score": i / 4, "ok": i % 2 == 0, "at": 1_700_000_000_000 + i} for i in range(1000)]
    records = [json.dumps(r).encode() for r in rows] + [b'{"id": "not a number"}']
    for start in range(0, len(records), 500):
        assert fh.put_record_batch(DeliveryStreamName="columns", Records=[{"Data": r} for r in records[start:start + 500]])["FailedPutCount"] == 0
    root = parquet_server.data_dir / "buckets" / "columns"

    def tables():
        files = bucket_files(root) if root.exists() else {}
        parquet = {name: body for name, body in files.items() if name.startswith("events/")}
        errors = {name: body for name, body in files.items() if name.startswith("bad/")}
        read = [pq.read_table(pa.BufferReader(parquet[name])) for name in sorted(parquet)]
        return (read, errors) if sum(t.num_rows for t in read) >= len(rows) and errors else None

    read, errors = wait_until(tables, what="1000 rows as Parquet and one error record")
    assert all(name.endswith(".parquet") for name in bucket_files(root) if name.startswith("events/"))
    got = sorted((row for table in read for row in table.to_pylist()), key=lambda row: row["id"])
    assert [c for c in read[0].schema.names] == ["id", "name", "score", "ok", "at"]
    for sent, row in zip(rows, got):
        assert (row["id"], row["name"], row["score"], row["ok"]) == (sent["id"], sent["Name"], sent["score"], sent["ok"])
        # A Hive timestamp has no zone: pyarrow gives a naive datetime of the UTC instant.
        assert (row["at"] - datetime.datetime(1970, 1, 1)) // datetime.timedelta(milliseconds=1) == sent["at"]
    assert len(got) == len(rows)
    (error_text,) = errors.values()
    (error,) = [json.loads(line) for line in error_text.decode().splitlines()]
    assert base64.b64decode(error["rawData"]) == b'{"id": "not a number"}'
    assert error["dataCatalogTable"]["tableName"] == "events" and "lastErrorCode" in error
