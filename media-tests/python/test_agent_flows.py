"""The Kinesis Agent's file flows in framelog-edge (`--agent-config agent.json`): log files
tailed into a data stream through rotations of both styles, agent crashes and a server outage,
read back with boto3 line by line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import boto3
import pytest

from kds_helpers import ACCESS_KEY, REGION, SECRET_KEY, SHARD_ZERO, FramelogServer, _free_port, client_config, framelog_bin
from rtsp_helpers import framelog_edge_bin

LINE_BYTES = 200


def line(tag: str, seq: int) -> bytes:
    head = f"{tag} {seq:07d} "
    return (head + "x" * (LINE_BYTES - 1 - len(head)) + "\n").encode()


class RotatedLog:
    """A log written by one writer, which also rotates it (so no line falls between a copy and
    its truncation, as with a real logger that reopens its file)."""

    def __init__(self, path: Path, tag: str, style: str):
        self.path, self.tag, self.style = path, tag, style
        self.written = 0
        self.rotations = 0

    def write(self, count: int) -> None:
        with open(self.path, "ab") as log:
            log.write(b"".join(line(self.tag, self.written + i) for i in range(count)))
        self.written += count

    def rotate(self) -> None:
        self.rotations += 1
        rotated = self.path.with_name(f"{self.path.name}.{self.rotations}")
        if self.style == "rename":
            os.rename(self.path, rotated)
        else:
            shutil.copyfile(self.path, rotated)
            with open(self.path, "r+b") as log:
                log.truncate(0)


class Agent:
    """framelog-edge with an agent.json; killable and restartable."""

    def __init__(self, tmp: Path, document: dict):
        self.log = tmp / "agent.log"
        self.config = tmp / "agent.json"
        document = {"awsAccessKeyId": ACCESS_KEY, "awsSecretAccessKey": SECRET_KEY,
                    "checkpointFile": str(tmp / "state" / "checkpoints"), **document}
        self.config.write_text(json.dumps(document))
        self.proc: subprocess.Popen | None = None
        self.status_port = _free_port()

    def start(self) -> None:
        log = open(self.log, "ab")
        command = [framelog_edge_bin(), "--agent-config", str(self.config), "--status-listen", f"127.0.0.1:{self.status_port}"]
        self.proc = subprocess.Popen(command, stdout=log, stderr=log)
        log.close()
        RUNNING.append(self)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


RUNNING: list[Agent] = []


def log_agent(tmp: Path, endpoint: str, logs: list[RotatedLog], stream: str) -> Agent:
    """An agent with one flow per log into `stream`."""
    flows = [{"filePattern": f"{log.path}*", "kinesisStream": stream, "maxBufferAgeMillis": 1000,
              "partitionKeyOption": "DETERMINISTIC"} for log in logs]
    return Agent(tmp, {"kinesis.endpoint": endpoint, "flows": flows})


@pytest.fixture(autouse=True)
def no_agent_left():
    """A failed test leaves no agent running."""
    yield
    while RUNNING:
        agent = RUNNING.pop()
        if agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait(timeout=10)


def read_stream(kinesis, stream: str) -> list[bytes]:
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=SHARD_ZERO, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = []
    while True:
        answer = kinesis.get_records(ShardIterator=iterator, Limit=10000)
        records.extend(r["Data"] for r in answer["Records"])
        iterator = answer["NextShardIterator"]
        if answer["MillisBehindLatest"] == 0 and not answer["Records"]:
            return records


def tally(records: list[bytes], logs: list[RotatedLog]) -> dict[str, int]:
    """Checks that every line of every log arrived once at least, each log's lines in order of
    first arrival; returns the duplicates per log."""
    seen: dict[str, list[int]] = {log.tag: [] for log in logs}
    for record in records:
        assert len(record) == LINE_BYTES, record[:40]
        tag, seq, _ = record.decode().split(" ", 2)
        seen[tag].append(int(seq))
    duplicates = {}
    for log in logs:
        first = list(dict.fromkeys(seen[log.tag]))
        assert sorted(first) == list(range(log.written)), f"{log.tag}: {log.written - len(first)} lines missing"
        assert first == sorted(first), f"{log.tag}: lines out of order"
        duplicates[log.tag] = len(seen[log.tag]) - len(first)
    return duplicates


def wait_for_all(kinesis, stream: str, total: int, timeout_s: float) -> list[bytes]:
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_stream(kinesis, stream)
        if len(set(records)) >= total or time.monotonic() > deadline:
            return records
        time.sleep(1)


@pytest.fixture
def server(tmp_path):
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path).start()
    yield server
    if server.proc is not None:
        server.stop_and_check_clean_exit()


def test_lines_survive_rotations_agent_kills_and_a_server_outage(server, tmp_path):
    """The issue's proof: 100,000 lines in two logs rotated five times each (one by rename, one
    by copytruncate), the agent killed with SIGKILL twice, the server down for 30 s."""
    kinesis = server.client()
    kinesis.create_stream(StreamName="agent-logs", ShardCount=1)
    logs = [RotatedLog(tmp_path / "a.log", "a", "rename"), RotatedLog(tmp_path / "b.log", "b", "copytruncate")]
    agent = log_agent(tmp_path, server.endpoint, logs, "agent-logs")
    agent.start()
    outage_s = float(os.environ.get("FRAMELOG_AGENT_OUTAGE_S", "30"))
    outage_started = None
    for step in range(20):
        for log in logs:
            log.write(2_500)
            if step in (2, 6, 10, 14, 17):
                log.rotate()
        if step in (4, 15):
            agent.kill()
            agent.start()
        if step == 7:
            assert server.stop() == 0
            outage_started = time.monotonic()
        if step == 11:
            time.sleep(max(0.0, outage_s - (time.monotonic() - outage_started)))
            server.start(same_port=True)
        time.sleep(0.3)
    total = sum(log.written for log in logs)
    assert total == 100_000
    records = wait_for_all(kinesis, "agent-logs", total, timeout_s=180)
    duplicates = tally(records, logs)
    print(f"agent proof: {total} lines, {len(records)} records, duplicates {duplicates}")
    assert agent.stop() == 0, agent.log.read_text()[-3000:]


def test_without_agent_crashes_nothing_is_sent_twice(server, tmp_path):
    kinesis = server.client()
    kinesis.create_stream(StreamName="agent-once", ShardCount=1)
    logs = [RotatedLog(tmp_path / "c.log", "c", "rename"), RotatedLog(tmp_path / "d.log", "d", "copytruncate")]
    agent = log_agent(tmp_path, server.endpoint, logs, "agent-once")
    agent.start()
    for step in range(6):
        for log in logs:
            log.write(1_000)
            if step in (1, 3):
                log.rotate()
        if step == 2:
            assert server.stop() == 0
            time.sleep(3)
            server.start(same_port=True)
        time.sleep(0.3)
    records = wait_for_all(kinesis, "agent-once", 6_000 * len(logs), timeout_s=60)
    assert tally(records, logs) == {"c": 0, "d": 0}
    # A stop writes the checkpoint: a restart sends nothing again.
    assert agent.stop() == 0
    agent.start()
    time.sleep(3)
    assert len(read_stream(kinesis, "agent-once")) == len(records)
    assert agent.stop() == 0


def test_a_csv_log_reaches_a_delivery_stream_as_json(server, tmp_path):
    firehose = boto3.client("firehose", endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, config=client_config())
    firehose.create_delivery_stream(DeliveryStreamName="csv", ExtendedS3DestinationConfiguration={
        "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": "arn:aws:s3:::csv-bucket",
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}})
    log = tmp_path / "readings.csv"
    log.write_text("camera,frames\n" + "".join(f"cam{i},{i * 30}\n" for i in range(300)))
    csv = [{"optionName": "CSVTOJSON", "customFieldNames": ["camera", "frames"]}]
    flow = {"filePattern": str(log), "deliveryStream": "csv", "skipHeaderLines": 1, "maxBufferAgeMillis": 1000,
            "dataProcessingOptions": csv}
    agent = Agent(tmp_path, {"firehose.endpoint": server.endpoint, "flows": [flow]})
    agent.start()
    root = server.data_dir / "buckets" / "csv-bucket"
    expected = "".join(json.dumps({"camera": f"cam{i}", "frames": str(i * 30)}, separators=(",", ":")) + "\n" for i in range(300))
    deadline = time.monotonic() + 30
    delivered = ""
    while time.monotonic() < deadline and len(delivered) < len(expected):
        time.sleep(0.2)
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) if root.exists() else []
        delivered = "".join(p.read_text() for p in files)
    assert delivered == expected
    assert agent.stop() == 0
