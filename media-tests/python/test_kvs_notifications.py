"""KVS notification and image-generation configurations (docs/spec/kvs.md#notifications-and-image-generation):
Update/DescribeNotificationConfiguration and Update/DescribeImageGenerationConfiguration through boto3's
`kinesisvideo` client, SNS-style notifications POSTed to a webhook for fragments tagged
AWS_KINESISVIDEO_NOTIFICATION, and images of fragments tagged AWS_KINESISVIDEO_IMAGE_GENERATION written to a
file:// directory or POSTed to an http:// URL in the consumer delivery format (docs/consumers.md).

Expected values come from the uploaded tags, ListFragments and the source media (ffprobe packet times, frames
decoded by ffmpeg), never from the server under test. Webhook receiver and picture comparison: consumer_helpers.py.
"""

from __future__ import annotations

import bisect
import calendar
import json
import re
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from consumer_helpers import (
    MAX_PICTURE_DIFF,
    NEIGHBOURS,
    NOTIFY,
    SECOND_UPLOAD_START_MS,
    assert_pictures_are_the_source_frames,
    image_config,
    image_thumbs,
    images_dir,
    mean_abs_diff,
    ms,
    notify_config,
    probe_images,
    settle,
    source_thumbs,
    source_video,
    summarize_calls,
)
from kds_helpers import ACCESS_KEY, REGION, SECRET_KEY, client_config
from kvs_helpers import (
    PRODUCER_START_MS,
    assert_full_ack_sequence,
    code_status,
    create_stream,
    epoch_ms,
    list_all_fragments,
    missing_arn,
    upload,
)
from media_fixtures import FIXTURE_CLUSTER_TIMECODES, with_tags

IMAGES = "AWS_KINESISVIDEO_IMAGE_GENERATION"
PREFIX = "AWS_KINESISVIDEO_IMAGE_PREFIX"
SUBJECT = "Kinesis Video Streams Notification"
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EXTENSION = {"JPEG": "jpg", "PNG": "png"}
FINAL_NAME = re.compile(r"^\d{13}\.(jpg|png)$")
PNG_END = bytes.fromhex("0000000049454e44ae426082")


def stream_arn(kinesisvideo, stream: str) -> str:
    return kinesisvideo.describe_stream(StreamName=stream)["StreamInfo"]["StreamARN"]


def fragments_of(kinesisvideo, stream: str, numbers: list[str]) -> list[dict]:
    """The ListFragments entries of the given fragments, in that order."""
    by_number = {f["FragmentNumber"]: f for f in list_all_fragments(kinesisvideo, stream)}
    return [by_number[n] for n in numbers]


@pytest.fixture(scope="module")
def unvalidated(server):
    """A kinesisvideo client that sends out-of-range values instead of refusing them itself."""
    return boto3.client("kinesisvideo", endpoint_url=server.endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        config=client_config().merge(Config(parameter_validation=False)))


# ------------------------------------------------------------------------------------------------
# 1. Round trips and errors
# ------------------------------------------------------------------------------------------------


OPERATIONS = {
    "NotificationConfiguration": ("update_notification_configuration", "describe_notification_configuration"),
    "ImageGenerationConfiguration": ("update_image_generation_configuration", "describe_image_generation_configuration"),
}


def configs(nowhere: str) -> dict[str, dict]:
    """Valid configurations; `nowhere` is a file:// directory under the images root that is never written."""
    return {
        "notification": notify_config("http://127.0.0.1:9/hook"),
        "notification, disabled": notify_config("http://example.com:8080/k?x=1", "DISABLED"),
        "images, everything": image_config(nowhere, SamplingInterval=1500, FormatConfig={"JPEGQuality": "80"},
                                           WidthPixels=320, HeightPixels=180),
        "images, smallest": image_config(nowhere, SamplingInterval=200, FormatConfig={"JPEGQuality": "1"},
                                         WidthPixels=1, HeightPixels=1),
        "images, largest": image_config(nowhere, SamplingInterval=20000, FormatConfig={"JPEGQuality": "100"},
                                        WidthPixels=3840, HeightPixels=2160),
        "images, png, server timestamps, http": image_config("http://127.0.0.1:9/images", Format="PNG",
                                                             WidthPixels=640, ImageSelectorType="SERVER_TIMESTAMP"),
        "images, disabled, height only": image_config(nowhere, Status="DISABLED", HeightPixels=90),
    }


