//! Low-Latency HLS through the handlers, in process: a camera uploads frame by frame over a
//! streamed PutMedia body while playlists and parts are requested, so the tests see the live
//! edge before fragments are stored, blocking reloads wake when parts close, and parts read from
//! the edge and from the store are the same bytes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use framelog_media::{Track, ebml, ids};
use framelog_store::ManualClock;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::kvs::KvsCtx;
use crate::kvs::tests::{call, context};

const START_MS: u64 = 1_795_651_512_000;
const FRAME_MS: u64 = 33;
const FRAMES_PER_FRAGMENT: u64 = 30;

/// A camera on one PutMedia connection: what it sends, and the acks it got back.
struct Camera {
    body: mpsc::Sender<Result<Bytes, std::io::Error>>,
    acks: Arc<Mutex<Vec<Value>>>,
}

impl Camera {
    async fn connect(ctx: &KvsCtx, stream: &str) -> Camera {
        let (body, receiver) = mpsc::channel(64);
        let mut headers = HeaderMap::new();
        headers.insert("x-amzn-stream-name", stream.parse().expect("header"));
        let request = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
        let response = crate::kvs::put_media::handle(State(ctx.clone()), headers, request).await;
        let acks = Arc::new(Mutex::new(Vec::new()));
        let collected = acks.clone();
        tokio::spawn(async move {
            let mut data = response.into_body().into_data_stream();
            while let Some(Ok(chunk)) = data.next().await {
                for line in String::from_utf8_lossy(&chunk).lines() {
                    if let Ok(ack) = serde_json::from_str::<Value>(line) {
                        collected.lock().expect("acks").push(ack);
                    }
                }
            }
        });
        let camera = Camera { body, acks };
        let mut header = Vec::new();
        framelog_media::write_stream_header(&mut header, 1_000_000, "test", &[h264_track()]);
        camera.send(header).await;
        camera
    }

    async fn send(&self, bytes: Vec<u8>) {
        self.body.send(Ok(Bytes::from(bytes))).await.expect("the upload is open");
    }

    /// Opens an unknown-size cluster (it ends where the next one begins) for fragment `index`.
    async fn open_fragment(&self, index: u64) {
        self.open_at(fragment_start_ms(index)).await;
    }

    /// Opens an unknown-size cluster starting at producer time `start_ms`.
    async fn open_at(&self, start_ms: u64) {
        let mut out = Vec::new();
        ebml::write_id(&mut out, ids::CLUSTER);
        ebml::write_size(&mut out, ebml::UNKNOWN_SIZE, false);
        ebml::write_uint(&mut out, ids::TIMECODE, start_ms);
        self.send(out).await;
    }

    /// Sends frames `range` of the open fragment, one chunk each, as a camera does.
    async fn frames(&self, range: std::ops::Range<u64>) {
        for frame in range {
            let mut out = Vec::new();
            let payload = [0, 0, 0, 4, if frame == 0 { 0x65 } else { 0x41 }, frame as u8, 1, 2];
            framelog_media::write_simple_block(&mut out, 1, (frame * FRAME_MS) as i16, frame == 0, &payload);
            self.send(out).await;
        }
    }

