"""Consumer metrics in the OpenMetrics text format (`GET /metrics`) and memory under the LATEST lag policy.

Every consumer (video, record, and the hidden `$notification` / `$image-generation` ones) has one sample per
family of its describeConsumer `Metrics`: `framelog_consumer_<snake_case>` for the `Lag*` gauges and, for the
counters, family `framelog_consumer_<snake_case>` with samples named `..._total`, labelled stream, consumer and
kind. The exposition is parsed strictly (OpenMetrics 1.0: TYPE before samples, one group per family, a final
`# EOF`); expected values come from describeConsumer, the webhook's calls and the source media (ffprobe).
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

from consumer_helpers import (
    NOTIFY,
    SECOND_UPLOAD_START_MS,
    api_ok,
    consumer_request,
    describe,
    events,
    image_config,
    images_dir,
    kds_request,
    notify_config,
    put_mixed,
    settle,
    source_video,
    timed_upload,
    wait_for_records,
)
from kvs_helpers import PRODUCER_START_MS, assert_full_ack_sequence, create_stream, upload
from media_fixtures import with_tags

PREFIX = "framelog_consumer_"
VIDEO_FAMILIES = {"lag_ms", "lag_fragments", "lag_frames", "delivered_frames_total", "delivered_batches_total",
                  "retried_calls_total", "dead_lettered_batches_total", "skipped_fragments_total",
                  "skipped_frames_total"}
DATA_FAMILIES = {"lag_ms", "lag_records", "delivered_records_total", "delivered_batches_total", "retried_calls_total",
                 "dead_lettered_batches_total"}
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
VALUE = r'(?:[^"\\\n]|\\[\\"n])*'  # a label value: no raw quote, backslash or newline; three escapes
LABEL = f'{LABEL_NAME}="{VALUE}"'
SAMPLE = re.compile(rf"(?P<name>{NAME})(?:\{{(?P<labels>(?:{LABEL}(?:,{LABEL})*,?)?)\}})? (?P<value>\S+)(?: -?\d+)?")
TYPE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)")
UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def family_of(metric: str) -> str:
    """describeConsumer's `DeliveredFrames` -> `delivered_frames_total`, `LagMs` -> `lag_ms`."""
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", metric).lower()
    return snake if metric.startswith("Lag") else f"{snake}_total"


def scrape(endpoint: str) -> dict[tuple[str, str, str], dict[str, int]]:
    """GET /metrics, parsed strictly: {(stream, consumer, kind): {family without the prefix: value}}."""
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=30) as response:
        assert response.status == 200
        content_type = response.headers.get("Content-Type", "")
        text = response.read().decode()
    assert content_type.split(";")[0] == "application/openmetrics-text", content_type
    assert text.endswith("# EOF\n"), text[-200:]
    types: dict[str, str] = {}
    current = None  # the family of the last TYPE line: a family's samples are one group right after it
    out: dict[tuple[str, str, str], dict[str, int]] = {}
    for number, line in enumerate(text.splitlines()[:-1], 1):
        where = f"line {number}: {line!r}"
        if line.startswith("# TYPE"):
            match = TYPE.fullmatch(line)
            assert match, where
            current, kind = match.groups()
            assert current not in types, f"second TYPE line for {current}, {where}"
            types[current] = kind
            continue
        if line.startswith("#"):
            continue  # HELP or a comment
        match = SAMPLE.fullmatch(line)
        assert match, f"not `name{{labels}} value`: {where}"
        name, labels, value = match["name"], match["labels"] or "", match["value"]
        # A counter's samples are `<family>_total`; a histogram's `<family>_bucket`, `_sum` and
        # `_count`; a gauge's carry the family's own name.
        kind = types.get(current) if current is not None else None
        if kind == "counter":
            family = name.removesuffix("_total")
        elif kind == "histogram":
            family = re.sub(r"_(bucket|sum|count)$", "", name)
        else:
            family = name
        assert family in types, f"sample before its TYPE line: {where}"
        assert family == current, f"sample of {family} outside its group (after the TYPE of {current}): {where}"
        if not family.startswith(PREFIX):
            continue  # not a consumer metric: only its syntax is checked
        assert name[len(PREFIX):] in VIDEO_FAMILIES | DATA_FAMILIES, where
        assert types[family] == ("counter" if name.endswith("_total") else "gauge"), (types[family], where)
        assert re.fullmatch(r"\d+", value), f"value is not a whole number: {where}"
        pairs = {k: re.sub(r'\\[\\"n]', lambda m: UNESCAPE[m.group()], v)
                 for k, v in re.findall(f'({LABEL_NAME})="({VALUE})"', labels)}
        assert set(pairs) == {"stream", "consumer", "kind"} and pairs["kind"] in ("video", "data"), where
        samples = out.setdefault((pairs["stream"], pairs["consumer"], pairs["kind"]), {})
        assert name[len(PREFIX):] not in samples, f"second sample for the same labels: {where}"
        samples[name[len(PREFIX):]] = int(value)
    return out


