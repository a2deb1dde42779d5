//! LL-HLS under load: viewers of one camera, each reloading its media playlist with blocking
//! requests for the next part (`_HLS_msn` / `_HLS_part` from the preload hint, as hls.js does in
//! low-latency mode) while the camera sends 4 Mbit/s of frames in real time.
//!
//! Reload latency: from the camera sending the frame that closes a part (the first frame of the
//! next part, or a fragment's last frame) to a viewer holding the playlist that lists the part.
//! Server CPU is measured over the same stretch with no viewers (the baseline) and with them.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use framelog_sdk::{Ack, Client, ClientConfig, TimecodeType};
use serde_json::json;

use crate::fleet_bench::{FRAME_INTERVAL, FRAMES_PER_FRAGMENT, cpu_time, fragment_blocks, fragment_pieces};
use crate::http_get::{get, media_playlist_url};
use crate::live_bench::stream_header;
use crate::stats::Row;
use crate::target::Target;
use crate::video_bench::post_json;

const VIEWERS: usize = 100;
/// Fragments the camera sends per phase (2 s each).
pub const FRAGMENTS: u64 = 10;
const FRAME_MS: u64 = 33;

/// When each frame (by index over the whole upload) left the camera.
pub type SentAt = Arc<Mutex<Vec<Instant>>>;

/// Sends `FRAGMENTS` fragments frame by frame in real time, noting when each frame left, until
/// every fragment is PERSISTED.
pub async fn camera(address: std::net::SocketAddr, stream: &str, sent: SentAt) -> anyhow::Result<()> {
    let client = Client::new(ClientConfig::new(format!("http://{address}")));
    let start_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let mut upload =
        client.open_media_upload(stream, TimecodeType::Relative { start_ms }, Bytes::from(stream_header())).await?;
    let blocks = fragment_blocks();
    // Each frame as one piece; a fragment's Cluster header goes with its first frame.
    let mut frames: Vec<Bytes> = Vec::new();
    for fragment in 0..FRAGMENTS {
        let mut pieces = fragment_pieces(fragment * FRAMES_PER_FRAGMENT as u64 * FRAME_MS, &blocks).into_iter();
        let head = pieces.next().unwrap_or_default();
        for (index, piece) in pieces.enumerate() {
            frames.push(if index == 0 { [head.clone(), piece].concat().into() } else { piece });
        }
    }
    let started = tokio::time::Instant::now();
    let mut next = 0;
    let mut persisted = 0;
    while persisted < FRAGMENTS {
        tokio::select! {
            _ = tokio::time::sleep_until(started + FRAME_INTERVAL * next as u32), if next < frames.len() => {
                upload.send(frames[next].clone())?;
                sent.lock().expect("lock").push(Instant::now());
                next += 1;
            }
            ack = upload.next_ack() => match ack? {
                Some(Ack::Persisted { .. }) => persisted += 1,
                Some(Ack::Error { error_code, .. }) => anyhow::bail!("PutMedia failed: {error_code}"),
                Some(_) => {}
                None => anyhow::bail!("the ack stream ended after {persisted} fragments"),
            },
        }
    }
    Ok(())
}

/// The preload hint's segment and part.
fn hint(playlist: &str) -> Option<(u64, usize)> {
    let line = playlist.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    let msn = line.split("&MSN=").nth(1)?.split('&').next()?.parse().ok()?;
    let part = line.split("&Part=").nth(1)?.split('"').next()?.parse().ok()?;
    Some((msn, part))
}

/// The index of the frame whose arrival closed part `part` of segment `msn`, from the parts'
/// durations in the playlist: the frame after the part, or the fragment's last.
fn closing_frame(playlist: &str, msn: u64, part: usize) -> Option<usize> {
    let marker = format!("&MSN={msn}&Part=");
    let durations_ms: Vec<u64> = playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:") && l.contains(&marker))
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:DURATION=")?.split(',').next()?.parse::<f64>().ok())
        .map(|seconds| (seconds * 1000.0).round() as u64)
        .collect();
    let end_ms: u64 = durations_ms.get(..=part)?.iter().sum();
    let end_frame = (end_ms / FRAME_MS) as usize;
    Some(msn as usize * FRAMES_PER_FRAGMENT + end_frame.min(FRAMES_PER_FRAGMENT - 1))
}

/// One viewer: blocking reloads for the next part until `until`, noting each one's latency.
async fn viewer(
    media_url: String,
    until: Instant,
    sent: SentAt,
    latencies: Arc<Mutex<Vec<Duration>>>,
) -> anyhow::Result<()> {
    let http = crate::api_bench::client();
    let mut playlist = String::from_utf8_lossy(&get(&http, &media_url).await?.body).into_owned();
    while Instant::now() < until {
        let (msn, part) = hint(&playlist).ok_or_else(|| anyhow::anyhow!("no preload hint in\n{playlist}"))?;
        let body = get(&http, &format!("{media_url}&_HLS_msn={msn}&_HLS_part={part}")).await?.body;
        let answered = Instant::now();
        playlist = String::from_utf8_lossy(&body).into_owned();
        let closed =
            closing_frame(&playlist, msn, part).and_then(|frame| sent.lock().expect("lock").get(frame).copied());
        if let Some(closed) = closed {
            latencies.lock().expect("lock").push(answered.saturating_duration_since(closed));
        }
    }
    Ok(())
}

