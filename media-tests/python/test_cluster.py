"""Cluster mode (docs/cluster.md): three Framelog nodes on a three-server JetStream cluster and
SeaweedFS, behind HAProxy, all started by scripts/cluster.sh.

What only a cluster can show: a node sees at once what another acknowledged (live tails, HLS,
reads); a consumer moves to another node when its node dies; and under load, killing a node, a
NATS server or the object store loses no acknowledged record or fragment, duplicates are counted,
and clients carry on through HAProxy. The same real-client suites that run against one server
also run against this cluster (`make test-cluster`, FRAMELOG_CLUSTER=1).
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.config import Config

from cluster_helpers import FramelogCluster
from consumer_helpers import WebhookReceiver, api_ok, events, key
from hls_helpers import media_playlist, parse_master, get_playlist
from kds_helpers import ACCESS_KEY, REGION, SECRET_KEY, client_config
from kvs_helpers import FRAGMENT_COUNT, PRODUCER_START_MS, assert_full_ack_sequence, create_stream
from media_fixtures import GetMediaReader, put_media

SHARDS = 4
CAMERAS = 10
# A consumer's lease lasts 10 s and is renewed every 2 s (consumers/supervisor.rs).
LEASE_TAKEOVER_S = 10 + 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # Fragments of the test media are 100-300 KB: a low threshold puts them in the object store.
    cluster = FramelogCluster(tmp_path_factory.mktemp("cluster"), object_min_bytes=64 << 10).start()
    yield cluster
    cluster.stop_and_check_clean_exit()


def node_client(cluster: FramelogCluster, node: int, service: str, retries: int = 1, read_timeout: float = 60):
    """A boto3 client of `service` talking to one node directly, not through HAProxy."""
    config = client_config().merge(Config(retries={"total_max_attempts": retries}, read_timeout=read_timeout))
    return boto3.client(service, endpoint_url=cluster.node_endpoint(node), region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, config=config)


def test_a_live_tail_on_one_node_sees_fragments_ingested_through_another(cluster, h264_mkv):
    stream = create_stream(cluster.kinesisvideo_client(), prefix="tail")
    reader = GetMediaReader(node_client(cluster, 2, "kinesis-video-media"), stream, {"StartSelectorType": "NOW"})
    reader.start()
    try:
        assert reader.started.wait(10), "GetMedia did not start"
        time.sleep(0.5)
        result = put_media(cluster.node_endpoint(1), stream, h264_mkv, producer_start=PRODUCER_START_MS / 1000)
        numbers = assert_full_ack_sequence(result)
        chunks = reader.wait_for_chunks(FRAGMENT_COUNT, 20)
        assert reader.error is None, f"GetMedia failed: {reader.error!r}"
    finally:
        reader.close()
    assert [c.fragment_number for c in chunks] == numbers


def test_an_hls_live_playlist_on_one_node_lists_fragments_ingested_through_another(cluster, h264_mkv):
    stream = create_stream(cluster.kinesisvideo_client(), prefix="hls")
    result = put_media(cluster.node_endpoint(1), stream, h264_mkv, producer_start=time.time() - 25)
    assert_full_ack_sequence(result)
    archive = node_client(cluster, 3, "kinesis-video-archived-media")
    url = archive.get_hls_streaming_session_url(StreamName=stream, PlaybackMode="LIVE")["HLSStreamingSessionURL"]
    assert url.startswith(cluster.endpoint), url  # clients come back through HAProxy
    master = parse_master(url, get_playlist(url))
    playlist = media_playlist(master.variants[0][1])
    assert playlist.segments, "the LIVE playlist lists no segment"
    assert not playlist.endlist, "a LIVE playlist has no end tag"


def test_a_consumer_moves_to_another_node_when_its_node_is_killed(cluster, hooks):
    kinesis = cluster.client()
    stream = f"moving-{int(time.time() * 1000)}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    hook = hooks()
    owner = None
    try:
        api_ok(cluster.endpoint, "createConsumer",
               {**key(stream, "mover"), "Webhook": {"Url": hook.url}, "StartSelector": {"StartSelectorType": "TRIM_HORIZON"},
                "Batching": {"MaxRecords": 10, "MaxWaitMs": 100}})
        first = [f"before-{i}".encode() for i in range(20)]
        put_all(kinesis, stream, first)
        wait_for_data(hook, first, 20)
        owner = consumer_owner(cluster, "mover")
        cluster.kill_node(owner)
        killed_at = time.monotonic()
        later = [f"after-{i}".encode() for i in range(20)]
        put_all(kinesis, stream, later)
        wait_for_data(hook, first + later, LEASE_TAKEOVER_S + 15)
        moved_after_s = time.monotonic() - killed_at
        print(f"consumer moved from node{owner} and caught up {moved_after_s:.1f} s after the kill")
        assert consumer_owner(cluster, "mover", exclude=owner) != owner
        # Resumed from the checkpoint: nothing before it was sent again in a new batch.
        delivered = [base64.b64decode(e["kinesis"]["data"]) for c in hook.delivered_calls() for e in events(c)]
        assert set(delivered) == set(first + later)
    finally:
        if owner is not None:
            cluster.start_node(owner)
        api_ok(cluster.endpoint, "deleteConsumer", key(stream, "mover"))


def put_all(kinesis, stream: str, records: list[bytes]) -> None:
    entries = [{"Data": data, "PartitionKey": "k"} for data in records]
    answer = kinesis.put_records(StreamName=stream, Records=entries)
    assert answer["FailedRecordCount"] == 0, answer


def wait_for_data(hook: WebhookReceiver, wanted: list[bytes], timeout: float) -> None:
    def arrived(calls) -> bool:
        got = {base64.b64decode(e["kinesis"]["data"]) for c in calls if c.ok for e in events(c)}
        return set(wanted) <= got
    hook.wait_for(arrived, timeout, f"{len(wanted)} records")


def consumer_owner(cluster: FramelogCluster, consumer: str, exclude: int | None = None) -> int:
    """The node whose log last says it started `consumer`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        starts = []
        for node in (1, 2, 3):
            if node == exclude:
                continue
            log = (cluster.state_dir / "log" / f"node{node}.log").read_text(errors="replace")
            for line in log.splitlines():
                if "consumer started here" in line and f"consumer={consumer}" in strip_ansi(line):
                    starts.append((line[:40], node))
        if starts:
            return max(starts)[1]
        time.sleep(0.2)
    raise AssertionError(f"no node started {consumer}:\n{cluster.log_tail()}")


