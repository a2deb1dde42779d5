"""A real S3-compatible store for the Firehose suites: one SeaweedFS server (`weed server -s3`, from
scripts/setup.sh's venv) on a port block and directory of the test's own, with one identity and a
bucket, and a boto3 `s3` client for reading back what Framelog delivered.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import boto3
from botocore.config import Config

from cluster_helpers import GRPC_OFFSET, free_port_block
from kds_helpers import REPO_ROOT

WEED_BIN = REPO_ROOT / ".venv" / "bin" / "weed"
ACCESS_KEY = "firehose-test"
SECRET_KEY = "firehose-test-secret"
READY_TIMEOUT_S = 60.0


# Fixed, small limits: with `-volume.max=0` SeaweedFS sizes itself from the host's free disk and,
# below its default 1 % floor (2.5 GB on a shared 252 GB disk), turns every volume read-only, so
# the suites failed whenever a neighbour filled the disk. Volumes are not preallocated, so 16 of
# 64 MB cost nothing until written.
VOLUME_LIMITS = ["-volume.max=16", "-master.volumeSizeLimitMB=64", "-volume.minFreeSpace=256MiB"]


class Seaweed:
    """`weed server` with its S3 gateway; `start()`, `stop()`, `s3()` and `config_toml(bucket)`."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.base = free_port_block()
        self.s3_port = self.base + 3
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self) -> "Seaweed":
        data = self.state_dir / "weed"
        data.mkdir(parents=True, exist_ok=True)
        identities = {"identities": [{"name": "firehose", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                                      "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        (self.state_dir / "s3.json").write_text(json.dumps(identities))
        master, volume, filer = self.base, self.base + 1, self.base + 2
        args = [
            str(WEED_BIN), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
            f"-master.port.grpc={master + GRPC_OFFSET}", f"-volume.port.grpc={volume + GRPC_OFFSET}",
            f"-filer.port.grpc={filer + GRPC_OFFSET}", "-s3", f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={self.s3_port + GRPC_OFFSET}", f"-s3.config={self.state_dir / 's3.json'}",
            *VOLUME_LIMITS,
        ]
        self.log = open(self.state_dir / "weed.log", "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert self.proc.poll() is None, f"weed exited: {(self.state_dir / 'weed.log').read_text()[-2000:]}"
            try:
                with socket.create_connection(("127.0.0.1", self.s3_port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "SeaweedFS's S3 port never opened"
                time.sleep(0.1)
        return self

    def s3(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, config=Config(retries={"total_max_attempts": 3}),
        )

    def make_bucket(self, name: str) -> None:
        """Creates the bucket, retrying while SeaweedFS finishes starting (its volume server joins late)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        s3 = self.s3()
        while True:
            try:
                s3.create_bucket(Bucket=name)
                return
            except Exception:  # noqa: BLE001 - any failure while starting up: try again until the deadline
                assert time.monotonic() < deadline, "could not create the bucket"
                time.sleep(0.3)

    def config_toml(self, firehose_bucket: str, real_bucket: str) -> str:
        """The `[buckets.NAME]` table that points Framelog at this store."""
        return (
            f'[buckets.{firehose_bucket}]\nendpoint = "{self.endpoint}"\nregion = "us-east-1"\n'
            f'bucket = "{real_bucket}"\naccess_key_id = "{ACCESS_KEY}"\nsecret_access_key = "{SECRET_KEY}"\n'
        )

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object in the bucket, by key."""
        s3 = self.s3()
        out: dict[str, bytes] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                out[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return out

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()