@pytest.fixture(scope="module")
def nowhere(server) -> str:
    """A file:// destination under the server's images root that no test writes to."""
    return images_dir(server, "never-written", create=False).as_uri()


@pytest.mark.parametrize("case", configs("file:///unused"))
def test_configuration_round_trip_replace_and_delete(kinesisvideo, nowhere, case):
    member = "NotificationConfiguration" if case.startswith("notification") else "ImageGenerationConfiguration"
    update, describe = (getattr(kinesisvideo, name) for name in OPERATIONS[member])
    config = configs(nowhere)[case]
    stream = create_stream(kinesisvideo, prefix="conf")
    arn = stream_arn(kinesisvideo, stream)
    assert member not in describe(StreamName=stream)

    update(StreamName=stream, **{member: config})
    assert describe(StreamName=stream)[member] == config
    assert describe(StreamARN=arn)[member] == config
    replaced = {**config, "Status": "DISABLED" if config["Status"] == "ENABLED" else "ENABLED"}
    update(StreamARN=arn, **{member: replaced})
    assert describe(StreamName=stream)[member] == replaced

    update(StreamName=stream)  # no configuration: deleted
    assert member not in describe(StreamARN=arn)
    assert member not in describe(StreamName=stream)


INVALID = {
    "SamplingInterval 199": dict(SamplingInterval=199),
    "SamplingInterval 20001": dict(SamplingInterval=20001),
    "WidthPixels 0": dict(WidthPixels=0),
    "WidthPixels 3841": dict(WidthPixels=3841),
    "HeightPixels 0": dict(HeightPixels=0),
    "HeightPixels 2161": dict(HeightPixels=2161),
    "JPEGQuality 0": dict(FormatConfig={"JPEGQuality": "0"}),
    "JPEGQuality 101": dict(FormatConfig={"JPEGQuality": "101"}),
    "JPEGQuality high": dict(FormatConfig={"JPEGQuality": "high"}),
    "other region": dict(DestinationConfig={"Uri": "file:///tmp", "DestinationRegion": "eu-west-1"}),
    "file uri outside the images root": dict(DestinationConfig={"Uri": "file:///tmp", "DestinationRegion": REGION}),
    "s3 uri": dict(DestinationConfig={"Uri": "s3://bucket/images", "DestinationRegion": REGION}),
    "ftp uri": dict(DestinationConfig={"Uri": "ftp://127.0.0.1/images", "DestinationRegion": REGION}),
    # Notification Uris other than http:// and https://
    "ftp": "ftp://127.0.0.1:9/hook",
    "sns topic": "arn:aws:sns:us-east-1:000000000000:topic",
    "file": "file:///tmp/hook",
}


@pytest.fixture(scope="module")
def configured_stream(kinesisvideo, nowhere) -> tuple[str, dict, dict]:
    """A stream with valid configurations of both kinds, which no invalid update may change."""
    stream = create_stream(kinesisvideo, prefix="conf-errors")
    notification = notify_config("http://127.0.0.1:9/hook")
    images = image_config(nowhere, Status="DISABLED")
    kinesisvideo.update_notification_configuration(StreamName=stream, NotificationConfiguration=notification)
    kinesisvideo.update_image_generation_configuration(StreamName=stream, ImageGenerationConfiguration=images)
    return stream, notification, images


