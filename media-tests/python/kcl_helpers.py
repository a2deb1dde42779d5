"""The SDK's record producer and consumer-group examples as processes (sdk/examples/kpl_producer.rs,
kcl_worker.rs), the lease API called with a SigV4-signed request, and the reading of the workers'
shared output file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kds_helpers import ACCESS_KEY, REGION, SECRET_KEY, framelog_bin

EXAMPLE_TIMEOUT_S = 300


def example_bin(name: str) -> Path:
    """An SDK example next to the server binary (`cargo build --release --workspace --all-targets`)."""
    path = Path(framelog_bin()).parent / "examples" / name
    assert path.exists(), f"{path} is missing: build the workspace's examples first"
    return path


def example_env() -> dict:
    return {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "RUST_LOG": "info"}


def produce(endpoint: str, stream: str, count: int, first: int = 0, size: int = 100, aggregate: bool = True,
            extra: list[str] | None = None) -> dict:
    """Runs kpl_producer once; returns its JSON line."""
    args = [str(example_bin("kpl_producer")), "--endpoint", endpoint, "--stream", stream, "--count", str(count),
            "--first", str(first), "--size", str(size)] + (["--aggregate"] if aggregate else []) + (extra or [])
    done = subprocess.run(args, env=example_env(), capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


class WorkerProcess:
    """One kcl_worker process appending to a shared file."""

    def __init__(self, endpoint: str, stream: str, app: str, out: Path, worker_id: str, log_dir: Path,
                 lease_ms: int = 3000, renew_ms: int = 1000):
        self.worker_id = worker_id
        self.log = open(log_dir / f"{worker_id}.log", "wb")
        self.log_path = log_dir / f"{worker_id}.log"
        args = [str(example_bin("kcl_worker")), "--endpoint", endpoint, "--stream", stream, "--app", app,
                "--out", str(out), "--worker-id", worker_id, "--lease-ms", str(lease_ms), "--renew-ms", str(renew_ms)]
        self.proc = subprocess.Popen(args, env=example_env(), stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM (graceful shutdown); returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop_quietly(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def lease_call(endpoint: str, operation: str, body: dict) -> dict:
    """A lease API call (Framelog's extension under the KDS endpoint), signed as boto3 would sign it."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"Kinesis_20131202.{operation}"}
    request = AWSRequest(method="POST", url=endpoint + "/", data=data, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "kinesis", REGION).add_auth(request)
    prepared = urllib.request.Request(endpoint + "/", data=data, headers=dict(request.headers), method="POST")
    with urllib.request.urlopen(prepared, timeout=10) as answer:
        return json.loads(answer.read())


def describe_leases(endpoint: str, stream: str, app: str) -> list[dict]:
    return lease_call(endpoint, "DescribeLeases", {"StreamName": stream, "ApplicationName": app})["Leases"]


@dataclass(frozen=True)
class Processed:
    """One line of the workers' file: `shard_id sequence_number [sub_sequence_number] partition_key`."""
    line: int
    shard: str
    sequence: int
    sub: int
    key: str


def read_processed(path: Path) -> list[Processed]:
    out = []
    if not path.exists():
        return out
    for number, text in enumerate(path.read_text().splitlines()):
        parts = text.split()
        assert len(parts) in (3, 4), f"malformed line {number}: {text!r}"
        sub = int(parts[2]) if len(parts) == 4 else 0
        out.append(Processed(number, parts[0], int(parts[1]), sub, parts[-1]))
    return out
