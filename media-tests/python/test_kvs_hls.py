"""KVS HLS playback (fragmented MP4) end to end: GetHLSStreamingSessionURL through boto3, then the /hls/v1 playlist
and segment URLs fetched over plain HTTP as a browser player does, checked with an M3U8 parser, ffprobe and ffmpeg.

Expected values come from docs/spec/kvs.md#hls-and-dash-sessions (session parameters, modes, errors, URLs,
playlist shapes), from RFC 8216 (HLS) and RFC 9110 (byte ranges), and from the test media itself: codec
configuration, resolution, frame counts and first timestamps are read from the source file with ffprobe. Uploads are
RELATIVE with the producer start PRODUCER_START_MS, so fragment k starts at PRODUCER_START_MS + 2000 * k and the MP4
timeline (absolute producer time) starts at the producer start.
"""

from __future__ import annotations

import json
import math
import re
import time
from urllib.parse import urljoin, urlsplit

import pytest
from botocore.exceptions import ClientError

from hls_helpers import (
    FRAGMENT_TAGS,
    NO_FRAGMENTS_MESSAGE,
    UPLOAD_RANGE_MS,
    VOD_UPLOADS,
    assert_cors_preflight,
    brief,
    counted_streams,
    fetch,
    ffmpeg_decode_errors,
    first_pts_ms,
    get_segment,
    hls_client,
    iso8601_ms,
    on_demand_url,
    query,
    session_url,
    source_media,
    tampered,
    video_playlist,
    with_query,
)
from kvs_helpers import (
    FRAGMENT_COUNT,
    PRODUCER_START_MS,
    assert_full_ack_sequence,
    at_ms,
    create_stream,
    epoch_ms,
    frames,
    list_all_fragments,
    producer_range,
    server_range,
    upload,
)
from media_fixtures import (
    FIXTURE_CLUSTER_TIMECODES,
    ID_TRACKS,
    HandTrack,
    ebml_element,
    ebml_text,
    ebml_uint,
    mkv_cluster,
    mkv_header,
    with_tags,
)


# ------------------------------------------------------------------------------------------------
# Helpers (the shared ones are in hls_helpers.py)
# ------------------------------------------------------------------------------------------------


def session_error(kinesisvideo, stream: str, **params) -> tuple[str, int, str]:
    """(error code, HTTP status, message) of a GetHLSStreamingSessionURL call that must fail."""
    client = hls_client(kinesisvideo, stream, validate=False)
    with pytest.raises(ClientError) as excinfo:
        client.get_hls_streaming_session_url(StreamName=stream, **params)
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def kind_of(track: int) -> str:
    return "video" if track == 1 else "audio"


# ------------------------------------------------------------------------------------------------
# ON_DEMAND playlists and segments
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_master_playlist_names_codecs_resolution_and_audio_rendition(vod, fixture):
    uploaded = vod(fixture)
    source = source_media(uploaded.source)
    master = uploaded.master

    assert len(master.variants) == 1, brief(master.text)
    variant, variant_url = master.variants[0]
    assert variant["CODECS"].lower() == source.codecs.lower(), brief(master.text)
    assert variant["CODECS"].startswith("avc1." if source.streams["video"]["codec_name"] == "h264" else "hvc1.")
    video = source.streams["video"]
    assert variant["RESOLUTION"] == f"{video['width']}x{video['height']}", brief(master.text)
    assert int(variant["BANDWIDTH"]) > 0, brief(master.text)
    assert query(variant_url)["TrackNumber"] == "1", brief(master.text)
    if "audio" in source.streams:
        assert len(master.renditions) == 1, brief(master.text)
        audio = master.renditions[0]
        assert audio["TYPE"] == "AUDIO", brief(master.text)
        assert audio["GROUP-ID"] == variant["AUDIO"], brief(master.text)
        assert query(urljoin(master.url, audio["URI"]))["TrackNumber"] == "2", brief(master.text)
    else:
        assert master.renditions == [] and "AUDIO" not in variant, brief(master.text)
    assert sorted(uploaded.tracks) == sorted([1, 2] if "audio" in source.streams else [1])


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_vod_media_playlists_list_every_fragment_once(vod, fixture):
    uploaded = vod(fixture)
    length_s = source_media(uploaded.source).length_s

    for number, track in uploaded.tracks.items():
        playlist = track.playlist
        text = brief(playlist.text)
        assert playlist.tags.get("EXT-X-PLAYLIST-TYPE") == "VOD", text
        assert playlist.endlist, text
        assert int(playlist.tags["EXT-X-MEDIA-SEQUENCE"]) >= 0, text
        # One segment per stored fragment, in upload order, each of this track.
        assert [s.fragment_number for s in playlist.segments] == uploaded.numbers, text
        assert {query(s.url)["TrackNumber"] for s in playlist.segments} == {str(number)}, text
        durations = [s.duration for s in playlist.segments]
        assert abs(sum(durations) - length_s) <= 0.1, (number, durations, length_s)
        assert int(playlist.tags["EXT-X-TARGETDURATION"]) >= math.ceil(max(durations)), text


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_vod_tracks_decode_cleanly_to_every_source_frame(vod, fixture):
    uploaded = vod(fixture)
    source = source_media(uploaded.source)

    for number, track in uploaded.tracks.items():
        streams = counted_streams(track.path)
        expected = source.streams[kind_of(number)]
        assert [(s["codec_type"], s["codec_name"]) for s in streams] == [(kind_of(number), expected["codec_name"])]
        assert int(streams[0]["nb_read_frames"]) == int(expected["nb_read_frames"]), (number, streams)
        assert ffmpeg_decode_errors(track.path) == "", number


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_vod_tracks_start_at_the_producer_timestamp(vod, fixture):
    # The MP4 timeline is the absolute producer time in ms: a track's first frame is presented at the producer
    # start plus the frame's own offset in the source (0 for every fixture track).
    uploaded = vod(fixture)
    source = source_media(uploaded.source)

    for number, track in uploaded.tracks.items():
        kind = kind_of(number)
        assert first_pts_ms(track.path) == {kind: PRODUCER_START_MS + source.first_pts_ms[kind]}, number