@pytest.mark.parametrize("case", INVALID)
def test_invalid_configuration_is_400_invalid_argument_and_changes_nothing(unvalidated, configured_stream, nowhere,
                                                                          case):
    stream, notification, images = configured_stream
    with pytest.raises(ClientError) as excinfo:
        if isinstance(INVALID[case], str):
            unvalidated.update_notification_configuration(StreamName=stream,
                                                          NotificationConfiguration=notify_config(INVALID[case]))
        else:
            config = image_config(nowhere, **INVALID[case])
            unvalidated.update_image_generation_configuration(StreamName=stream, ImageGenerationConfiguration=config)
    assert code_status(excinfo) == ("InvalidArgumentException", 400)
    assert unvalidated.describe_notification_configuration(StreamName=stream)["NotificationConfiguration"] == notification
    assert unvalidated.describe_image_generation_configuration(StreamName=stream)["ImageGenerationConfiguration"] == images


def test_missing_stream_is_404_and_no_retention_is_no_data_retention(kinesisvideo, nowhere):
    calls = {
        "update notification": lambda **key: kinesisvideo.update_notification_configuration(
            **key, NotificationConfiguration=notify_config("http://127.0.0.1:9/hook")),
        "describe notification": kinesisvideo.describe_notification_configuration,
        "update images": lambda **key: kinesisvideo.update_image_generation_configuration(
            **key, ImageGenerationConfiguration=image_config(nowhere)),
        "describe images": kinesisvideo.describe_image_generation_configuration,
    }
    for what, call in calls.items():
        for key in ({"StreamName": "no-such-stream-notif"}, {"StreamARN": missing_arn("no-such-stream-notif")}):
            with pytest.raises(ClientError) as excinfo:
                call(**key)
            assert code_status(excinfo) == ("ResourceNotFoundException", 404), (what, key)

    stream = create_stream(kinesisvideo, retention_hours=0, prefix="no-retention")
    for what in ("update notification", "update images"):
        with pytest.raises(ClientError) as excinfo:
            calls[what](StreamName=stream)
        assert code_status(excinfo) == ("NoDataRetentionException", 400), what


# ------------------------------------------------------------------------------------------------
# 2. Notifications
# ------------------------------------------------------------------------------------------------


def message_of(call) -> dict:
    assert isinstance(call.body, dict) and isinstance(call.body.get("Message"), str), call.raw[:500]
    return json.loads(call.body["Message"])


