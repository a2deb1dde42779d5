"""Kinesis Data Analytics SQL applications against a real server, through boto3's `kinesisanalytics`:
the SQL developer guide's tumbling-window, sliding-window and reference-join applications run over
thousands of random events, and their outputs are compared with the same aggregates computed here from
each input record's arrival time (ROWTIME); bad code is refused with its line and column; after kill -9
each window's result is still there, and a window written twice carries the same id both times.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections import defaultdict
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from function_stub import FunctionStub
from kds_helpers import ACCESS_KEY, REGION, SECRET_KEY, FramelogServer, client_config, framelog_bin, read_shard

ROLE = "arn:aws:iam::000000000000:role/analytics"
ACCOUNT = "000000000000"
TICKERS = ["AMZN", "MSFT", "GOOG", "NFLX", "AAPL"]

# The guide's tumbling-window application (concepts page), with its 60-second window shortened so the
# test closes a few windows in seconds; nothing else changed.
TUMBLING = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
                                   ticker_symbol VARCHAR(4),
                                   Min_Price     DOUBLE,
                                   Max_Price     DOUBLE);
-- CREATE OR REPLACE PUMP to insert into output
CREATE OR REPLACE PUMP "STREAM_PUMP" AS
  INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM Ticker_Symbol,
                  MIN(Price) AS Min_Price,
                  MAX(Price) AS Max_Price
    FROM    "SOURCE_SQL_STREAM_001"
    GROUP BY Ticker_Symbol,
             STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '60' SECOND);
""".replace("INTERVAL '60' SECOND", "INTERVAL '2' SECOND")

# The guide's sliding-window example 1, unchanged.
SLIDING = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
                         ticker_symbol VARCHAR(10),
                         Min_Price     double,
                         Max_Price     double,
                         Avg_Price     double);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS
   INSERT INTO "DESTINATION_SQL_STREAM"
     SELECT STREAM ticker_symbol,
                   MIN(Price) OVER W1 AS Min_Price,
                   MAX(Price) OVER W1 AS Max_Price,
                   AVG(Price) OVER W1 AS Avg_Price
     FROM   "SOURCE_SQL_STREAM_001"
     WINDOW W1 AS (
        PARTITION BY ticker_symbol
        RANGE INTERVAL '1' MINUTE PRECEDING);
"""

# The guide's reference-data example: each ticker's company from a table read from a bucket.
REFERENCE_JOIN = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
    ticker_symbol VARCHAR(4),
    "Company" varchar(20),
    sector VARCHAR(12),
    change DOUBLE,
    price DOUBLE);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
   SELECT STREAM ticker_symbol, "c"."Company", sector, change, price
   FROM "SOURCE_SQL_STREAM_001" LEFT JOIN "CompanyName" as "c"
   ON "SOURCE_SQL_STREAM_001".ticker_symbol = "c"."Ticker";
"""


# The anomaly-detection example of the Kinesis Data Analytics SQL developer guide, unchanged.
ANOMALIES = """
CREATE OR REPLACE STREAM "TEMP_STREAM" (
   "TICKER_SYMBOL" VARCHAR(4),
   "SECTOR"        VARCHAR(16),
   "CHANGE"        REAL,
   "PRICE"         REAL,
   "ANOMALY_SCORE" DOUBLE);
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
   "TICKER_SYMBOL" VARCHAR(4),
   "SECTOR"        VARCHAR(16),
   "CHANGE"        REAL,
   "PRICE"         REAL,
   "ANOMALY_SCORE" DOUBLE);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "TEMP_STREAM"
SELECT STREAM "TICKER_SYMBOL", "SECTOR", "CHANGE", "PRICE", ANOMALY_SCORE FROM
  TABLE(RANDOM_CUT_FOREST(
    CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001")
  )
);
CREATE OR REPLACE PUMP "OUTPUT_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
SELECT STREAM * FROM "TEMP_STREAM"
ORDER BY FLOOR("TEMP_STREAM".ROWTIME TO SECOND), ANOMALY_SCORE DESC;
"""


