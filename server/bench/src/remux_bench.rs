//! fMP4 segment remux: building a media segment from a stored fragment (a copy of the frames
//! plus a small moof), in process against a plain copy of the same bytes, and over HTTP
//! (time to first byte and throughput of getMP4MediaFragment.mp4 on loopback).

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framelog_media::package::{media_segment, packaged_tracks};
use framelog_media::{Event, Fragmenter, Limits};
use serde_json::json;

use crate::http_get::{get, media_playlist_url, resolve};
use crate::stats::{Row, percentile_ms};
use crate::target::Target;
use crate::video_bench::{post_json, put_media, upload_bytes};

const IN_PROCESS_ROUNDS: usize = 300;
const HTTP_FRAGMENTS: usize = 20;
const HTTP_ROUNDS: usize = 5;

/// One stored fragment shaped like a 1080p camera's (2 MB, 60 frames), as (record, body).
fn stored_fragment() -> anyhow::Result<(framelog_media::FragmentRecord, Vec<u8>)> {
    let mut splitter = Fragmenter::new(Limits::default());
    splitter.push(&upload_bytes(1));
    let mut stored_tracks = Vec::new();
    while let Some(event) = splitter.finish()? {
        match event {
            Event::Tracks { tracks_body, .. } => stored_tracks = tracks_body,
            Event::Cluster(cluster) => {
                let record = framelog_media::FragmentRecord {
                    timecode: cluster.timecode,
                    timecode_scale_ns: 1_000_000,
                    producer_ts_ms: 1_795_650_000_000,
                    server_ts_ms: 1_795_650_000_000,
                    duration_ms: 2_000,
                    tracks_body: stored_tracks,
                    tags: Vec::new(),
                    frames: cluster.frames,
                };
                return Ok((record, cluster.body));
            }
            _ => {}
        }
    }
    anyhow::bail!("the upload had no cluster")
}

fn in_process() -> anyhow::Result<Vec<Row>> {
    let (record, body) = stored_fragment()?;
    let track = packaged_tracks(&record)?.remove(0);
    let bytes = body.len() as f64;
    let started = Instant::now();
    let mut written = 0;
    for round in 0..IN_PROCESS_ROUNDS {
        written += std::hint::black_box(media_segment(&record, &body, &track, round as u32)).len();
    }
    let remux = started.elapsed();
    let started = Instant::now();
    for _ in 0..IN_PROCESS_ROUNDS {
        // The baseline: the same frames copied into one buffer, nothing else.
        let mut copy = Vec::with_capacity(body.len());
        for frame in &record.frames {
            copy.extend_from_slice(&body[frame.data.clone()]);
        }
        std::hint::black_box(copy);
    }
    let copy = started.elapsed();
    anyhow::ensure!(written as f64 >= bytes * IN_PROCESS_ROUNDS as f64, "segments lost bytes");
    let (rounds, mib) = (IN_PROCESS_ROUNDS as f64, bytes * IN_PROCESS_ROUNDS as f64 / (1024.0 * 1024.0));
    let name = "fMP4 remux in process, 2 MB fragments";
    let row = |subject: &str, elapsed: Duration, ratio| Row::timed(name, subject, rounds, mib, elapsed, ratio);
    Ok(vec![
        row("memcpy of frames (baseline)", copy, None),
        row("framelog", remux, Some(copy.as_secs_f64() / remux.as_secs_f64())),
    ])
}

async fn over_http(target: &Target, subject: &str) -> anyhow::Result<Row> {
    put_media(target, Bytes::from(upload_bytes(HTTP_FRAGMENTS)), HTTP_FRAGMENTS).await?;
    let http = crate::api_bench::client();
    let answer = post_json(
        &http,
        target.address,
        "getHLSStreamingSessionURL",
        json!({
            "StreamName": "bench-video",
            "PlaybackMode": "ON_DEMAND",
            "HLSFragmentSelector": {
                "FragmentSelectorType": "PRODUCER_TIMESTAMP",
                "TimestampRange": {"StartTimestamp": 1_795_649_000.0, "EndTimestamp": 1_795_700_000.0},
            },
        }),
    )
    .await?;
    let master = answer["HLSStreamingSessionURL"].as_str().unwrap_or_default().to_string();
    let media = media_playlist_url(&master, 1);
    let playlist = get(&http, &media).await?.body;
    let segments: Vec<String> = String::from_utf8_lossy(&playlist)
        .lines()
        .filter(|line| line.starts_with("getMP4MediaFragment"))
        .map(|line| resolve(&media, line))
        .collect();
    anyhow::ensure!(segments.len() == HTTP_FRAGMENTS, "{} segments listed", segments.len());
    let mut first_bytes = Vec::new();
    let mut bytes = 0usize;
    let started = Instant::now();
    for _ in 0..HTTP_ROUNDS {
        for url in &segments {
            let fetched = get(&http, url).await?;
            first_bytes.push(fetched.first_byte);
            bytes += fetched.body.len();
        }
    }
    let elapsed = started.elapsed();
    first_bytes.sort();
    Ok(Row {
        name: "getMP4MediaFragment over HTTP, 2 MB".into(),
        subject: subject.into(),
        records_per_sec: first_bytes.len() as f64 / elapsed.as_secs_f64(),
        mib_per_sec: bytes as f64 / elapsed.as_secs_f64() / (1024.0 * 1024.0),
        p50_ms: Some(percentile_ms(&first_bytes, 50.0)),
        p99_ms: Some(percentile_ms(&first_bytes, 99.0)),
        ratio_to_baseline: None,
    })
}

/// In process, then over HTTP from a server without segment files (the layout before them) and
/// from the default one.
pub fn run(framelog_bin: &Path, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let mut rows = in_process()?;
    let scratch = tempfile::tempdir_in(".")?;
    let before = crate::video_bench::without_segments(framelog_bin, scratch.path())?;
    let before_row = runtime.block_on(over_http(&before, "framelog, no segment files (before, baseline)"))?;
    let target = Target::framelog(framelog_bin)?;
    let mut row = runtime.block_on(over_http(&target, "framelog"))?;
    row.ratio_to_baseline = Some(row.mib_per_sec / before_row.mib_per_sec);
    rows.extend([before_row, row]);
    Ok(rows)
}
