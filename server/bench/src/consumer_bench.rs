//! Consumer benchmarks on a 1280x720 30 fps H.264 stream of 2-second fragments:
//! - throughput: every frame decoded, scaled to 640x360, JPEG-encoded and delivered to a loopback
//!   webhook, against `ffmpeg` decoding the same file to 640x360 JPEG files in the same run;
//! - latency: a fragment's PERSISTED ack at the producer → its first frame at the webhook;
//! - ingest: PutMedia's PERSISTED ack latency with 10 consumers attached, against none.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framelog_media::{ebml, ids};
use framelog_sdk::{Ack, Client, ClientConfig, TimecodeType};
use serde_json::json;

use crate::stats::{Row, percentile_ms};
use crate::target::Target;
use crate::video_bench::post_json;
use crate::webhook_sink::WebhookSink;

const SECONDS: u64 = 60;
const FRAGMENTS: usize = (SECONDS / 2) as usize;
const FRAMES: u64 = SECONDS * 30;
const ROUNDS: usize = 2;
/// Paced uploads send a 2-second fragment this often (faster than real time keeps the run short;
/// each fragment is still persisted before the next one is sent).
const SEND_EVERY: Duration = Duration::from_millis(500);
const ATTACHED_CONSUMERS: usize = 10;
/// Rounds of the ingest comparison: 5 x 30 acks per side, so that its p99 is not just the one
/// slowest fsync of the run.
const INGEST_ROUNDS: usize = 5;

fn make_source(path: &Path) -> anyhow::Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1280x720:rate=30:duration={SECONDS}"))
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-pix_fmt", "yuv420p", "-b:v", "3M", "-f", "matroska"])
        .arg(path)
        .status()?;
    anyhow::ensure!(status.success(), "ffmpeg failed: {status}");
    Ok(())
}

/// Splits a Matroska file into a stream header (EBML header, a Segment of unknown size, the
/// Segment's children before the first Cluster) and its Clusters, so they can be sent one by one.
fn split(file: &[u8]) -> anyhow::Result<(Bytes, Vec<Bytes>)> {
    let header_at = |pos: usize| match ebml::read_header(&file[pos..]) {
        ebml::Read::Done(header) => Ok(header),
        _ => anyhow::bail!("not Matroska at byte {pos}"),
    };
    let ebml_header = header_at(0)?;
    let segment_at = ebml_header.header_len + ebml_header.size as usize;
    let segment = header_at(segment_at)?;
    anyhow::ensure!(segment.id == ids::SEGMENT, "no Segment after the EBML header");
    let mut head = file[..segment_at].to_vec();
    ebml::write_id(&mut head, ids::SEGMENT);
    ebml::write_size(&mut head, ebml::UNKNOWN_SIZE, true);
    let mut clusters = Vec::new();
    let mut pos = segment_at + segment.header_len;
    while pos < file.len() {
        let child = header_at(pos)?;
        anyhow::ensure!(child.size != ebml::UNKNOWN_SIZE, "an element of unknown size at byte {pos}");
        let end = (pos + child.header_len + child.size as usize).min(file.len());
        if child.id == ids::CLUSTER {
            clusters.push(Bytes::copy_from_slice(&file[pos..end]));
        } else if clusters.is_empty() {
            head.extend_from_slice(&file[pos..end]);
        }
        pos = end;
    }
    anyhow::ensure!(clusters.len() == FRAGMENTS, "{} clusters, expected {FRAGMENTS}", clusters.len());
    Ok((Bytes::from(head), clusters))
}

/// A fragment's times at the producer: its last byte handed to the connection, its PERSISTED ack.
struct Acked {
    fragment_number: String,
    sent: Instant,
    persisted: Instant,
}

