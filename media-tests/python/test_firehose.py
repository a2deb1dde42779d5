"""Firehose against a real server with real clients: boto3's `firehose` and the AWS CLI for the API and
its errors; delivery into the default directory bucket, into SeaweedFS (read back with boto3's `s3`
and the standard `gzip`) and to an HTTPS endpoint (AWS's request format, failures to the backup bucket);
kill -9 while records flow, then every acknowledged record delivered: once to a bucket, at least once to
an endpoint.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import os
import re
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from kds_helpers import ACCESS_KEY, REGION, SECRET_KEY, AwsCli, FramelogServer, client_config, framelog_bin
from seaweed_helpers import Seaweed

ROLE = "arn:aws:iam::000000000000:role/firehose"
# Records through the kill tests: the short form here; `make firehose-kills` runs 100,000 each.
KILL_RECORDS_S3 = int(os.environ.get("FRAMELOG_FIREHOSE_KILL_RECORDS", "20000"))
KILL_RECORDS_HTTP = int(os.environ.get("FRAMELOG_FIREHOSE_KILL_RECORDS", "3000"))
KEY_NAME = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/(\d{2})/(?P<stream>[\w.-]+)-(?P<version>\d+)-\d{4}(-\d{2}){5}-"
                      r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}(?P<ext>\.gz)?$")


def firehose_client(server: FramelogServer):
    return boto3.client("firehose", endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, config=client_config())


def s3_destination(bucket: str, **extra) -> dict:
    return {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}", **extra}


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def wait_until(predicate, timeout_s: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def bucket_files(root: Path) -> dict[str, bytes]:
    """Every object written under `root`; a file being written (`.NAME.tmp`, renamed once whole)
    is not one yet, and may be gone by the time it would be read."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


def test_the_api_answers_boto3_with_firehoses_shapes_and_errors(private_server):
    fh = firehose_client(private_server)
    arn = fh.create_delivery_stream(DeliveryStreamName="api", ExtendedS3DestinationConfiguration=s3_destination("b"),
                                    Tags=[{"Key": "team", "Value": "video"}])["DeliveryStreamARN"]
    assert arn == "arn:aws:firehose:us-east-1:000000000000:deliverystream/api"
    description = fh.describe_delivery_stream(DeliveryStreamName="api")["DeliveryStreamDescription"]
    assert description["DeliveryStreamStatus"] == "ACTIVE" and description["VersionId"] == "1"
    destination = description["Destinations"][0]
    assert destination["DestinationId"] == "destinationId-000000000001"
    assert destination["ExtendedS3DestinationDescription"]["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 300}
    assert destination["S3DestinationDescription"]["BucketARN"] == "arn:aws:s3:::b"

    fh.update_destination(DeliveryStreamName="api", CurrentDeliveryStreamVersionId="1",
                          DestinationId="destinationId-000000000001",
                          ExtendedS3DestinationUpdate={"CompressionFormat": "GZIP"})
    with pytest.raises(ClientError) as stale:
        fh.update_destination(DeliveryStreamName="api", CurrentDeliveryStreamVersionId="1",
                              DestinationId="destinationId-000000000001", ExtendedS3DestinationUpdate={"Prefix": "x/"})
    assert error_code(stale) == "ConcurrentModificationException"

    assert fh.list_delivery_streams()["DeliveryStreamNames"] == ["api"]
    assert fh.list_tags_for_delivery_stream(DeliveryStreamName="api")["Tags"] == [{"Key": "team", "Value": "video"}]
    answer = fh.put_record_batch(DeliveryStreamName="api", Records=[{"Data": b"a"}, {"Data": b"b"}])
    assert answer["FailedPutCount"] == 0 and len({r["RecordId"] for r in answer["RequestResponses"]}) == 2

    with pytest.raises(ClientError) as missing:
        fh.put_record(DeliveryStreamName="nope", Record={"Data": b"x"})
    assert error_code(missing) == "ResourceNotFoundException"
    assert missing.value.response["Error"]["Message"] == "Firehose nope under account 000000000000 not found."
    with pytest.raises(ClientError) as too_big:
        fh.put_record_batch(DeliveryStreamName="api", Records=[{"Data": b"x" * 1_000_000}] * 5)
    assert error_code(too_big) == "InvalidArgumentException"
    with pytest.raises(ClientError) as prefix:
        fh.create_delivery_stream(DeliveryStreamName="p",
                                  ExtendedS3DestinationConfiguration=s3_destination("b", Prefix="!{timestamp:yyyy}/"))
    assert error_code(prefix) == "InvalidArgumentException"
    fh.delete_delivery_stream(DeliveryStreamName="api")
    assert fh.list_delivery_streams()["DeliveryStreamNames"] == []


def test_the_aws_cli_creates_puts_and_describes(private_server, tmp_path):
    cli = AwsCli(private_server.endpoint, tmp_path)
    cli.json("firehose", "create-delivery-stream", "--delivery-stream-name", "cli",
            "--extended-s3-destination-configuration",
            json.dumps(s3_destination("cli-bucket", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0})))
    # AWS CLI v1 (the venv's) sends a blob given in JSON as the text itself.
    put = cli.json("firehose", "put-record", "--delivery-stream-name", "cli",
                   "--record", json.dumps({"Data": "hello from the cli\n"}))
    assert put["RecordId"]
    described = cli.json("firehose", "describe-delivery-stream", "--delivery-stream-name", "cli")
    assert described["DeliveryStreamDescription"]["DeliveryStreamName"] == "cli"
    root = private_server.data_dir / "buckets" / "cli-bucket"
    files = wait_until(lambda: bucket_files(root) if root.exists() and bucket_files(root) else None, what="a delivered file")
    assert list(files.values()) == [b"hello from the cli\n"]
    assert KEY_NAME.match(next(iter(files))), files


