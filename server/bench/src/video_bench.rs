//! PutMedia ingest throughput: one stream of 2-second, 1080p-sized fragments pushed as fast as
//! possible over HTTP on loopback, timed from the first byte sent to the last PERSISTED ack, against
//! writing the same bytes with `dd conv=fdatasync` in the same run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framelog_media::{ebml, ids};
use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::stats::Row;
use crate::target::Target;

/// 1080p H.264 at about 8 Mbit/s: a 200 KB key frame and 59 frames of ~30 KB per 2-second GOP.
const KEY_FRAME_BYTES: usize = 200_000;
const DELTA_FRAME_BYTES: usize = 30_000;
const FRAMES_PER_FRAGMENT: usize = 60;

/// A Matroska upload of `fragments` clusters shaped like a 1080p camera's.
pub fn upload_bytes(fragments: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let track = framelog_media::Track {
        codec_private: vec![1, 0x64, 0, 0x28, 0xFF, 0xE1, 0, 0],
        ..framelog_media::video_track(1, "V_MPEG4/ISO/AVC")
    };
    framelog_media::write_stream_header(&mut out, 1_000_000, "bench", &[track]);
    for fragment in 0..fragments {
        ebml::write_id(&mut out, ids::CLUSTER);
        ebml::write_size(&mut out, ebml::UNKNOWN_SIZE, false);
        ebml::write_uint(&mut out, ids::TIMECODE, fragment as u64 * 2000);
        for frame in 0..FRAMES_PER_FRAGMENT {
            let size = if frame == 0 { KEY_FRAME_BYTES } else { DELTA_FRAME_BYTES };
            let data: Vec<u8> = (0..size).map(|i| (i ^ frame ^ fragment) as u8).collect();
            framelog_media::write_simple_block(&mut out, 1, (frame * 33) as i16, frame == 0, &data);
        }
    }
    out
}

/// A KVS call that must succeed; its JSON answer.
pub async fn post_json(
    http: &crate::api_bench::Http,
    address: std::net::SocketAddr,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let request = hyper::Request::post(format!("http://{address}/{path}"))
        .header("content-type", "application/json")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDUMMY/20261125/us-east-1/kinesisvideo/aws4_request")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = http.request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(status.is_success(), "{path} answered {status}: {}", String::from_utf8_lossy(&bytes));
    Ok(if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&bytes)? })
}

/// Pushes `upload` on one PutMedia connection; returns the time until `fragments` PERSISTED acks.
pub async fn put_media(target: &Target, upload: Bytes, fragments: usize) -> anyhow::Result<Duration> {
    put_media_to(target, "bench-video", upload, fragments).await
}

/// `put_media` into a new stream named `stream`.
pub async fn put_media_to(target: &Target, stream: &str, upload: Bytes, fragments: usize) -> anyhow::Result<Duration> {
    let http = crate::api_bench::client();
    post_json(&http, target.address, "createStream", json!({"StreamName": stream, "DataRetentionInHours": 24})).await?;
    let request = hyper::Request::post(format!("http://{}/putMedia", target.address))
        .header("x-amzn-stream-name", stream)
        .header("x-amzn-fragment-timecode-type", "RELATIVE")
        .header("x-amzn-producer-start-timestamp", "1795650000.000")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDUMMY/20261125/us-east-1/kinesisvideo/aws4_request")
        .body(Full::new(upload))?;
    let started = Instant::now();
    let body = http.request(request).await?.into_body();
    await_persisted(body, fragments).await?;
    Ok(started.elapsed())
}

/// Reads PutMedia's ack lines until `fragments` PERSISTED; any ERROR ack fails.
pub async fn await_persisted(mut body: hyper::body::Incoming, fragments: usize) -> anyhow::Result<()> {
    let mut persisted = 0;
    let mut line = Vec::new();
    while persisted < fragments {
        let Some(frame) = body.frame().await else { anyhow::bail!("ack stream ended after {persisted} PERSISTED") };
        for &byte in frame?.data_ref().map(|d| d.as_ref()).unwrap_or_default() {
            if byte == b'\n' {
                let text = String::from_utf8_lossy(&line);
                anyhow::ensure!(!text.contains("\"ERROR\""), "PutMedia failed: {text}");
                persisted += usize::from(text.contains("\"PERSISTED\""));
                line.clear();
            } else {
                line.push(byte);
            }
        }
    }
    Ok(())
}