def assert_scrape_matches(endpoint: str, key: tuple[str, str, str], get_metrics) -> dict[str, int]:
    """The consumer's samples are its describeConsumer Metrics, one per key (LagMs grows between calls: it
    must lie between a describe before and one after the scrape)."""
    before = get_metrics()
    samples = scrape(endpoint)[key]
    after = get_metrics()
    assert set(samples) == {family_of(k) for k in before}, (sorted(samples), sorted(before))
    assert set(samples) == (VIDEO_FAMILIES if key[2] == "video" else DATA_FAMILIES), sorted(samples)
    for metric, value in before.items():
        if metric == "LagMs":
            assert value <= samples["lag_ms"] <= after["LagMs"], (before, samples, after)
        else:
            assert samples[family_of(metric)] == value == after[metric], (metric, before, samples, after)
    return samples


def wait_scrape(endpoint: str, key, predicate, what: str, timeout: float = 20.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while not predicate(samples := scrape(endpoint).get(key, {})):
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {samples}"
        time.sleep(0.1)
    return samples


def test_paused_video_consumer_lags_by_the_uploaded_frames_then_delivers_them(kinesisvideo, server, h264_mkv, hooks,
                                                                              consumers):
    stream = create_stream(kinesisvideo, prefix="metrics-video")
    hook = hooks()
    consumers(server.endpoint, consumer_request(stream, "scraped", hook.url, Output={"Format": "RAW"},
                                                Batching={"MaxFrames": 2, "MaxWaitMs": 200}))
    consumer_key = {"StreamName": stream, "ConsumerName": "scraped"}
    api_ok(server.endpoint, "updateConsumer", {**consumer_key, "State": "PAUSED"})
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv))
    video_frames = len(source_video(h264_mkv))  # ffprobe's video packets of the file: 600
    key = (stream, "scraped", "video")
    metrics = lambda: describe(server.endpoint, stream, "scraped")["Metrics"]  # noqa: E731

    time.sleep(0.3)
    samples = assert_scrape_matches(server.endpoint, key, metrics)
    assert samples["lag_fragments"] == len(numbers) == 10, samples
    assert samples["lag_frames"] == video_frames, (samples, video_frames)
    assert samples["lag_ms"] >= 250, samples
    assert samples["delivered_frames_total"] == samples["delivered_batches_total"] == 0, samples

    api_ok(server.endpoint, "updateConsumer", {**consumer_key, "State": "ACTIVE"})
    hook.wait_for_frames(len(numbers), timeout=30)
    samples = wait_scrape(server.endpoint, key, lambda s: s.get("lag_fragments") == 0, "lag_fragments 0")
    settle(hook)
    samples = assert_scrape_matches(server.endpoint, key, metrics)
    assert (samples["lag_ms"], samples["lag_frames"]) == (0, 0), samples
    assert samples["delivered_frames_total"] == len(hook.delivered_frames()) == len(numbers), samples
    assert samples["delivered_batches_total"] == len(hook.delivered_calls()) == 5, samples
    assert samples["retried_calls_total"] == samples["dead_lettered_batches_total"] == 0, samples
    assert samples["skipped_fragments_total"] == samples["skipped_frames_total"] == 0, samples


def test_record_consumer_metrics_count_the_records_it_delivered(server, kinesis, make_stream, hooks,
                                                                record_consumers):
    stream = make_stream(2)
    hook = hooks()
    record_consumers(server.endpoint, kds_request(stream, "records", hook.url,
                                                  Batching={"MaxRecords": 25, "MaxWaitMs": 200}))
    consumer_key = {"DataStreamName": stream, "ConsumerName": "records"}
    api_ok(server.endpoint, "updateConsumer", {**consumer_key, "State": "PAUSED"})
    put_mixed(kinesis, stream, 120)
    key = (stream, "records", "data")
    metrics = lambda: api_ok(server.endpoint, "describeConsumer", consumer_key)["Consumer"]["Metrics"]  # noqa: E731

    samples = assert_scrape_matches(server.endpoint, key, metrics)
    assert samples["lag_records"] == 120 and samples["delivered_records_total"] == 0, samples

    api_ok(server.endpoint, "updateConsumer", {**consumer_key, "State": "ACTIVE"})
    wait_for_records(hook, 120)
    wait_scrape(server.endpoint, key, lambda s: s.get("lag_records") == 0, "lag_records 0")
    samples = assert_scrape_matches(server.endpoint, key, metrics)
    received = sum(len(events(c)) for c in hook.delivered_calls())
    assert samples["delivered_records_total"] == received == 120, samples
    assert samples["delivered_batches_total"] == len(hook.delivered_calls()), samples
    assert (samples["lag_ms"], samples["retried_calls_total"], samples["dead_lettered_batches_total"]) == (0, 0, 0)


