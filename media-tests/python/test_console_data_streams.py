"""The console's data streams view in headless Chromium (play.mjs console-script mode): the
stream list, a resharded stream's shards with their lineage, a consumer and its lag, records read
from TRIM_HORIZON as text, JSON and hex and read on, and sparklines of its CloudWatch metrics."""

from __future__ import annotations

import json

from consumer_helpers import api_ok, kds_request
from test_console_signin import run_script, without_requests
from test_browser_playback import summary


def test_a_data_stream_shows_its_shards_consumers_records_and_metrics(private_server, tmp_path):
    kinesis = private_server.client()
    kinesis.create_stream(StreamName="orders", ShardCount=1)
    kinesis.put_records(StreamName="orders", Records=[
        {"Data": json.dumps({"order": i, "item": "cam"}).encode(), "PartitionKey": "k"} for i in range(3)
    ])
    # A split: shard 0 closes, two children take its keys.
    kinesis.split_shard(StreamName="orders", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127))
    # A consumer whose webhook never answers: its lag stays the three records.
    api_ok(private_server.endpoint, "createConsumer", kds_request("orders", "audit", "http://127.0.0.1:9/"))
    steps = [
        {"do": "load"},
        {"do": "openData", "stream": "orders", "shot": True},
        {"do": "readRecords", "shard": "shardId-000000000000", "position": "TRIM_HORIZON", "format": "json"},
        {"do": "readRecords", "format": "hex"},
        {"do": "readRecords", "more": True},
    ]
    result = run_script("console_data_streams", tmp_path, private_server.endpoint, steps)
    listed, opened, as_json, as_hex, onward = (step["view"] for step in result["steps"])

    assert listed["dataStreams"] == ["orders"], summary(without_requests(listed))
    assert opened["dataViewer"] is True, summary(without_requests(opened))
    shards = {row[0]: row for row in opened["shards"]}
    assert shards["shardId-000000000000"][1] == "closed", opened["shards"]
    assert shards["shardId-000000000001"][1:3] == ["open", "shardId-000000000000"], opened["shards"]
    assert shards["shardId-000000000002"][1:3] == ["open", "shardId-000000000000"], opened["shards"]
    assert any(c.startswith("audit (") and "): 3 records" in c for c in opened["consumers"]), opened["consumers"]
    sparklines = {s["caption"].split(":")[0]: s for s in opened["sparklines"]}
    assert sparklines["records in / min"]["points"] >= 1 and sparklines["records in / min"]["caption"].endswith(": 3")
    assert len(as_json["records"]) == 3, as_json["records"]
    assert json.loads(as_json["records"][0][3]) == {"order": 0, "item": "cam"}
    assert as_json["records"][0][2] == "k"
    assert as_hex["records"][0][3].startswith("7b 22 6f 72"), as_hex["records"][0]  # {"or
    # Read on from the end of shard 0 (closed): nothing more, the three rows stay.
    assert len(onward["records"]) == 3, onward["records"]
