"""A stream-to-stream join against a real server through boto3: the SQL reference's orders-and-trades
join (each trade with the orders of its id from the window before it), its minute shortened to two
seconds, over a timeline where trades come before, shortly after and too long after their orders. The
pairs written must be those computed here from each record's arrival time. Orders and trades go to
different shards of four, so the application reads an order and its trade in separate rounds.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter

import pytest

from kds_helpers import FramelogServer, framelog_bin
from test_analytics import ROLE, arrivals, launch, outputs, stream_arn, wait_for

JOIN = """
CREATE OR REPLACE STREAM "ORDERS" (order_id INTEGER, ticker VARCHAR(4), amount DOUBLE);
CREATE OR REPLACE STREAM "TRADES" (order_id INTEGER, amount DOUBLE);
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
    order_id INTEGER, ticker VARCHAR(4), order_amount DOUBLE, trade_amount DOUBLE);
CREATE OR REPLACE PUMP "ORDER_PUMP" AS INSERT INTO "ORDERS"
    SELECT STREAM order_id, ticker, amount FROM "SOURCE_SQL_STREAM_001" WHERE kind = 'O';
CREATE OR REPLACE PUMP "TRADE_PUMP" AS INSERT INTO "TRADES"
    SELECT STREAM order_id, amount FROM "SOURCE_SQL_STREAM_001" WHERE kind = 'T';
CREATE OR REPLACE PUMP "JOIN_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM o.order_id, o.ticker, o.amount, t.amount
    FROM "ORDERS" OVER (RANGE INTERVAL '2' SECOND PRECEDING) AS o
    JOIN "TRADES" AS t
    ON o.order_id = t.order_id;
"""
RANGE_MS = 2000
SHARDS = 4


def order_input() -> dict:
    columns = [("KIND", "VARCHAR(1)"), ("ORDER_ID", "INTEGER"), ("TICKER", "VARCHAR(4)"), ("AMOUNT", "DOUBLE")]
    return {
        "NamePrefix": "SOURCE_SQL_STREAM",
        "KinesisStreamsInput": {"ResourceARN": stream_arn("ticks"), "RoleARN": ROLE},
        "InputSchema": {
            "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
            "RecordEncoding": "UTF-8",
            "RecordColumns": [{"Name": n, "Mapping": f"$.{n}", "SqlType": t} for n, t in columns],
        },
    }


@pytest.fixture
def server(tmp_path):
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path).start()
    yield server
    server.stop()


def test_each_trade_joins_the_orders_of_the_window_before_it(server):
    kinesis, _ = launch(server, "joins", JOIN, "pairs", app_input=order_input(), shards=SHARDS)
    rng = random.Random(31)
    timeline = []  # (seconds from start, record)
    for order_id in range(120):
        at = rng.uniform(0, 4)
        timeline.append((at, {"KIND": "O", "ORDER_ID": order_id, "TICKER": "AMZN", "AMOUNT": order_id + 0.25}))
        for _ in range(rng.choice([0, 1, 1, 2])):
            delay = rng.choice([-0.6, 0.1, 0.8, 1.5, 3.5])  # before it, inside the window, or too late
            timeline.append((max(0.0, at + delay), {"KIND": "T", "ORDER_ID": order_id, "AMOUNT": rng.uniform(1, 9)}))
    timeline.sort(key=lambda e: e[0])
    started = time.monotonic()
    for first in range(0, len(timeline), 8):
        batch = timeline[first:first + 8]
        time.sleep(max(0.0, batch[0][0] - (time.monotonic() - started)))
        records = [{"Data": json.dumps(r).encode(), "PartitionKey": f"{r['KIND']}{r['ORDER_ID']}"} for _, r in batch]
        assert kinesis.put_records(StreamName="ticks", Records=records)["FailedRecordCount"] == 0
    arrived = arrivals(kinesis, "ticks", SHARDS)
    orders = [(ms, r) for ms, r in arrived if r["KIND"] == "O"]
    expected = Counter()
    for trade_ms, trade in arrived:
        if trade["KIND"] != "T":
            continue
        for order_ms, order in orders:
            if order["ORDER_ID"] == trade["ORDER_ID"] and trade_ms - RANGE_MS <= order_ms <= trade_ms:
                expected[(order["ORDER_ID"], order["AMOUNT"], round(trade["AMOUNT"], 6))] += 1
    assert 20 < sum(expected.values()) < len(arrived), "the timeline has pairs and misses"
    rows = wait_for(lambda: (found := outputs(kinesis, "pairs")) and len(found) >= sum(expected.values()) and found,
                    20, f"{sum(expected.values())} pairs")
    time.sleep(1.0)
    rows = outputs(kinesis, "pairs")
    got = Counter((r["ORDER_ID"], r["ORDER_AMOUNT"], round(r["TRADE_AMOUNT"], 6)) for _, r in rows)
    assert got == expected
