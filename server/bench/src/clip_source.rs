//! The 1080p30 clips the image and transcode benchmarks play: made by GStreamer, uploaded whole
//! with RELATIVE timecodes from a fixed producer start.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::target::Target;
use crate::video_bench::post_json;

pub const PRODUCER_START_MS: u64 = 1_795_650_000_000;

/// A `seconds`-long 1080p30 Matroska file of GStreamer's bouncing ball, encoded by `encoder`
/// (an encoder and its parser, e.g. `x264enc ... ! h264parse`).
pub fn make_1080p30(path: &Path, seconds: u64, encoder: &str) -> anyhow::Result<()> {
    let pipeline = format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width=1920,height=1080,framerate=30/1,format=I420 \
         ! {encoder} ! matroskamux streamable=true ! filesink location={location}",
        frames = seconds * 30,
        location = path.display()
    );
    let status = Command::new("gst-launch-1.0").arg("-q").args(pipeline.split_whitespace()).status()?;
    anyhow::ensure!(status.success(), "gst-launch-1.0 failed: {status}");
    Ok(())
}

/// Creates `stream` and uploads `source` to it in one PutMedia; checks that `fragments` were
/// persisted.
pub async fn upload(target: &Target, stream: &str, source: &Path, fragments: u64) -> anyhow::Result<()> {
    let http = crate::api_bench::client();
    post_json(&http, target.address, "createStream", json!({"StreamName": stream, "DataRetentionInHours": 24})).await?;
    let request = hyper::Request::post(format!("http://{}/putMedia", target.address))
        .header("x-amzn-stream-name", stream)
        .header("x-amzn-fragment-timecode-type", "RELATIVE")
        .header("x-amzn-producer-start-timestamp", format!("{:.3}", PRODUCER_START_MS as f64 / 1000.0))
        .body(Full::new(Bytes::from(std::fs::read(source)?)))?;
    let acks = http.request(request).await?.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&acks);
    let persisted = text.matches("\"PERSISTED\"").count() as u64;
    anyhow::ensure!(persisted == fragments, "{persisted} fragments persisted: {text}");
    Ok(())
}
