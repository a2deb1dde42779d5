"""GetImages decodes in helper processes of the framelog binary (`framelog decode-worker`), each under an
address-space ceiling, so that a decoder crash or a runaway allocation costs one request's pictures and
never the server (docs/security.md, "Decoders"). Checked on a real server process: the workers exist with
the configured limit, killing them loses nothing but is repaired on the next request, and a worker that
dies mid-decode answers MEDIA_ERROR while the server keeps serving and still exits cleanly."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from kds_helpers import FramelogServer, framelog_bin
from kvs_helpers import PRODUCER_START_MS, assert_full_ack_sequence, at_ms, create_stream, upload
from media_fixtures import data_client

MIB = 1 << 20


def worker_pids(server: FramelogServer) -> list[int]:
    """The server's child processes that run `decode-worker`."""
    pids = []
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"decode-worker" in cmdline:
                pids.append(int(pid))
    return sorted(pids)


def wait_until_dead(pid: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
        except (FileNotFoundError, IndexError):
            return
        if state in "ZX":
            return
        time.sleep(0.01)
    raise AssertionError(f"worker {pid} still running {timeout_s} s after SIGKILL")


def address_space_limit_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max address space"):
            return int(line.split()[3])
    raise AssertionError("no address-space line in /proc/<pid>/limits")


def start_server(tmp_path: Path, config_text: str) -> FramelogServer:
    config = tmp_path / "framelog.toml"
    config.write_text(config_text)
    return FramelogServer(framelog_bin(), tmp_path / "data", tmp_path, extra_args=["--config", str(config)]).start()


def uploaded_stream(server: FramelogServer, h264_mkv: Path) -> tuple[object, str]:
    kinesisvideo = server.kinesisvideo_client()
    stream = create_stream(kinesisvideo, prefix="isolated")
    assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv.read_bytes()))
    return kinesisvideo, stream


def image_outcomes(kinesisvideo, stream: str) -> list[str]:
    """IMAGE or the Error of each picture of the upload's first four seconds, one per second."""
    client = data_client(kinesisvideo, "kinesis-video-archived-media", stream, "GET_IMAGES")
    response = client.get_images(
        StreamName=stream,
        ImageSelectorType="PRODUCER_TIMESTAMP",
        StartTimestamp=at_ms(PRODUCER_START_MS + 500),
        EndTimestamp=at_ms(PRODUCER_START_MS + 3500),
        SamplingInterval=1000,
        Format="JPEG",
    )
    return ["IMAGE" if "ImageContent" in image else image["Error"] for image in response["Images"]]


@pytest.fixture
def isolated_server(tmp_path):
    server = start_server(tmp_path, "[images]\ndecoder_memory_limit_mib = 1536\n")
    yield server
    server.stop_and_check_clean_exit()


def test_workers_run_under_the_configured_memory_ceiling(isolated_server, h264_mkv):
    kinesisvideo, stream = uploaded_stream(isolated_server, h264_mkv)
    assert worker_pids(isolated_server) == [], "workers start with the first job, not before"

    assert image_outcomes(kinesisvideo, stream) == ["IMAGE"] * 4

    pids = worker_pids(isolated_server)
    assert pids, "the pictures were made by decode-worker processes"
    assert {address_space_limit_bytes(pid) for pid in pids} == {1536 * MIB}


def test_killed_workers_are_replaced_and_lose_no_later_request(isolated_server, h264_mkv):
    kinesisvideo, stream = uploaded_stream(isolated_server, h264_mkv)
    assert image_outcomes(kinesisvideo, stream) == ["IMAGE"] * 4
    killed = worker_pids(isolated_server)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    # Killed while idle: wait until each is dead (a zombie until the pool reaps it), as it would
    # be by the time a later request comes. A worker killed in the middle of a job costs that job.
    for pid in killed:
        wait_until_dead(pid)

    assert image_outcomes(kinesisvideo, stream) == ["IMAGE"] * 4

    replacements = worker_pids(isolated_server)
    assert replacements and not set(replacements) & set(killed)


def test_a_worker_dying_mid_decode_is_media_error_and_the_server_carries_on(tmp_path, h264_mkv):
    # One MiB of address space: the worker starts, then its job cannot map what it needs, as a decoder
    # overrunning its ceiling would. The worker either dies of it (an allocation fails) or answers that its
    # decoder is unavailable (jemalloc still has room for small allocations, so loading the decoder's
    # plugin fails first); either way the pictures are MEDIA_ERROR and the failure is logged. Workers
    # killed outright are the test above.
    server = start_server(tmp_path, "[images]\ndecoder_memory_limit_mib = 1\n")
    try:
        kinesisvideo, stream = uploaded_stream(server, h264_mkv)

        assert image_outcomes(kinesisvideo, stream) == ["MEDIA_ERROR"] * 4
        assert image_outcomes(kinesisvideo, stream) == ["MEDIA_ERROR"] * 4, "a second request is answered too"

        assert server.proc.poll() is None, "the server survived its decoders"
        assert stream in [s["StreamName"] for s in kinesisvideo.list_streams()["StreamInfoList"]]
        deadline = time.monotonic() + 5
        failures = ("the decode worker failed: exited with status 1", "decoder unavailable: ")
        while not any(failure in server.log_tail(10_000_000) for failure in failures):
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
    finally:
        server.stop_and_check_clean_exit()


def test_decoding_in_process_when_isolation_is_turned_off(tmp_path, h264_mkv):
    server = start_server(tmp_path, "[images]\nisolate_decoder = false\n")
    try:
        kinesisvideo, stream = uploaded_stream(server, h264_mkv)
        assert image_outcomes(kinesisvideo, stream) == ["IMAGE"] * 4
        assert worker_pids(server) == []
    finally:
        server.stop_and_check_clean_exit()