def test_notifications_are_posted_for_exactly_the_tagged_fragments_uploaded_after_the_update(kinesisvideo, h264_mkv, hooks):
    stream = create_stream(kinesisvideo, prefix="notif")
    arn = stream_arn(kinesisvideo, stream)
    hook = hooks()
    before = assert_full_ack_sequence(upload(kinesisvideo, stream, with_tags(h264_mkv.read_bytes(), {
        0: [(NOTIFY, "")], 3: [(NOTIFY, ""), ("event", "early")]})))
    kinesisvideo.update_notification_configuration(StreamName=stream, NotificationConfiguration=notify_config(hook.url))
    tags = {
        1: [(NOTIFY, ""), ("event", "motion"), ("camera", "front-door")],
        4: [("label", "cat"), (NOTIFY, "yes"), (PREFIX, "ignored"), ("FRAMELOG_FRAGMENT_ID", "n/4")],
        6: [("event", "no notification asked")],
        7: [(NOTIFY, "")],
    }
    payloads = {1: {"event": "motion", "camera": "front-door"}, 4: {"label": "cat"}, 7: {}}
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, with_tags(h264_mkv.read_bytes(), tags),
                                              producer_start=SECOND_UPLOAD_START_MS / 1000))
    fragments = fragments_of(kinesisvideo, stream, numbers)

    hook.wait_for(lambda calls: len(calls) >= len(payloads), timeout=30, what="3 notifications")
    settle(hook, 1.5)
    calls = hook.snapshot()
    messages = [message_of(c) for c in calls]
    notified = [m["FragmentNumber"] for m in messages]
    assert not set(notified) & set(before), notified
    assert notified == [numbers[i] for i in payloads], (notified, numbers)
    for call, message, index in zip(calls, messages, payloads):
        fragment = fragments[index]
        assert call.path == "/frames"
        assert call.headers.get("content-type", "").replace(" ", "").lower() == "text/plain;charset=utf-8", call.headers
        assert call.headers.get("x-amz-sns-message-type") == "Notification", call.headers
        envelope = call.body
        assert envelope["Type"] == "Notification" and envelope["Subject"] == SUBJECT, envelope
        assert envelope["TopicArn"] == hook.url, envelope
        assert isinstance(envelope["MessageId"], str) and envelope["MessageId"], envelope
        assert ISO_MS_Z.match(envelope["Timestamp"]), envelope
        sent = calendar.timegm(time.strptime(envelope["Timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
        assert abs(sent - time.time()) < 120, envelope["Timestamp"]
        assert message == {
            "StreamArn": arn,
            "FragmentNumber": fragment["FragmentNumber"],
            "FragmentStartProducerTimestamp": epoch_ms(fragment["ProducerTimestamp"]),
            "FragmentStartServerTimestamp": epoch_ms(fragment["ServerTimestamp"]),
            "NotificationType": "PERSISTED",
            "NotificationPayload": payloads[index],
        }, (index, envelope)
        assert type(message["FragmentStartProducerTimestamp"]) is int
    assert len({c.body["MessageId"] for c in calls}) == len(calls)
    assert epoch_ms(fragments[1]["ProducerTimestamp"]) == SECOND_UPLOAD_START_MS + 2000


def test_a_failing_receiver_gets_retries_with_the_same_message_id_then_delivery_goes_on(kinesisvideo, h264_mkv, hooks):
    stream = create_stream(kinesisvideo, prefix="notif-retry")
    hook = hooks()
    # Fragment 2 fails all 5 attempts (given up), fragment 5 fails twice then succeeds, fragment 8 succeeds.
    hook.fail_next(7, status=503)
    kinesisvideo.update_notification_configuration(StreamName=stream, NotificationConfiguration=notify_config(hook.url))
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, with_tags(h264_mkv.read_bytes(), {
        2: [(NOTIFY, ""), ("n", "2")], 5: [(NOTIFY, ""), ("n", "5")], 8: [(NOTIFY, ""), ("n", "8")]})))

    hook.wait_for(lambda calls: len(calls) >= 9, timeout=40, what="9 notification calls")
    settle(hook, 3.5)  # longer than any backoff step before a 6th attempt
    calls = hook.snapshot()
    report = [(c.status, numbers.index(message_of(c)["FragmentNumber"]), round(c.at - calls[0].at, 2)) for c in calls]
    assert [(status, index) for status, index, _ in report] == [
        (503, 2)] * 5 + [(503, 5), (503, 5), (200, 5), (200, 8)], report
    by_fragment = {i: [c for c, r in zip(calls, report) if r[1] == i] for i in (2, 5, 8)}
    for index, group in by_fragment.items():
        assert len({c.body["MessageId"] for c in group}) == 1, (index, [c.body["MessageId"] for c in group])
        assert all(message_of(c) == message_of(group[0]) for c in group), index
        assert message_of(group[0])["NotificationPayload"] == {"n": str(index)}
    assert len({group[0].body["MessageId"] for group in by_fragment.values()}) == 3
    # Exponential backoff from ~0.2 s, with jitter of at most half a step.
    gaps = [b.at - a.at for a, b in zip(by_fragment[2], by_fragment[2][1:])]
    for step, gap in enumerate(gaps):
        assert 0.2 * 2**step * 0.5 - 0.05 <= gap <= 0.2 * 2**step * 1.5 + 0.5, (step, gaps)
    assert gaps[-1] > gaps[0], gaps


# ------------------------------------------------------------------------------------------------
# 3. Image generation
# ------------------------------------------------------------------------------------------------


def sampled(source: Path, tagged: set[int], interval_ms: int) -> list[tuple[int, int]]:
    """(cluster index, source presentation ms) of the frames image generation takes: the first frame of the
    first tagged fragment, then every frame at least interval_ms after the last one taken (tagged clusters only)."""
    taken: list[tuple[int, int]] = []
    for t, _ in source_video(source):
        cluster = bisect.bisect_right(FIXTURE_CLUSTER_TIMECODES, t) - 1
        if cluster in tagged and (not taken or t >= taken[-1][1] + interval_ms):
            taken.append((cluster, t))
    return taken


def expected_files(stream: str, fragments: list[dict], picks: list[tuple[int, int]], selector: str, fmt: str,
                   start_ms: int, prefixes: dict[int, str] | None = None) -> dict[str, int]:
    """Relative path of each image -> source ms of its frame."""
    names = {}
    for cluster, t in picks:
        fragment = fragments[cluster]
        assert epoch_ms(fragment["ProducerTimestamp"]) == start_ms + FIXTURE_CLUSTER_TIMECODES[cluster]
        base = epoch_ms(fragment["ProducerTimestamp" if selector == "PRODUCER_TIMESTAMP" else "ServerTimestamp"])
        at = base + t - FIXTURE_CLUSTER_TIMECODES[cluster]
        prefix = [prefixes[cluster]] if prefixes and cluster in prefixes else []
        date = time.strftime("%Y/%m/%d/%H", time.gmtime(at / 1000))
        names["/".join([stream, *prefix, date, f"{at}.{EXTENSION[fmt]}"])] = t
    assert len(names) == len(picks), "two frames map to one file name: the test must choose other fragments"
    return names


def collect_files(root: Path, count: int, timeout: float = 60.0, quiet_s: float = 1.5) -> dict[str, bytes]:
    """Waits for count image files under root (and quiet_s without a new one); every final-named file must be
    a complete picture the first time it is seen. Returns every file under root at the end (path -> bytes)."""
    seen: dict[str, bytes] = {}
    deadline, last_new = time.monotonic() + timeout, time.monotonic()
    while True:
        try:
            for path in root.rglob("*"):
                name = path.relative_to(root).as_posix()
                if name in seen or not FINAL_NAME.match(path.name) or not path.is_file():
                    continue
                data = path.read_bytes()
                complete = data.endswith(b"\xff\xd9" if name.endswith(".jpg") else PNG_END)
                assert complete, f"{name} was visible before it was complete ({len(data)} bytes)"
                seen[name], last_new = data, time.monotonic()
        except FileNotFoundError:
            pass  # a temporary file renamed away while listing
        now = time.monotonic()
        if len(seen) >= count and now - last_new >= quiet_s:
            break
        if now > deadline:
            raise AssertionError(f"{len(seen)} of {count} images after {timeout:.0f} s: {sorted(seen)}")
        time.sleep(0.05)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_files_are_the_source_frames(root: Path, want: dict[str, int], fmt: str, size: tuple[int, int],
                                       source: Path, tmp_path: Path) -> dict[str, bytes]:
    """Exactly the wanted files appear under root: decodable, of the given size, and (when the aspect ratio is
    the source's) each the source frame at its time."""
    files = collect_files(root, len(want))
    assert sorted(files) == sorted(want), (sorted(files), sorted(want))
    names = sorted(want, key=want.get)
    blobs, times = [files[n] for n in names], [want[n] for n in names]
    assert probe_images(blobs, fmt, tmp_path) == [size] * len(blobs)
    if size[0] * 360 != size[1] * 640:
        return files
    thumbs = image_thumbs(blobs, fmt, tmp_path)
    assert len(thumbs) == len(blobs)
    reference = source_thumbs(source)
    index_of = {t: i for i, (t, _) in enumerate(source_video(source))}
    for t, thumb in zip(times, thumbs):
        index = index_of[t]
        candidates = range(max(0, index - NEIGHBOURS), min(len(reference), index + NEIGHBOURS + 1))
        diffs = {i: mean_abs_diff(thumb, reference[i]) for i in candidates}
        report = (t, {i - index: round(d, 2) for i, d in diffs.items()})
        assert min(diffs, key=diffs.get) == index, report
        assert diffs[index] <= MAX_PICTURE_DIFF[fmt], report
    return files


def test_images_of_tagged_fragments_are_written_to_the_directory_with_their_timestamps(kinesisvideo, server,
                                                                                     h264_420_aac_mkv, tmp_path):
    source = h264_420_aac_mkv
    root = images_dir(server, "timestamps")
    stream = create_stream(kinesisvideo, prefix="images")
    assert_full_ack_sequence(upload(kinesisvideo, stream, with_tags(source.read_bytes(), {
        1: [(IMAGES, "")], 2: [(IMAGES, "")]})))
    config = image_config(root.as_uri(), SamplingInterval=700, FormatConfig={"JPEGQuality": "90"})
    kinesisvideo.update_image_generation_configuration(StreamName=stream, ImageGenerationConfiguration=config)
    tags = {1: [(IMAGES, "")], 2: [(IMAGES, ""), ("event", "motion")], 3: [(IMAGES, "")],
            5: [("event", "no images asked"), (PREFIX, "unused")], 6: [(PREFIX, "front-door"), (IMAGES, "")]}
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, with_tags(source.read_bytes(), tags),
                                              producer_start=SECOND_UPLOAD_START_MS / 1000))
    picks = sampled(source, {1, 2, 3, 6}, 700)
    assert len(picks) == 12 and picks[3] == (2, 4100), picks  # the interval runs on across fragments
    want = expected_files(stream, fragments_of(kinesisvideo, stream, numbers), picks, "PRODUCER_TIMESTAMP",
                          "JPEG", SECOND_UPLOAD_START_MS, prefixes={6: "front-door"})

    files = assert_files_are_the_source_frames(root, want, "JPEG", (640, 360), source, tmp_path)
    assert sum("/front-door/" in name for name in files) == 3