# The stagger-window example of the developer guide, its range shortened from a minute to two
# seconds so the test need not wait minutes for its windows.
STAGGER = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
    ticker_symbol    VARCHAR(4),
    event_time       TIMESTAMP,
    ticker_count     INTEGER);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS
  INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM
        TICKER_SYMBOL,
        FLOOR(EVENT_TIME TO MINUTE),
        COUNT(*) AS ticker_count
    FROM "SOURCE_SQL_STREAM_001"
    WINDOWED BY STAGGER (
            PARTITION BY FLOOR(EVENT_TIME TO MINUTE), TICKER_SYMBOL RANGE INTERVAL '2' SECOND);
"""


def analytics_client(server: FramelogServer):
    return boto3.client("kinesisanalytics", endpoint_url=server.endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, config=client_config())


def stream_arn(name: str) -> str:
    return f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"


TICKER_COLUMNS = [("TICKER_SYMBOL", "VARCHAR(4)"), ("SECTOR", "VARCHAR(16)"), ("CHANGE", "REAL"), ("PRICE", "REAL")]


def ticker_input(stream: str, columns: list[tuple[str, str]] = TICKER_COLUMNS) -> dict:
    """A JSON input of `stream` into SOURCE_SQL_STREAM_001, each column read from its own member."""
    return {
        "NamePrefix": "SOURCE_SQL_STREAM",
        "KinesisStreamsInput": {"ResourceARN": stream_arn(stream), "RoleARN": ROLE},
        "InputSchema": {
            "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
            "RecordEncoding": "UTF-8",
            "RecordColumns": [{"Name": n, "Mapping": f"$.{n}", "SqlType": t} for n, t in columns],
        },
    }


def output(stream: str, name: str = "DESTINATION_SQL_STREAM") -> dict:
    return {"Name": name, "KinesisStreamsOutput": {"ResourceARN": stream_arn(stream), "RoleARN": ROLE},
            "DestinationSchema": {"RecordFormatType": "JSON"}}


@pytest.fixture
def server(tmp_path):
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path).start()
    yield server
    server.stop()


def make_streams(kinesis, *names: str, shards: int = 1) -> None:
    for name in names:
        kinesis.create_stream(StreamName=name, ShardCount=shards)


def launch(server, name: str, code: str, output_stream: str, app_input: dict | None = None, shards: int = 1):
    """Creates the input stream `ticks` (of `shards`) and `output_stream`, then the application
    reading one into the other, started at TRIM_HORIZON; answers the KDS and analytics clients."""
    kinesis, client = server.client(), analytics_client(server)
    make_streams(kinesis, "ticks", shards=shards)
    make_streams(kinesis, output_stream)
    client.create_application(ApplicationName=name, ApplicationCode=code,
                              Inputs=[app_input or ticker_input("ticks")], Outputs=[output(output_stream)])
    start(client, name)
    return kinesis, client


def put_ticks(kinesis, stream: str, count: int, rng: random.Random, batch: int = 100) -> None:
    """Random ticks in batches, a little apart, so they arrive across several windows."""
    for start in range(0, count, batch):
        records = []
        for i in range(start, min(count, start + batch)):
            tick = {"TICKER_SYMBOL": rng.choice(TICKERS), "SECTOR": "TECHNOLOGY",
                    "CHANGE": round(rng.uniform(-5, 5), 2), "PRICE": round(rng.uniform(10, 500), 2)}
            records.append({"Data": json.dumps(tick).encode(), "PartitionKey": f"k{i}"})
        response = kinesis.put_records(StreamName=stream, Records=records)
        assert response["FailedRecordCount"] == 0
        time.sleep(0.05)


def put_documents(kinesis, stream: str, documents: list[dict], batch: int = 250) -> None:
    """The documents as JSON records, `batch` to a PutRecords call, keyed by their place."""
    for first in range(0, len(documents), batch):
        records = [{"Data": json.dumps(d).encode(), "PartitionKey": f"k{first + n}"}
                   for n, d in enumerate(documents[first:first + batch])]
        assert kinesis.put_records(StreamName=stream, Records=records)["FailedRecordCount"] == 0


def arrivals(kinesis, stream: str, shards: int = 1) -> list[tuple[int, dict]]:
    """Every record of the stream: its arrival time in ms and its decoded JSON."""
    found = []
    for shard in range(shards):
        for record in read_shard(kinesis, stream, f"shardId-{shard:012d}"):
            arrived_ms = round(record["ApproximateArrivalTimestamp"].timestamp() * 1000)
            found.append((arrived_ms, json.loads(record["Data"])))
    return sorted(found, key=lambda r: r[0])


def outputs(kinesis, stream: str) -> list[tuple[str, dict]]:
    return [(r["PartitionKey"], json.loads(r["Data"])) for r in read_shard(kinesis, stream, "shardId-000000000000")]


def start(client, name: str, position: str = "TRIM_HORIZON") -> None:
    client.start_application(ApplicationName=name, InputConfigurations=[
        {"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": position}}])


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def f32(value: float) -> float:
    """A REAL column holds single precision, as the application stores it."""
    import struct
    return struct.unpack("f", struct.pack("f", value))[0]


def test_the_tumbling_window_example_matches_windows_computed_from_arrival_times(server):
    kinesis, _ = launch(server, "tumbling", TUMBLING, "prices")
    put_ticks(kinesis, "ticks", 3000, random.Random(7))
    records = arrivals(kinesis, "ticks")
    last_window_end = (records[-1][0] // 2000 + 1) * 2000
    expected: dict[tuple[int, str], tuple[float, float]] = {}
    for arrived_ms, tick in records:
        key = (arrived_ms // 2000 * 2000, tick["TICKER_SYMBOL"])
        price = f32(tick["PRICE"])
        low, high = expected.get(key, (price, price))
        expected[key] = (min(low, price), max(high, price))
    wait_for(lambda: time.time() * 1000 > last_window_end + 500, 10, "the last window to close")
    found = wait_for(lambda: (rows := outputs(kinesis, "prices")) and len(rows) >= len(expected) and rows, 20,
                     f"{len(expected)} window rows")
    by_window: dict[tuple[int, str], tuple[float, float]] = {}
    for key, row in found:
        pump, start_ms, _ = key.split("/")
        assert pump == "STREAM_PUMP"
        by_window[(int(start_ms), row["TICKER_SYMBOL"])] = (row["MIN_PRICE"], row["MAX_PRICE"])
    assert len(found) == len(expected), "one row per window and ticker"
    assert by_window.keys() == expected.keys()
    for key, (low, high) in expected.items():
        assert by_window[key] == pytest.approx((low, high), rel=1e-6), key


def test_the_sliding_window_example_gives_each_row_its_preceding_minute(server):
    kinesis, _ = launch(server, "sliding", SLIDING, "averages")
    put_ticks(kinesis, "ticks", 2000, random.Random(11))
    records = arrivals(kinesis, "ticks")
    found = wait_for(lambda: (rows := outputs(kinesis, "averages")) and len(rows) >= len(records) and rows, 30,
                     f"{len(records)} rows")
    assert len(found) == len(records), "one result per input row"
    expected = []
    for arrived_ms, tick in records:
        window = [f32(t["PRICE"]) for at, t in records
                  if t["TICKER_SYMBOL"] == tick["TICKER_SYMBOL"] and arrived_ms - 60_000 <= at <= arrived_ms]
        expected.append((tick["TICKER_SYMBOL"], min(window), max(window), sum(window) / len(window)))
    got = sorted((r["TICKER_SYMBOL"], r["MIN_PRICE"], r["MAX_PRICE"], r["AVG_PRICE"]) for _, r in found)
    for want, have in zip(sorted(expected), got):
        assert have[0] == want[0]
        assert have[1:] == pytest.approx(want[1:], rel=1e-5)


def test_a_reference_table_from_a_bucket_joins_each_row(server, tmp_path):
    kinesis, client = server.client(), analytics_client(server)
    make_streams(kinesis, "ticks", "named")
    bucket = Path(server.data_dir) / "buckets" / "reference"
    bucket.mkdir(parents=True)
    (bucket / "companies.csv").write_text("AMZN,Amazon\nMSFT,Microsoft\nGOOG,Alphabet\n")
    # The code names the reference table, so it comes once the table is there.
    client.create_application(ApplicationName="join", Inputs=[ticker_input("ticks")], Outputs=[output("named")])
    version = client.describe_application(ApplicationName="join")["ApplicationDetail"]["ApplicationVersionId"]
    client.add_application_reference_data_source(ApplicationName="join", CurrentApplicationVersionId=version, ReferenceDataSource={
        "TableName": "CompanyName",
        "S3ReferenceDataSource": {"BucketARN": "arn:aws:s3:::reference", "FileKey": "companies.csv", "ReferenceRoleARN": ROLE},
        "ReferenceSchema": {
            "RecordFormat": {"RecordFormatType": "CSV", "MappingParameters": {"CSVMappingParameters": {"RecordRowDelimiter": "\n", "RecordColumnDelimiter": ","}}},
            "RecordEncoding": "UTF-8",
            "RecordColumns": [{"Name": "Ticker", "SqlType": "VARCHAR(4)"}, {"Name": "Company", "SqlType": "VARCHAR(20)"}],
        }})
    detail = client.describe_application(ApplicationName="join")["ApplicationDetail"]
    assert detail["ApplicationVersionId"] == version + 1
    assert detail["ReferenceDataSourceDescriptions"][0]["ReferenceId"] == f"{version + 1}.1"
    client.update_application(ApplicationName="join", CurrentApplicationVersionId=version + 1,
                              ApplicationUpdate={"ApplicationCodeUpdate": REFERENCE_JOIN})
    start(client, "join")
    put_ticks(kinesis, "ticks", 500, random.Random(5))
    found = wait_for(lambda: (rows := outputs(kinesis, "named")) and len(rows) >= 500 and rows, 20, "500 joined rows")
    names = {"AMZN": "Amazon", "MSFT": "Microsoft", "GOOG": "Alphabet"}
    assert len(found) == 500
    for _, row in found:
        assert row.get("Company") == names.get(row["TICKER_SYMBOL"]), row


def test_bad_code_and_bad_calls_get_aws_errors(server):
    kinesis, client = server.client(), analytics_client(server)
    make_streams(kinesis, "ticks", "out")
    bad = TUMBLING.replace("MAX(Price)", "MAX(Volume)")
    with pytest.raises(ClientError) as refused:
        client.create_application(ApplicationName="bad", ApplicationCode=bad, Inputs=[ticker_input("ticks")])
    assert refused.value.response["Error"]["Code"] == "CodeValidationException"
    message = refused.value.response["Error"]["Message"]
    assert "VOLUME" in message and "line 11, column 23" in message, message
    assert "__FRAMELOG" not in message, "hidden columns stay hidden"
    with pytest.raises(ClientError) as missing:
        client.describe_application(ApplicationName="nope")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    client.create_application(ApplicationName="ok", ApplicationCode=TUMBLING, Inputs=[ticker_input("ticks")],
                              Outputs=[output("out")])
    with pytest.raises(ClientError) as stale:
        client.add_application_output(ApplicationName="ok", CurrentApplicationVersionId=9, Output=output("out", "DESTINATION_SQL_STREAM"))
    assert stale.value.response["Error"]["Code"] == "ConcurrentModificationException"
    with pytest.raises(ClientError) as stopped:
        client.stop_application(ApplicationName="ok")
    assert stopped.value.response["Error"]["Code"] == "ResourceInUseException"
    listed = client.list_applications()
    assert [a["ApplicationName"] for a in listed["ApplicationSummaries"]] == ["ok"]
    client.tag_resource(ResourceARN=f"arn:aws:kinesisanalytics:{REGION}:{ACCOUNT}:application/ok", Tags=[{"Key": "team", "Value": "video"}])
    tags = client.list_tags_for_resource(ResourceARN=f"arn:aws:kinesisanalytics:{REGION}:{ACCOUNT}:application/ok")["Tags"]
    assert tags == [{"Key": "team", "Value": "video"}]


def test_discover_input_schema_reads_columns_from_the_stream(server):
    kinesis, client = server.client(), analytics_client(server)
    make_streams(kinesis, "ticks")
    put_ticks(kinesis, "ticks", 50, random.Random(3))
    found = client.discover_input_schema(ResourceARN=stream_arn("ticks"), RoleARN=ROLE,
                                         InputStartingPositionConfiguration={"InputStartingPosition": "TRIM_HORIZON"})
    columns = {c["Name"]: (c["Mapping"], c["SqlType"]) for c in found["InputSchema"]["RecordColumns"]}
    assert columns["TICKER_SYMBOL"] == ("$.TICKER_SYMBOL", "VARCHAR(4)")
    assert columns["PRICE"] == ("$.PRICE", "DOUBLE")
    assert len(found["RawInputRecords"]) == 50


def test_after_kill_9_every_window_is_written_and_a_rewrite_keeps_its_id(server):
    kinesis, client = server.client(), analytics_client(server)
    make_streams(kinesis, "ticks", "counts")
    code = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), ticker_count INTEGER);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, COUNT(*) AS ticker_count FROM "SOURCE_SQL_STREAM_001"
    GROUP BY ticker_symbol, STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '1' SECOND);
"""
    client.create_application(ApplicationName="counts", ApplicationCode=code,
                              Inputs=[ticker_input("ticks")], Outputs=[output("counts")])
    start(client, "counts")
    rng = random.Random(13)
    put_ticks(kinesis, "ticks", 1500, rng)
    server.kill()
    server.start(same_port=True)
    kinesis = server.client()
    put_ticks(kinesis, "ticks", 1500, rng)
    total = len(arrivals(kinesis, "ticks"))
    last_ms = arrivals(kinesis, "ticks")[-1][0]
    wait_for(lambda: time.time() * 1000 > (last_ms // 1000 + 1) * 1000 + 500, 10, "the last window to close")

    def distinct_rows():
        rows: dict[str, dict] = {}
        for key, row in outputs(kinesis, "counts"):
            assert rows.setdefault(key, row) == row, f"window row {key} written again differently"
        return rows

    rows = wait_for(lambda: (r := distinct_rows()) and sum(v["TICKER_COUNT"] for v in r.values()) >= total and r, 30,
                    f"{total} records counted")
    assert sum(v["TICKER_COUNT"] for v in rows.values()) == total, "each record counted in exactly one window"


class OutputFunction(FunctionStub):
    """Stands in for a Lambda output function: keeps each record it is sent, answers DeliveryFailed
    the first time it sees a record id, Ok after (so the server must send again)."""

    def __init__(self):
        self.seen: set[str] = set()
        self.ok: set[str] = set()
        super().__init__(self.deliver)

    def deliver(self, event: dict) -> tuple[int, dict]:
        results = []
        for record in event["records"]:
            first = record["recordId"] not in self.seen
            if not first:
                self.ok.add(record["recordId"])
            self.seen.add(record["recordId"])
            results.append({"recordId": record["recordId"], "result": "DeliveryFailed" if first else "Ok"})
        return 200, {"records": results}


def test_a_lambda_output_gets_aws_event_and_the_error_stream_its_own_output(tmp_path):
    function = OutputFunction()
    config = tmp_path / "framelog.toml"
    config.write_text(f'[lambda_functions.sink]\nurl = "{function.url}"\n')
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path, extra_args=["--config", str(config)]).start()
    try:
        kinesis, client = server.client(), analytics_client(server)
        make_streams(kinesis, "ticks", "errors")
        code = SLIDING
        lambda_output = {"Name": "DESTINATION_SQL_STREAM", "DestinationSchema": {"RecordFormatType": "JSON"},
                         "LambdaOutput": {"ResourceARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sink", "RoleARN": ROLE}}
        client.create_application(ApplicationName="lambda", ApplicationCode=code, Inputs=[ticker_input("ticks")],
                                  Outputs=[lambda_output, output("errors", "error_stream")])
        start(client, "lambda")
        put_ticks(kinesis, "ticks", 200, random.Random(9))
        kinesis.put_record(StreamName="ticks", Data=b'{"TICKER_SYMBOL": "AMZN", "PRICE": "not a number"}', PartitionKey="bad")
        wait_for(lambda: len(function.ok) >= 200, 30, "200 rows delivered")
        delivered = {}
        for event in function.events:
            assert event["applicationArn"] == f"arn:aws:kinesisanalytics:{REGION}:{ACCOUNT}:application/lambda"
            for record in event["records"]:
                assert record["lambdaDeliveryRecordMetadata"]["retryHint"] >= 0
                delivered[record["recordId"]] = json.loads(base64.b64decode(record["data"]))
        assert len(delivered) == 200 and function.ok == set(delivered), "every row, each sent again after DeliveryFailed"
        assert all({"TICKER_SYMBOL", "MIN_PRICE", "MAX_PRICE", "AVG_PRICE"} <= set(row) for row in delivered.values())
        errors = wait_for(lambda: outputs(kinesis, "errors"), 20, "the error row")
        error = errors[0][1]
        assert error["ERROR_NAME"] == "Parse_Error" and "PRICE" in error["MESSAGE"], error
        assert bytes.fromhex(error["DATA_ROW"]) == b'{"TICKER_SYMBOL": "AMZN", "PRICE": "not a number"}'
    finally:
        function.close()
        server.stop()


def test_the_anomaly_example_scores_the_planted_outliers_highest(server):
    kinesis, _ = launch(server, "anomalies", ANOMALIES, "scored")
    rng = random.Random(11)
    outliers = {700, 950, 1200, 1450, 1700}
    ticks = []
    for i in range(2000):
        far = i in outliers
        ticks.append({"TICKER_SYMBOL": rng.choice(TICKERS), "SECTOR": "TECHNOLOGY",
                      "CHANGE": 300.0 + i if far else round(rng.gauss(0, 1), 2),
                      "PRICE": 5000.0 + i if far else round(rng.gauss(100, 5), 2)})
    put_documents(kinesis, "ticks", ticks)
    rows = wait_for(lambda: (found := outputs(kinesis, "scored")) and len(found) >= len(ticks) and found, 60,
                    f"{len(ticks)} scored rows")
    assert len(rows) == len(ticks), "every row is scored and written once"
    assert all(set(row) == {"TICKER_SYMBOL", "SECTOR", "CHANGE", "PRICE", "ANOMALY_SCORE"} for _, row in rows)
    planted = {f32(ticks[i]["PRICE"]) for i in outliers}
    # Past the forest's warm-up (the first rows score 0), the planted rows are the top five.
    warm = [row for _, row in rows if row["ANOMALY_SCORE"] > 0]
    assert len(warm) > len(ticks) - 300
    top = sorted(warm, key=lambda row: row["ANOMALY_SCORE"], reverse=True)[:len(outliers)]
    assert {row["PRICE"] for row in top} == planted, [(r["PRICE"], r["ANOMALY_SCORE"]) for r in top]
    ordinary = [row["ANOMALY_SCORE"] for row in warm if row["PRICE"] not in planted]
    assert min(row["ANOMALY_SCORE"] for row in top) > 2 * sorted(ordinary)[len(ordinary) * 99 // 100]


def test_the_stagger_example_opens_a_window_per_partition_at_its_first_row(server):
    event_input = ticker_input("ticks")
    event_input["InputSchema"]["RecordColumns"] = [
        {"Name": "TICKER_SYMBOL", "Mapping": "$.TICKER_SYMBOL", "SqlType": "VARCHAR(4)"},
        {"Name": "EVENT_TIME", "Mapping": "$.EVENT_TIME", "SqlType": "TIMESTAMP"},
        {"Name": "PRICE", "Mapping": "$.PRICE", "SqlType": "REAL"}]
    kinesis, _ = launch(server, "stagger", STAGGER, "staggered", event_input)
    rng = random.Random(5)
    minutes = ["2026-12-06 10:00", "2026-12-06 10:01"]
    for batch in range(30):
        # Late-arriving events of the earlier minute mixed in: their own partition.
        records = [{"Data": json.dumps({"TICKER_SYMBOL": rng.choice(TICKERS[:3]),
                                        "EVENT_TIME": f"{rng.choice(minutes)}:{rng.randrange(60):02d}",
                                        "PRICE": rng.uniform(10, 50)}).encode(),
                    "PartitionKey": f"k{batch}-{i}"} for i in range(rng.randrange(1, 8))]
        assert kinesis.put_records(StreamName="ticks", Records=records)["FailedRecordCount"] == 0
        time.sleep(rng.uniform(0.05, 0.4))
    # Each partition's windows from the arrival times: a window opens with a row that finds none
    # open and holds the rows of the next two seconds.
    expected = []
    open_windows: dict[tuple[str, str], list[int]] = {}
    for arrived_ms, tick in arrivals(kinesis, "ticks"):
        key = (tick["EVENT_TIME"][:16], tick["TICKER_SYMBOL"])
        window = open_windows.get(key)
        if window is None or arrived_ms >= window[0] + 2000:
            if window is not None:
                expected.append((window[0], key[1], window[1]))
            window = open_windows[key] = [arrived_ms, 0]
        window[1] += 1
    expected += [(w[0], key[1], w[1]) for key, w in open_windows.items()]
    last_end = max(start_ms for start_ms, _, _ in expected) + 2000
    wait_for(lambda: time.time() * 1000 > last_end + 500, 10, "the last window to close")
    rows = wait_for(lambda: (found := outputs(kinesis, "staggered")) and len(found) >= len(expected) and found, 20,
                    f"{len(expected)} windows")
    got = sorted((int(key.split("/")[1]), row["TICKER_SYMBOL"], row["TICKER_COUNT"]) for key, row in rows)
    assert got == sorted(expected)
    assert sum(count for _, _, count in got) == len(arrivals(kinesis, "ticks"))


# The developer guide's RANDOM_CUT_FOREST_WITH_EXPLANATION example (blood pressure readings), as it
# wrote it: directionality on, the output ordered by score within each second.
EXPLAINED = """
CREATE OR REPLACE STREAM "TEMP_STREAM" (
       "Systolic"                  INTEGER,
       "Diastolic"                 INTEGER,
       "BloodPressureLevel"        varchar(20),
       "ANOMALY_SCORE"             DOUBLE,
       "ANOMALY_EXPLANATION"       varchar(512));
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
       "Systolic"                  INTEGER,
       "Diastolic"                 INTEGER,
       "BloodPressureLevel"        varchar(20),
       "ANOMALY_SCORE"             DOUBLE,
       "ANOMALY_EXPLANATION"       varchar(512));
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "TEMP_STREAM"
SELECT STREAM "Systolic", "Diastolic", "BloodPressureLevel", ANOMALY_SCORE, ANOMALY_EXPLANATION
FROM TABLE(RANDOM_CUT_FOREST_WITH_EXPLANATION(
    CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001"), 100, 256, 100000, 1, true));
CREATE OR REPLACE PUMP "OUTPUT_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
SELECT STREAM * FROM "TEMP_STREAM"
ORDER BY FLOOR("TEMP_STREAM".ROWTIME TO SECOND), ANOMALY_SCORE DESC;
"""


def pressure_input(stream: str) -> dict:
    columns = [("Systolic", "INTEGER"), ("Diastolic", "INTEGER"), ("BloodPressureLevel", "VARCHAR(20)")]
    schema = ticker_input(stream)
    schema["InputSchema"]["RecordColumns"] = [{"Name": n, "Mapping": f"$.{n}", "SqlType": t} for n, t in columns]
    return schema


def test_the_explained_anomaly_example_names_the_column_and_direction_of_each_outlier(server):
    kinesis, _ = launch(server, "explained", EXPLAINED, "explained", app_input=pressure_input("ticks"))
    rng = random.Random(3)
    planted = {900: ("Systolic", "HIGH"), 1300: ("Diastolic", "LOW"), 1700: ("Systolic", "LOW")}
    readings = []
    for i in range(2000):
        systolic, diastolic = round(rng.gauss(115, 4)), round(rng.gauss(75, 3))
        column, direction = planted.get(i, (None, None))
        if column == "Systolic":
            systolic = 220 if direction == "HIGH" else 40
        if column == "Diastolic":
            diastolic = 10
        readings.append({"Systolic": systolic, "Diastolic": diastolic, "BloodPressureLevel": "NORMAL"})
    put_documents(kinesis, "ticks", readings)
    rows = wait_for(lambda: (found := outputs(kinesis, "explained")) and len(found) >= len(readings) and found, 60,
                    f"{len(readings)} explained rows")
    assert len(rows) == len(readings)
    by_reading = {(row["Systolic"], row["Diastolic"]): row for _, row in rows}
    for index, (column, direction) in planted.items():
        row = by_reading[(readings[index]["Systolic"], readings[index]["Diastolic"])]
        explanation = json.loads(row["ANOMALY_EXPLANATION"])
        assert set(explanation) == {"Systolic", "Diastolic"}, explanation
        strongest = max(explanation, key=lambda c: float(explanation[c]["ATTRIBUTION_SCORE"]))
        assert (strongest, explanation[strongest]["DIRECTION"]) == (column, direction), (index, explanation)
        total = sum(float(e["ATTRIBUTION_SCORE"]) for e in explanation.values())
        assert total == pytest.approx(row["ANOMALY_SCORE"], abs=2e-4), "the attributions add up to the score"
