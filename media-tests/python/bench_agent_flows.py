"""Lines per second from a log file to acknowledged KDS records through framelog-edge's file
flows (docs/benchmarks.md): a file of LINES lines of 200 bytes is written first, then the agent
reads it from the start into a stream of SHARDS shards; the clock runs from the agent's start
to its last acknowledged record. Also the agent's CPU seconds and peak RSS.

Run: FRAMELOG_BIN=.../framelog .venv/bin/python media-tests/python/bench_agent_flows.py [--lines N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from kds_helpers import ACCESS_KEY, SECRET_KEY, FramelogServer, _free_port, framelog_bin  # noqa: E402
from rtsp_helpers import framelog_edge_bin  # noqa: E402

LINE_BYTES = 200
CLOCK_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = FramelogServer(framelog_bin(), tmp / "data", tmp).start()
        try:
            kinesis = server.client()
            kinesis.create_stream(StreamName="bench-logs", ShardCount=args.shards)
            log = tmp / "app.log"
            filler = "x" * (LINE_BYTES - 1 - 8)
            with open(log, "wb") as out:
                out.write(b"".join(f"{i:07d} {filler}\n".encode() for i in range(args.lines)))
            status_port = _free_port()
            (tmp / "agent.json").write_text(json.dumps({
                "kinesis.endpoint": server.endpoint,
                "awsAccessKeyId": ACCESS_KEY,
                "awsSecretAccessKey": SECRET_KEY,
                "checkpointFile": str(tmp / "checkpoints"),
                "flows": [{"filePattern": str(log), "kinesisStream": "bench-logs", "maxBufferAgeMillis": 1000}],
            }))
            started = time.monotonic()
            agent = subprocess.Popen(
                [framelog_edge_bin(), "--agent-config", str(tmp / "agent.json"), "--status-listen", f"127.0.0.1:{status_port}"],
                stdout=subprocess.DEVNULL, stderr=open(tmp / "agent.log", "wb"),
            )
            sent = 0
            while sent < args.lines:
                time.sleep(0.05)
                try:
                    flows = json.load(urllib.request.urlopen(f"http://127.0.0.1:{status_port}/flows", timeout=5))
                    sent = flows[0]["records_sent"]
                except OSError:
                    continue
                if time.monotonic() - started > 600:
                    raise SystemExit(f"only {sent} of {args.lines} lines after 600 s")
            elapsed = time.monotonic() - started
            report = {
                "benchmark": "framelog-edge file flow: 200-byte lines from a file to acknowledged KDS records",
                "lines": args.lines,
                "shards": args.shards,
                "seconds": round(elapsed, 2),
                "lines_per_sec": round(args.lines / elapsed),
                "agent_cpu_seconds": cpu_seconds(agent.pid),
                "agent_peak_rss_mib": round(peak_rss_mib(agent.pid), 1),
            }
            agent.terminate()
            agent.wait(timeout=20)
        finally:
            server.stop_and_check_clean_exit()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text)


if __name__ == "__main__":
    main()
