"""Outbound destinations of consumers and KVS hooks against the real server process (docs/consumers.md,
"Destinations"): an answer body that never ends is cut at 64 KiB and delivery goes on; credentials in a webhook
URL are sent as HTTP Basic authentication and never reach the server's log or the dead letters; and a file://
image destination replaced by a symlink out of the images root after it was configured gets no pictures.

Which addresses and URLs are refused when a destination is configured is decided by a request and its answer:
server/src/consumers/tests.rs and policy.rs cover it.
"""

from __future__ import annotations

import base64
import re
import time

from consumer_helpers import (
    EndlessAnswer,
    api_ok,
    consumer_metric,
    consumer_request,
    describe,
    image_config,
    images_dir,
    settle,
)
from kvs_helpers import assert_full_ack_sequence, create_stream, upload
from media_fixtures import with_tags

IMAGES = "AWS_KINESISVIDEO_IMAGE_GENERATION"
KEY_FRAMES = 10  # h264_mkv: 10 two-second clusters, one key frame each
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the server's log is coloured


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def wait_metrics(endpoint: str, stream: str, name: str, predicate, what: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        metrics = describe(endpoint, stream, name)["Metrics"]
        if predicate(metrics):
            return metrics
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {metrics}"
        time.sleep(0.1)


def test_an_endless_answer_is_cut_at_64_kib_and_delivery_goes_on(kinesisvideo, server, h264_mkv, consumers):
    hook = EndlessAnswer()
    try:
        stream = create_stream(kinesisvideo, prefix="endless")
        assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv.read_bytes()))
        rss_before = rss_kib(server.proc.pid)
        started = time.monotonic()
        consumers(server.endpoint, consumer_request(stream, "endless", hook.url, Output={"Format": "RAW"}))

        # Without the limit the first call reads for 30 s (gigabytes over loopback), fails and is retried.
        metrics = wait_metrics(server.endpoint, stream, "endless", lambda m: m["DeliveredBatches"] == KEY_FRAMES,
                               f"{KEY_FRAMES} delivered batches", timeout=20)
        assert time.monotonic() - started < 20
        assert (metrics["RetriedCalls"], metrics["DeadLetteredBatches"]) == (0, 0), metrics
        time.sleep(0.5)  # the answering threads notice the hang-up
        with hook.lock:
            sent = list(hook.sent)
        assert len(sent) == KEY_FRAMES, sent
        # 64 KiB read, the rest of what got through sat in socket buffers.
        assert max(sent) < 32 << 20, sent
        assert rss_kib(server.proc.pid) - rss_before < 256 << 10, (rss_before, rss_kib(server.proc.pid))
    finally:
        hook.close()


def test_webhook_credentials_are_sent_as_basic_auth_and_kept_out_of_logs_and_dead_letters(kinesisvideo, server,
                                                                                         h264_mkv, hooks, consumers):
    hook = hooks()
    url = hook.url.replace("http://", "http://alice:s3cret@") + "?token=t0ken"
    stream = create_stream(kinesisvideo, prefix="userinfo")
    assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv.read_bytes()))
    hook.fail_always(503)
    consumers(server.endpoint, consumer_request(stream, "secretive", url, Output={"Format": "RAW"},
                                                Retry={"MaxAttempts": 1}))

    hook.wait_for(lambda calls: len(calls) >= KEY_FRAMES, timeout=30, what=f"{KEY_FRAMES} calls")
    settle(hook)
    want = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert all(c.headers.get("authorization") == want and c.path == "/frames?token=t0ken" for c in hook.snapshot())
    # The definition keeps the whole URL: the API shows what it was given.
    assert describe(server.endpoint, stream, "secretive")["Webhook"]["Url"] == url
    letters = api_ok(server.endpoint, "listConsumerDeadLetters",
                     {"StreamName": stream, "ConsumerName": "secretive"})["DeadLetters"]
    assert len(letters) == KEY_FRAMES and all(d["Error"] == "HTTP 503 Service Unavailable" for d in letters), letters

    log = ANSI.sub("", server.log_path.read_text(errors="replace"))
    dead_lines = [line for line in log.splitlines() if "consumer=secretive" in line and "dead-letter" in line]
    assert len(dead_lines) == KEY_FRAMES, server.log_tail()
    assert all("http://***@127.0.0.1:" in line for line in dead_lines), dead_lines[0]
    assert "s3cret" not in log and "t0ken" not in log


def test_an_image_destination_swapped_for_a_symlink_out_of_the_root_gets_nothing(kinesisvideo, server, h264_mkv,
                                                                                 tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    destination = images_dir(server, "swapped")
    stream = create_stream(kinesisvideo, prefix="images-swap")
    kinesisvideo.update_image_generation_configuration(
        StreamName=stream, ImageGenerationConfiguration=image_config(destination.as_uri()))
    destination.rmdir()
    destination.symlink_to(outside, target_is_directory=True)

    tags = {i: [(IMAGES, "")] for i in range(3)}
    assert_full_ack_sequence(upload(kinesisvideo, stream, with_tags(h264_mkv.read_bytes(), tags)))
    deadline = time.monotonic() + 30
    while (consumer_metric(server.endpoint, stream, "$image-generation", "dead_lettered_batches_total") or 0) < 3:
        assert time.monotonic() < deadline, "the refused pictures were not dead-lettered"
        time.sleep(0.1)
    assert consumer_metric(server.endpoint, stream, "$image-generation", "delivered_batches_total") == 0
    assert list(outside.rglob("*")) == []
