//! H.265 to H.264 for browsers: how many 1080p30 streams one core transcodes in real time. A 20 s
//! 1080p30 H.265 upload is played through an ON_DEMAND HLS session that asks for H.264, segment by
//! segment, so every fragment is transcoded once by the server's transcode worker processes. Its
//! CPU (the server's and its reaped workers') per second of video is compared with `ffmpeg`
//! transcoding the same file with libx264 at the same preset and quality, in the same run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::clip_source::{PRODUCER_START_MS, make_1080p30, upload};
use crate::http_get::{get, media_playlist_url, resolve};
use crate::stats::Row;
use crate::target::Target;
use crate::video_bench::post_json;

const SECONDS: u64 = 20;
const FRAGMENTS: u64 = SECONDS / 2;
const STREAM: &str = "bench-h265";
/// As an H.265 camera sends: a key frame every 2 s.
const ENCODER: &str = "x265enc speed-preset=ultrafast key-int-max=60 bitrate=4000 ! h265parse";

/// Plays the whole upload as H.264: every segment of an ON_DEMAND session, one after another, on
/// a server that has transcoded none of them yet. Returns the bytes fetched.
async fn play_as_h264(target: &Target) -> anyhow::Result<usize> {
    let http = crate::api_bench::client();
    let selector = json!({
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {
            "StartTimestamp": PRODUCER_START_MS as f64 / 1000.0,
            "EndTimestamp": (PRODUCER_START_MS + SECONDS * 1000) as f64 / 1000.0,
        },
    });
    let request = json!({"StreamName": STREAM, "PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": selector,
        "VideoCodec": "H264", "MaxMediaPlaylistFragmentResults": 1000});
    let answer = post_json(&http, target.address, "getHLSStreamingSessionURL", request).await?;
    let master = answer["HLSStreamingSessionURL"].as_str().ok_or_else(|| anyhow::anyhow!("no URL: {answer}"))?;
    let playlist_url = media_playlist_url(master, 1);
    let playlist = get(&http, &playlist_url).await?.body;
    let segments: Vec<String> = String::from_utf8_lossy(&playlist)
        .lines()
        .filter(|line| line.starts_with("getMP4MediaFragment.mp4"))
        .map(|line| resolve(&playlist_url, line))
        .collect();
    anyhow::ensure!(segments.len() as u64 == FRAGMENTS, "{} segments listed", segments.len());
    let mut bytes = 0;
    for segment in segments {
        bytes += get(&http, &segment).await?.body.len();
    }
    Ok(bytes)
}

/// CPU time of a process and of its children it has waited for (`/proc/<pid>/stat` utime, stime,
/// cutime, cstime, in USER_HZ = 100 ticks).
fn cpu_with_children(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> =
        stat.rsplit_once(") ").map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = (11..15).map(|at| fields.get(at).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0)).sum();
    Ok(Duration::from_millis(ticks * 10))
}

/// ffmpeg's transcode of the same file, its CPU time (as this process's reaped child).
fn ffmpeg_transcode(source: &Path) -> anyhow::Result<Duration> {
    let before = cpu_with_children(std::process::id())?;
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(source)
        .args([
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-crf",
            "23",
            "-f",
            "null",
            "-",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "ffmpeg failed: {status}");
    Ok(cpu_with_children(std::process::id())? - before)
}

pub fn run(framelog_bin: &Path, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let scratch = tempfile::tempdir_in(".")?;
    let source = scratch.path().join("source.mkv");
    make_1080p30(&source, SECONDS, ENCODER)?;
    let target = Target::framelog(framelog_bin)?;
    runtime.block_on(upload(&target, STREAM, &source, FRAGMENTS))?;
    let before = cpu_with_children(target.pid())?;
    let started = Instant::now();
    let bytes = runtime.block_on(play_as_h264(&target))?;
    let (ours_cpu, ours_elapsed) = (cpu_with_children(target.pid())? - before, started.elapsed());
    let theirs_cpu = ffmpeg_transcode(&source)?;
    let streams_per_core = |cpu: Duration| SECONDS as f64 / cpu.as_secs_f64().max(1e-3);
    let (ours, theirs) = (streams_per_core(ours_cpu), streams_per_core(theirs_cpu));
    println!(
        "H.265 -> H.264 1080p30: framelog {:.1} CPU s for {SECONDS} s of video ({ours:.2} streams per core; one stream at \
         {:.1}x real time, {:.1} MB of segments), ffmpeg {:.1} CPU s ({theirs:.2} streams per core)",
        ours_cpu.as_secs_f64(),
        SECONDS as f64 / ours_elapsed.as_secs_f64(),
        bytes as f64 / 1e6,
        theirs_cpu.as_secs_f64(),
    );
    let name = "H.265 -> H.264 1080p30 transcode (streams per core in real time)";
    Ok(vec![
        Row::rate(name, "ffmpeg libx264 ultrafast (baseline)", theirs, None),
        Row::rate(name, "framelog (transcode worker processes)", ours, Some(ours / theirs)),
        Row::rate(
            "H.265 -> H.264 1080p30, one stream (x real time)",
            "framelog",
            SECONDS as f64 / ours_elapsed.as_secs_f64(),
            None,
        ),
    ])
}