fn dd_fdatasync(source: &Path, destination: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new("dd")
        .arg(format!("if={}", source.display()))
        .arg(format!("of={}", destination.display()))
        .args(["bs=1M", "conv=fdatasync", "status=none"])
        .status()?;
    anyhow::ensure!(status.success(), "dd failed: {status}");
    Ok(started.elapsed())
}

/// A server that keeps every payload in RocksDB (WAL, then blob files): the layout before
/// segment files, for before/after rows in the same run.
pub fn without_segments(framelog_bin: &Path, scratch: &Path) -> anyhow::Result<Target> {
    let toml = format!("[engine]\nsegment_min_bytes = {}\n", u64::MAX);
    Target::framelog_configured(framelog_bin, scratch, "no-segments", &toml)
}

/// Reads the stream back from the start with GetMedia (EARLIEST) until `bytes` have arrived;
/// the time to the last of them.
async fn get_media(target: &Target, stream: &str, bytes: usize) -> anyhow::Result<Duration> {
    let http = crate::api_bench::client();
    let query = json!({"StreamName": stream, "StartSelector": {"StartSelectorType": "EARLIEST"}});
    let request = hyper::Request::post(format!("http://{}/getMedia", target.address))
        .header("content-type", "application/json")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDUMMY/20261125/us-east-1/kinesisvideo/aws4_request")
        .body(Full::new(Bytes::from(query.to_string())))?;
    let started = Instant::now();
    let mut body = http.request(request).await?.into_body();
    let mut received = 0usize;
    while received < bytes {
        let Some(frame) = body.frame().await else { anyhow::bail!("GetMedia ended after {received} bytes") };
        received += frame?.data_ref().map_or(0, Bytes::len);
    }
    Ok(started.elapsed())
}

/// Rounds per subject, alternating, best kept: this machine's disk varies by 2x between runs
/// (dd alone measured 400 to 1,900 MB/s), and alternating lets the noise hit every subject alike.
const ROUNDS: usize = 3;

/// Best times over the rounds.
#[derive(Debug)]
struct Best {
    dd: Duration,
    put: Duration,
    put_before: Duration,
    get: Duration,
    get_before: Duration,
}

pub fn run(framelog_bin: &Path, runtime: &tokio::runtime::Runtime, fragments: usize) -> anyhow::Result<Vec<Row>> {
    let upload = Bytes::from(upload_bytes(fragments));
    let mib = upload.len() as f64 / (1024.0 * 1024.0);
    let scratch = tempfile::tempdir_in(".")?;
    let source = scratch.path().join("upload.mkv");
    std::fs::write(&source, &upload)?;
    let target = Target::framelog(framelog_bin)?;
    let old_layout = without_segments(framelog_bin, scratch.path())?;
    let mut best = Best {
        dd: Duration::MAX,
        put: Duration::MAX,
        put_before: Duration::MAX,
        get: Duration::MAX,
        get_before: Duration::MAX,
    };
    for round in 0..ROUNDS {
        let copy = scratch.path().join("copy.mkv");
        best.dd = best.dd.min(dd_fdatasync(&source, &copy)?);
        std::fs::remove_file(&copy)?;
        let stream = format!("bench-video-{round}");
        best.put = best.put.min(runtime.block_on(put_media_to(&target, &stream, upload.clone(), fragments))?);
        best.put_before =
            best.put_before.min(runtime.block_on(put_media_to(&old_layout, &stream, upload.clone(), fragments))?);
        best.get = best.get.min(runtime.block_on(get_media(&target, &stream, upload.len()))?);
        best.get_before = best.get_before.min(runtime.block_on(get_media(&old_layout, &stream, upload.len()))?);
    }
    let name = format!("PutMedia 1 stream, {fragments} x 2 s 1080p fragments");
    let row =
        |subject: &str, elapsed: Duration, ratio| Row::timed(&name, subject, fragments as f64, mib, elapsed, ratio);
    let ratio = |elapsed: Duration| Some(best.dd.as_secs_f64() / elapsed.as_secs_f64());
    let read_name = format!("GetMedia EARLIEST of those {fragments} fragments");
    let read_row = |subject: &str, elapsed: Duration, ratio| {
        Row::timed(&read_name, subject, fragments as f64, mib, elapsed, ratio)
    };
    Ok(vec![
        row("dd conv=fdatasync (baseline)", best.dd, None),
        row("framelog, no segment files (before)", best.put_before, ratio(best.put_before)),
        row("framelog", best.put, ratio(best.put)),
        read_row("framelog, no segment files (before, baseline)", best.get_before, None),
        read_row("framelog", best.get, Some(best.get_before.as_secs_f64() / best.get.as_secs_f64())),
    ])
}
