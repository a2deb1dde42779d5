//! H.265 streams asked for as H.264 (`"VideoCodec": "H264"`), through the handlers in process:
//! what HLS, DASH and LL-HLS sessions declare and serve, that a transcoded fragment is made once
//! for every viewer, and that H.264 streams and sessions without the member are untouched.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use framelog_imaging::test_media::colour_bars_mkv;
use framelog_media::package::Codec;
use framelog_store::ManualClock;
use serde_json::{Value, json};

use crate::kvs::KvsCtx;
use crate::kvs::tests::{call, context};

const START_MS: u64 = 1_795_651_512_000;

/// Two 1-second fragments of colour bars (10 fps, a key frame each) in `codec`, uploaded.
async fn upload(ctx: &KvsCtx, stream: &str, codec: Codec) {
    call(ctx, "createStream", json!({"StreamName": stream, "DataRetentionInHours": 24})).expect("created");
    let body = colour_bars_mkv(codec, 20, 10, START_MS);
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-stream-name", stream.parse().expect("header"));
    let response = crate::kvs::put_media::handle(State(ctx.clone()), headers, Body::from(body)).await;
    let acks = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("acks");
    let persisted = String::from_utf8_lossy(&acks).matches("PERSISTED").count();
    assert_eq!(persisted, 2, "{}", String::from_utf8_lossy(&acks));
}

fn session(ctx: &KvsCtx, operation: &str, extra: Value) -> Result<String, crate::error::ApiError> {
    let selector = json!({"FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": START_MS / 1000, "EndTimestamp": START_MS / 1000 + 60}});
    let mut request = json!({"StreamName": "cam", "PlaybackMode": "ON_DEMAND",
        "HLSFragmentSelector": selector, "DASHFragmentSelector": selector});
    if operation == "getHLSStreamingSessionURL" {
        request.as_object_mut().expect("object").remove("DASHFragmentSelector");
    } else {
        request.as_object_mut().expect("object").remove("HLSFragmentSelector");
    }
    if let (Some(request), Some(extra)) = (request.as_object_mut(), extra.as_object()) {
        request.extend(extra.clone());
    }
    let answer = call(ctx, operation, request)?;
    let url = answer.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).expect("url");
    Ok(url.split("SessionToken=").nth(1).expect("token").to_string())
}