@pytest.mark.parametrize("fixture", list(VOD_UPLOADS))
def test_init_segment_uri_is_the_same_for_every_segment_while_the_codec_data_is(vod, fixture):
    # The fixtures keep one codec configuration throughout, so players can cache one init segment per track.
    for number, track in vod(fixture).tracks.items():
        playlist = track.playlist
        assert playlist.map_uris, brief(playlist.text)
        assert len(set(playlist.map_uris)) == 1, (number, sorted(set(playlist.map_uris)))
        assert query(urljoin(playlist.url, playlist.map_uris[0]))["TrackNumber"] == str(number)


@pytest.mark.parametrize(
    "selector_type, mode, discontinuities",
    [
        # KVS's default (docs/spec/kvs.md#session-parameters): ALWAYS with SERVER_TIMESTAMP, NEVER with
        # PRODUCER_TIMESTAMP.
        pytest.param("PRODUCER_TIMESTAMP", None, False, id="producer-default-never"),
        pytest.param("SERVER_TIMESTAMP", None, True, id="server-default-always"),
        pytest.param("PRODUCER_TIMESTAMP", "ALWAYS", True, id="producer-always"),
        pytest.param("SERVER_TIMESTAMP", "NEVER", False, id="server-never"),
        # A contiguous upload has no gap (its A/V fragments overlap by under 50 ms).
        pytest.param("PRODUCER_TIMESTAMP", "ON_DISCONTINUITY", False, id="producer-on-discontinuity"),
    ],
)
def test_discontinuity_mode(vod, kinesisvideo, selector_type, mode, discontinuities):
    uploaded = vod("h264_aac_mkv")
    if selector_type == "PRODUCER_TIMESTAMP":
        selector = producer_range(PRODUCER_START_MS, PRODUCER_START_MS + UPLOAD_RANGE_MS)
    else:
        server_ms = [epoch_ms(f["ServerTimestamp"]) for f in list_all_fragments(kinesisvideo, uploaded.stream)]
        selector = server_range(min(server_ms), max(server_ms))
    params = {"DiscontinuityMode": mode} if mode else {}

    url = session_url(kinesisvideo, uploaded.stream, PlaybackMode="ON_DEMAND", HLSFragmentSelector=selector, **params)
    playlist = video_playlist(url)

    assert [s.fragment_number for s in playlist.segments] == uploaded.numbers, brief(playlist.text)
    assert [s.discontinuity for s in playlist.segments] == [discontinuities] * FRAGMENT_COUNT, brief(playlist.text)
    assert playlist.segments[0].map_uri is not None, brief(playlist.text)


# ------------------------------------------------------------------------------------------------
# LIVE
# ------------------------------------------------------------------------------------------------


