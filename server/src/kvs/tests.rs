//! Retention of video through the API, with an injected clock: fragments past the stream's
//! retention disappear from ListFragments, GetMedia and GetMediaForFragmentList at once (before
//! the trim runs) and stay gone after it; younger fragments are untouched.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body as HttpBody, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use framelog_media::{Event, Fragmenter, Limits, ebml, ids};
use framelog_store::{Engine, EngineOptions, ManualClock};
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use super::{KvsCtx, KvsSettings, OPERATIONS};
use crate::document::Document;

const START_MS: u64 = 1_795_651_512_000;
const HOUR_MS: u64 = 3_600_000;

pub(crate) fn context(dir: &std::path::Path, clock: &Arc<ManualClock>) -> KvsCtx {
    let engine = Engine::open(dir, clock.clone(), EngineOptions::default()).expect("engine");
    KvsCtx {
        metrics: crate::cloudwatch::Recorder::new(engine.clone()),
        engine,
        settings: KvsSettings {
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            default_retention_hours: 168,
            data_endpoint: "http://127.0.0.1:1".into(),
        },
        sessions: framelog_wire::Signer::new(b"test".to_vec()),
        segments: Arc::new(crate::kvs::playback::SegmentCache::new(1 << 20)),
        edges: Arc::default(),
        ll_views: Arc::default(),
        whep: Arc::new(crate::kvs::webrtc::WhepSessions::new([127, 0, 0, 1].into(), 4)),
        transcoding: Arc::new(crate::kvs::playback::transcoded::Transcoding::new(
            framelog_imaging::TranscodePool::new(2, framelog_imaging::Isolation::InProcess).expect("transcode pool"),
        )),
    }
}

pub(crate) fn call(ctx: &KvsCtx, op: &str, document: Value) -> Result<Value, crate::error::ApiError> {
    let (_, operation) = OPERATIONS.iter().find(|(name, _)| *name == op).expect("known operation");
    operation(ctx, Document::parse(document).expect("object"))
}

/// One upload of `count` one-second single-frame clusters starting at `first_ms` (ABSOLUTE).
fn mkv(first_ms: u64, count: u64) -> Vec<u8> {
    let mut out = Vec::new();
    framelog_media::write_stream_header(
        &mut out,
        1_000_000,
        "test",
        &[framelog_media::video_track(1, "V_MPEG4/ISO/AVC")],
    );
    for i in 0..count {
        ebml::write_element(&mut out, ids::CLUSTER, |c| {
            ebml::write_uint(c, ids::TIMECODE, first_ms + i * 1000);
            framelog_media::write_simple_block(c, 1, 0, true, &[i as u8]);
        });
    }
    out
}

/// Uploads and returns the fragment numbers of the PERSISTED acks.
async fn put_media(ctx: &KvsCtx, stream: &str, body: Vec<u8>) -> Vec<String> {
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-stream-name", stream.parse().expect("header"));
    let response = super::put_media::handle(State(ctx.clone()), headers, HttpBody::from(body)).await;
    let acks = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("acks");
    String::from_utf8_lossy(&acks)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("json ack"))
        .filter(|ack| ack["EventType"] == "PERSISTED")
        .map(|ack| ack["FragmentNumber"].as_str().expect("number").to_string())
        .collect()
}

fn listed(ctx: &KvsCtx, stream: &str) -> Vec<String> {
    let selector = json!({
        "FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": 0, "EndTimestamp": (START_MS + 100 * HOUR_MS) / 1000},
    });
    let answer = call(ctx, "listFragments", json!({"StreamName": stream, "FragmentSelector": selector})).expect("list");
    let mut numbers: Vec<String> = answer["Fragments"]
        .as_array()
        .expect("fragments")
        .iter()
        .map(|f| f["FragmentNumber"].as_str().expect("number").to_string())
        .collect();
    numbers.sort();
    numbers
}

/// The producer timestamps (ms) of the chunks GetMedia EARLIEST sends before going quiet.
async fn get_media_earliest(ctx: &KvsCtx, stream: &str) -> Vec<u64> {
    let body = json!({"StreamName": stream, "StartSelector": {"StartSelectorType": "EARLIEST"}});
    let response = super::get_media::handle(State(ctx.clone()), Bytes::from(body.to_string())).await;
    let mut data = response.into_body().into_data_stream();
    let mut fragmenter = Fragmenter::new(Limits::default());
    let mut timecodes = Vec::new();
    while let Ok(Some(Ok(bytes))) = tokio::time::timeout(Duration::from_millis(300), data.next()).await {
        fragmenter.push(&bytes);
        while let Some(event) = fragmenter.next_event().expect("valid chunks") {
            if let Event::Cluster(cluster) = event {
                timecodes.push(cluster.timecode);
            }
        }
    }
    timecodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_past_retention_are_gone_from_every_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = context(dir.path(), &clock);
    call(&ctx, "createStream", json!({"StreamName": "cam", "DataRetentionInHours": 1})).expect("create");

    let old = put_media(&ctx, "cam", mkv(START_MS, 3)).await;
    clock.advance_ms(HOUR_MS / 2);
    let young = put_media(&ctx, "cam", mkv(START_MS + HOUR_MS / 2, 3)).await;
    assert_eq!((old.len(), young.len()), (3, 3));
    let all: Vec<String> = old.iter().chain(&young).cloned().collect();
    assert_eq!(listed(&ctx, "cam"), all);

    // Just past an hour after the first upload: its fragments expire, the trim has not run.
    clock.advance_ms(HOUR_MS / 2 + 1);
    assert_eq!(listed(&ctx, "cam"), young);
    let young_ms: Vec<u64> = (0..3).map(|i| START_MS + HOUR_MS / 2 + i * 1000).collect();
    assert_eq!(get_media_earliest(&ctx, "cam").await, young_ms);
    let document = json!({"StreamName": "cam", "Fragments": [old[0].clone()]});
    let response =
        super::archive::get_media_for_fragment_list(State(ctx.clone()), Bytes::from(document.to_string())).await;
    assert_eq!(response.status(), 404, "an expired fragment is not found");

    let trimmed = ctx.engine.trim_expired().expect("trim");
    assert_eq!(trimmed.entries_removed, 3);
    assert_eq!(listed(&ctx, "cam"), young);
    assert_eq!(get_media_earliest(&ctx, "cam").await, young_ms);

    // The younger upload expires in its turn.
    clock.advance_ms(HOUR_MS);
    assert!(listed(&ctx, "cam").is_empty());
    assert!(get_media_earliest(&ctx, "cam").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_retention_keeps_video_seven_days() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = context(dir.path(), &clock);
    call(&ctx, "createStream", json!({"StreamName": "cam"})).expect("create");
    let numbers = put_media(&ctx, "cam", mkv(START_MS, 2)).await;
    clock.advance_ms(168 * HOUR_MS);
    assert_eq!(listed(&ctx, "cam"), numbers, "exactly 7 days old is kept");
    clock.advance_ms(1);
    assert!(listed(&ctx, "cam").is_empty(), "older than 7 days is gone");
}