/// GET /hls/v1/<file> or /dash/v1/<file>: status and body.
async fn get(ctx: &KvsCtx, token: &str, file: &str, query: &str) -> (StatusCode, Vec<u8>) {
    let uri: Uri = format!("/hls/v1/{file}?SessionToken={token}&{query}").parse().expect("uri");
    let response = super::handle(State(ctx.clone()), Path(file.to_string()), uri, HeaderMap::new()).await;
    let status = response.status();
    (status, axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body").to_vec())
}

async fn text(ctx: &KvsCtx, token: &str, file: &str, query: &str) -> String {
    let (status, body) = get(ctx, token, file, query).await;
    assert_eq!(status, StatusCode::OK, "{file}: {}", String::from_utf8_lossy(&body));
    String::from_utf8(body).expect("text")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The H.264 NAL unit types in an fMP4 segment's `mdat` (4-byte length-prefixed NAL units).
fn h264_nal_types(segment: &[u8]) -> Vec<u8> {
    let at = segment.windows(4).position(|w| w == b"mdat").expect("mdat");
    let size = u32::from_be_bytes(segment[at - 4..at].try_into().expect("size")) as usize;
    let mut data = &segment[at + 4..at - 4 + size];
    let mut types = Vec::new();
    while data.len() > 4 {
        let length = u32::from_be_bytes(data[..4].try_into().expect("length")) as usize;
        types.push(data[4] & 0x1F);
        data = &data[(4 + length).min(data.len())..];
    }
    types
}

/// The first fragment number a media playlist lists.
fn first_fragment(playlist: &str) -> String {
    let at = playlist.find("FragmentNumber=").expect("a segment") + "FragmentNumber=".len();
    playlist[at..].split(['&', '\n', '"']).next().expect("number").to_string()
}

fn setup() -> (tempfile::TempDir, KvsCtx) {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Arc::new(ManualClock::new(START_MS + 5_000));
    let ctx = context(dir.path(), &clock);
    (dir, ctx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_stream_asked_for_as_h264_is_served_as_h264() {
    let (_dir, ctx) = setup();
    upload(&ctx, "cam", Codec::Hevc).await;
    let plain = session(&ctx, "getHLSStreamingSessionURL", json!({})).expect("session");
    let h264 = session(&ctx, "getHLSStreamingSessionURL", json!({"VideoCodec": "H264"})).expect("session");
    assert!(text(&ctx, &plain, "getHLSMasterPlaylist.m3u8", "").await.contains("CODECS=\"hvc1."));
    let master = text(&ctx, &h264, "getHLSMasterPlaylist.m3u8", "").await;
    assert!(master.contains("CODECS=\"avc1.") && !master.contains("hvc1"), "{master}");
    let (_, init) = get(&ctx, &h264, "getMP4InitFragment.mp4", "TrackNumber=1").await;
    assert!(contains(&init, b"avcC") && !contains(&init, b"hvcC"), "an H.264 init segment");
    let playlist = text(&ctx, &h264, "getHLSMediaPlaylist.m3u8", "TrackNumber=1").await;
    let plain_playlist = text(&ctx, &plain, "getHLSMediaPlaylist.m3u8", "TrackNumber=1").await;
    assert_eq!(playlist.matches("#EXTINF:").count(), 2, "{playlist}");
    assert_eq!(
        playlist.lines().filter(|l| l.starts_with("#EXTINF")).collect::<Vec<_>>(),
        plain_playlist.lines().filter(|l| l.starts_with("#EXTINF")).collect::<Vec<_>>(),
        "the same segments and durations"
    );
    let number = first_fragment(&playlist);
    let query = format!("TrackNumber=1&FragmentNumber={number}");
    // Viewers asking at once share one transcode and get the same bytes.
    let started = ctx.transcoding.pool.started();
    let (first, second) = tokio::join!(
        get(&ctx, &h264, "getMP4MediaFragment.mp4", &query),
        get(&ctx, &h264, "getMP4MediaFragment.mp4", &query)
    );
    assert_eq!(first.0, StatusCode::OK, "{}", String::from_utf8_lossy(&first.1));
    assert_eq!(first.1, second.1);
    assert_eq!(ctx.transcoding.pool.started(), started + 1, "one transcode for both");
    // Its init segment comes from the same transcoded fragment, kept, not made again.
    let (status, init) = get(&ctx, &h264, "getMP4InitFragment.mp4", &query).await;
    assert_eq!((status, ctx.transcoding.pool.started()), (StatusCode::OK, started + 1));
    assert!(contains(&init, b"avcC"));
    let (_, stored) = get(&ctx, &plain, "getMP4MediaFragment.mp4", &query).await;
    assert_ne!(first.1, stored, "the transcoded segment is not the stored one");
    assert!(h264_nal_types(&first.1).contains(&5), "an H.264 IDR slice: {:?}", h264_nal_types(&first.1));
    assert_eq!(ctx.transcoding.pool.busy(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dash_and_mpeg_ts_sessions_transcode_too() {
    let (_dir, ctx) = setup();
    upload(&ctx, "cam", Codec::Hevc).await;
    let dash = session(&ctx, "getDASHStreamingSessionURL", json!({"VideoCodec": "H264"})).expect("session");
    let manifest = text(&ctx, &dash, "getDASHManifest.mpd", "").await;
    assert!(manifest.contains("codecs=\"avc1.") && !manifest.contains("hvc1"), "{manifest}");
    let ts = session(&ctx, "getHLSStreamingSessionURL", json!({"VideoCodec": "H264", "ContainerFormat": "MPEG_TS"}))
        .expect("session");
    let playlist = text(&ctx, &ts, "getHLSMediaPlaylist.m3u8", "TrackNumber=1").await;
    let query = format!("FragmentNumber={}", first_fragment(&playlist));
    let (status, segment) = get(&ctx, &ts, "getTSFragment.ts", &query).await;
    assert_eq!(status, StatusCode::OK);
    // The PMT declares stream type 0x1B (H.264), not 0x24 (H.265).
    let pmt_entry =
        |stream_type: u8| segment.chunks(188).any(|packet| packet.windows(3).any(|w| w == [stream_type, 0xE1, 0x00]));
    assert!(pmt_entry(0x1B) && !pmt_entry(0x24), "an H.264 elementary stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h264_stream_is_served_as_stored_either_way() {
    let (_dir, ctx) = setup();
    upload(&ctx, "cam", Codec::Avc).await;
    let plain = session(&ctx, "getHLSStreamingSessionURL", json!({})).expect("session");
    let h264 = session(&ctx, "getHLSStreamingSessionURL", json!({"VideoCodec": "H264"})).expect("session");
    let playlist = text(&ctx, &plain, "getHLSMediaPlaylist.m3u8", "TrackNumber=1").await;
    let query = format!("TrackNumber=1&FragmentNumber={}", first_fragment(&playlist));
    let as_stored = get(&ctx, &plain, "getMP4MediaFragment.mp4", &query).await;
    let asked = get(&ctx, &h264, "getMP4MediaFragment.mp4", &query).await;
    assert_eq!(as_stored.0, StatusCode::OK);
    assert_eq!(as_stored, asked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_video_codec_is_refused() {
    let (_dir, ctx) = setup();
    upload(&ctx, "cam", Codec::Hevc).await;
    for operation in ["getHLSStreamingSessionURL", "getDASHStreamingSessionURL"] {
        let error = session(&ctx, operation, json!({"VideoCodec": "VP9"})).expect_err("refused");
        assert_eq!(error.kind, crate::error::ErrorType::InvalidArgument);
        assert_eq!(error.message.as_deref(), Some("VideoCodec must be one of H264, not VP9."));
    }
    let whep = call(&ctx, "getWHEPSessionURL", json!({"StreamName": "cam", "VideoCodec": "h265"}));
    assert!(whep.is_err(), "WHEP reads the same member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_latency_h264_lists_parts_of_transcoded_fragments() {
    let (_dir, ctx) = setup();
    upload(&ctx, "cam", Codec::Hevc).await;
    let request = json!({"StreamName": "cam", "PlaybackMode": "LIVE", "LowLatency": true, "VideoCodec": "H264"});
    let answer = call(&ctx, "getHLSStreamingSessionURL", request).expect("session");
    let url = answer["HLSStreamingSessionURL"].as_str().expect("url");
    let token = url.split("SessionToken=").nth(1).expect("token");
    let playlist = text(&ctx, token, "getHLSMediaPlaylist.m3u8", "TrackNumber=1").await;
    let parts: Vec<&str> = playlist.lines().filter(|l| l.starts_with("#EXT-X-PART:")).collect();
    // Fragment 0 holds the frames at 0-800 ms (10 fps), cut at 200 ms: 5 parts. Fragment 1 holds
    // 900-1900 ms: its leading picture (900, decoded after the key frame at 1000 in H.265) is its
    // first H.264 frame and its only key frame: 6 parts. Each fragment's first part is independent.
    assert_eq!(parts.len(), 11, "{playlist}");
    assert_eq!(parts.iter().filter(|p| p.contains("INDEPENDENT=YES")).count(), 2, "{playlist}");
    let (status, part) = get(&ctx, token, "getMP4Part.mp4", "TrackNumber=1&MSN=0&Part=0").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&part));
    assert!(h264_nal_types(&part).contains(&5), "the first part holds an H.264 IDR slice");
    let map = playlist.lines().find(|l| l.starts_with("#EXT-X-MAP:")).expect("init");
    let init_query = map.split("getMP4InitFragment.mp4?").nth(1).and_then(|q| q.split('"').next()).expect("uri");
    let init_query = init_query.split('&').filter(|kv| !kv.starts_with("SessionToken=")).collect::<Vec<_>>().join("&");
    let (_, init) = get(&ctx, token, "getMP4InitFragment.mp4", &init_query).await;
    assert!(contains(&init, b"avcC"), "the parts' init segment is H.264");
}