/// Uploads every cluster on one PutMedia connection, `every` apart (all at once for zero).
async fn produce(
    address: std::net::SocketAddr,
    stream: &str,
    media: &(Bytes, Vec<Bytes>),
    every: Duration,
) -> anyhow::Result<Vec<Acked>> {
    let client = Client::new(ClientConfig::new(format!("http://{address}")));
    let start_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let mut upload = client.open_media_upload(stream, TimecodeType::Relative { start_ms }, media.0.clone()).await?;
    let mut sent_at = Vec::new();
    let mut acked = Vec::new();
    let mut next_send = tokio::time::Instant::now();
    while acked.len() < media.1.len() {
        tokio::select! {
            _ = tokio::time::sleep_until(next_send), if sent_at.len() < media.1.len() => {
                upload.send(media.1[sent_at.len()].clone())?;
                sent_at.push(Instant::now());
                next_send += every;
            }
            ack = upload.next_ack() => match ack? {
                Some(Ack::Persisted { fragment_number, .. }) => {
                    let sent = sent_at.get(acked.len()).copied().unwrap_or_else(Instant::now);
                    acked.push(Acked { fragment_number, sent, persisted: Instant::now() });
                }
                Some(Ack::Error { error_id, error_code, .. }) => anyhow::bail!("PutMedia failed: {error_id} {error_code}"),
                Some(_) => {}
                None => anyhow::bail!("ack stream ended after {} PERSISTED", acked.len()),
            },
        }
    }
    Ok(acked)
}

async fn create_stream(address: std::net::SocketAddr, stream: &str) -> anyhow::Result<()> {
    let http = crate::api_bench::client();
    post_json(&http, address, "createStream", json!({"StreamName": stream, "DataRetentionInHours": 24})).await?;
    Ok(())
}

async fn create_consumer(
    address: std::net::SocketAddr,
    stream: &str,
    name: &str,
    start: &str,
    selection: serde_json::Value,
    max_frames: u32,
    url: &str,
) -> anyhow::Result<()> {
    let http = crate::api_bench::client();
    let request = json!({
        "StreamName": stream,
        "ConsumerName": name,
        "StartSelector": {"StartSelectorType": start},
        "Selection": selection,
        "Output": {"Format": "JPEG", "JPEGQuality": 80, "WidthPixels": 640, "HeightPixels": 360},
        "Batching": {"MaxFrames": max_frames, "MaxWaitMs": 100},
        "Webhook": {"Url": url},
    });
    post_json(&http, address, "createConsumer", request).await?;
    Ok(())
}

/// One consumer taking every frame of the stored stream; the time until the webhook has them all.
async fn deliver_every_frame(address: std::net::SocketAddr, round: usize) -> anyhow::Result<Duration> {
    let sink = WebhookSink::start().await?;
    let every_frame = json!({"Type": "FRAMES_PER_SECOND", "FramesPerSecond": 120});
    let started = Instant::now();
    create_consumer(address, "bench-consumers", &format!("all-{round}"), "EARLIEST", every_frame, 30, &sink.url)
        .await?;
    while sink.frames() < FRAMES {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "only {} frames delivered", sink.frames());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(sink.frames() == FRAMES, "{} frames delivered, expected {FRAMES}", sink.frames());
    Ok(elapsed)
}

fn ffmpeg_every_frame(source: &Path, out_dir: &Path) -> anyhow::Result<Duration> {
    std::fs::create_dir_all(out_dir)?;
    let started = Instant::now();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(source)
        .args(["-vf", "scale=640:360", "-q:v", "4"])
        .arg(out_dir.join("%05d.jpg"))
        .status()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status.success(), "ffmpeg failed: {status}");
    let images = std::fs::read_dir(out_dir)?.count() as u64;
    std::fs::remove_dir_all(out_dir)?;
    anyhow::ensure!(images == FRAMES, "ffmpeg made {images} images");
    Ok(elapsed)
}

/// PERSISTED at the producer → first frame at the webhook, per fragment of a paced upload.
async fn first_frame_latencies(
    address: std::net::SocketAddr,
    media: &(Bytes, Vec<Bytes>),
) -> anyhow::Result<Vec<Duration>> {
    create_stream(address, "bench-consumer-live").await?;
    let sink = WebhookSink::start().await?;
    let key_frames = json!({"Type": "KEY_FRAMES"});
    create_consumer(address, "bench-consumer-live", "live", "NOW", key_frames, 1, &sink.url).await?;
    let acked = produce(address, "bench-consumer-live", media, SEND_EVERY).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = sink.received.lock().expect("lock");
    let mut latencies: Vec<Duration> = acked
        .iter()
        .filter_map(|a| Some(received.first_frame_at.get(&a.fragment_number)?.saturating_duration_since(a.persisted)))
        .collect();
    anyhow::ensure!(latencies.len() == FRAGMENTS, "{} of {FRAGMENTS} fragments reached the webhook", latencies.len());
    latencies.sort();
    Ok(latencies)
}

