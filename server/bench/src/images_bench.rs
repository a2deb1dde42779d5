//! GetImages throughput: 640x360 JPEGs of every key frame of a 1080p30 H.264 stream (one key
//! frame per 2-second fragment), against `ffmpeg` decoding only the key frames of the same file,
//! scaling them to 640x360 and writing JPEGs, in the same run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::clip_source::{PRODUCER_START_MS, make_1080p30, upload};
use crate::stats::Row;
use crate::target::Target;
use crate::video_bench::post_json;

const SECONDS: u64 = 30;
const KEY_FRAMES: u64 = SECONDS / 2;
const ROUNDS: usize = 4;
const STREAM: &str = "bench-images";
const ENCODER: &str = "x264enc speed-preset=ultrafast key-int-max=60 bitrate=8000 ! h264parse";

async fn get_images(target: &Target) -> anyhow::Result<usize> {
    let http = crate::api_bench::client();
    let answer: Value = post_json(
        &http,
        target.address,
        "getImages",
        json!({
            "StreamName": STREAM,
            "ImageSelectorType": "PRODUCER_TIMESTAMP",
            "StartTimestamp": PRODUCER_START_MS as f64 / 1000.0,
            "EndTimestamp": (PRODUCER_START_MS + (KEY_FRAMES - 1) * 2000) as f64 / 1000.0,
            "SamplingInterval": 2000,
            "Format": "JPEG",
            "WidthPixels": 640,
            "HeightPixels": 360,
            "MaxResults": 25,
        }),
    )
    .await?;
    let images = answer["Images"].as_array().map(|a| a.iter().filter(|i| i["ImageContent"].is_string()).count());
    let images = images.unwrap_or_default();
    anyhow::ensure!(images as u64 == KEY_FRAMES, "GetImages made {images} images: {answer}");
    Ok(images)
}

fn ffmpeg_key_frames(source: &Path, out_dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(out_dir)?;
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-skip_frame", "nokey", "-i"])
        .arg(source)
        .args(["-vf", "scale=640:360", "-fps_mode", "passthrough", "-q:v", "4"])
        .arg(out_dir.join("%03d.jpg"))
        .status()?;
    anyhow::ensure!(status.success(), "ffmpeg failed: {status}");
    let images = std::fs::read_dir(out_dir)?.count();
    std::fs::remove_dir_all(out_dir)?;
    anyhow::ensure!(images as u64 == KEY_FRAMES, "ffmpeg made {images} images");
    Ok(images)
}

/// The same server decoding on its own threads (`[images] isolate_decoder = false`), so the cost
/// of the decode worker processes shows beside the default.
fn in_process_target(framelog_bin: &Path, scratch: &Path) -> anyhow::Result<Target> {
    Target::framelog_configured(framelog_bin, scratch, "in-process", "[images]\nisolate_decoder = false\n")
}

pub fn run(framelog_bin: &Path, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let scratch = tempfile::tempdir_in(".")?;
    let source = scratch.path().join("source.mkv");
    make_1080p30(&source, SECONDS, ENCODER)?;
    let isolated = Target::framelog(framelog_bin)?;
    let in_process = in_process_target(framelog_bin, scratch.path())?;
    let mut measured = [(isolated, (0, Duration::ZERO)), (in_process, (0, Duration::ZERO))];
    for (target, _) in &measured {
        runtime.block_on(upload(target, STREAM, &source, KEY_FRAMES))?;
        // One warm-up round each (GStreamer's plugin registry, the decode workers' start).
        runtime.block_on(get_images(target))?;
    }
    ffmpeg_key_frames(&source, &scratch.path().join("warm"))?;
    let mut theirs = (0, Duration::ZERO);
    for round in 0..ROUNDS {
        for (target, ours) in &mut measured {
            let started = Instant::now();
            ours.0 += runtime.block_on(get_images(target))?;
            ours.1 += started.elapsed();
        }
        let started = Instant::now();
        theirs.0 += ffmpeg_key_frames(&source, &scratch.path().join(format!("round-{round}")))?;
        theirs.1 += started.elapsed();
    }
    let rate = |(images, elapsed): (usize, Duration)| images as f64 / elapsed.as_secs_f64();
    let name = "GetImages 1080p key frames -> 640x360 JPEG";
    let [(_, isolated), (_, in_process)] = measured;
    Ok(vec![
        Row::rate(name, "ffmpeg -skip_frame nokey (baseline)", rate(theirs), None),
        Row::rate(name, "framelog (decode worker processes)", rate(isolated), Some(rate(isolated) / rate(theirs))),
        Row::rate(name, "framelog, isolate_decoder = false", rate(in_process), Some(rate(in_process) / rate(theirs))),
    ])
}
