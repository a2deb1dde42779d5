"""AWS's own KVS producer against framelog: the kvssink GStreamer plugin, which cameras run, streams a live test
pattern, and every frame it was given must come back from the archive, byte for byte and in order.

kvssink drives the whole producer state machine of AWS's SDK on its own (DescribeStream, GetDataEndpoint,
PutMedia with its strict ack parser, the EOS flush), so a server answer it does not accept shows up here even
when boto3 and the hand-written PutMedia clients of the other suites are happy. The plugin is built from source
by scripts/kvssink.sh (kvssink_helpers.py); a plugin that cannot be built or loaded fails the test.
"""

from __future__ import annotations

import re
import time

import pytest

from kvs_helpers import archive, create_stream, list_all_fragments
from kvssink_helpers import CameraPattern, KvssinkRun, kvssink_plugin_dir, mkv_cluster_blocks, stream_test_pattern
from media_fixtures import parse_mkv_chunks, video_frame_count

# 10 s of camera at 30 fps with a key frame every 1.5 s: six full fragments and a partial last one, which only
# arrives if kvssink's end-of-stream flush reaches the server and is acknowledged.
PATTERN = CameraPattern(frames=300, fps=30, key_int=45)


@pytest.fixture(scope="module")
def kvssink_plugin():
    return kvssink_plugin_dir()


def failure_context(run: KvssinkRun, server) -> str:
    return f"\n--- kvssink output (tail) ---\n{run.log_tail()}\n--- framelog log (tail) ---\n{server.log_tail()}"


def test_kvssink_stream_comes_back_frame_for_frame(private_server, kvssink_plugin, tmp_path):
    kinesisvideo = private_server.kinesisvideo_client()
    stream = create_stream(kinesisvideo, prefix="kvssink")
    started_s = time.time()

    run = stream_test_pattern(private_server.endpoint, stream, kvssink_plugin, tmp_path, PATTERN)
    context = failure_context(run, private_server)
    assert run.returncode == 0, f"gst-launch-1.0 with kvssink exited {run.returncode}{context}"
    # The SDK logs every ack line it receives (its default DEBUG log): an ERROR ack means the server refused part
    # of the upload, even if a retry later made up for it.
    acks = re.findall(r'"EventType":"(\w+)"', run.log)
    assert "ERROR" not in acks, f"the server sent kvssink ERROR acks{context}"

    sent = mkv_cluster_blocks(run.sent.read_bytes())
    sent_frames = [block.payload for cluster in sent for block in cluster]
    # The reference copy is the yardstick: make sure it holds the whole pattern before comparing against it.
    assert len(sent_frames) == PATTERN.frames, f"the tee copy holds {len(sent_frames)} frames, not {PATTERN.frames}"

    fragments = list_all_fragments(kinesisvideo, stream)
    assert fragments, f"kvssink finished but the server lists no fragment for {stream}{context}"
    numbers = [f["FragmentNumber"] for f in fragments]
    response = archive(kinesisvideo, stream).get_media_for_fragment_list(StreamName=stream, Fragments=numbers)
    media = response["Payload"].read()
    (tmp_path / "received.mkv").write_bytes(media)
    chunks = parse_mkv_chunks(media)
    assert [c.fragment_number for c in chunks] == numbers, "GetMediaForFragmentList: not one chunk per fragment"

    received = mkv_cluster_blocks(media)
    received_frames = [block.payload for cluster in received for block in cluster]
    if received_frames != sent_frames:
        first_difference = next(
            (i for i, (a, b) in enumerate(zip(sent_frames, received_frames)) if a != b),
            min(len(sent_frames), len(received_frames)),
        )
        pytest.fail(
            f"kvssink was given {len(sent_frames)} frames; the server returned {len(received_frames)} in "
            f"{len(fragments)} fragments (frames per fragment: {[len(c) for c in received]}), and they first "
            f"differ at frame {first_difference}{context}",
            pytrace=False,
        )

    # One fragment per GOP (kvssink's key-frame fragmentation), each opening on its key frame.
    assert len(received) == PATTERN.key_frames, (
        f"expected {PATTERN.key_frames} fragments (one per key frame), got {len(received)}: "
        f"{[len(c) for c in received]} frames each{context}"
    )
    assert all(cluster[0].keyframe for cluster in received), "a fragment does not start with a key frame"
    assert acks.count("PERSISTED") == len(fragments), f"kvssink saw {acks.count('PERSISTED')} PERSISTED acks{context}"
    # kvssink stamps a camera's frames with wall-clock time: the fragments sit in this run, in order.
    producer_s = [f["ProducerTimestamp"].timestamp() for f in fragments]
    assert producer_s == sorted(producer_s)
    assert started_s - 5 <= producer_s[0] and producer_s[-1] <= time.time() + 5, producer_s
    # An independent decoder sees the same number of frames in what the server returned.
    assert video_frame_count(tmp_path / "received.mkv") == PATTERN.frames
