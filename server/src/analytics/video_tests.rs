//! A video stream as an application's input, in process: fragments of the streams a pattern
//! names become rows, rows wait for their stream's labelling consumer, and the video example
//! (per camera, fragments with a person) is counted per window.

use std::time::Duration;

use framelog_media::{FragmentRecord, SimpleTag};
use framelog_store::{NewEntry, StreamKind, new_stream_meta};
use serde_json::{Value, json};

use super::context::AnalyticsCtx;
use super::tests::{ROLE, STREAM_ARN, context, kds, records_of, run, start_runner};
use crate::kvs::video_engine_name;

const VIDEO_ARN: &str = "arn:aws:kinesisvideo:us-east-1:000000000000:stream/";

/// The video example of docs/analytics.md with a one-second window instead of a minute.
const PEOPLE: &str = r#"
CREATE OR REPLACE STREAM "PEOPLE_PER_WINDOW" (camera VARCHAR(64), with_person INTEGER, fragments INTEGER);
CREATE OR REPLACE PUMP "PEOPLE_PUMP" AS INSERT INTO "PEOPLE_PER_WINDOW"
    SELECT STREAM "STREAM_NAME", SUM(CASE WHEN "PERSON" IS NOT NULL THEN 1 ELSE 0 END), COUNT(*)
    FROM "SOURCE_SQL_STREAM_001"
    GROUP BY "STREAM_NAME", STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '1' SECOND);
"#;

fn application(pattern: &str) -> Value {
    json!({
        "ApplicationName": "people",
        "ApplicationCode": PEOPLE,
        "Inputs": [{
            "NamePrefix": "SOURCE_SQL_STREAM",
            "KinesisStreamsInput": {"ResourceARN": format!("{VIDEO_ARN}{pattern}"), "RoleARN": ROLE},
            "InputSchema": {
                "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
                "RecordEncoding": "UTF-8",
                "RecordColumns": [
                    {"Name": "STREAM_NAME", "Mapping": "$.StreamName", "SqlType": "VARCHAR(64)"},
                    {"Name": "PRODUCER_TIME", "Mapping": "$.ProducerTimestamp", "SqlType": "TIMESTAMP"},
                    {"Name": "PERSON", "Mapping": "$.Tags.person", "SqlType": "VARCHAR(16)"}
                ]
            }
        }],
        "Outputs": [{
            "Name": "PEOPLE_PER_WINDOW",
            "KinesisStreamsOutput": {"ResourceARN": format!("{STREAM_ARN}counts"), "RoleARN": ROLE},
            "DestinationSchema": {"RecordFormatType": "JSON"}
        }]
    })
}

fn create_camera(ctx: &AnalyticsCtx, name: &str) {
    let now_ms = ctx.engine.now_ms();
    let meta =
        new_stream_meta(&video_engine_name(name), StreamKind::Video, &format!("{VIDEO_ARN}{name}/1"), 1, 24, now_ms);
    ctx.engine.create_stream(meta).expect("video stream");
}

/// Stores one fragment per entry of `people` (whether it is labelled with a person).
async fn put_fragments(ctx: &AnalyticsCtx, camera: &str, people: &[bool]) {
    let handle = ctx.engine.stream(&video_engine_name(camera)).expect("camera");
    let entries = people
        .iter()
        .enumerate()
        .map(|(i, person)| {
            let record = FragmentRecord {
                timecode: i as u64 * 2_000,
                timecode_scale_ns: 1_000_000,
                producer_ts_ms: 1_700_000_000_000 + i as u64 * 2_000,
                server_ts_ms: ctx.engine.now_ms(),
                duration_ms: 2_000,
                tracks_body: Vec::new(),
                tags: person.then(|| SimpleTag { name: "person".into(), value: "0.91".into() }).into_iter().collect(),
                frames: Vec::new(),
            };
            NewEntry {
                shard: 0,
                producer_ts_ms: Some(record.producer_ts_ms),
                attrs: record.encode(),
                payload: vec![0; 64],
            }
        })
        .collect();
    ctx.engine.append(&handle, entries).expect("append").wait().await.expect("fragments");
}