SIZES = {
    "png, server timestamps, width only": ("PNG", "SERVER_TIMESTAMP", {"WidthPixels": 320}, (320, 180)),
    "jpeg, producer timestamps, height only": ("JPEG", "PRODUCER_TIMESTAMP", {"HeightPixels": 180}, (320, 180)),
    "jpeg, server timestamps, both": ("JPEG", "SERVER_TIMESTAMP", {"WidthPixels": 320, "HeightPixels": 240}, (320, 240)),
}


@pytest.mark.parametrize("case", SIZES)
def test_image_format_size_and_timestamp_selector(kinesisvideo, server, h264_420_aac_mkv, tmp_path, case):
    fmt, selector, size_fields, size = SIZES[case]
    source = h264_420_aac_mkv
    root = images_dir(server, "sizes")
    stream = create_stream(kinesisvideo, prefix="images-size")
    config = image_config(root.as_uri(), Format=fmt, ImageSelectorType=selector, SamplingInterval=500, **size_fields)
    kinesisvideo.update_image_generation_configuration(StreamName=stream, ImageGenerationConfiguration=config)
    # One tagged fragment: an unpaced upload gives its fragments server timestamps closer together than their
    # length, so SERVER_TIMESTAMP names of frames in neighbouring fragments can coincide.
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, with_tags(source.read_bytes(), {4: [(IMAGES, "")]})))
    picks = sampled(source, {4}, 500)
    want = expected_files(stream, fragments_of(kinesisvideo, stream, numbers), picks, selector, fmt, PRODUCER_START_MS)

    assert_files_are_the_source_frames(root, want, fmt, size, source, tmp_path)