def test_hidden_notification_and_image_generation_consumers_are_exported(kinesisvideo, server, h264_mkv, hooks):
    stream = create_stream(kinesisvideo, prefix="metrics-hidden")
    hook = hooks()
    kinesisvideo.update_notification_configuration(StreamName=stream, NotificationConfiguration=notify_config(hook.url))
    kinesisvideo.update_image_generation_configuration(
        StreamName=stream, ImageGenerationConfiguration=image_config(images_dir(server, "metrics").as_uri(),
                                                                     Status="DISABLED"))
    scraped = scrape(server.endpoint)
    for name in ("$notification", "$image-generation"):
        assert set(scraped.get((stream, name, "video"), {})) == VIDEO_FAMILIES, (name, sorted(scraped))

    tagged = with_tags(h264_mkv.read_bytes(), {2: [(NOTIFY, "")], 6: [(NOTIFY, ""), ("event", "x")]})
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, tagged))
    hook.wait_for(lambda calls: len(calls) >= 2, timeout=30, what="2 notifications")
    samples = wait_scrape(server.endpoint, (stream, "$notification", "video"),
                          lambda s: s.get("lag_fragments") == 0 and s.get("delivered_batches_total") == 2,
                          "the notification consumer at the tip with 2 batches")
    settle(hook)
    assert len(hook.delivered_calls()) == 2 == samples["delivered_frames_total"], (len(hook.snapshot()), samples)
    assert (samples["lag_ms"], samples["lag_frames"], samples["dead_lettered_batches_total"]) == (0, 0, 0), samples
    paused = scrape(server.endpoint)[(stream, "$image-generation", "video")]  # DISABLED: it stays behind
    assert paused["lag_fragments"] == len(numbers) and paused["delivered_batches_total"] == 0, paused


def vm_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB$", status, re.M).group(1))


def test_slow_latest_consumer_skips_and_memory_stays_flat(private_server, h264_mkv, hooks, consumers):
    # Ingest alone grows RSS by about the bytes uploaded: the engine keeps new payloads in a 64 MB RocksDB
    # write buffer until it flushes. So the consumer's share is measured against a control: the same uploads
    # to a stream without consumers, in the same process, all within one write buffer (17 uploads, 41 MB).
    kinesisvideo = private_server.kinesisvideo_client()
    pid = private_server.proc.pid
    stream, control = create_stream(kinesisvideo, prefix="metrics-rss"), create_stream(kinesisvideo, prefix="control")
    hook = hooks(delay_s=1.5)
    consumers(private_server.endpoint, consumer_request(stream, "slow", hook.url, Output={"Format": "JPEG"},
                                                        LagPolicy={"Type": "LATEST", "MaxLagMs": 1000}))
    # Warm-up: one upload, and the consumer has decoded, encoded and delivered (decoder pools, buffers exist).
    timed_upload(kinesisvideo, stream, h264_mkv, PRODUCER_START_MS)
    hook.wait_for(lambda calls: len(calls) >= 2, timeout=20, what="two calls to the slow webhook")
    uploads = 8  # each asserts its full ack sequence: ingest acks every fragment while the consumer lags
    rss = [vm_rss_kb(pid)]
    for target in (control, stream):
        for index in range(uploads):
            timed_upload(kinesisvideo, target, h264_mkv, SECOND_UPLOAD_START_MS + index * 20_000)
        rss.append(vm_rss_kb(pid))  # right after the last ack: where a queue of what is not delivered peaks
    control_mb, consumer_mb = (rss[1] - rss[0]) / 1024, (rss[2] - rss[1]) / 1024

    queued_mb = uploads * h264_mkv.stat().st_size / 2**20
    frames = uploads * len(source_video(h264_mkv))
    decoded_mb = frames * 640 * 360 * 3 / 2 / 2**20  # the same frames decoded (YUV 4:2:0)
    print(f"\nVmRSS MB: warm-up {rss[0] / 1024:.1f}, after control {rss[1] / 1024:.1f} ({control_mb:+.1f}), after "
          f"consumer stream {rss[2] / 1024:.1f} ({consumer_mb:+.1f}); each phase uploads {queued_mb:.1f} MB "
          f"({frames} frames, {decoded_mb:.0f} MB decoded, {uploads * 10} key frames)")
    samples = wait_scrape(private_server.endpoint, (stream, "slow", "video"), lambda s: s.get("lag_fragments") == 0,
                          "the slow consumer at the tip", timeout=30)
    print(f"metrics {samples}, webhook calls {len(hook.snapshot())}")
    assert samples["skipped_fragments_total"] > 0, samples
    assert samples["skipped_frames_total"] >= samples["skipped_fragments_total"], samples
    # One key frame per fragment: every fragment of the consumer's stream was delivered or skipped, once.
    assert samples["delivered_frames_total"] + samples["skipped_fragments_total"] == 10 * (uploads + 1), samples
    # Measured (3 runs, 8 uploads of 2.4 MB a phase): control +20.9..+21.6 MB, consumer stream +23.2..+23.9 MB,
    # so the consumer's share is 2.3-2.6 MB. 10 MB is ~4x that, and half of what a queue of the compressed
    # fragments not yet delivered would hold (19.3 MB; their decoded key frames: 80 x 0.35-0.7 MB, 27-55 MB).
    assert consumer_mb - control_mb < 10, (rss, queued_mb)
