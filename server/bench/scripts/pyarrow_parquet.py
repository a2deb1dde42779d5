"""The Parquet benchmark's baseline: pyarrow reads JSON lines batch by batch with the table's
schema and writes each batch as one SNAPPY Parquet file in memory, as Firehose's conversion
does with a buffer. Prints {"rows": N, "seconds": S}, timing the conversions only."""

import io
import json
import sys
import time

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("device_id", pa.string()),
        ("event_time", pa.timestamp("ms")),
        ("temperature", pa.float64()),
        ("count", pa.int64()),
        ("ok", pa.bool_()),
        ("message", pa.string()),
    ]
)


def main(path, batch_rows):
    with open(path, "rb") as source:
        lines = source.read().splitlines(keepends=True)
    batches = [b"".join(lines[i : i + batch_rows]) for i in range(0, len(lines), batch_rows)]
    options = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
    rows, seconds = 0, 0.0
    for batch in batches:
        started = time.perf_counter()
        table = pj.read_json(pa.BufferReader(batch), parse_options=options)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="snappy")
        seconds += time.perf_counter() - started
        rows += table.num_rows
    print(json.dumps({"rows": rows, "seconds": seconds}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