def test_images_to_an_http_destination_come_in_the_consumer_delivery_format(kinesisvideo, h264_420_aac_mkv, hooks, tmp_path):
    source = h264_420_aac_mkv
    hook = hooks()
    stream = create_stream(kinesisvideo, prefix="images-http")
    config = image_config(hook.url, Format="PNG", SamplingInterval=900)
    kinesisvideo.update_image_generation_configuration(StreamName=stream, ImageGenerationConfiguration=config)
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, with_tags(source.read_bytes(), {
        0: [(IMAGES, "")], 1: [(IMAGES, "")]})))
    fragments = fragments_of(kinesisvideo, stream, numbers)
    picks = sampled(source, {0, 1}, 900)
    keys = {t for t, key in source_video(source) if key}

    hook.wait_for_frames(len(picks), timeout=60)
    settle(hook, 1.5)
    calls = hook.snapshot()
    assert all(c.ok and len(c.frames) == 1 for c in calls), summarize_calls(calls)
    frames = [c.frames[0] for c in calls]
    assert [ms(f["FrameTimestamp"]) for f in frames] == [PRODUCER_START_MS + t for _, t in picks], summarize_calls(calls)
    for call, frame, (cluster, t) in zip(calls, frames, picks):
        assert call.headers.get("content-type", "").startswith("application/json")
        assert call.body["StreamName"] == stream and call.body["ConsumerName"] == "$image-generation", call.body.keys()
        assert frame["StreamName"] == stream and frame["Format"] == "PNG"
        assert frame["FragmentNumber"] == numbers[cluster]
        assert ms(frame["ProducerTimestamp"]) == epoch_ms(fragments[cluster]["ProducerTimestamp"])
        assert ms(frame["ServerTimestamp"]) == epoch_ms(fragments[cluster]["ServerTimestamp"])
        assert frame["KeyFrame"] is (t in keys), {k: v for k, v in frame.items() if k != "Data"}
    assert_pictures_are_the_source_frames(frames, "PNG", source, tmp_path)


