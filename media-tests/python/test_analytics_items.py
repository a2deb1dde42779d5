"""TOP_K_ITEMS_TUMBLING and COUNT_DISTINCT_ITEMS_TUMBLING against a real server through boto3: the SQL
reference's examples, their windows shortened from a minute to two seconds, over thousands of random
ticks; each window's result is compared with counts made here from each record's arrival time.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict

import pytest

from kds_helpers import FramelogServer, framelog_bin
from test_analytics import arrivals, launch, outputs, put_ticks, wait_for

# The SQL reference's TOP_K_ITEMS_TUMBLING example 1, its window shortened from 60 to 2 seconds.
TOP_K = """
CREATE OR REPLACE STREAM DESTINATION_SQL_STREAM (
  "TICKER_SYMBOL" VARCHAR(4),
  "MOST_FREQUENT_VALUES" BIGINT
);

CREATE OR REPLACE PUMP "STREAM_PUMP" AS
    INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM *
        FROM TABLE (TOP_K_ITEMS_TUMBLING(
            CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001"),
            'TICKER_SYMBOL',         -- name of column in single quotes
            3,                       -- number of the most frequently occurring values
            60                       -- tumbling window size in seconds
            )
        );
""".replace("60                       -- tumbling", "2                        -- tumbling")

# COUNT_DISTINCT_ITEMS_TUMBLING as the reference shows it, over two seconds.
DISTINCT = """
CREATE OR REPLACE STREAM DESTINATION_SQL_STREAM (NUMBER_OF_DISTINCT_ITEMS BIGINT);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
SELECT STREAM NUMBER_OF_DISTINCT_ITEMS FROM TABLE(COUNT_DISTINCT_ITEMS_TUMBLING(
  CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001"),
  'PRICE', -- name of column in single quotes
  2 -- tumbling window size in seconds
  )
);
"""


@pytest.fixture
def server(tmp_path):
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path).start()
    yield server
    server.stop()


def closed_windows(records: list[tuple[int, dict]]) -> int:
    """The end of the last window, waited for so every window has closed."""
    last_end = (records[-1][0] // 2000 + 1) * 2000
    wait_for(lambda: time.time() * 1000 > last_end + 500, 10, "the last window to close")
    return last_end


def test_the_top_k_example_writes_each_windows_most_traded_tickers(server):
    kinesis, _ = launch(server, "topk", TOP_K, "top")
    put_ticks(kinesis, "ticks", 3000, random.Random(17))
    records = arrivals(kinesis, "ticks")
    closed_windows(records)
    tallies: dict[int, Counter] = defaultdict(Counter)
    for arrived_ms, tick in records:
        tallies[arrived_ms // 2000 * 2000][tick["TICKER_SYMBOL"]] += 1
    # Exact counts, most frequent first, ties by ticker (the service approximated them).
    expected = {start: sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3] for start, counts in tallies.items()}
    rows = wait_for(lambda: (found := outputs(kinesis, "top")) and len(found) >= sum(map(len, expected.values()))
                    and found, 20, "every window's rows")
    by_window: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for key, row in rows:
        pump, start_ms, _ = key.split("/")
        assert pump == "STREAM_PUMP", key
        by_window[int(start_ms)].append((row["TICKER_SYMBOL"], row["MOST_FREQUENT_VALUES"]))
    got = {start: sorted(pairs, key=lambda kv: (-kv[1], kv[0])) for start, pairs in by_window.items()}
    assert got == expected


def test_count_distinct_counts_each_windows_distinct_prices(server):
    kinesis, _ = launch(server, "distinct", DISTINCT, "distinct")
    put_ticks(kinesis, "ticks", 2000, random.Random(23))
    records = arrivals(kinesis, "ticks")
    closed_windows(records)
    prices: dict[int, set[float]] = defaultdict(set)
    for arrived_ms, tick in records:
        prices[arrived_ms // 2000 * 2000].add(tick["PRICE"])
    rows = wait_for(lambda: (found := outputs(kinesis, "distinct")) and len(found) >= len(prices) and found, 20,
                    "a row per window")
    assert sorted(row["NUMBER_OF_DISTINCT_ITEMS"] for _, row in rows) == sorted(len(p) for p in prices.values())
