"""Analytics benchmark (docs/benchmarks.md): Nexmark-style queries as Kinesis Data Analytics
applications, from a KDS input stream to a KDS output stream, against DuckDB computing the same
results in batch over the same events in the same run.

- q0 passthrough, q1 projection (price in euros), q5 hot items (bids per auction over a sliding
  10-second window), q7 highest bid per tumbling 10-second window.
- TOP_K_ITEMS_TUMBLING (the 10 most bid-on auctions per 10 s), and a stream-to-stream LEFT JOIN
  (each bid of 50,000 or more with the same bidder's cheaper bids on the auction in the second
  before it).
- RANDOM_CUT_FOREST with its default parameters over two columns, and HOTSPOTS with the guide's
  parameters (1,000 rows, radius 0.2, 17 points) over two scaled columns (no DuckDB counterpart).
- Session windows: bids per auction per session of a 2-second gap (DuckDB: LAG and a running sum).
- Each application starts at TRIM_HORIZON over the same preloaded bids; its time runs from
  StartApplication until the output stream has stored every result (the server's IncomingRecords
  counter). Events/s per core divides by the server's CPU seconds in that time, not wall time.
- Latency: bids put every 10 ms for 12 s into a 1-second tumbling window; for each window, the time
  from its end until its row is in the output stream (p50, p99; the output is polled every 10 ms).

    FRAMELOG_BIN=... .venv/bin/python media-tests/python/bench_analytics.py --json-out analytics.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import duckdb

sys.path.insert(0, str(Path(__file__).parent))
from kds_helpers import ACCESS_KEY, REGION, SECRET_KEY, FramelogServer, client_config, framelog_bin, read_shard  # noqa: E402

ROLE = "arn:aws:iam::000000000000:role/bench"
ACCOUNT = "000000000000"
SOURCE = '"SOURCE_SQL_STREAM_001"'

QUERIES = {
    "q0 passthrough": ("""
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (auction BIGINT, bidder BIGINT, price BIGINT, date_time BIGINT);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM auction, bidder, price, date_time FROM "SOURCE_SQL_STREAM_001";
""", "SELECT auction, bidder, price, date_time FROM bids"),
    "q1 projection": ("""
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (auction BIGINT, bidder BIGINT, price_eur DOUBLE, date_time BIGINT);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM auction, bidder, 0.908 * price, date_time FROM "SOURCE_SQL_STREAM_001";
""", "SELECT auction, bidder, 0.908 * price, date_time FROM bids"),
    "q5 hot items (sliding 10 s)": ("""
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (auction BIGINT, bids BIGINT);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM auction, COUNT(*) OVER w FROM "SOURCE_SQL_STREAM_001"
  WINDOW w AS (PARTITION BY auction RANGE INTERVAL '10' SECOND PRECEDING);
""", "SELECT auction, COUNT(*) OVER (PARTITION BY auction ORDER BY rowtime RANGE BETWEEN INTERVAL 10 SECOND PRECEDING AND CURRENT ROW) FROM bids"),
    "q7 highest bid (tumbling 10 s)": ("""
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (window_start TIMESTAMP, price BIGINT);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '10' SECOND), MAX(price) FROM "SOURCE_SQL_STREAM_001"
  GROUP BY STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '10' SECOND);
""", "SELECT time_bucket(INTERVAL 10 SECOND, rowtime), MAX(price) FROM bids GROUP BY 1"),
    "topk auctions (tumbling 10 s)": ("""
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (auction BIGINT, most_frequent_values BIGINT);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM * FROM TABLE(TOP_K_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001"), 'AUCTION', 10, 10));
""", "SELECT * FROM (SELECT w, auction, c, row_number() OVER (PARTITION BY w ORDER BY c DESC, auction) AS rn FROM "
     "(SELECT time_bucket(INTERVAL 10 SECOND, rowtime) AS w, auction, COUNT(*) AS c FROM bids GROUP BY 1, 2)) WHERE rn <= 10"),
    # Bids of 50,000 and more, each with the cheaper bids of the same bidder on the same auction
    # in the second before it (a LEFT JOIN, so every such bid is written and the run covers the
    # whole input): two pumps split the input, the join reads both.
    "join (1 s window)": ("""
CREATE OR REPLACE STREAM "LOW" (auction BIGINT, bidder BIGINT, price BIGINT);
CREATE OR REPLACE STREAM "HIGH" (auction BIGINT, bidder BIGINT, price BIGINT);
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (auction BIGINT, low BIGINT, high BIGINT);
CREATE OR REPLACE PUMP "L" AS INSERT INTO "LOW"
  SELECT STREAM auction, bidder, price FROM "SOURCE_SQL_STREAM_001" WHERE price < 50000;
CREATE OR REPLACE PUMP "H" AS INSERT INTO "HIGH"
  SELECT STREAM auction, bidder, price FROM "SOURCE_SQL_STREAM_001" WHERE price >= 50000;
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM h.auction, l.price, h.price
  FROM "HIGH" AS h
  LEFT JOIN "LOW" OVER (RANGE INTERVAL '1' SECOND PRECEDING) AS l ON l.auction = h.auction AND l.bidder = h.bidder;
""", "SELECT h.auction FROM bids h LEFT JOIN bids l ON l.auction = h.auction AND l.bidder = h.bidder AND l.price < 50000 "
     "AND l.rowtime BETWEEN h.rowtime - INTERVAL 1 SECOND AND h.rowtime WHERE h.price >= 50000"),
    # DuckDB has no random cut forest: the rate stands alone (one output per event).
    "rcf anomaly scores (100 trees)": ("""
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (auction BIGINT, price BIGINT, anomaly_score DOUBLE);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM auction, price, anomaly_score
  FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM auction, price FROM "SOURCE_SQL_STREAM_001")));