/// Sums of the output's columns by camera, once `fragments` fragments are counted.
async fn counted(ctx: &AnalyticsCtx, fragments: i64) -> std::collections::BTreeMap<String, (i64, i64)> {
    let mut sums = std::collections::BTreeMap::new();
    for _ in 0..80 {
        sums.clear();
        for (_, row) in records_of(ctx, "counts").await {
            let entry = sums.entry(row["CAMERA"].as_str().unwrap_or_default().to_string()).or_insert((0, 0));
            entry.0 += row["WITH_PERSON"].as_i64().unwrap_or(0);
            entry.1 += row["FRAGMENTS"].as_i64().unwrap_or(0);
        }
        if sums.values().map(|(_, total)| total).sum::<i64>() >= fragments {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_of_video_streams_is_counted_per_camera_once_labelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    kds(&ctx, "CreateStream", json!({"StreamName": "counts", "ShardCount": 2})).await;
    for camera in ["lobby-1", "lobby-2", "garage"] {
        create_camera(&ctx, camera);
    }
    let missing = run(&ctx, "CreateApplication", application("nowhere")).await.expect_err("no such camera");
    assert_eq!(missing.message.as_deref(), Some(&*format!("The input stream {VIDEO_ARN}nowhere does not exist.")));
    run(&ctx, "CreateApplication", application("lobby-*")).await.expect("create");
    put_fragments(&ctx, "lobby-1", &[true, false, true, true]).await;
    put_fragments(&ctx, "lobby-2", &[false, false]).await;
    put_fragments(&ctx, "garage", &[true, true, true]).await;
    // A labelling consumer on lobby-2 has finished its first fragment only.
    let labeller = json!({"ConsumerName": "labeller", "Webhook": {"Url": "http://127.0.0.1:9/labels"}});
    set_consumer(&ctx, "lobby-2", &labeller, Some(1));
    let start = json!({"ApplicationName": "people", "InputConfigurations": [{"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "TRIM_HORIZON"}}]});
    run(&ctx, "StartApplication", start).await.expect("start");
    let runner = start_runner(&ctx, "people").await;
    // The unlabelled fragment holds the watermark at its arrival: no window closes past it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(records_of(&ctx, "counts").await.is_empty(), "a window closed over an unlabelled fragment");
    // The labeller writes its label back, then moves on; a camera created meanwhile is read too.
    label_person(&ctx, "lobby-2", 1).await;
    set_consumer(&ctx, "lobby-2", &labeller, Some(2));
    create_camera(&ctx, "lobby-3");
    put_fragments(&ctx, "lobby-3", &[true]).await;
    let sums = counted(&ctx, 7).await;
    runner.abort();
    assert_eq!(sums.get("lobby-1"), Some(&(3, 4)), "{sums:?}");
    assert_eq!(sums.get("lobby-2"), Some(&(1, 2)), "the label written after arrival counts: {sums:?}");
    assert_eq!(sums.get("lobby-3"), Some(&(1, 1)), "{sums:?}");
    assert!(!sums.contains_key("garage"), "the pattern leaves garage out: {sums:?}");
    assert_eq!(sums.values().map(|(_, n)| n).sum::<i64>(), 7, "each fragment counted once: {sums:?}");
}

/// Tags fragment `seq` of `camera` with a person, as a consumer's answer does.
async fn label_person(ctx: &AnalyticsCtx, camera: &str, seq: u64) {
    let (engine, handle) = (ctx.engine.clone(), ctx.engine.stream(&video_engine_name(camera)).expect("camera"));
    tokio::task::spawn_blocking(move || {
        engine.amend_attrs(&handle, 0, seq, |attrs| {
            let mut record = FragmentRecord::decode(attrs).ok()?;
            record.tags.push(SimpleTag { name: "person".into(), value: "0.88".into() });
            Some(record.encode())
        })
    })
    .await
    .expect("join")
    .expect("labelled");
}

/// Defines `consumer` on `camera` with its checkpoint at `seq`, as the consumer API keeps them.
fn set_consumer(ctx: &AnalyticsCtx, camera: &str, consumer: &Value, seq: Option<u64>) {
    let handle = ctx.engine.stream(&video_engine_name(camera)).expect("camera");
    let settings = crate::consumers::labelling_consumer_settings(consumer, seq);
    ctx.engine.update_meta(&handle, |meta| meta.settings.extend(settings.clone())).expect("consumer");
}
