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
    let http = crate::api_bench::client();
    post_json(&http, target.address, "createStream", json!({"StreamName": "bench-video", "DataRetentionInHours": 24}))
        .await?;
    let request = hyper::Request::post(format!("http://{}/putMedia", target.address))
        .header("x-amzn-stream-name", "bench-video")
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

pub fn run(framelog_bin: &Path, runtime: &tokio::runtime::Runtime, fragments: usize) -> anyhow::Result<Vec<Row>> {
    let upload = upload_bytes(fragments);
    let mib = upload.len() as f64 / (1024.0 * 1024.0);
    let scratch = tempfile::tempdir_in(".")?;
    let source = scratch.path().join("upload.mkv");
    std::fs::write(&source, &upload)?;
    let dd = dd_fdatasync(&source, &scratch.path().join("copy.mkv"))?;
    let target = Target::framelog(framelog_bin)?;
    let ours = runtime.block_on(put_media(&target, Bytes::from(upload), fragments))?;
    let name = format!("PutMedia 1 stream, {fragments} x 2 s 1080p fragments");
    let row =
        |subject: &str, elapsed: Duration, ratio| Row::timed(&name, subject, fragments as f64, mib, elapsed, ratio);
    Ok(vec![
        row("dd conv=fdatasync (baseline)", dd, None),
        row("framelog", ours, Some(dd.as_secs_f64() / ours.as_secs_f64())),
    ])
}