def test_live_playlist_is_a_sliding_window_of_the_newest_fragments(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo, prefix="hls-live")
    # LIVE needs a fragment that arrived in the last 30 s (server time); producer times only have to grow.
    first_start = time.time() - 40
    first = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv, producer_start=first_start))
    url = session_url(kinesisvideo, stream, PlaybackMode="LIVE", MaxMediaPlaylistFragmentResults=3)

    before = video_playlist(url)
    second = assert_full_ack_sequence(upload(kinesisvideo, stream, h264_mkv, producer_start=first_start + 20))
    after = video_playlist(url)

    for playlist, numbers in ((before, first), (after, second)):
        assert [s.fragment_number for s in playlist.segments] == numbers[-3:], brief(playlist.text)
        assert not playlist.endlist, brief(playlist.text)
        assert "EXT-X-PLAYLIST-TYPE" not in playlist.tags, brief(playlist.text)
        assert re.fullmatch(r"\d+", playlist.tags["EXT-X-MEDIA-SEQUENCE"]), brief(playlist.text)
    # RFC 8216 §6.2.1: a segment keeps its media sequence number, so the window moved by the 10 new fragments.
    old_sequence, new_sequence = int(before.tags["EXT-X-MEDIA-SEQUENCE"]), int(after.tags["EXT-X-MEDIA-SEQUENCE"])
    assert new_sequence > old_sequence
    assert new_sequence - old_sequence == len(second), (old_sequence, new_sequence)
    assert after.segments[-1].fragment_number == second[-1]


# ------------------------------------------------------------------------------------------------
# Fragment timestamps and fragment metadata
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tagged_upload(kinesisvideo, h264_mkv) -> tuple[str, list[str]]:
    """h264.mkv with FRAGMENT_TAGS written before clusters 3 and 7: (stream, fragment numbers)."""
    stream = create_stream(kinesisvideo, prefix="hls-tags")
    numbers = assert_full_ack_sequence(upload(kinesisvideo, stream, with_tags(h264_mkv.read_bytes(), FRAGMENT_TAGS)))
    return stream, numbers


def test_display_fragment_timestamp_and_fragment_metadata(kinesisvideo, tagged_upload):
    stream, numbers = tagged_upload
    listed = list_all_fragments(kinesisvideo, stream)
    producer_ms = {f["FragmentNumber"]: epoch_ms(f["ProducerTimestamp"]) for f in listed}

    playlist = video_playlist(on_demand_url(kinesisvideo, stream, DisplayFragmentTimestamp="ALWAYS"))

    assert [s.fragment_number for s in playlist.segments] == numbers, brief(playlist.text)
    for index, segment in enumerate(playlist.segments):
        start = iso8601_ms(producer_ms[segment.fragment_number])
        assert start == iso8601_ms(PRODUCER_START_MS + FIXTURE_CLUSTER_TIMECODES[index])
        assert segment.program_date_times == [start], (index, brief(playlist.text))
        if index == 0:
            continue  # the muxer's own Tags (ENCODER) precede the first cluster
        sent = FRAGMENT_TAGS.get(index, [])
        assert [(d["X-KVS-NAME"], d["X-KVS-VALUE"]) for d in segment.dateranges] == sent, (index, brief(playlist.text))
        assert all(d["START-DATE"] == start for d in segment.dateranges), (index, brief(playlist.text))
    ids = [d["ID"] for s in playlist.segments for d in s.dateranges]
    assert len(ids) == len(set(ids)), ids


def test_dateranges_come_with_a_program_date_time(kinesisvideo, tagged_upload):
    # RFC 8216 §4.3.2.7: a playlist with an EXT-X-DATERANGE tag MUST also contain an EXT-X-PROGRAM-DATE-TIME tag,
    # whatever DisplayFragmentTimestamp (default NEVER) says.
    stream, _ = tagged_upload

    playlist = video_playlist(on_demand_url(kinesisvideo, stream))

    has_dateranges = any(s.dateranges for s in playlist.segments)
    has_program_date_time = any(s.program_date_times for s in playlist.segments)
    assert has_program_date_time or not has_dateranges, brief(playlist.text)


# ------------------------------------------------------------------------------------------------
# GetHLSStreamingSessionURL errors
# ------------------------------------------------------------------------------------------------


def test_live_on_a_stream_without_fragments_is_resource_not_found(kinesisvideo):
    stream = create_stream(kinesisvideo, prefix="hls-empty")

    code, status, _ = session_error(kinesisvideo, stream, PlaybackMode="LIVE")

    assert (code, status) == ("ResourceNotFoundException", 404)