def test_records_reach_the_default_directory_bucket_gzipped_in_order(private_server):
    fh = firehose_client(private_server)
    fh.create_delivery_stream(
        DeliveryStreamName="dir",
        ExtendedS3DestinationConfiguration=s3_destination(
            "local", CompressionFormat="GZIP", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 1},
            ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]}))
    sent = [json.dumps({"n": i, "pad": "x" * 200}) for i in range(3000)]
    for start in range(0, len(sent), 500):
        answer = fh.put_record_batch(DeliveryStreamName="dir", Records=[{"Data": r.encode()} for r in sent[start:start + 500]])
        assert answer["FailedPutCount"] == 0
    root = private_server.data_dir / "buckets" / "local"

    def delivered_lines():
        lines = []
        for name, body in sorted(bucket_files(root).items()):
            # The standard tool, not Python's gzip module, reads what was written.
            lines += subprocess.run(["gzip", "-dc"], input=body, capture_output=True, check=True).stdout.decode().splitlines()
        return lines if len(lines) >= len(sent) else None

    lines = wait_until(delivered_lines, what="3000 records")
    assert sorted(lines, key=lambda line: json.loads(line)["n"]) == sent
    files = bucket_files(root)
    assert len(files) >= 1 and all(KEY_NAME.match(name) and name.endswith(".gz") for name in files), list(files)

    def delivered_metrics():
        text = urllib.request.urlopen(f"{private_server.endpoint}/metrics").read().decode()
        return text if 'framelog_firehose_delivery_to_s3_records_total{delivery_stream="dir"} 3000' in text else None

    metrics = wait_until(delivered_metrics, what="the delivery metrics")
    assert 'framelog_firehose_incoming_records_total{delivery_stream="dir"} 3000' in metrics
    assert f'framelog_firehose_delivery_to_s3_success_total{{delivery_stream="dir"}} {len(files)}' in metrics
    assert 'framelog_firehose_delivery_to_s3_data_freshness_seconds{delivery_stream="dir"} 0' in metrics


@pytest.fixture
def seaweed(tmp_path):
    store = Seaweed(tmp_path / "seaweed").start()
    yield store
    store.stop()


