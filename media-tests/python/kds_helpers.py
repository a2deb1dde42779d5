"""Shared helpers for the KDS wire-compatibility suite: expected values computed from docs/spec/kds.md,
the framelog server process, the AWS CLI runner and raw HTTP requests. Fixtures are in conftest.py."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ACCOUNT_ID = "000000000000"
REGION = "us-east-1"
ACCESS_KEY = "AKIDUMMY"
SECRET_KEY = "dummy"
HASH_KEY_SPACE = 2**128
SHARD_ZERO = "shardId-000000000000"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

REPO_ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------
# Pure helpers (imported by the test modules)
# ------------------------------------------------------------------------------------------------


def stream_arn(name: str) -> str:
    return f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{name}"


def shard_id(index: int) -> str:
    return f"shardId-{index:012d}"


def expected_hash_ranges(shard_count: int) -> list[tuple[int, int]]:
    """Inclusive hash key ranges of a new stream (docs/spec/kds.md#streams-and-shards): step = floor(2^128/N),
    last ends at 2^128-1."""
    step = HASH_KEY_SPACE // shard_count
    ranges = [(i * step, (i + 1) * step - 1) for i in range(shard_count)]
    ranges[-1] = (ranges[-1][0], HASH_KEY_SPACE - 1)
    return ranges


def partition_key_hash(partition_key: str) -> int:
    """MD5 of the UTF-8 partition key read as an unsigned big-endian 128-bit integer."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")


def expected_shard_for_hash(hash_key: int, shard_count: int) -> str:
    for index, (start, end) in enumerate(expected_hash_ranges(shard_count)):
        if start <= hash_key <= end:
            return shard_id(index)
    raise AssertionError(f"hash key {hash_key} outside the hash key space")


def expected_shard(partition_key: str, shard_count: int) -> str:
    return expected_shard_for_hash(partition_key_hash(partition_key), shard_count)


def is_sequence_number(value: object) -> bool:
    """Real KDS sequence numbers are 56-digit decimal strings without a leading zero."""
    return isinstance(value, str) and len(value) == 56 and value.isdigit() and value[0] != "0"


def read_shard(client, stream: str, shard: str, iterator_type: str = "TRIM_HORIZON", **kwargs) -> list[dict]:
    """Reads one shard from the given position until caught up; returns every record in order."""
    iterator = client.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType=iterator_type, **kwargs
    )["ShardIterator"]
    records: list[dict] = []
    for _ in range(1000):
        response = client.get_records(ShardIterator=iterator)
        records.extend(response["Records"])
        assert response["NextShardIterator"], "an open shard must always return a NextShardIterator"
        iterator = response["NextShardIterator"]
        if not response["Records"] and response["MillisBehindLatest"] == 0:
            return records
    raise AssertionError(f"{stream}/{shard}: still not caught up after 1000 GetRecords calls")


def put_records_in_batches(client, stream: str, entries: list[dict], batch_size: int = 500) -> list[dict]:
    """PutRecords in batches; asserts every entry succeeded and returns the per-entry results in order."""
    results: list[dict] = []
    for start in range(0, len(entries), batch_size):
        batch = entries[start : start + batch_size]
        response = client.put_records(StreamName=stream, Records=batch)
        assert response["FailedRecordCount"] == 0, response
        assert len(response["Records"]) == len(batch)
        results.extend(response["Records"])
    return results


_stream_counter = itertools.count(1)


def new_stream_name(prefix: str = "test") -> str:
    """A stream name no other test (or earlier run on the same data dir) uses."""
    return f"{prefix}-{next(_stream_counter):04d}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------------------------
# Server process management
# ------------------------------------------------------------------------------------------------


def framelog_bin() -> str:
    binary = os.environ.get("FRAMELOG_BIN")
    if not binary:
        pytest.fail(
            "FRAMELOG_BIN is not set: point it at the framelog server binary "
            "(e.g. `make test` sets it to $CARGO_TARGET_DIR/release/framelog)",
            pytrace=False,
        )
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"FRAMELOG_BIN={binary!r} is not an executable file", pytrace=False)
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def client_config() -> Config:
    # No retries: every request the tests make must succeed or fail exactly once, visibly.
    return Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60)


