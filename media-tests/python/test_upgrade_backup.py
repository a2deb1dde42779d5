"""Upgrades and backups (docs/operations.md): a data dir written by an older Framelog opens with
this one and serves every record and fragment it held; `framelog backup` copies a serving
server's data dir while cameras and writers keep going, and `framelog restore` brings back, on
another server, everything acknowledged before the backup began.
"""

from __future__ import annotations

import json
import random
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

import known_data
from kds_helpers import FramelogServer, framelog_bin, read_shard
from kvs_helpers import PRODUCER_START_MS, VIDEO, archive, put_endpoint
from media_fixtures import H264_TRACK, HandFrame, cluster_blocks, mkv_cluster, mkv_header, parse_mkv_chunks, put_media

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LAYOUTS = sorted(p.name.removeprefix("datadir-").removesuffix(".tar.gz") for p in FIXTURES.glob("datadir-*.tar.gz"))
LOAD_STREAM = "backup-load"
LOAD_CAMERA = "backup-camera"


def admin_socket(server: FramelogServer) -> Path:
    """The server's admin socket, once it is bound (a moment after the HTTP port accepts)."""
    path = server.data_dir / "admin.sock"
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"no admin socket:\n{server.log_tail()}"
        time.sleep(0.05)
    return path


def framelog(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([framelog_bin(), *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_every_committed_layout_fixture_is_listed():
    assert "v1" in LAYOUTS, f"fixtures found: {LAYOUTS}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_data_dir_written_by_an_older_release_opens_with_everything_it_held(tmp_path, layout):
    with tarfile.open(FIXTURES / f"datadir-{layout}.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    manifest = json.loads((FIXTURES / f"datadir-{layout}.json").read_text())
    age_hours = (time.time() * 1000 - manifest["written_at_ms"]) / 3_600_000
    assert age_hours < manifest["record_retention_hours"], (
        f"the {layout} fixture's records have expired ({age_hours:.0f} h old): "
        "write it again with make_upgrade_fixture.py and the release that made it")
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path).start()
    try:
        kinesis, kinesisvideo = server.client(), server.kinesisvideo_client()
        known_data.check(kinesis, kinesisvideo, manifest)
        # And it takes new writes after the old ones.
        newest = max(int(r["sequence"]) for r in manifest["records"] if r["shard"] == "shardId-000000000000")
        answer = kinesis.put_record(
            StreamName=known_data.RECORD_STREAM, Data=b"after the upgrade", PartitionKey="k", ExplicitHashKey="0"
        )
        assert int(answer["SequenceNumber"]) > newest
    finally:
        server.stop_and_check_clean_exit()


class Load:
    """Writers that keep going while a backup runs: PutRecords batches on a 2-shard stream and a
    camera sending 300 KB fragments (segment files). Each acknowledgement is kept with the
    monotonic time it arrived."""

    def __init__(self, server: FramelogServer):
        self.server = server
        self.stop = threading.Event()
        self.records: list[tuple[float, str, str, bytes]] = []  # (acked at, shard, sequence, data)
        self.fragments: list[tuple[float, str, int]] = []  # (acked at, fragment number, index)
        self.errors: list[BaseException] = []
        kinesis = server.client()
        kinesis.create_stream(StreamName=LOAD_STREAM, ShardCount=2)
        kinesis.get_waiter("stream_exists").wait(StreamName=LOAD_STREAM, WaiterConfig={"Delay": 0.2})
        server.kinesisvideo_client().create_stream(StreamName=LOAD_CAMERA, DataRetentionInHours=24)
        self.threads = [threading.Thread(target=self._guard, args=(f,)) for f in (self._records, self._camera)]

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
        assert not self.errors, self.errors

    def _guard(self, work) -> None:
        try:
            work()
        except BaseException as error:  # reported by __exit__
            self.errors.append(error)

    def _records(self) -> None:
        kinesis, rng, batch_index = self.server.client(), random.Random(7), 0
        while not self.stop.is_set():
            batch = [
                {"Data": rng.randbytes(rng.randint(1, 6_000)), "PartitionKey": f"p{batch_index}-{i}"} for i in range(50)
            ]
            answer = kinesis.put_records(StreamName=LOAD_STREAM, Records=batch)
            now = time.monotonic()
            for sent, result in zip(batch, answer["Records"]):
                if "SequenceNumber" in result:
                    self.records.append((now, result["ShardId"], result["SequenceNumber"], sent["Data"]))
            batch_index += 1

    def _camera(self) -> None:
        def body():
            yield mkv_header([H264_TRACK])
            index = 0
            while not self.stop.is_set():
                yield mkv_cluster(index * 1_000, camera_frames(index))
                index += 1
                time.sleep(0.1)

        def on_ack(ack: dict) -> None:
            if ack.get("EventType") == "PERSISTED":
                self.fragments.append((time.monotonic(), ack["FragmentNumber"], ack["FragmentTimecode"] // 1_000))

        endpoint = put_endpoint(self.server.kinesisvideo_client(), LOAD_CAMERA)
        put_media(endpoint, LOAD_CAMERA, body(), producer_start=PRODUCER_START_MS / 1000, on_ack=on_ack, timeout=120)


def camera_frames(index: int) -> list[HandFrame]:
    rng = random.Random(500 + index)
    frames = [HandFrame(VIDEO, index * 1_000, rng.randbytes(250_000), keyframe=True)]
    return frames + [HandFrame(VIDEO, index * 1_000 + 100 * i, rng.randbytes(5_000)) for i in range(1, 10)]


def test_a_backup_under_load_restores_everything_acknowledged_before_it_began(tmp_path):
    (tmp_path / "live").mkdir()
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path / "live").start()
    manifest = known_data.write(server.client(), server.kinesisvideo_client())
    admin_socket(server)
    with Load(server) as load:
        time.sleep(2)
        began = time.monotonic()
        result = framelog("backup", "--data-dir", str(server.data_dir), "--to", str(tmp_path / "backup"))
        time.sleep(1)
    assert result.returncode == 0, result.stderr
    assert "copying it directly" not in result.stderr, "the running server made the backup"
    backed_up = json.loads(result.stdout)
    assert backed_up["EngineBytes"] > 1_000_000 and "master-key" in backed_up["Files"], backed_up
    before_records = [r for r in load.records if r[0] < began]
    before_fragments = [f for f in load.fragments if f[0] < began]
    assert len(before_records) >= 100 and len(before_fragments) >= 3, (len(before_records), len(before_fragments))
    assert len(load.records) > len(before_records), "writes went on while the backup ran"
    server.stop_and_check_clean_exit()

    restored = framelog("restore", "--from", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "restored"))
    assert restored.returncode == 0, restored.stderr
    (tmp_path / "copy").mkdir()
    copy = FramelogServer(framelog_bin(), tmp_path / "restored", tmp_path / "copy").start()
    try:
        kinesis, kinesisvideo = copy.client(), copy.kinesisvideo_client()
        known_data.check(kinesis, kinesisvideo, manifest)
        for shard in ("shardId-000000000000", "shardId-000000000001"):
            stored = {r["SequenceNumber"]: r["Data"] for r in read_shard(kinesis, LOAD_STREAM, shard)}
            expected = [(seq, data) for _, s, seq, data in before_records if s == shard]
            missing = [seq for seq, data in expected if stored.get(seq) != data]
            assert not missing, f"{shard}: {len(missing)} of {len(expected)} records acknowledged before the backup"
        check_camera(kinesisvideo, [{"number": n, "index": i} for _, n, i in before_fragments])
    finally:
        copy.stop_and_check_clean_exit()


def check_camera(kinesisvideo, fragments: list[dict]) -> None:
    numbers = [f["number"] for f in fragments]
    payload = (
        archive(kinesisvideo, LOAD_CAMERA).get_media_for_fragment_list(StreamName=LOAD_CAMERA, Fragments=numbers)["Payload"].read()
    )
    chunks = parse_mkv_chunks(payload)
    assert [c.fragment_number for c in chunks] == numbers
    for entry, chunk in zip(fragments, chunks):
        sent = camera_frames(entry["index"])
        stored = [b.payload for b in cluster_blocks(payload, chunk.clusters[0])]
        assert stored == [f.payload for f in sent], f"fragment {entry['number']} differs from what was acknowledged"


def test_a_stopped_server_is_backed_up_directly_and_restore_refuses_a_used_data_dir(tmp_path):
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path).start()
    manifest = known_data.write(server.client(), server.kinesisvideo_client())
    server.stop_and_check_clean_exit()
    result = framelog("backup", "--data-dir", str(tmp_path / "data"), "--to", str(tmp_path / "backup"))
    assert result.returncode == 0 and "copying it directly" in result.stderr, result.stderr

    refused = framelog("restore", "--from", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "data"))
    assert refused.returncode != 0 and "is not empty" in refused.stderr, refused.stderr
    again = framelog("backup", "--data-dir", str(tmp_path / "data"), "--to", str(tmp_path / "backup"))
    assert again.returncode != 0 and "is not empty" in again.stderr, again.stderr

    assert framelog("restore", "--from", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "new")).returncode == 0
    (tmp_path / "logs").mkdir()
    copy = FramelogServer(framelog_bin(), tmp_path / "new", tmp_path / "logs").start()
    try:
        known_data.check(copy.client(), copy.kinesisvideo_client(), manifest)
    finally:
        copy.stop_and_check_clean_exit()


def test_another_user_is_refused_by_the_admin_socket_itself(private_server, tmp_path):
    """The socket is 0600; with that opened up (and the directories above it made traversable),
    the server's own check of the peer's uid still refuses another user."""
    socket_path = admin_socket(private_server)
    assert socket_path.stat().st_mode & 0o777 == 0o600
    opened: list[tuple[Path, int]] = []
    try:
        for directory in [socket_path.parent, *socket_path.parent.parents]:
            mode = directory.stat().st_mode & 0o777
            opened.append((directory, mode))
            directory.chmod(mode | 0o001)
        socket_path.chmod(0o666)
        target = tmp_path / "not-theirs"
        # Another user with no group of root's: only "other" permission bits apply to it.
        nobody = {"user": 65534, "group": 65534, "extra_groups": []}
        result = framelog("backup", "--data-dir", str(private_server.data_dir), "--to", str(target), **nobody)
    finally:
        for directory, mode in opened:
            directory.chmod(mode)
    assert result.returncode != 0
    assert "uid 65534 may not use the admin socket" in result.stderr, result.stderr
    assert not target.exists()
    assert "uid 65534 refused" in private_server.log_tail()