def s3_server(tmp_path: Path, seaweed: Seaweed) -> FramelogServer:
    config = tmp_path / "framelog.toml"
    config.write_text(seaweed.config_toml("archive", "real-archive"))
    seaweed.make_bucket("real-archive")
    return FramelogServer(framelog_bin(), tmp_path / "data", tmp_path, extra_args=["--config", str(config)]).start()


def test_delivery_to_seaweedfs_survives_kill_9_with_every_record_once(tmp_path, seaweed):
    server = s3_server(tmp_path, seaweed)
    try:
        fh = firehose_client(server)
        fh.create_delivery_stream(
            DeliveryStreamName="kills",
            ExtendedS3DestinationConfiguration=s3_destination(
                "archive", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0},
                ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]}))
        acknowledged = []
        for round_ in range(4):
            for batch in range(KILL_RECORDS_S3 // 4 // 500):
                records = [f"r{round_}-{batch}-{i}" for i in range(500)]
                answer = fh.put_record_batch(DeliveryStreamName="kills", Records=[{"Data": r.encode()} for r in records])
                assert answer["FailedPutCount"] == 0
                acknowledged += records
            server.kill()
            server.start()
            fh = firehose_client(server)

        def delivered():
            lines = [line for body in seaweed.objects("real-archive").values() for line in body.decode().splitlines()]
            return lines if len(lines) >= len(acknowledged) else None

        lines = wait_until(delivered, timeout_s=60 + len(acknowledged) / 1000, what=f"{len(acknowledged)} records in SeaweedFS")
        # Redelivered buffers overwrite their own object: nothing is lost and nothing doubled.
        assert sorted(lines) == sorted(acknowledged)
        keys = list(seaweed.objects("real-archive"))
        assert all(KEY_NAME.match(key) for key in keys), keys
    finally:
        server.stop_and_check_clean_exit()


def test_a_kinesis_stream_source_is_delivered_without_putrecord(private_server):
    kinesis = private_server.client()
    kinesis.create_stream(StreamName="source", ShardCount=2)
    fh = firehose_client(private_server)
    fh.create_delivery_stream(
        DeliveryStreamName="from-kds", DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/source",
                                          "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration=s3_destination("kds-copy", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}))
    with pytest.raises(ClientError) as refused:
        fh.put_record(DeliveryStreamName="from-kds", Record={"Data": b"x"})
    assert refused.value.response["Error"]["Message"] == "This operation is not permitted on KinesisStreamAsSource delivery stream type."
    sent = [f"event-{i};" for i in range(200)]
    kinesis.put_records(StreamName="source", Records=[{"Data": r.encode(), "PartitionKey": str(i)} for i, r in enumerate(sent)])
    root = private_server.data_dir / "buckets" / "kds-copy"

    def delivered():
        text = "".join(body.decode() for body in bucket_files(root).values()) if root.exists() else ""
        return text if text.count(";") >= len(sent) else None

    text = wait_until(delivered, what="the KDS stream's records")
    assert sorted(part + ";" for part in text.split(";") if part) == sorted(sent)
    description = fh.describe_delivery_stream(DeliveryStreamName="from-kds")["DeliveryStreamDescription"]
    assert description["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"].endswith(":stream/source")


def send_json(handler: http.server.BaseHTTPRequestHandler, status: int, document: dict) -> None:
    """Answers the request `handler` is serving with `document` as JSON."""
    answer = json.dumps(document).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(answer)))
    handler.end_headers()
    handler.wfile.write(answer)


class HttpsEndpoint:
    """An HTTPS endpoint (certificate from `framelog cert --dev`) that records every Firehose request and
    answers as AWS's specification asks; `fail` makes it answer 500 instead."""

    def __init__(self, certs: Path):
        self.requests: list[tuple[dict, dict]] = []
        self.fail = False
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server interface
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                document = json.loads(body)
                endpoint.requests.append(({k.lower(): v for k, v in self.headers.items()}, document))
                status = 500 if endpoint.fail else 200
                send_json(self, status, {"requestId": document["requestId"], "timestamp": int(time.time() * 1000)})

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certs / "server.pem", certs / "server-key.pem")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/hook"

    def records(self) -> list[bytes]:
        return [base64.b64decode(r["data"]) for _, doc in self.requests for r in doc["records"]]