def strip_ansi(text: str) -> str:
    import re
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# --- Faults under load -----------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients were told: every acknowledged record and fragment."""
    records: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)  # shard -> [(seq, data)]
    fragments: dict[str, list[str]] = field(default_factory=dict)  # stream -> [fragment numbers]
    sent_records: int = 0
    failed_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def record_producer(cluster, stream: str, tally: Tally, stop: threading.Event) -> None:
    """PutRecords batches through HAProxy; records of a failed call are sent again (a retry may
    store a duplicate, as with KDS)."""
    kinesis = cluster.client(config=Config(connect_timeout=2, read_timeout=40))
    batch_no = 0
    while not stop.is_set():
        batch_no += 1
        entries = [{"Data": f"b{batch_no}-r{i}".encode(), "PartitionKey": f"k{i}"} for i in range(50)]
        while entries and not stop.is_set():
            try:
                answer = kinesis.put_records(StreamName=stream, Records=entries)
            except Exception:  # noqa: BLE001 - a killed node or a timeout: the same records go again
                with tally.lock:
                    tally.failed_calls += 1
                time.sleep(0.2)
                continue
            retry = []
            with tally.lock:
                tally.sent_records += len(entries)
                for entry, result in zip(entries, answer["Records"]):
                    if "SequenceNumber" in result:
                        tally.records.setdefault(result["ShardId"], []).append((result["SequenceNumber"], entry["Data"]))
                    else:
                        retry.append(entry)
            entries = retry
        stop.wait(0.2)


def camera(cluster, stream: str, source, tally: Tally, stop: threading.Event) -> None:
    """Uploads the fixture again and again through HAProxy; a connection that breaks is opened
    again. Only PERSISTED fragments count as acknowledged."""
    start_s = PRODUCER_START_MS / 1000
    while not stop.is_set():
        try:
            # Paced like a live source, so an upload is in flight most of the time.
            result = put_media(cluster.endpoint, stream, source, producer_start=start_s, timeout=60, pace_s=0.05)
        except Exception:  # noqa: BLE001 - refused while a node restarts
            with tally.lock:
                tally.failed_calls += 1
            time.sleep(0.2)
            continue
        persisted = [a["FragmentNumber"] for a in result.events("PERSISTED")]
        with tally.lock:
            tally.fragments.setdefault(stream, []).extend(persisted)
            tally.failed_calls += int(result.send_error is not None or result.read_error is not None)
        start_s += 30
        stop.wait(0.2)


def read_shards(cluster, node: int, stream: str) -> dict[str, list[tuple[str, bytes]]]:
    kinesis = node_client(cluster, node, "kinesis", retries=3)
    out = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = []
        while True:
            answer = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records.extend((r["SequenceNumber"], r["Data"]) for r in answer["Records"])
            if not answer["Records"] and answer.get("MillisBehindLatest", 0) == 0:
                break
            iterator = answer["NextShardIterator"]
        out[shard["ShardId"]] = records
    return out


def fragment_numbers(cluster, node: int, stream: str) -> list[str]:
    archive = node_client(cluster, node, "kinesis-video-archived-media", retries=3)
    selector = {"FragmentSelectorType": "SERVER_TIMESTAMP",
                "TimestampRange": {"StartTimestamp": 0, "EndTimestamp": time.time() + 3600}}
    numbers, request = [], {"StreamName": stream, "FragmentSelector": selector, "MaxResults": 1000}
    while True:
        answer = archive.list_fragments(**request)
        numbers.extend(f["FragmentNumber"] for f in answer["Fragments"])
        if not answer.get("NextToken"):
            return sorted(numbers, key=int)
        request = {"StreamName": stream, "NextToken": answer["NextToken"]}


