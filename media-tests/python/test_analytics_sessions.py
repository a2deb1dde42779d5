"""Session windows against a real server through boto3: ticks of four symbols sent in bursts with pauses
of up to three seconds, counted per symbol per session of a two-second gap; the sessions written are
compared with sessions cut here from each record's arrival time.
"""

from __future__ import annotations

import json
import random
import time

import pytest

from kds_helpers import FramelogServer, framelog_bin
from test_analytics import arrivals, f32, launch, outputs, wait_for

SESSIONS = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), ticks INTEGER, high REAL);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, COUNT(*) AS ticks, MAX(price) AS high
    FROM "SOURCE_SQL_STREAM_001"
    GROUP BY ticker_symbol, SESSION(ROWTIME, INTERVAL '2' SECOND);
"""

GAP_MS = 2000
SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]


@pytest.fixture
def server(tmp_path):
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path).start()
    yield server
    server.stop()


def send_bursts(kinesis, rng: random.Random, steps: int) -> None:
    """Every 0.2 s, each symbol that is active sends a tick; a symbol turns quiet or active again at
    random, so its pauses run from 0.2 s to a few seconds, either side of the gap."""
    active = {symbol: True for symbol in SYMBOLS}
    for step in range(steps):
        records = []
        for symbol in SYMBOLS:
            if rng.random() < 0.12:
                active[symbol] = not active[symbol]
            if active[symbol]:
                tick = {"TICKER_SYMBOL": symbol, "SECTOR": "X", "CHANGE": 0, "PRICE": round(rng.uniform(10, 500), 2)}
                records.append({"Data": json.dumps(tick).encode(), "PartitionKey": f"{symbol}{step}"})
        if records:
            assert kinesis.put_records(StreamName="ticks", Records=records)["FailedRecordCount"] == 0
        time.sleep(0.2)


def sessions_from_arrivals(records: list[tuple[int, dict]]) -> set[tuple[str, int, int, float]]:
    """(symbol, ticks, window id start, high) of each session: a tick GAP_MS or more after its symbol's
    last opens the next; a session ends GAP_MS after its last tick. Sessions ending at the same ms
    share a window id, whose start is the earliest of theirs (docs/analytics.md)."""
    sessions = []
    current: dict[str, tuple[int, int, int, float]] = {}
    for arrived_ms, tick in records:
        symbol, price = tick["TICKER_SYMBOL"], f32(tick["PRICE"])
        if symbol in current and arrived_ms < current[symbol][1] + GAP_MS:
            first, last, count, high = current[symbol]
            current[symbol] = (first, max(last, arrived_ms), count + 1, max(high, price))
            continue
        if symbol in current:
            sessions.append((symbol, *current[symbol]))
        current[symbol] = (arrived_ms, arrived_ms, 1, price)
    sessions.extend((symbol, *state) for symbol, state in current.items())
    start_of_end: dict[int, int] = {}
    for _, first, last, _, _ in sessions:
        end = last + GAP_MS
        start_of_end[end] = min(first, start_of_end.get(end, first))
    return {(symbol, count, start_of_end[last + GAP_MS], high) for symbol, _, last, count, high in sessions}


def test_sessions_match_those_cut_from_arrival_times(server):
    kinesis, _ = launch(server, "sessions", SESSIONS, "sessions")
    send_bursts(kinesis, random.Random(41), 60)
    records = arrivals(kinesis, "ticks")
    expected = sessions_from_arrivals(records)
    assert len(expected) > len(SYMBOLS), "the pauses cut more than one session a symbol"
    last_end = max(ms for ms, _ in records) + GAP_MS
    wait_for(lambda: time.time() * 1000 > last_end + 500, 10, "the last session to close")
    rows = wait_for(lambda: (found := outputs(kinesis, "sessions")) and len(found) >= len(expected) and found,
                    20, "every session's row")
    got = set()
    for key, row in rows:
        pump, start_ms = key.split("/")[:2]
        assert pump == "STREAM_PUMP", key
        got.add((row["TICKER_SYMBOL"], row["TICKS"], int(start_ms), f32(row["HIGH"])))
    assert got == expected
    assert len(rows) == len(expected), "each session written once"