def test_on_demand_range_without_fragments_is_resource_not_found(kinesisvideo, vod):
    stream = vod("h264_aac_mkv").stream
    hour = 3_600_000
    selector = producer_range(PRODUCER_START_MS - 2 * hour, PRODUCER_START_MS - hour)

    error = session_error(kinesisvideo, stream, PlaybackMode="ON_DEMAND", HLSFragmentSelector=selector)

    assert error == ("ResourceNotFoundException", 404, NO_FRAGMENTS_MESSAGE)


def test_session_on_a_missing_stream_is_resource_not_found(kinesisvideo, vod):
    # The data endpoint comes from an existing stream; the call names one that does not exist.
    client = hls_client(kinesisvideo, vod("h264_aac_mkv").stream)

    with pytest.raises(ClientError) as excinfo:
        client.get_hls_streaming_session_url(StreamName="hls-no-such-stream", PlaybackMode="LIVE")

    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


WHOLE_UPLOAD = producer_range(PRODUCER_START_MS, PRODUCER_START_MS + UPLOAD_RANGE_MS)
START_ONLY = {
    "FragmentSelectorType": "PRODUCER_TIMESTAMP",
    "TimestampRange": {"StartTimestamp": at_ms(PRODUCER_START_MS)},
}


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"PlaybackMode": "LIVE", "HLSFragmentSelector": WHOLE_UPLOAD}, id="live-with-range"),
        pytest.param({"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": START_ONLY}, id="on-demand-without-end"),
        pytest.param({"PlaybackMode": "ON_DEMAND"}, id="on-demand-without-selector"),
        pytest.param(
            {
                "PlaybackMode": "ON_DEMAND",
                "HLSFragmentSelector": producer_range(PRODUCER_START_MS, PRODUCER_START_MS - 1),
            },
            id="end-before-start",
        ),
        pytest.param(
            {
                "PlaybackMode": "ON_DEMAND",
                "HLSFragmentSelector": producer_range(PRODUCER_START_MS, PRODUCER_START_MS + 24 * 3_600_000 + 1),
            },
            id="range-over-24-hours",
        ),
        pytest.param({"PlaybackMode": "LIVE_REPLAY"}, id="live-replay-without-start"),
        pytest.param(
            {"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": WHOLE_UPLOAD, "Expires": 10}, id="expires-10"
        ),
        pytest.param(
            {"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": WHOLE_UPLOAD, "Expires": 43_201}, id="expires-43201"
        ),
        pytest.param(
            {"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": WHOLE_UPLOAD, "ContainerFormat": "MP4"},
            id="unknown-container-format",
        ),
        pytest.param(
            {"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": WHOLE_UPLOAD, "MaxMediaPlaylistFragmentResults": 0},
            id="max-results-0",
        ),
        pytest.param(
            {"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": WHOLE_UPLOAD, "MaxMediaPlaylistFragmentResults": 5001},
            id="max-results-5001",
        ),
    ],
)
def test_invalid_session_request_is_invalid_argument(kinesisvideo, vod, params):
    # On a stream with fragments in the range, so only the refused parameter can be the reason.
    code, status, _ = session_error(kinesisvideo, vod("h264_aac_mkv").stream, **params)

    assert (code, status) == ("InvalidArgumentException", 400)


def test_zero_retention_stream_is_no_data_retention(kinesisvideo, h264_mkv):
    stream = create_stream(kinesisvideo, retention_hours=0, prefix="hls-r0")
    result = upload(kinesisvideo, stream, h264_mkv)
    assert result.status == 200 and result.events("RECEIVED"), result.ack_lines

    code, status, _ = session_error(kinesisvideo, stream, PlaybackMode="LIVE")

    assert (code, status) == ("NoDataRetentionException", 400)


def one_cluster_upload(kinesisvideo, header: bytes, prefix: str) -> str:
    """A stream holding one fragment: `header` (one video track) and one second of hand-made frames."""
    stream = create_stream(kinesisvideo, prefix=prefix)
    body = header + mkv_cluster(0, frames(1, range(0, 1000, 40), seed=41))
    assert_full_ack_sequence(upload(kinesisvideo, stream, body), [0])
    return stream


def test_vp8_stream_is_unsupported_stream_media_type(kinesisvideo):
    stream = one_cluster_upload(kinesisvideo, mkv_header([HandTrack(1, "V_VP8", 1)]), "hls-vp8")

    code, status, _ = session_error(kinesisvideo, stream, PlaybackMode="LIVE")

    assert (code, status) == ("UnsupportedStreamMediaTypeException", 400)