def fragment_bytes(cluster, node: int, stream: str, numbers: list[str]) -> bytes:
    archive = node_client(cluster, node, "kinesis-video-archived-media", retries=3)
    return archive.get_media_for_fragment_list(StreamName=stream, Fragments=numbers)["Payload"].read()


def check_nothing_acknowledged_was_lost(cluster, data_stream: str, cameras: list[str], tally: Tally) -> dict:
    with tally.lock:
        acked_records = {shard: list(rs) for shard, rs in tally.records.items()}
        acked_fragments = {s: list(ns) for s, ns in tally.fragments.items()}
    report = {"records_acked": sum(len(rs) for rs in acked_records.values()),
              "fragments_acked": sum(len(ns) for ns in acked_fragments.values())}
    # Clients keep writing while the nodes are read one after another: the nodes must agree on
    # what each of them returned up to the shortest, and each must hold every acknowledged record.
    stored_by_node = [read_shards(cluster, node, data_stream) for node in (1, 2, 3)]
    for shard in stored_by_node[0]:
        runs = [stored[shard] for stored in stored_by_node]
        common = min(len(run) for run in runs)
        assert runs[0][:common] == runs[1][:common] == runs[2][:common], f"nodes disagree on {shard}"
    lost = duplicated = 0
    for shard, acked in acked_records.items():
        for stored in stored_by_node:
            by_seq = dict(stored.get(shard, []))
            lost += sum(1 for seq, data in acked if by_seq.get(seq) != data)
        shard_stored = stored_by_node[0].get(shard, [])
        numbers = [int(seq) for seq, _ in shard_stored]
        assert numbers == sorted(set(numbers)), f"{shard}: sequence numbers not strictly increasing"
        datas = [data for _, data in shard_stored]
        duplicated += len(datas) - len(set(datas))
    fragments_lost = 0
    for stream, numbers in acked_fragments.items():
        listed = [fragment_numbers(cluster, node, stream) for node in (1, 2, 3)]
        common = min(len(numbers) for numbers in listed)
        assert listed[0][:common] == listed[1][:common] == listed[2][:common], f"nodes disagree on {stream}"
        fragments_lost += sum(len(set(numbers) - set(on_node)) for on_node in listed)
        # Byte for byte the same from every node (payloads in the object store, read by range).
        sample = [n for n in numbers if n in set(listed[0])][-3:]
        if sample:
            bodies = [fragment_bytes(cluster, node, stream, sample) for node in (1, 2, 3)]
            assert bodies[0] and bodies[0] == bodies[1] == bodies[2], f"nodes disagree on fragments of {stream}"
    report.update(records_lost=lost, records_duplicated=duplicated, fragments_lost=fragments_lost)
    return report


def test_faults_under_load_lose_no_acknowledged_record_or_fragment(cluster, h264_mkv):
    kinesis = cluster.client()
    data_stream = f"load-{int(time.time() * 1000)}"
    kinesis.create_stream(StreamName=data_stream, ShardCount=SHARDS)
    kv = cluster.kinesisvideo_client()
    cameras = [create_stream(kv, prefix=f"cam{i}") for i in range(CAMERAS)]
    tally, stop = Tally(), threading.Event()
    clients = [threading.Thread(target=record_producer, args=(cluster, data_stream, tally, stop), daemon=True)]
    clients += [threading.Thread(target=camera, args=(cluster, s, h264_mkv, tally, stop), daemon=True) for s in cameras]
    for client in clients:
        client.start()
    reports = {}
    try:
        # The node and the NATS server with the most connections at the moment: clients (and
        # nodes) are cut off mid-request, not spared by chance.
        victims = {}
        faults = [
            ("kill -9 the busiest Framelog node",
             lambda: cluster.kill_node(victims.setdefault("node", cluster.busiest_node())),
             lambda: cluster.start_node(victims["node"])),
            ("kill -9 the busiest NATS server",
             lambda: cluster.kill_nats(victims.setdefault("nats", cluster.busiest_nats())),
             lambda: cluster.start_nats(victims["nats"])),
            ("object store stopped for 10 s", cluster.stop_objects, cluster.start_objects),
        ]
        time.sleep(5)
        for name, fault, repair in faults:
            before = progress(tally)
            fault()
            time.sleep(10)
            repair()
            # Clients carry on through HAProxy after the repair.
            wait_until(lambda: progress(tally) > before, 60, f"clients making progress after: {name}")
            reports[name] = check_nothing_acknowledged_was_lost(cluster, data_stream, cameras, tally)
            print(f"{name}: {reports[name]}")
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=90)
    final = check_nothing_acknowledged_was_lost(cluster, data_stream, cameras, tally)
    print(f"after all faults: {final}, failed calls retried: {tally.failed_calls}")
    assert final["records_acked"] > 0 and final["fragments_acked"] > 0, final
    for name, report in {**reports, "final": final}.items():
        assert report["records_lost"] == 0 and report["fragments_lost"] == 0, (name, report)


def progress(tally: Tally) -> int:
    with tally.lock:
        return sum(len(rs) for rs in tally.records.values()) + sum(len(ns) for ns in tally.fragments.values())


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