    async fn persisted(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let done = self.acks.lock().expect("acks").iter().filter(|a| a["EventType"] == "PERSISTED").count();
            if done >= count {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{count} fragments not persisted: {:?}", self.acks);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whole fragments `range`, each closed by the next one's start.
    async fn fragments(&self, range: std::ops::Range<u64>) {
        for index in range {
            self.open_fragment(index).await;
            self.frames(0..FRAMES_PER_FRAGMENT).await;
        }
    }
}

fn h264_track() -> Track {
    Track {
        codec_private: vec![1, 0x42, 0, 0x1e, 0xff, 0xe1, 0],
        pixel_width: Some(320),
        pixel_height: Some(240),
        ..framelog_media::video_track(1, "V_MPEG4/ISO/AVC")
    }
}

fn fragment_start_ms(index: u64) -> u64 {
    START_MS + index * FRAMES_PER_FRAGMENT * FRAME_MS
}

fn new_context() -> (KvsCtx, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path(), &Arc::new(ManualClock::new(START_MS)));
    call(&ctx, "createStream", json!({"StreamName": "cam"})).expect("create");
    (ctx, dir)
}

/// A stream with `stored` whole fragments PERSISTED and the next one opened (no frames yet), its
/// camera still connected.
async fn streaming(stored: u64) -> (KvsCtx, tempfile::TempDir, Camera) {
    let (ctx, dir) = new_context();
    let camera = Camera::connect(&ctx, "cam").await;
    camera.fragments(0..stored).await;
    camera.open_fragment(stored).await;
    camera.persisted(stored as usize).await;
    (ctx, dir, camera)
}

fn session(ctx: &KvsCtx, extra: Value) -> String {
    let mut request = json!({"StreamName": "cam", "PlaybackMode": "LIVE", "LowLatency": true});
    if let (Some(request), Some(extra)) = (request.as_object_mut(), extra.as_object()) {
        request.extend(extra.clone());
    }
    let answer = call(ctx, "getHLSStreamingSessionURL", request).expect("session");
    let url = answer["HLSStreamingSessionURL"].as_str().expect("url");
    url.split("SessionToken=").nth(1).expect("token").to_string()
}

/// GET /hls/v1/<file>?SessionToken=<token>&<query>: status and body.
async fn get(ctx: &KvsCtx, token: &str, file: &str, query: &str) -> (StatusCode, Bytes) {
    let uri: Uri = format!("/hls/v1/{file}?SessionToken={token}&{query}").parse().expect("uri");
    let response = super::handle(State(ctx.clone()), Path(file.to_string()), uri, HeaderMap::new()).await;
    let status = response.status();
    (status, axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body"))
}

async fn playlist(ctx: &KvsCtx, token: &str, query: &str) -> String {
    let (status, body) = get(ctx, token, "getHLSMediaPlaylist.m3u8", &format!("TrackNumber=1&{query}")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    String::from_utf8(body.to_vec()).expect("text")
}

async fn part(ctx: &KvsCtx, token: &str, msn: u64, part: u64) -> (StatusCode, Bytes) {
    get(ctx, token, "getMP4Part.mp4", &format!("TrackNumber=1&MSN={msn}&Part={part}")).await
}

/// The playlist's parts of segment `msn` as (part index, DURATION text, independent).
fn parts_of(text: &str, msn: u64) -> Vec<(u64, String, bool)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("#EXT-X-PART:"))
        .filter_map(|attrs| {
            let uri = attrs.split("URI=\"").nth(1)?.split('"').next()?;
            let at = uri.split(&format!("&MSN={msn}&Part=")).nth(1)?;
            let duration = attrs.strip_prefix("DURATION=")?.split(',').next()?.to_string();
            Some((at.parse().ok()?, duration, attrs.contains("INDEPENDENT=YES")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_from_the_live_edge_are_listed_held_for_and_the_same_once_stored() {
    let (ctx, _dir, camera) = streaming(2).await;
    let token = session(&ctx, json!({}));

    // Twelve frames (0-363 ms) of fragment 2: its first part (frames 0-6, 231 ms) is closed, not stored.
    camera.frames(0..12).await;
    let text = playlist(&ctx, &token, "_HLS_msn=2&_HLS_part=0").await;
    assert!(text.contains("#EXT-X-VERSION:9\n"), "{text}");
    assert!(text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.0,PART-HOLD-BACK=0.702\n"));
    assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.234\n"), "{text}");
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{text}");
    assert_eq!(text.matches("#EXTINF:").count(), 2, "{text}");
    assert_eq!(parts_of(&text, 2), [(0, "0.231".to_string(), true)], "{text}");
    let hint = text.lines().last().unwrap_or_default();
    assert!(hint.starts_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=") && hint.ends_with("&MSN=2&Part=1\""), "{text}");
    assert_eq!(text.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 3, "{text}");
    let (status, from_edge) = part(&ctx, &token, 2, 0).await;
    assert_eq!(status, StatusCode::OK);

    // A reload blocked on part 1 is held until the camera's frames close it.
    let held = tokio::spawn({
        let (ctx, token) = (ctx.clone(), token.clone());
        async move { playlist(&ctx, &token, "_HLS_msn=2&_HLS_part=1").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "the reload waits for part 1");
    camera.frames(12..21).await;
    let text = tokio::time::timeout(Duration::from_secs(2), held).await.expect("answered").expect("task");
    assert_eq!(parts_of(&text, 2).len(), 2, "{text}");

    // The rest of fragment 2, closed by fragment 3's start: stored, listed whole, same part bytes.
    camera.frames(21..FRAMES_PER_FRAGMENT).await;
    camera.open_fragment(3).await;
    camera.persisted(3).await;
    let text = playlist(&ctx, &token, "_HLS_msn=2").await;
    assert_eq!(text.matches("#EXTINF:").count(), 3, "{text}");
    let (status, from_store) = part(&ctx, &token, 2, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(from_store, from_edge, "a part is the same from the edge and from the store");
    let (status, _) = part(&ctx, &token, 2, 9).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a stored segment's missing part is not held");

    // A reload more than two segments past the end is refused at once.
    let (status, _) = get(&ctx, &token, "getHLSMediaPlaylist.m3u8", "TrackNumber=1&_HLS_msn=9").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_upload_leaves_a_gap_and_the_hint_waits_for_the_next_fragment() {
    let (ctx, _dir, camera) = streaming(2).await;
    let token = session(&ctx, json!({}));
    camera.frames(0..10).await;
    let text = playlist(&ctx, &token, "_HLS_msn=2&_HLS_part=0").await;
    assert_eq!(parts_of(&text, 2).len(), 1, "{text}");

    camera.body.send(Err(std::io::Error::other("camera unplugged"))).await.expect("sent");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let text = loop {
        let text = playlist(&ctx, &token, "").await;
        if parts_of(&text, 2).is_empty() || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(parts_of(&text, 2).is_empty(), "frames that will never be stored leave the playlist: {text}");
    assert!(text.contains("&MSN=2&Part=0\"\n"), "{text}");

    // The hinted part is held until a new upload's first part closes.
    let hinted = tokio::spawn({
        let (ctx, token) = (ctx.clone(), token.clone());
        async move { part(&ctx, &token, 2, 0).await }
    });
    let camera = Camera::connect(&ctx, "cam").await;
    camera.open_fragment(5).await;
    camera.frames(0..11).await;
    let (status, bytes) = tokio::time::timeout(Duration::from_secs(2), hinted).await.expect("answered").expect("task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&bytes[4..8], b"moof");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beside_the_live_upload_is_never_shown_as_live_nor_numbered_wrong() {
    let (ctx, _dir, camera) = streaming(2).await;
    let token = session(&ctx, json!({}));
    camera.frames(0..10).await;
    let text = playlist(&ctx, &token, "_HLS_msn=2&_HLS_part=0").await;
    assert_eq!(parts_of(&text, 2).len(), 1, "{text}");

    // An edge agent's backlog on a second connection: a fragment recorded a minute earlier.
    let backlog = Camera::connect(&ctx, "cam").await;
    backlog.open_at(START_MS - 60_000).await;
    backlog.frames(0..FRAMES_PER_FRAGMENT).await;
    backlog.open_at(START_MS - 59_000).await;
    backlog.persisted(1).await;
    // It took sequence number 2, so the live fragment will be stored as 3 or later: no number
    // can be promised for it, and it is not listed until stored; nothing of the backlog is live.
    let text = playlist(&ctx, &token, "").await;
    assert!(parts_of(&text, 2).is_empty() && parts_of(&text, 3).is_empty(), "{text}");
    assert_eq!(text.matches("#EXTINF:").count(), 2, "{text}");

    // The live fragment completes and is stored: listed whole, with its parts.
    camera.frames(10..FRAMES_PER_FRAGMENT).await;
    camera.open_fragment(3).await;
    camera.persisted(3).await;
    let text = playlist(&ctx, &token, "").await;
    assert_eq!(text.matches("#EXTINF:").count(), 1, "only the newest, after the back-filled one: {text}");
    let listed = parts_of(&text, 3);
    assert!(!listed.is_empty() && listed[0].2, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_update_skips_what_is_older_than_can_skip_until() {
    let (ctx, _dir, _camera) = streaming(15).await;
    let token = session(&ctx, json!({"MaxMediaPlaylistFragmentResults": 20}));

    let full = playlist(&ctx, &token, "").await;
    let delta = playlist(&ctx, &token, "_HLS_skip=YES").await;
    let segments = full.matches("#EXTINF:").count();
    assert_eq!(segments, 15, "{full}");
    // Each fragment lasts 990 ms (30 frames of 33 ms); CAN-SKIP-UNTIL is 6 s (six 1 s targets):
    // a segment is skipped when it starts at least 6 s before the playlist's end.
    let total_ms = 15 * 990;
    let skippable = (0..15).filter(|i| total_ms - i * 990 >= 6000).count();
    assert!(delta.contains(&format!("#EXT-X-SKIP:SKIPPED-SEGMENTS={skippable}\n")), "{delta}");
    assert_eq!(delta.matches("#EXTINF:").count(), segments - skippable, "{delta}");
    assert!(!full.contains("#EXT-X-SKIP"), "{full}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_latency_is_for_live_fmp4_sessions_only() {
    let (ctx, _dir, _camera) = streaming(2).await;
    let request = |extra: Value| {
        let mut request = json!({"StreamName": "cam", "LowLatency": true});
        request.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        call(&ctx, "getHLSStreamingSessionURL", request).err().and_then(|e| e.message)
    };
    assert!(request(json!({"ContainerFormat": "MPEG_TS"})).is_some_and(|e| e.contains("LowLatency")));
    let range = json!({"StartTimestamp": START_MS / 1000, "EndTimestamp": START_MS / 1000 + 60});
    let on_demand = json!({"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": {"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": range}});
    assert!(request(on_demand).is_some_and(|e| e.contains("LowLatency")));

    let plain =
        call(&ctx, "getHLSStreamingSessionURL", json!({"StreamName": "cam", "PlaybackMode": "LIVE"})).expect("plain");
    let token = plain["HLSStreamingSessionURL"]
        .as_str()
        .expect("url")
        .split("SessionToken=")
        .nth(1)
        .expect("token")
        .to_string();
    let text = playlist(&ctx, &token, "").await;
    assert!(!text.contains("#EXT-X-PART"), "a plain LIVE session stays what AWS clients expect: {text}");
    let (status, _) = part(&ctx, &token, 0, 0).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