def h264_header_without_codec_private() -> bytes:
    """mkv_header with one H.264 TrackEntry that has no CodecPrivate element at all."""
    entry = ebml_element(
        0xAE,
        ebml_uint(0xD7, 1)
        + ebml_uint(0x73C5, 0x1001, width=8)
        + ebml_uint(0x83, 1)
        + ebml_text(0x86, "V_MPEG4/ISO/AVC")
        + ebml_element(0xE0, ebml_uint(0xB0, 640) + ebml_uint(0xBA, 360)),
    )
    no_tracks = mkv_header([])
    empty = ebml_element(ID_TRACKS, b"")
    assert no_tracks.endswith(empty)
    return no_tracks[: -len(empty)] + ebml_element(ID_TRACKS, entry)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(h264_header_without_codec_private(), id="no-codec-private-element"),
        pytest.param(mkv_header([HandTrack(1, "V_MPEG4/ISO/AVC", 1, b"")]), id="empty-codec-private"),
    ],
)
def test_h264_without_codec_private_data_is_missing_codec_private_data(kinesisvideo, header):
    stream = one_cluster_upload(kinesisvideo, header, "hls-nocpd")

    code, status, _ = session_error(kinesisvideo, stream, PlaybackMode="LIVE")

    assert (code, status) == ("MissingCodecPrivateDataException", 400)


# ------------------------------------------------------------------------------------------------
# Playback URLs: token, parameters, CORS, byte ranges
# ------------------------------------------------------------------------------------------------


def playback_urls(vod) -> dict[str, str]:
    """One URL of each kind from the A/V upload's video playlist."""
    uploaded = vod("h264_aac_mkv")
    playlist = uploaded.tracks[1].playlist
    return {
        "master": uploaded.master.url,
        "media-playlist": playlist.url,
        "init-segment": urljoin(playlist.url, playlist.segments[0].map_uri),
        "media-segment": playlist.segments[0].url,
    }


@pytest.mark.parametrize("kind", ["master", "media-playlist", "init-segment", "media-segment"])
def test_tampered_session_token_is_403(vod, kind):
    url = playback_urls(vod)[kind]
    assert fetch(url).status == 200

    response = fetch(tampered(url))

    assert response.status == 403, (response.status, response.body[:300])


@pytest.mark.parametrize("kind", ["media-playlist", "init-segment", "media-segment"])
def test_missing_track_number_is_400(vod, kind):
    url = playback_urls(vod)[kind]

    response = fetch(with_query(url, drop="TrackNumber"))

    assert response.status == 400, (response.status, response.body[:300])


@pytest.mark.parametrize("kind", ["master", "media-segment"])
def test_cors_preflight_is_ok_and_allows_get_with_range(vod, kind):
    assert_cors_preflight(playback_urls(vod)[kind])


def test_media_segment_byte_ranges(vod):
    url = playback_urls(vod)["media-segment"]
    full = get_segment(url)
    assert len(full) > 100

    first = fetch(url, headers={"Range": "bytes=0-99"})
    suffix = fetch(url, headers={"Range": "bytes=-100"})
    beyond = fetch(url, headers={"Range": f"bytes={len(full)}-"})

    assert first.status == 206, first.status
    assert first.headers.get("content-range") == f"bytes 0-99/{len(full)}", first.headers
    assert first.body == full[:100]
    assert suffix.status == 206, suffix.status
    assert suffix.headers.get("content-range") == f"bytes {len(full) - 100}-{len(full) - 1}/{len(full)}"
    assert suffix.body == full[-100:]
    assert beyond.status == 416, beyond.status
    assert beyond.headers.get("content-range") == f"bytes */{len(full)}", beyond.headers


def test_aws_cli_get_hls_streaming_session_url_plays_the_upload(aws_cli, vod):
    # The AWS CLI v1 sends whole-second timestamps, so the range is widened to whole seconds.
    uploaded = vod("h264_aac_mkv")
    selector = {
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {
            "StartTimestamp": PRODUCER_START_MS // 1000,
            "EndTimestamp": (PRODUCER_START_MS + UPLOAD_RANGE_MS) // 1000 + 1,
        },
    }

    answer = aws_cli.json(
        "kinesis-video-archived-media",
        "get-hls-streaming-session-url",
        "--stream-name",
        uploaded.stream,
        "--playback-mode",
        "ON_DEMAND",
        "--hls-fragment-selector",
        json.dumps(selector),
    )

    url = answer["HLSStreamingSessionURL"]
    assert urlsplit(url).path.endswith("/hls/v1/getHLSMasterPlaylist.m3u8"), answer
    playlist = video_playlist(url)
    assert [s.fragment_number for s in playlist.segments] == uploaded.numbers, brief(playlist.text)