@pytest.fixture
def https_server(tmp_path):
    """A server that trusts the dev CA for outbound HTTPS, and an endpoint with the CA's certificate."""
    certs = tmp_path / "certs"
    made = subprocess.run([framelog_bin(), "cert", "--dev", "--out", str(certs)], capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    config = tmp_path / "framelog.toml"
    config.write_text(f'[consumers]\nca_file = "{certs / "ca.pem"}"\n')
    endpoint = HttpsEndpoint(certs)
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path, extra_args=["--config", str(config)]).start()
    yield server, endpoint
    endpoint.server.shutdown()
    server.stop_and_check_clean_exit()


def http_destination(url: str, retry_s: int) -> dict:
    return {
        "EndpointConfiguration": {"Url": url, "Name": "test", "AccessKey": "shh"},
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
        "RequestConfiguration": {"ContentEncoding": "GZIP", "CommonAttributes": [{"AttributeName": "env", "AttributeValue": "ci"}]},
        "RetryOptions": {"DurationInSeconds": retry_s},
        "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::backup"},
    }


def test_an_https_endpoint_gets_every_record_through_kill_9_and_failures_reach_the_backup(https_server):
    server, endpoint = https_server
    fh = firehose_client(server)
    fh.create_delivery_stream(DeliveryStreamName="hook", HttpEndpointDestinationConfiguration=http_destination(endpoint.url, 1))
    acknowledged = []
    for round_ in range(3):
        for batch in range(KILL_RECORDS_HTTP // 3 // 250):
            records = [f"h{round_}-{batch}-{i}".encode() for i in range(250)]
            assert fh.put_record_batch(DeliveryStreamName="hook", Records=[{"Data": r} for r in records])["FailedPutCount"] == 0
            acknowledged += records
        server.kill()
        server.start()
        fh = firehose_client(server)
    received = wait_until(lambda: endpoint.records() if set(endpoint.records()) >= set(acknowledged) else None,
                          timeout_s=30 + len(acknowledged) / 1000, what="every acknowledged record at the endpoint")
    # At least once: a batch may come again after a kill, always under its first request id.
    assert sorted(set(received)) == sorted(acknowledged)
    by_id: dict[str, list] = {}
    for headers, document in endpoint.requests:
        assert headers["x-amz-firehose-request-id"] == document["requestId"]
        assert headers["x-amz-firehose-access-key"] == "shh"
        assert headers["x-amz-firehose-protocol-version"] == "1.0"
        assert json.loads(headers["x-amz-firehose-common-attributes"]) == {"commonAttributes": {"env": "ci"}}
        by_id.setdefault(document["requestId"], []).append(document["records"])
    assert all(all(batch == batches[0] for batch in batches) for batches in by_id.values()), "a retried id carries the same records"
    duplicates = len(received) - len(set(received))
    print(f"HTTP endpoint: {len(acknowledged)} acknowledged, {duplicates} received twice across 3 kills")

    endpoint.fail = True
    failed = [f"lost-{i}".encode() for i in range(10)]
    fh.put_record_batch(DeliveryStreamName="hook", Records=[{"Data": r} for r in failed])
    root = server.data_dir / "buckets" / "backup"
    errors = wait_until(lambda: [json.loads(line) for body in bucket_files(root).values() for line in body.splitlines()]
                        if root.exists() else None, what="the failed records in the backup bucket")
    assert sorted(base64.b64decode(e["rawData"]) for e in errors) == sorted(failed)
    assert {e["errorCode"] for e in errors} == {"HttpEndpoint.DestinationException"}
    assert all(name.startswith("http-endpoint-failed/") for name in bucket_files(root)), list(bucket_files(root))


def test_an_s3_outage_is_retried_shown_in_metrics_and_nothing_is_dropped(tmp_path, seaweed):
    server = s3_server(tmp_path, seaweed)
    try:
        fh = firehose_client(server)
        fh.create_delivery_stream(DeliveryStreamName="outage", ExtendedS3DestinationConfiguration=s3_destination(
            "archive", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}))
        seaweed.stop()
        sent = [f"during-outage-{i};".encode() for i in range(300)]
        assert fh.put_record_batch(DeliveryStreamName="outage", Records=[{"Data": r} for r in sent])["FailedPutCount"] == 0

        def metric(name: str) -> int:
            text = urllib.request.urlopen(f"{server.endpoint}/metrics").read().decode()
            match = re.search(rf'^framelog_firehose_{name}{{delivery_stream="outage"}} (\d+)', text, re.MULTILINE)
            return int(match.group(1)) if match else 0

        wait_until(lambda: metric("delivery_to_s3_failed_attempts_total") >= 2, what="failed attempts in the metrics")
        assert metric("delivery_to_s3_records_total") == 0
        seaweed.start()

        def delivered_text():
            try:
                return b"".join(seaweed.objects("real-archive").values()).decode() or None
            except Exception:  # noqa: BLE001 - the store is still starting: look again
                return None

        text = wait_until(delivered_text, timeout_s=90, what="the records once the store is back")
        assert sorted(part + ";" for part in text.split(";") if part) == sorted(r.decode() for r in sent)
        assert metric("delivery_to_s3_records_total") == len(sent)
    finally:
        server.stop_and_check_clean_exit()