class FramelogServer:
    """One framelog server process on a data dir; can be stopped, killed and restarted on that dir."""

    def __init__(
        self,
        binary: str,
        data_dir: Path,
        log_dir: Path,
        extra_args: list[str] | None = None,
        scheme: str = "http",
        verify: str | bool | None = None,
    ):
        self.binary = binary
        self.data_dir = data_dir
        self.log_dir = log_dir
        # Appended to `serve --listen ... --data-dir ...` on every start (e.g. ["--credentials", FILE]).
        self.extra_args = list(extra_args or [])
        # "https" when extra_args hold --tls-cert/--tls-key: the server then speaks nothing but TLS.
        self.scheme = scheme
        # boto3's `verify` for this server's clients: a CA bundle path for HTTPS (None: botocore's default).
        self.verify = verify
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.starts = 0
        self._log_file = None

    @property
    def endpoint(self) -> str:
        assert self.port is not None, "server not started"
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"server-{self.starts}.log"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def start(self, same_port: bool = False) -> "FramelogServer":
        """Starts the server on a free port, or with `same_port` on the port it had (clients
        configured with its endpoint find it again)."""
        assert self.proc is None, "server already running"
        self.starts += 1
        if not (same_port and self.port):
            self.port = _free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--data-dir",
                str(self.data_dir),
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._reap()
                pytest.fail(
                    f"framelog exited with {code} before accepting connections:\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(
                    f"framelog did not accept connections on {self.endpoint} within {READY_TIMEOUT_S:.0f} s:\n"
                    f"{self.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.05)

    def _reap(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self.proc = None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; returns the exit code (fails if the server does not exit in time)."""
        assert self.proc is not None, "server not running"
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"framelog did not exit within {timeout:.0f} s of SIGTERM:\n{self.log_tail()}", pytrace=False)
        self._reap()
        return code

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush or clean up."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        self._reap()

    def restart(self) -> "FramelogServer":
        """Graceful stop (asserting exit code 0) and start again on the same data dir."""
        code = self.stop()
        assert code == 0, f"framelog exited with {code} on SIGTERM:\n{self.log_tail()}"
        return self.start()

    def client(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, config: Config | None = None):
        """boto3 Kinesis client; dummy credentials unless the server checks them (--credentials)."""
        return boto3.client(
            "kinesis",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=client_config().merge(config) if config else client_config(),
            verify=self.verify,
        )

    def kinesisvideo_client(
        self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, config: Config | None = None
    ):
        """boto3 Kinesis Video Streams control-plane client (`kinesisvideo`) for this server."""
        return kinesisvideo_client(self.endpoint, access_key, secret_key, config, verify=self.verify)

    def stop_and_check_clean_exit(self) -> None:
        if self.proc is None:
            return
        code = self.stop()
        assert code == 0, f"framelog exited with {code} on SIGTERM (expected 0):\n{self.log_tail()}"


def kinesisvideo_client(
    endpoint_url: str,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    config: Config | None = None,
    verify: str | bool | None = None,
):
    """boto3 `kinesisvideo` (KVS control plane) client: us-east-1, dummy credentials unless given, no retries;
    `verify` is boto3's (a CA bundle path for an HTTPS server)."""
    return boto3.client(
        "kinesisvideo",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=client_config().merge(config) if config else client_config(),
        verify=verify,
    )


# ------------------------------------------------------------------------------------------------
# AWS CLI and raw HTTP helpers
# ------------------------------------------------------------------------------------------------


def aws_cli_path() -> str:
    candidates = [Path(sys.executable).parent / "aws", REPO_ROOT / ".venv" / "bin" / "aws"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("aws")
    if found:
        return found
    pytest.fail("AWS CLI not found (expected .venv/bin/aws; run scripts/setup.sh)", pytrace=False)


class AwsCli:
    """Runs `aws <args> --endpoint-url ... --region us-east-1 --output json` with dummy credentials."""

    def __init__(self, endpoint_url: str, home: Path):
        self.binary = aws_cli_path()
        self.endpoint_url = endpoint_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(
            {
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_CONFIG_FILE": str(home / "config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
                "AWS_MAX_ATTEMPTS": "1",
                "AWS_PAGER": "",
                "HOME": str(home),
            }
        )

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [
            self.binary,
            *args,
            "--endpoint-url",
            self.endpoint_url,
            "--region",
            REGION,
            "--output",
            "json",
        ]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def json(self, *args: str) -> dict:
        """Runs a command that must succeed and print a JSON document; returns it."""
        proc = self.run(*args)
        return json.loads(proc.stdout)


DUMMY_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIDUMMY/20261125/us-east-1/kinesis/aws4_request, "
    "SignedHeaders=host, Signature=00"
)


def raw_post(endpoint_url: str, target: str | None, body: bytes, content_type: str) -> tuple[int, dict, bytes]:
    """POST / with the given X-Amz-Target and body; returns (status, lower-cased headers, body)."""
    headers = {"Content-Type": content_type, "Authorization": DUMMY_AUTHORIZATION, "X-Amz-Date": "20261125T000000Z"}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = urllib.request.Request(endpoint_url + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()