/// Send → PERSISTED per fragment of a paced upload, with `consumers` consumers following the stream.
async fn ack_latencies(
    address: std::net::SocketAddr,
    media: &(Bytes, Vec<Bytes>),
    round: usize,
    consumers: usize,
) -> anyhow::Result<Vec<Duration>> {
    let stream = format!("bench-ingest-{round}-{consumers}");
    create_stream(address, &stream).await?;
    let sink = WebhookSink::start().await?;
    for n in 0..consumers {
        // Five decoded frames per second each: together they keep the decode pool busy.
        let rate = json!({"Type": "FRAMES_PER_SECOND", "FramesPerSecond": 5});
        create_consumer(address, &stream, &format!("c{n}"), "NOW", rate, 5, &sink.url).await?;
    }
    let acked = produce(address, &stream, media, SEND_EVERY).await?;
    if consumers > 0 {
        anyhow::ensure!(sink.frames() > 0, "the attached consumers delivered nothing during the upload");
    }
    Ok(acked.iter().map(|a| a.persisted.saturating_duration_since(a.sent)).collect())
}

pub fn run(framelog_bin: &Path, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let scratch = tempfile::tempdir_in(".")?;
    let source = scratch.path().join("source.mkv");
    make_source(&source)?;
    let media = split(&std::fs::read(&source)?)?;
    let target = Target::framelog(framelog_bin)?;
    let address = target.address;

    // Throughput: the stored stream, one warm-up round each, then alternating rounds.
    runtime.block_on(async {
        create_stream(address, "bench-consumers").await?;
        produce(address, "bench-consumers", &media, Duration::ZERO).await
    })?;
    runtime.block_on(deliver_every_frame(address, 0))?;
    ffmpeg_every_frame(&source, &scratch.path().join("warm"))?;
    let (mut ours, mut theirs) = (Duration::ZERO, Duration::ZERO);
    for round in 1..=ROUNDS {
        ours += runtime.block_on(deliver_every_frame(address, round))?;
        theirs += ffmpeg_every_frame(&source, &scratch.path().join(format!("round-{round}")))?;
    }
    let rate = |elapsed: Duration| (FRAMES as usize * ROUNDS) as f64 / elapsed.as_secs_f64();
    let name = "720p frames -> 640x360 JPEG delivered";
    let mut rows = vec![
        Row::rate(name, "ffmpeg to files (baseline)", rate(theirs), None),
        Row::rate(name, "framelog consumer", rate(ours), Some(rate(ours) / rate(theirs))),
    ];

    let first_frames = runtime.block_on(first_frame_latencies(address, &media))?;
    rows.push(Row::latency("PERSISTED ack -> webhook first frame", "framelog", &first_frames, None));

    // Alternating rounds, so that a slow moment of the machine does not land on one side only.
    let (mut alone, mut attached) = (Vec::new(), Vec::new());
    for round in 0..INGEST_ROUNDS {
        alone.extend(runtime.block_on(ack_latencies(address, &media, round, 0))?);
        attached.extend(runtime.block_on(ack_latencies(address, &media, round, ATTACHED_CONSUMERS))?);
    }
    alone.sort();
    attached.sort();
    let p99_ratio = percentile_ms(&attached, 99.0) / percentile_ms(&alone, 99.0).max(f64::MIN_POSITIVE);
    rows.push(Row::latency("PutMedia send -> PERSISTED", "no consumers (baseline)", &alone, None));
    rows.push(Row::latency("PutMedia send -> PERSISTED", "10 consumers attached", &attached, Some(p99_ratio)));
    Ok(rows)
}
