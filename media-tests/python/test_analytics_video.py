"""A video stream as a Kinesis Data Analytics input, against a real server through boto3: two cameras
upload the same 20-second MKV over PutMedia, a labelling webhook consumer answers `person` for planted
fragments (slowly, so labels land well after each fragment), and the video example of docs/analytics.md
counts, per camera and window, the fragments whose labels contain a person. The counts must equal the
planted ones: a row counted before its label arrived would miss it.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from consumer_helpers import api_ok, consumer_request
from kds_helpers import REGION, FramelogServer, framelog_bin
from kvs_helpers import PRODUCER_START_MS, assert_full_ack_sequence, upload
from test_analytics import ACCOUNT, analytics_client, make_streams, output, outputs, start, wait_for

# The video example of docs/analytics.md, its minute shortened to two seconds.
PEOPLE = """
CREATE OR REPLACE STREAM "PEOPLE_PER_MINUTE" (
    camera        VARCHAR(64),
    with_person   INTEGER,
    fragments     INTEGER);
CREATE OR REPLACE PUMP "PEOPLE_PUMP" AS INSERT INTO "PEOPLE_PER_MINUTE"
    SELECT STREAM "STREAM_NAME",
                  SUM(CASE WHEN "PERSON" IS NOT NULL THEN 1 ELSE 0 END),
                  COUNT(*)
    FROM "SOURCE_SQL_STREAM_001"
    GROUP BY "STREAM_NAME", STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '1' MINUTE);
""".replace("INTERVAL '1' MINUTE", "INTERVAL '2' SECOND")

FRAGMENTS = 10  # h264.mkv: 20 s, a key frame (and a fragment) every 2 s
LABEL_DELAY_S = 0.4


def video_input(pattern: str) -> dict:
    columns = [("STREAM_NAME", "$.StreamName", "VARCHAR(64)"), ("PRODUCER_TIME", "$.ProducerTimestamp", "TIMESTAMP"),
               ("PERSON", "$.Tags.person", "VARCHAR(16)")]
    return {
        "NamePrefix": "SOURCE_SQL_STREAM",
        "KinesisStreamsInput": {"ResourceARN": f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT}:stream/{pattern}/0",
                                "RoleARN": "arn:aws:iam::000000000000:role/analytics"},
        "InputSchema": {
            "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
            "RecordEncoding": "UTF-8",
            "RecordColumns": [{"Name": n, "Mapping": m, "SqlType": t} for n, m, t in columns],
        },
    }


class Labeller:
    """A webhook that answers `{"labels": {"person": ...}}` for frames of planted fragments (by stream and
    producer time), LABEL_DELAY_S after each call."""

    def __init__(self, planted: set[tuple[str, int]]):
        labeller = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                frames = body.get("Frames") or []
                person = any((f["StreamName"], round(f["ProducerTimestamp"] * 1000)) in labeller.planted for f in frames)
                time.sleep(LABEL_DELAY_S)
                answer = json.dumps({"labels": {"person": "0.9"}} if person else {}).encode()
                with labeller.lock:
                    labeller.calls += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format, *args) -> None:  # noqa: A002
                pass

        self.planted, self.lock, self.calls = planted, threading.Lock(), 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/labels"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path).start()
    yield server
    server.stop()


def test_the_video_example_counts_labelled_fragments_per_camera(server, h264_mkv):
    prefix = f"people-{uuid.uuid4().hex[:6]}"
    cameras = [f"{prefix}-a", f"{prefix}-b"]
    rng = random.Random(22)
    fragment_ms = [PRODUCER_START_MS + 2000 * i for i in range(FRAGMENTS)]
    planted = {(camera, ms) for camera in cameras for ms in rng.sample(fragment_ms, 4 if camera.endswith("a") else 7)}
    labeller = Labeller(planted)
    kinesisvideo, kinesis, client = server.kinesisvideo_client(), server.client(), analytics_client(server)
    try:
        for camera in cameras + [f"other-{prefix}"]:
            kinesisvideo.create_stream(StreamName=camera, DataRetentionInHours=24)
        for camera in cameras:
            api_ok(server.endpoint, "createConsumer", consumer_request(camera, "labeller", labeller.url))
        make_streams(kinesis, "people")
        client.create_application(ApplicationName="people", ApplicationCode=PEOPLE,
                                  Inputs=[video_input(f"{prefix}-*")], Outputs=[output("people", "PEOPLE_PER_MINUTE")])
        start(client, "people")
        for camera in cameras + [f"other-{prefix}"]:
            assert_full_ack_sequence(upload(kinesisvideo, camera, h264_mkv))
        rows = wait_for(lambda: (found := outputs(kinesis, "people"))
                        and sum(r["FRAGMENTS"] for _, r in found) >= FRAGMENTS * len(cameras) and found,
                        60, "every fragment of both cameras counted")
        discovered = client.discover_input_schema(
            ResourceARN=video_input(f"{prefix}-*")["KinesisStreamsInput"]["ResourceARN"],
            RoleARN="arn:aws:iam::000000000000:role/analytics",
            InputStartingPositionConfiguration={"InputStartingPosition": "TRIM_HORIZON"})
    finally:
        labeller.close()
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    windows: list[str] = []  # window start / camera
    for key, row in rows:
        sums[row["CAMERA"]][0] += row["WITH_PERSON"]
        sums[row["CAMERA"]][1] += row["FRAGMENTS"]
        windows.append(f'{key.split("/")[1]}/{row["CAMERA"]}')
    expected = {camera: [sum(1 for c, _ in planted if c == camera), FRAGMENTS] for camera in cameras}
    assert dict(sums) == expected, "labels written after each fragment arrived are all counted, once"
    assert len(windows) == len(set(windows)), f"each (window, camera) row is written once: {windows}"
    mappings = {column["Mapping"] for column in discovered["InputSchema"]["RecordColumns"]}
    assert {"$.StreamName", "$.FragmentNumber", "$.ProducerTimestamp", "$.Tags.person"} <= mappings, mappings
    assert len(discovered["RawInputRecords"]) == FRAGMENTS * len(cameras)