def test_disabled_configurations_send_nothing(kinesisvideo, server, h264_mkv, hooks):
    hook = hooks()
    root = images_dir(server, "disabled")
    stream = create_stream(kinesisvideo, prefix="disabled")
    kinesisvideo.update_notification_configuration(StreamName=stream,
                                                   NotificationConfiguration=notify_config(hook.url, "DISABLED"))
    kinesisvideo.update_image_generation_configuration(
        StreamName=stream, ImageGenerationConfiguration=image_config(root.as_uri(), Status="DISABLED"))
    both = [(NOTIFY, ""), (IMAGES, "")]
    assert_full_ack_sequence(upload(kinesisvideo, stream, with_tags(h264_mkv.read_bytes(), {i: both for i in range(10)})))
    time.sleep(3.0)
    assert hook.snapshot() == [], summarize_calls(hook.snapshot())
    assert [p for p in root.rglob("*")] == []


def test_image_generation_resumes_after_kill_9_without_missing_or_extra_files(private_server, h264_420_aac_mkv):
    source = h264_420_aac_mkv
    root = images_dir(private_server, "kill")
    kvs = private_server.kinesisvideo_client()
    stream = create_stream(kvs, prefix="images-kill")
    config = image_config(root.as_uri(), SamplingInterval=200)
    kvs.update_image_generation_configuration(StreamName=stream, ImageGenerationConfiguration=config)
    numbers = assert_full_ack_sequence(upload(kvs, stream, with_tags(source.read_bytes(), {
        i: [(IMAGES, "")] for i in range(10)})))
    want = expected_files(stream, fragments_of(kvs, stream, numbers), sampled(source, set(range(10)), 200),
                          "PRODUCER_TIMESTAMP", "JPEG", PRODUCER_START_MS)
    deadline = time.monotonic() + 60
    while len(list(root.rglob("*.jpg"))) < len(want) // 4:
        assert time.monotonic() < deadline, f"{len(list(root.rglob('*.jpg')))} images after 60 s"
        time.sleep(0.02)
    private_server.kill()
    before = len(list(root.rglob("*.jpg")))
    assert before < len(want), "every image was written before the kill: nothing left to resume"

    private_server.start()
    kvs = private_server.kinesisvideo_client()
    assert kvs.describe_image_generation_configuration(StreamName=stream)["ImageGenerationConfiguration"] == config
    files = collect_files(root, len(want))
    assert sorted(files) == sorted(want), (before, sorted(set(files) ^ set(want)))
