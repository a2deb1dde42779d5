//! ON_DEMAND media playlist generation over a week of video: a stream holding 7 days of 2-second
//! fragments (302,400), each with a 60-frame sample index, written straight into the engine (as
//! PutMedia stores them) and then served by the real server. Sessions of 1,000 fragments at
//! random points of the week; the time of each media playlist GET over loopback is measured.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use framelog_media::Frame;
use framelog_media::{FragmentRecord, tracks_body};
use framelog_store::{Engine, EngineOptions, NewEntry, SystemClock};
use serde_json::json;

use crate::http_get::{get, media_playlist_url};
use crate::stats::{Row, percentile_ms};
use crate::target::Target;
use crate::video_bench::post_json;

const FRAGMENT_MS: u64 = 2_000;
const FRAMES_PER_FRAGMENT: usize = 60;
const SESSIONS: usize = 100;
const GETS_PER_SESSION: usize = 3;
const PLAYLIST_FRAGMENTS: u64 = 1_000;

fn record(producer_ms: u64, tracks: &[u8]) -> FragmentRecord {
    let frames = (0..FRAMES_PER_FRAGMENT)
        .map(|i| Frame { track: 1, relative_timecode: (i * 33) as i16, keyframe: i == 0, lacing: 0, data: i..i + 1 })
        .collect();
    FragmentRecord {
        timecode: 0,
        timecode_scale_ns: 1_000_000,
        producer_ts_ms: producer_ms,
        server_ts_ms: producer_ms,
        duration_ms: FRAGMENT_MS,
        tracks_body: tracks.to_vec(),
        tags: Vec::new(),
        frames,
    }
}

/// Writes `fragments` 2-second fragments ending now into the stream's engine directory.
fn fill_week(data_dir: &Path, fragments: usize, first_producer_ms: u64) -> anyhow::Result<()> {
    let engine = Engine::open(&data_dir.join("engine"), Arc::new(SystemClock), EngineOptions::default())?;
    let handle = engine.stream("video/bench-week")?;
    let track = framelog_media::Track {
        codec_private: vec![1, 0x64, 0, 0x28, 0xFF, 0xE1, 0, 0],
        pixel_width: Some(1920),
        pixel_height: Some(1080),
        ..framelog_media::video_track(1, "V_MPEG4/ISO/AVC")
    };
    let tracks = tracks_body(&[track]);
    for batch_start in (0..fragments).step_by(1_000) {
        let entries = (batch_start..(batch_start + 1_000).min(fragments))
            .map(|index| {
                let producer_ms = first_producer_ms + index as u64 * FRAGMENT_MS;
                NewEntry {
                    shard: 0,
                    producer_ts_ms: Some(producer_ms),
                    attrs: record(producer_ms, &tracks).encode(),
                    payload: vec![0; FRAMES_PER_FRAGMENT],
                }
            })
            .collect();
        engine.append_blocking(&handle, entries)?;
    }
    engine.close()?;
    Ok(())
}

pub fn run(framelog_bin: &Path, runtime: &tokio::runtime::Runtime, fragments: usize) -> anyhow::Result<Vec<Row>> {
    let data = tempfile::tempdir_in(".")?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let first_producer_ms = now_ms - fragments as u64 * FRAGMENT_MS;
    {
        let target = Target::framelog_in(framelog_bin, data.path())?;
        runtime.block_on(async {
            let http = crate::api_bench::client();
            post_json(
                &http,
                target.address,
                "createStream",
                json!({"StreamName": "bench-week", "DataRetentionInHours": 200}),
            )
            .await
        })?;
    }
    fill_week(data.path(), fragments, first_producer_ms)?;
    let target = Target::framelog_in(framelog_bin, data.path())?;
    let mut latencies: Vec<Duration> = runtime.block_on(async {
        let http = crate::api_bench::client();
        let mut latencies = Vec::new();
        // A fixed LCG: the same session starts in every run.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let span = (fragments as u64).saturating_sub(PLAYLIST_FRAGMENTS).max(1);
        for _ in 0..SESSIONS {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let start_ms = first_producer_ms + (seed >> 33) % span * FRAGMENT_MS;
            let end_ms = start_ms + PLAYLIST_FRAGMENTS * FRAGMENT_MS - 1;
            let answer = post_json(&http, target.address, "getHLSStreamingSessionURL", json!({
                "StreamName": "bench-week",
                "PlaybackMode": "ON_DEMAND",
                "HLSFragmentSelector": {
                    "FragmentSelectorType": "PRODUCER_TIMESTAMP",
                    "TimestampRange": {"StartTimestamp": start_ms as f64 / 1000.0, "EndTimestamp": end_ms as f64 / 1000.0},
                },
            }))
            .await?;
            let master = answer["HLSStreamingSessionURL"].as_str().unwrap_or_default().to_string();
            let media = media_playlist_url(&master, 1);
            for _ in 0..GETS_PER_SESSION {
                let fetched = get(&http, &media).await?;
                let listed = fetched.body.windows(7).filter(|w| w == b"#EXTINF").count() as u64;
                anyhow::ensure!(listed == PLAYLIST_FRAGMENTS, "the playlist listed {listed} fragments");
                latencies.push(fetched.total);
            }
        }
        Ok::<_, anyhow::Error>(latencies)
    })?;
    drop(target);
    latencies.sort();
    let total: Duration = latencies.iter().sum();
    Ok(vec![Row {
        name: format!("ON_DEMAND playlist, 1000 of {fragments} frags"),
        subject: "framelog".into(),
        records_per_sec: latencies.len() as f64 / total.as_secs_f64(),
        mib_per_sec: 0.0,
        p50_ms: Some(percentile_ms(&latencies, 50.0)),
        p99_ms: Some(percentile_ms(&latencies, 99.0)),
        ratio_to_baseline: None,
    }])
}