/// One phase: a camera on a new stream, `viewers` viewers; returns the reload latencies and
/// the server's CPU time over the camera's upload.
async fn phase(target: &Target, stream: &str, viewers: usize) -> anyhow::Result<(Vec<Duration>, Duration, Duration)> {
    let address = target.address;
    let watch = |sent: SentAt, until: Instant| async move {
        let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
        if viewers == 0 {
            return Ok(Vec::new());
        }
        // A LIVE session needs a stored fragment.
        while sent.lock().expect("lock").len() < FRAMES_PER_FRAGMENT + 5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let request = json!({"StreamName": stream, "PlaybackMode": "LIVE", "LowLatency": true});
        let answer = post_json(&crate::api_bench::client(), address, "getHLSStreamingSessionURL", request).await?;
        let media_url = media_playlist_url(answer["HLSStreamingSessionURL"].as_str().unwrap_or_default(), 1);
        let tasks: Vec<_> = (0..viewers)
            .map(|_| tokio::spawn(viewer(media_url.clone(), until, sent.clone(), latencies.clone())))
            .collect();
        for task in tasks {
            task.await??;
        }
        let mut latencies = std::mem::take(&mut *latencies.lock().expect("lock"));
        latencies.sort();
        Ok(latencies)
    };
    camera_run(target, stream, watch).await
}

/// A camera on a new stream, uploading for `FRAGMENTS` fragments while `watch` runs (given when
/// each frame left and when viewers should stop): what `watch` returned, the server's CPU time
/// over the upload, and how long it took.
pub async fn camera_run<T, Watch, Watching>(
    target: &Target,
    stream: &str,
    watch: Watch,
) -> anyhow::Result<(T, Duration, Duration)>
where
    Watch: FnOnce(SentAt, Instant) -> Watching,
    Watching: std::future::Future<Output = anyhow::Result<T>>,
{
    let http = crate::api_bench::client();
    post_json(&http, target.address, "createStream", json!({"StreamName": stream, "DataRetentionInHours": 24})).await?;
    let sent: SentAt = Arc::default();
    let cpu_before = cpu_time(target.pid()).unwrap_or_default();
    let started = Instant::now();
    let camera = tokio::spawn({
        let (address, stream, sent) = (target.address, stream.to_string(), sent.clone());
        async move { camera(address, &stream, sent).await }
    });
    let until = started + FRAME_INTERVAL * (FRAGMENTS as u32 * FRAMES_PER_FRAGMENT as u32 - 2);
    let watched = watch(sent, until).await?;
    camera.await??;
    let cpu = cpu_time(target.pid()).unwrap_or_default().saturating_sub(cpu_before);
    Ok((watched, cpu, started.elapsed()))
}

pub fn run(framelog_bin: &Path, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let target = Target::framelog(framelog_bin)?;
    let (_, alone_cpu, alone_elapsed) = runtime.block_on(phase(&target, "ll-camera-alone", 0))?;
    let (latencies, viewed_cpu, viewed_elapsed) = runtime.block_on(phase(&target, "ll-viewed", VIEWERS))?;
    anyhow::ensure!(latencies.len() > VIEWERS * 20, "only {} reloads were answered", latencies.len());
    let mut rows =
        vec![Row::latency(&format!("LL-HLS blocking reload, {VIEWERS} viewers"), "framelog", &latencies, None)];
    let detail = format!("{} reloads", latencies.len());
    rows.extend(cpu_rows("LL-HLS", VIEWERS, (alone_cpu, alone_elapsed), (viewed_cpu, viewed_elapsed), &detail));
    Ok(rows)
}

/// The server's CPU over the camera alone (the baseline) and over the camera with `viewers`
/// viewers, each as (CPU time, elapsed), as `kind`'s rows, and a line printed with `detail`.
pub fn cpu_rows(
    kind: &str,
    viewers: usize,
    (alone_cpu, alone_elapsed): (Duration, Duration),
    (viewed_cpu, viewed_elapsed): (Duration, Duration),
    detail: &str,
) -> Vec<Row> {
    let share = |cpu: Duration, elapsed: Duration| cpu.as_secs_f64() / elapsed.as_secs_f64();
    let (alone, viewed) = (share(alone_cpu, alone_elapsed), share(viewed_cpu, viewed_elapsed));
    let per_viewer_ms = (viewed - alone).max(0.0) * 1000.0 / viewers as f64;
    println!(
        "{kind}: server CPU {:.1}% of a core with the camera alone, {:.1}% with {viewers} viewers ({per_viewer_ms:.2} ms/s per viewer), {detail}",
        alone * 100.0,
        viewed * 100.0,
    );
    vec![
        Row::rate(&format!("{kind} server CPU, camera alone (% of a core)"), "framelog", alone * 100.0, None),
        Row::rate(
            &format!("{kind} server CPU, {viewers} viewers (% of a core)"),
            "framelog",
            viewed * 100.0,
            Some(viewed / alone.max(1e-9)),
        ),
        Row::rate(&format!("{kind} server CPU per viewer (ms per s)"), "framelog", per_viewer_ms, None),
    ]
}
