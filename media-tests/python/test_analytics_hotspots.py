"""HOTSPOTS against a real server through boto3: the developer guide's hotspot example (points in a
10 x 10 square, some planted around two centres, `HOTSPOTS(..., 1000, 0.2, 17)`) run unchanged.
Each sampled row's HOTSPOTS_RESULT is compared with the dense regions computed here over the 1,000
rows up to it (in the order the application wrote them), and the planted centres must be found.
"""

from __future__ import annotations

import json
import math
import random
from collections import deque

import pytest

from kds_helpers import FramelogServer, framelog_bin
from test_analytics import analytics_client, make_streams, output, outputs, put_documents, start, ticker_input, wait_for

# The developer guide's hotspot detection example, as written there.
HOTSPOTS = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
    "x" DOUBLE,
    "y" DOUBLE,
    "is_hot" VARCHAR(4),
    HOTSPOTS_RESULT VARCHAR(10000)
);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS
    INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT "x", "y", "is_hot", "HOTSPOTS_RESULT"
    FROM TABLE (
        HOTSPOTS(
            CURSOR(SELECT STREAM "x", "y", "is_hot" FROM "SOURCE_SQL_STREAM_001"),
            1000,
            0.2,
            17)
    );
"""

WINDOW, RADIUS, MINIMUM = 1000, 0.2, 17
CENTRES = [(2.5, 7.0), (8.0, 3.0)]


def points(count: int, rng: random.Random) -> list[dict]:
    """Uniform points, and one in ten near a centre (as the guide's generator plants them)."""
    found = []
    for _ in range(count):
        if rng.random() < 0.1:
            cx, cy = rng.choice(CENTRES)
            found.append({"x": rng.gauss(cx, 0.1), "y": rng.gauss(cy, 0.1), "is_hot": "Y"})
        else:
            found.append({"x": rng.uniform(0, 10), "y": rng.uniform(0, 10), "is_hot": "N"})
    return found


def dense_regions(window: list[tuple[float, float]]) -> list[dict]:
    """DBSCAN as docs/analytics.md states HOTSPOTS' rule: core points have MINIMUM points (themselves
    included) within RADIUS; cores within RADIUS share a region; others join the first region that
    reaches them. Densest first, density = rows / product of (max - min + RADIUS)."""
    near = [[j for j, q in enumerate(window) if math.dist(p, q) <= RADIUS] for p in window]
    core = [len(n) >= MINIMUM for n in near]
    region_of: list[int | None] = [None] * len(window)
    regions = []
    for seed in range(len(window)):
        if not core[seed] or region_of[seed] is not None:
            continue
        members, queue = [], deque([seed])
        region_of[seed] = len(regions)
        while queue:
            point = queue.popleft()
            members.append(point)
            if core[point]:
                for other in near[point]:
                    if region_of[other] is None:
                        region_of[other] = len(regions)
                        queue.append(other)
        low = [min(window[m][d] for m in members) for d in range(2)]
        high = [max(window[m][d] for m in members) for d in range(2)]
        size = math.prod(h - lo + RADIUS for lo, h in zip(low, high))
        regions.append({"density": len(members) / size, "minValues": low, "maxValues": high})
    return sorted(regions, key=lambda r: -r["density"])


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) for x, y in zip(a, b))


@pytest.fixture
def server(tmp_path):
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path).start()
    yield server
    server.stop()


def test_the_guides_hotspot_example_finds_the_planted_centres_and_the_documented_regions(server):
    kinesis, client = server.client(), analytics_client(server)
    make_streams(kinesis, "points", "hotspots")
    client.create_application(ApplicationName="hotspots", ApplicationCode=HOTSPOTS,
                              Inputs=[ticker_input("points", [("x", "DOUBLE"), ("y", "DOUBLE"), ("is_hot", "VARCHAR(4)")])], Outputs=[output("hotspots")])
    start(client, "hotspots")
    sent = points(2500, random.Random(23))
    put_documents(kinesis, "points", sent)
    rows = wait_for(lambda: (found := outputs(kinesis, "hotspots")) and len(found) >= len(sent) and found,
                    60, "every row's result")
    assert len(rows) == len(sent), "each row is written once"
    written = [(row["x"], row["y"]) for _, row in rows]
    # The JSON writer may print a DOUBLE a unit off in its last place (docs/known-gaps.md).
    pairs = zip(sorted(written), sorted((p["x"], p["y"]) for p in sent))
    assert all(close(list(w), list(s)) for w, s in pairs), "the rows written are the rows sent"
    for index in [*range(WINDOW - 1, len(rows), 300), len(rows) - 1]:
        window = written[max(0, index - WINDOW + 1):index + 1]
        expected = dense_regions(window)
        got = json.loads(rows[index][1]["HOTSPOTS_RESULT"])["hotspots"]
        assert len(got) == len(expected), f"row {index}: {got} vs {expected}"
        for spot, want in zip(got, expected):
            assert close(spot["minValues"], want["minValues"]) and close(spot["maxValues"], want["maxValues"]), (index, spot, want)
            assert math.isclose(spot["density"], want["density"], rel_tol=1e-9), (index, spot, want)
    last = json.loads(rows[-1][1]["HOTSPOTS_RESULT"])["hotspots"]
    for cx, cy in CENTRES:
        assert any(s["minValues"][0] <= cx <= s["maxValues"][0] and s["minValues"][1] <= cy <= s["maxValues"][1]
                   for s in last), f"the centre {(cx, cy)} is in a hotspot: {last}"