def test_direct_put_quotas_throttle_as_aws_does_and_the_sdk_retries(tmp_path):
    config = tmp_path / "framelog.toml"
    # Ten a second: a token comes back every 100 ms, so the single put right after the batch
    # finds the bucket empty even on a busy machine (at 100 a second it had 10 ms).
    config.write_text("[firehose]\nquotas = true\nrecords_per_sec = 10\n")
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path, extra_args=["--config", str(config)]).start()
    try:
        fh = firehose_client(server)
        fh.create_delivery_stream(DeliveryStreamName="quota", ExtendedS3DestinationConfiguration=s3_destination("q"))
        answer = fh.put_record_batch(DeliveryStreamName="quota", Records=[{"Data": b"r%d" % i} for i in range(300)])
        # The bucket holds one second of records: the first 10 go in (a few more if it refilled).
        stored = [r for r in answer["RequestResponses"] if "RecordId" in r]
        refused = [r for r in answer["RequestResponses"] if "ErrorCode" in r]
        assert 10 <= len(stored) < 15 and answer["FailedPutCount"] == len(refused) == 300 - len(stored)
        assert {(r["ErrorCode"], r["ErrorMessage"]) for r in refused} == {("ServiceUnavailableException", "Slow down.")}
        assert answer["RequestResponses"][: len(stored)] == stored, "the records stored are the first ones"
        with pytest.raises(ClientError) as excinfo:
            fh.put_record(DeliveryStreamName="quota", Record={"Data": b"one more"})
        assert error_code(excinfo) == "ServiceUnavailableException"
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        # An unmodified client with its default retries waits out the throttling. botocore's
        # standard mode now backs off 0-50 ms, then 0-100 ms: less than the 100 ms a token takes
        # to come back at 10 a second, so the call starts 90 ms after the refusal above.
        time.sleep(0.09)
        retrying = boto3.client("firehose", endpoint_url=server.endpoint, region_name=REGION,
                                aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
        assert "RecordId" in retrying.put_record(DeliveryStreamName="quota", Record={"Data": b"after a wait"})
        text = urllib.request.urlopen(f"{server.endpoint}/metrics").read().decode()
        throttled = re.search(r'^framelog_firehose_throttled_records_total\{delivery_stream="quota"\} (\d+)', text, re.MULTILINE)
        assert throttled and int(throttled.group(1)) >= len(refused) + 1, text
    finally:
        server.stop()