""", None),
    "hotspots (1000 rows, radius 0.2)": ("""
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (x DOUBLE, y DOUBLE, hotspots_result VARCHAR(10000));
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM x, y, hotspots_result FROM TABLE(HOTSPOTS(CURSOR(
    SELECT STREAM CAST(price AS DOUBLE) / 10000 AS x, CAST(bidder AS DOUBLE) / 1000 AS y FROM "SOURCE_SQL_STREAM_001"),
    1000, 0.2, 17));
""", None),
    "sessions per auction (2 s gap)": ("""
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (auction BIGINT, bids BIGINT);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM auction, COUNT(*) FROM "SOURCE_SQL_STREAM_001"
  GROUP BY auction, SESSION(ROWTIME, INTERVAL '2' SECOND);
""", "SELECT auction, COUNT(*) FROM (SELECT auction, SUM(CASE WHEN prev IS NULL OR rowtime >= prev + INTERVAL 2 SECOND "
     "THEN 1 ELSE 0 END) OVER (PARTITION BY auction ORDER BY rowtime ROWS UNBOUNDED PRECEDING) AS s FROM "
     "(SELECT auction, rowtime, LAG(rowtime) OVER (PARTITION BY auction ORDER BY rowtime) AS prev FROM bids)) GROUP BY auction, s"),
}


def stream_arn(name: str) -> str:
    return f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"


def bid_input(stream: str) -> dict:
    columns = [("AUCTION", "BIGINT"), ("BIDDER", "BIGINT"), ("PRICE", "BIGINT"), ("DATE_TIME", "BIGINT")]
    return {"NamePrefix": "SOURCE_SQL_STREAM",
            "KinesisStreamsInput": {"ResourceARN": stream_arn(stream), "RoleARN": ROLE},
            "InputSchema": {"RecordFormat": {"RecordFormatType": "JSON",
                                             "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
                            "RecordColumns": [{"Name": n, "Mapping": f"$.{n.lower()}", "SqlType": t} for n, t in columns]}}


def output(stream: str) -> dict:
    return {"Name": "DESTINATION_SQL_STREAM", "KinesisStreamsOutput": {"ResourceARN": stream_arn(stream), "RoleARN": ROLE},
            "DestinationSchema": {"RecordFormatType": "JSON"}}


def bids(count: int, rng: random.Random) -> list[dict]:
    return [{"auction": rng.randrange(1000), "bidder": rng.randrange(10_000), "price": rng.randrange(1, 100_000),
             "date_time": i} for i in range(count)]


def put_all(kinesis, stream: str, events: list[dict]) -> None:
    for start in range(0, len(events), 500):
        records = [{"Data": json.dumps(e).encode(), "PartitionKey": str(e["auction"])} for e in events[start:start + 500]]
        assert kinesis.put_records(StreamName=stream, Records=records)["FailedRecordCount"] == 0


def incoming(server: FramelogServer, stream: str) -> int:
    """Records stored into `stream` so far, from the server's CloudWatch counter."""
    text = urllib.request.urlopen(f"{server.endpoint}/metrics").read().decode()
    pattern = re.compile(r'^framelog_kinesis_incoming_records_total\{([^}]*)\} (\S+)$', re.M)
    total = 0.0
    for labels, value in pattern.findall(text):
        if f'"{stream}"' in labels and "shard" not in labels.lower():
            total += float(value)
    return int(total)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_query(server, kinesis, client, name: str, code: str, expected_outputs: int, index: int) -> dict:
    out = f"out-{index}"
    kinesis.create_stream(StreamName=out, ShardCount=1)
    app = f"bench-{index}"
    client.create_application(ApplicationName=app, ApplicationCode=code, Inputs=[bid_input("bids")], Outputs=[output(out)])
    cpu_before, started = cpu_seconds(server.proc.pid), time.monotonic()
    client.start_application(ApplicationName=app, InputConfigurations=[
        {"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "TRIM_HORIZON"}}])
    deadline = started + 600
    while incoming(server, out) < expected_outputs:
        assert time.monotonic() < deadline, f"{name}: outputs not stored in 10 minutes"
        time.sleep(0.02)
    elapsed, cpu = time.monotonic() - started, cpu_seconds(server.proc.pid) - cpu_before
    client.stop_application(ApplicationName=app)
    return {"elapsed_s": elapsed, "cpu_s": cpu}


def duckdb_rate(events: list[dict], arrivals_ms: list[int], sql: str) -> tuple[float, int]:
    """Events/s of DuckDB computing `sql` in batch over the same bids (rowtime = their arrival)."""
    connection = duckdb.connect()
    # One thread: the comparison is per core.
    connection.execute("SET threads TO 1")
    connection.execute("CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, date_time BIGINT, rowtime TIMESTAMP)")
    rows = [(e["auction"], e["bidder"], e["price"], e["date_time"], ms / 1000.0) for e, ms in zip(events, arrivals_ms)]
    connection.executemany("INSERT INTO bids VALUES (?, ?, ?, ?, to_timestamp(?)::TIMESTAMP)", rows)
    started = time.perf_counter()
    result = connection.execute(sql).fetchall()
    return len(events) / (time.perf_counter() - started), len(result)


def latency(server, kinesis, client) -> dict:
    kinesis.create_stream(StreamName="ticks", ShardCount=1)
    kinesis.create_stream(StreamName="windows", ShardCount=1)
    code = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (window_start TIMESTAMP, n BIGINT);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '1' SECOND), COUNT(*) FROM "SOURCE_SQL_STREAM_001"
  GROUP BY STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '1' SECOND);
"""
    client.create_application(ApplicationName="latency", ApplicationCode=code, Inputs=[bid_input("ticks")],
                              Outputs=[output("windows")])
    client.start_application(ApplicationName="latency", InputConfigurations=[
        {"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "NOW"}}])
    time.sleep(1)
    iterator = kinesis.get_shard_iterator(StreamName="windows", ShardId="shardId-000000000000",
                                          ShardIteratorType="LATEST")["ShardIterator"]
    seen: dict[str, float] = {}
    end_at = time.time() + 12
    next_put = time.time()
    while time.time() < end_at + 2:
        now = time.time()
        if now < end_at and now >= next_put:
            kinesis.put_record(StreamName="ticks", Data=json.dumps({"auction": 1, "bidder": 1, "price": 1, "date_time": 0}).encode(),
                               PartitionKey="k")
            next_put = now + 0.01
        page = kinesis.get_records(ShardIterator=iterator)
        iterator = page["NextShardIterator"]
        for record in page["Records"]:
            row = json.loads(record["Data"])
            seen.setdefault(row["WINDOW_START"], time.time())
    delays_ms = []
    for start, at in seen.items():
        window_end = time.mktime(time.strptime(start.split(".")[0], "%Y-%m-%dT%H:%M:%S")) - time.timezone + 1
        delays_ms.append((at - window_end) * 1000)
    delays_ms.sort()
    middle = delays_ms[1:-1] or delays_ms  # the first and last windows are partial
    return {"windows": len(middle), "p50_ms": middle[len(middle) // 2], "p99_ms": middle[min(len(middle) - 1, int(len(middle) * 0.99))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--json-out", default="analytics.json")
    parser.add_argument("--only", default="", help="run only the queries whose name starts with this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        server = FramelogServer(framelog_bin(), Path(scratch) / "data", Path(scratch)).start()
        try:
            kinesis = server.client()
            client = boto3.client("kinesisanalytics", endpoint_url=server.endpoint, region_name=REGION,
                                  aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, config=client_config())
            kinesis.create_stream(StreamName="bids", ShardCount=1)
            events = bids(args.events, random.Random(42))
            put_all(kinesis, "bids", events)
            stored = read_shard(kinesis, "bids", "shardId-000000000000")
            arrivals_ms = [round(r["ApproximateArrivalTimestamp"].timestamp() * 1000) for r in stored]
            results = []
            for index, (name, (code, duck_sql)) in enumerate(QUERIES.items()):
                if args.only and not name.startswith(args.only):
                    continue
                duck_rate, expected = duckdb_rate(events, arrivals_ms, duck_sql) if duck_sql else (None, args.events)
                measured = run_query(server, kinesis, client, name, code, expected, index)
                per_core = args.events / measured["cpu_s"]
                results.append({"query": name, "events": args.events, "outputs": expected,
                                "events_per_sec": args.events / measured["elapsed_s"], "events_per_cpu_sec": per_core,
                                "duckdb_events_per_sec": duck_rate,
                                "ratio_to_duckdb": per_core / duck_rate if duck_rate else None})
                print(json.dumps(results[-1]), flush=True)
            lat = latency(server, kinesis, client)
            print(json.dumps({"latency": lat}), flush=True)
            Path(args.json_out).write_text(json.dumps({"queries": results, "latency": lat}, indent=2))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
