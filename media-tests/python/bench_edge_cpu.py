"""CPU and RSS of framelog-edge per pass-through 1080p30 4 Mbit/s RTSP stream (docs/benchmarks.md).

    FRAMELOG_BIN=.../framelog .venv/bin/python media-tests/python/bench_edge_cpu.py \
        [--streams 1 16] [--warmup 10] [--seconds 30] [--json-out edge-cpu.json]

Source: a 20 s 1080p30 H.264 file (videotestsrc snow, x264enc bitrate=4000 speed-preset=ultrafast
key-int-max=60, made once with gst-launch-1.0 into media-tests/fixtures-cache/), served in a loop by
one rtsp_camera.py process (shared media, TCP). For each stream count N, one framelog-edge process
records N streams that all pull that camera's mount (N RTSP sessions, N pass-through pipelines, N
buffers, N PutMedia uploads) and uploads them to a real framelog server on loopback. After all N
streams record and a warm-up, the agent's CPU time (utime + stime of /proc/<pid>/stat, all threads)
over the measured window is reported as a percentage of one core, and its RSS (VmRSS, sampled every
second; the maximum is reported). The server's and the camera's CPU are measured over the same
window; only the agent counts against the targets (under 3 % of one core and 40 MB RSS per stream).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kds_helpers import REPO_ROOT, FramelogServer, framelog_bin  # noqa: E402
from rtsp_helpers import EdgeAgent, RtspCamera, check_system_gi, edge_config, free_port, make_clip  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SOURCE_NAME = "edge_bench_1080p30_4mbit.mkv"
SOURCE_PIPELINE = (
    "videotestsrc num-buffers=600 pattern=snow ! video/x-raw,width=1920,height=1080,framerate=30/1,format=I420 "
    "! x264enc bitrate=4000 speed-preset=ultrafast key-int-max=60 option-string=scenecut=0 "
    "! h264parse ! matroskamux"
)
TARGET_CPU_PERCENT_PER_STREAM = 3.0
TARGET_RSS_MB_PER_STREAM = 40.0


def source_file(cache_dir: Path) -> Path:
    """The 1080p30 source, made once (the recipe is stamped next to it)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / SOURCE_NAME
    stamp = cache_dir / f"{SOURCE_NAME}.recipe"
    if path.is_file() and stamp.is_file() and stamp.read_text() == SOURCE_PIPELINE:
        return path
    print(f"making {path} (20 s of 1080p30 H.264)...", flush=True)
    make_clip(path, SOURCE_PIPELINE, timeout=600)
    stamp.write_text(SOURCE_PIPELINE)
    return path


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of the process so far, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # Fields after "(comm)": state is [0]; utime and stime are stat fields 14 and 15, i.e. [11] and [12].
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_until(what: str, timeout: float, check) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def measure(streams: int, clip: Path, workdir: Path, warmup: float, seconds: float) -> dict:
    run_dir = workdir / f"streams-{streams}"
    server = FramelogServer(framelog_bin(), run_dir / "server-data", run_dir).start()
    camera = RtspCamera(clip, run_dir / "camera", transport="tcp").start()
    agent = None
    try:
        names = [f"bench-cam-{i:02d}" for i in range(streams)]
        status_listen = f"127.0.0.1:{free_port()}"
        config = edge_config(
            server.endpoint,
            run_dir / "buffer",
            status_listen,
            [{"name": name, "source": camera.url, "rtsp_transport": "tcp"} for name in names],
        )
        agent = EdgeAgent(config, run_dir / "edge", status_listen).start()
        wait_until(
            f"{streams} streams recording and uploading",
            90,
            lambda: all(s["recording"] and s["uploaded_fragments"] > 0 for s in agent.status()),
        )
        time.sleep(warmup)
        pids = {"agent": agent.pid, "server": server.proc.pid, "camera": camera.proc.pid}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        status_before = {s["name"]: s for s in agent.status()}
        started = time.monotonic()
        rss: list[float] = []
        while time.monotonic() - started < seconds:
            rss.append(rss_mb(agent.pid))
            time.sleep(1)
        elapsed = time.monotonic() - started
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        status_after = {s["name"]: s for s in agent.status()}
        rss.append(rss_mb(agent.pid))
        cpu = {name: 100 * (after[name] - before[name]) / elapsed for name in pids}
        uploaded = sum(status_after[n]["uploaded_bytes"] - status_before[n]["uploaded_bytes"] for n in names)
        recorded = sum(status_after[n]["recorded_bytes"] - status_before[n]["recorded_bytes"] for n in names)
        keys = ("recording", "rejected_fragments", "dropped_fragments", "refused_fragments", "last_error")
        problems = {
            n: {k: status_after[n][k] for k in keys}
            for n in names
            if status_after[n]["rejected_fragments"]
            or status_after[n]["dropped_fragments"]
            or status_after[n]["refused_fragments"]
            or not status_after[n]["recording"]
        }
        return {
            "streams": streams,
            "seconds": round(elapsed, 1),
            "agent_cpu_percent": round(cpu["agent"], 2),
            "agent_cpu_percent_per_stream": round(cpu["agent"] / streams, 2),
            "agent_rss_mb_max": round(max(rss), 1),
            "agent_rss_mb_mean": round(sum(rss) / len(rss), 1),
            "agent_rss_mb_per_stream": round(max(rss) / streams, 1),
            "server_cpu_percent": round(cpu["server"], 2),
            "camera_cpu_percent": round(cpu["camera"], 2),
            "recorded_mbit_per_s_per_stream": round(recorded * 8 / elapsed / 1e6 / streams, 2),
            "uploaded_mbit_per_s_per_stream": round(uploaded * 8 / elapsed / 1e6 / streams, 2),
            "buffered_fragments_at_end": sum(s["buffered_fragments"] for s in status_after.values()),
            "problems": problems,
        }
    finally:
        if agent is not None:
            agent.stop()
        camera.kill()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of recording before measuring")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--json-out", type=Path, help="write the results as JSON here")
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / "media-tests" / "fixtures-cache")
    args = parser.parse_args()

    check_system_gi()
    clip = source_file(args.cache_dir)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-edge-cpu-") as workdir:
        for streams in args.streams:
            print(f"{streams} stream(s): warm-up {args.warmup:.0f} s, measuring {args.seconds:.0f} s...", flush=True)
            results.append(measure(streams, clip, Path(workdir), args.warmup, args.seconds))

    header = (
        f"{'streams':>7} | {'agent CPU %':>11} | {'% / stream':>10} | {'RSS MB':>7} | {'MB / stream':>11} | "
        f"{'server CPU %':>12} | {'Mbit/s / stream':>15}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['streams']:>7} | {r['agent_cpu_percent']:>11.2f} | {r['agent_cpu_percent_per_stream']:>10.2f} | "
            f"{r['agent_rss_mb_max']:>7.1f} | {r['agent_rss_mb_per_stream']:>11.1f} | "
            f"{r['server_cpu_percent']:>12.2f} | {r['uploaded_mbit_per_s_per_stream']:>15.2f}"
        )
    for r in results:
        if r["problems"]:
            print(f"{r['streams']} streams: problems: {r['problems']}")
    by_count = {r["streams"]: r for r in results}
    marginal = None
    if len(by_count) >= 2:
        low, high = min(by_count), max(by_count)
        marginal = {
            "from_streams": low,
            "to_streams": high,
            "agent_cpu_percent_per_added_stream": round(
                (by_count[high]["agent_cpu_percent"] - by_count[low]["agent_cpu_percent"]) / (high - low), 2
            ),
            "agent_rss_mb_per_added_stream": round(
                (by_count[high]["agent_rss_mb_max"] - by_count[low]["agent_rss_mb_max"]) / (high - low), 1
            ),
        }
        print(
            f"marginal cost of a stream ({low} -> {high}): {marginal['agent_cpu_percent_per_added_stream']:.2f} % CPU, "
            f"{marginal['agent_rss_mb_per_added_stream']:.1f} MB RSS"
        )
    meets = all(
        r["agent_cpu_percent_per_stream"] < TARGET_CPU_PERCENT_PER_STREAM
        and r["agent_rss_mb_per_stream"] < TARGET_RSS_MB_PER_STREAM
        for r in results
    )
    print(
        f"targets (< {TARGET_CPU_PERCENT_PER_STREAM:.0f} % of one core and < {TARGET_RSS_MB_PER_STREAM:.0f} MB RSS "
        f"per stream): {'met' if meets else 'NOT met'}"
    )
    if args.json_out:
        document = {
            "benchmark": "framelog-edge CPU and RSS per pass-through 1080p30 RTSP stream",
            "source": {"file": SOURCE_NAME, "pipeline": SOURCE_PIPELINE, "bytes": clip.stat().st_size},
            "warmup_s": args.warmup,
            "measured_s": args.seconds,
            "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "load_avg_at_end": os.getloadavg()},
            "targets": {
                "cpu_percent_per_stream": TARGET_CPU_PERCENT_PER_STREAM,
                "rss_mb_per_stream": TARGET_RSS_MB_PER_STREAM,
            },
            "results": results,
            "marginal": marginal,
            "targets_met": meets,
        }
        args.json_out.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
