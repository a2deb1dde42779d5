//! A camera fleet: many concurrent PutMedia connections, each paced in real time at about
//! 0.5 MB/s (a 4 Mbit/s camera, 30 fps, 2-second fragments as known-size Clusters, the way the
//! producer SDKs write them). Measures the time from a fragment's last byte leaving the client to
//! its PERSISTED ack, the server's RSS, errors, and, for a few streams, the GetMedia live tail:
//! from the PERSISTED ack to the first bytes of that fragment at a reader started with NOW.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use framelog_media::{Event, Fragmenter, Limits, ebml, ids};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::stats::{Row, percentile_ms};
use crate::target::Target;

pub type StreamingHttp = Client<HttpConnector, BoxBody<Bytes, Infallible>>;

/// A client for streamed uploads; no Nagle delay between a fragment's last frame and its ack.
pub fn streaming_client() -> StreamingHttp {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

pub const FRAME_INTERVAL: Duration = Duration::from_micros(33_333);
pub const FRAMES_PER_FRAGMENT: usize = 60;
/// 0.5 MB/s at 30 fps: a 100 KB key frame and 59 frames of ~15.25 KB per 2-second fragment.
const KEY_FRAME_BYTES: usize = 100_000;
const DELTA_FRAME_BYTES: usize = 15_250;
const FRAGMENT_MS: u64 = 2_000;
/// Streams that also get a GetMedia NOW reader.
const TAILED_STREAMS: usize = 4;

/// What the fleet run measured.
#[derive(Debug, Default)]
struct Measured {
    ack_latencies: Vec<Duration>,
    /// Tailed streams: fragment number → (last byte sent, PERSISTED ack received).
    persisted_at: HashMap<String, (Instant, Instant)>,
    read_at: HashMap<String, Instant>,
    errors: Vec<String>,
    bytes_sent: u64,
}

fn header() -> Vec<u8> {
    let mut out = Vec::new();
    framelog_media::write_stream_header(
        &mut out,
        1_000_000,
        "bench",
        &[framelog_media::video_track(1, "V_MPEG4/ISO/AVC")],
    );
    out
}

/// The SimpleBlock elements of one fragment, shared by every camera (the bench client must not
/// spend the CPU the server needs on making up bytes).
pub fn fragment_blocks() -> Vec<Bytes> {
    fragment_blocks_sized(KEY_FRAME_BYTES, DELTA_FRAME_BYTES)
}

/// `fragment_blocks` with other frame sizes (another camera bitrate).
pub fn fragment_blocks_sized(key_frame_bytes: usize, delta_frame_bytes: usize) -> Vec<Bytes> {
    (0..FRAMES_PER_FRAGMENT)
        .map(|frame| {
            let size = if frame == 0 { key_frame_bytes } else { delta_frame_bytes };
            // One length-prefixed NAL unit (an IDR or a non-IDR slice), as H.264 in Matroska is:
            // WebRTC egress splits samples into their NAL units.
            let nal_type: u8 = if frame == 0 { 0x65 } else { 0x41 };
            let mut data = ((size - 4) as u32).to_be_bytes().to_vec();
            data.push(nal_type);
            data.extend((5..size).map(|i| (i ^ frame) as u8));
            let mut element = Vec::with_capacity(size + 12);
            framelog_media::write_simple_block(&mut element, 1, (frame * 33) as i16, frame == 0, &data);
            Bytes::from(element)
        })
        .collect()
}

/// One fragment as the pieces a camera sends, one per frame; the known-size Cluster header and
/// its Timecode go just before the first frame.
pub fn fragment_pieces(timecode: u64, blocks: &[Bytes]) -> Vec<Bytes> {
    let mut timecode_element = Vec::new();
    ebml::write_uint(&mut timecode_element, ids::TIMECODE, timecode);
    let body_len = timecode_element.len() + blocks.iter().map(Bytes::len).sum::<usize>();
    let mut head = Vec::new();
    ebml::write_id(&mut head, ids::CLUSTER);
    ebml::write_size(&mut head, body_len as u64, false);
    head.extend(timecode_element);
    let mut pieces = Vec::with_capacity(blocks.len() + 1);
    pieces.push(Bytes::from(head));
    pieces.extend(blocks.iter().cloned());
    pieces
}

/// One camera: paced frames out, acks in; records each fragment's last-byte → PERSISTED time.
async fn camera(
    http: StreamingHttp,
    address: std::net::SocketAddr,
    index: usize,
    fragments: u64,
    blocks: Arc<Vec<Bytes>>,
    start_delay: Duration,
    measured: Arc<Mutex<Measured>>,
) -> anyhow::Result<()> {
    let name = format!("fleet-{index}");
    tokio::time::sleep(start_delay).await;
    let counted = measured.clone();
    let on_bytes = move |len: u64| counted.lock().expect("lock").bytes_sent += len;
    let (mut upload, sending) = PacedUpload::open(&http, address, &name, fragments, blocks, on_bytes).await?;
    upload
        .read_persisted(fragments, |ack, sent, now| {
            let mut measured = measured.lock().expect("lock");
            measured.ack_latencies.push(now.saturating_duration_since(sent));
            if index < TAILED_STREAMS
                && let Some(number) = ack["FragmentNumber"].as_str()
            {
                measured.persisted_at.insert(number.to_string(), (sent, now));
            }
        })
        .await?;
    sending.abort();
    Ok(())
}

/// A camera's PutMedia upload: fragments paced in real time out, acks in.
pub struct PacedUpload {
    name: String,
    body: hyper::body::Incoming,
    /// When each fragment (by timecode) had its last byte sent.
    last_byte_at: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl PacedUpload {
    /// Starts the upload of `fragments` fragments of `blocks` to stream `name`; the second value
    /// is the sending task (abort it once the acks are in).
    pub async fn open(
        http: &StreamingHttp,
        address: std::net::SocketAddr,
        name: &str,
        fragments: u64,
        blocks: Arc<Vec<Bytes>>,
        on_bytes: impl Fn(u64) + Send + 'static,
    ) -> anyhow::Result<(PacedUpload, tokio::task::JoinHandle<()>)> {
        let (sender, receiver) = mpsc::channel::<Bytes>(FRAMES_PER_FRAGMENT * 2);
        let body = StreamBody::new(ReceiverStream::new(receiver).map(|b| Ok::<_, Infallible>(Frame::data(b))));
        let request = hyper::Request::post(format!("http://{address}/putMedia"))
            .header("x-amzn-stream-name", name)
            .header("x-amzn-fragment-timecode-type", "RELATIVE")
            .header("x-amzn-producer-start-timestamp", "1795650000.000")
            .body(BodyExt::boxed(body))?;
        sender.send(Bytes::from(header())).await?;
        let last_byte_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let sending = {
            let last_byte_at = last_byte_at.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(FRAME_INTERVAL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for fragment in 0..fragments {
                    let timecode = fragment * FRAGMENT_MS;
                    for (position, piece) in fragment_pieces(timecode, &blocks).into_iter().enumerate() {
                        // The cluster head goes out with the key frame, not a frame interval early.
                        if position > 0 {
                            ticks.tick().await;
                        }
                        let len = piece.len() as u64;
                        if sender.send(piece).await.is_err() {
                            return;
                        }
                        on_bytes(len);
                    }
                    last_byte_at.lock().expect("lock").insert(timecode, Instant::now());
                }
                // Hold the body open until the acks are in; dropping the sender ends the upload.
                tokio::time::sleep(Duration::from_secs(2)).await;
            })
        };
        let body = http.request(request).await?.into_body();
        Ok((PacedUpload { name: name.to_string(), body, last_byte_at }, sending))
    }

    /// Reads acks until `fragments` PERSISTED; calls `on_persisted(ack, last byte sent, now)` for
    /// each. An ERROR ack or 30 s without an ack fails the upload.
    pub async fn read_persisted(
        &mut self,
        fragments: u64,
        mut on_persisted: impl FnMut(&Value, Instant, Instant),
    ) -> anyhow::Result<()> {
        let mut persisted = 0;
        let mut line = Vec::new();
        while persisted < fragments {
            let Some(frame) = tokio::time::timeout(Duration::from_secs(30), self.body.frame()).await? else {
                anyhow::bail!("{}: ack stream ended after {persisted} PERSISTED", self.name);
            };
            let frame = frame?;
            let Some(data) = frame.data_ref() else { continue };
            for &byte in data.iter() {
                if byte != b'\n' {
                    line.push(byte);
                    continue;
                }
                let ack: Value = serde_json::from_slice(&line)?;
                line.clear();
                match ack["EventType"].as_str() {
                    Some("PERSISTED") => {
                        let now = Instant::now();
                        persisted += 1;
                        let timecode = ack["FragmentTimecode"].as_u64().unwrap_or_default();
                        let sent = self.last_byte_at.lock().expect("lock").get(&timecode).copied();
                        if let Some(sent) = sent {
                            on_persisted(&ack, sent, now);
                        }
                    }
                    Some("ERROR") => anyhow::bail!("{}: {ack}", self.name),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// A GetMedia NOW reader: notes when each fragment's chunk starts arriving.
async fn tail_reader(
    address: std::net::SocketAddr,
    index: usize,
    measured: Arc<Mutex<Measured>>,
) -> anyhow::Result<()> {
    let http = crate::api_bench::client();
    let document = json!({"StreamName": format!("fleet-{index}"), "StartSelector": {"StartSelectorType": "NOW"}});
    let request = hyper::Request::post(format!("http://{address}/getMedia"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(document.to_string())))?;
    let mut body = http.request(request).await?.into_body();
    let mut fragmenter = Fragmenter::new(Limits::default());
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else { continue };
        let arrived = Instant::now();
        fragmenter.push(data);
        while let Some(event) = fragmenter.next_event()? {
            // The fragment-number Tags lead each chunk, ahead of its Cluster.
            if let Event::Tags(tags) = event
                && let Some(tag) = tags.iter().find(|t| t.name == "AWS_KINESISVIDEO_FRAGMENT_NUMBER")
            {
                measured.lock().expect("lock").read_at.entry(tag.value.clone()).or_insert(arrived);
            }
        }
    }
    Ok(())
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time the process has used (user + system), from `/proc/<pid>/stat` (in USER_HZ = 100 ticks).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Runs the fleet against the default server, or with `segments: false` against one that keeps
/// every payload in RocksDB (the layout before segment files).
pub fn run(
    framelog_bin: &std::path::Path,
    runtime: &tokio::runtime::Runtime,
    streams: usize,
    seconds: u64,
    segments: bool,
) -> anyhow::Result<Vec<Row>> {
    let scratch = tempfile::tempdir_in(".")?;
    let (target, subject) = if segments {
        (Target::framelog(framelog_bin)?, "framelog")
    } else {
        (crate::video_bench::without_segments(framelog_bin, scratch.path())?, "framelog, no segment files (before)")
    };
    run_on(target, subject, runtime, streams, seconds)
}

/// The fleet on a given server (one process, or a cluster, whose node 1 stands for the CPU and
/// memory figures).
pub fn run_on(
    target: Target,
    subject: &str,
    runtime: &tokio::runtime::Runtime,
    streams: usize,
    seconds: u64,
) -> anyhow::Result<Vec<Row>> {
    let address = target.address;
    let pid = target.pid();
    let fragments = (seconds / (FRAGMENT_MS / 1000)).max(1);
    let measured: Arc<Mutex<Measured>> = Arc::default();
    let (idle_kib, peak_kib, elapsed, cpu) = runtime.block_on(async {
        let control = crate::api_bench::client();
        for index in 0..streams {
            let stream = json!({"StreamName": format!("fleet-{index}"), "DataRetentionInHours": 24});
            crate::video_bench::post_json(&control, address, "createStream", stream).await?;
        }
        let idle_kib = rss_kib(pid).unwrap_or_default();
        let readers: Vec<_> = (0..TAILED_STREAMS.min(streams))
            .map(|index| tokio::spawn(tail_reader(address, index, measured.clone())))
            .collect();
        let http = streaming_client();
        let blocks = Arc::new(fragment_blocks());
        let cpu_before = cpu_time(pid).unwrap_or_default();
        let started = Instant::now();
        let cameras: Vec<_> = (0..streams)
            .map(|index| {
                // Cameras start spread over one fragment, as a real fleet's are.
                let delay = Duration::from_millis((index as u64 * FRAGMENT_MS) / streams as u64);
                let blocks = blocks.clone();
                tokio::spawn(camera(http.clone(), address, index, fragments, blocks, delay, measured.clone()))
            })
            .collect();
        let mut peak_kib = idle_kib;
        let mut all = tokio::spawn(async move {
            let mut results = Vec::with_capacity(cameras.len());
            for camera in cameras {
                results.push(camera.await);
            }
            results
        });
        loop {
            tokio::select! {
                results = &mut all => {
                    for result in results? {
                        if let Err(error) = result.map_err(anyhow::Error::from).and_then(|r| r) {
                            measured.lock().expect("lock").errors.push(error.to_string());
                        }
                    }
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    peak_kib = peak_kib.max(rss_kib(pid).unwrap_or_default());
                }
            }
        }
        let elapsed = started.elapsed();
        let cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu_before);
        tokio::time::sleep(Duration::from_millis(200)).await;
        for reader in readers {
            reader.abort();
        }
        Ok::<_, anyhow::Error>((idle_kib, peak_kib, elapsed, cpu))
    })?;
    drop(target);

    let mut measured = measured.lock().expect("lock");
    let Measured { ack_latencies, persisted_at, read_at, errors, bytes_sent, .. } = &mut *measured;
    ack_latencies.sort();
    // From the fragment's last byte at the producer to its first bytes at a live reader; and how
    // often the reader had it before the PERSISTED ack was back at the producer.
    let tail_pairs: Vec<(Duration, bool)> = persisted_at
        .iter()
        .filter_map(|(number, (sent, acked))| {
            let read = *read_at.get(number)?;
            Some((read.saturating_duration_since(*sent), read <= *acked))
        })
        .collect();
    let before_ack = tail_pairs.iter().filter(|(_, early)| *early).count();
    let mut tail: Vec<Duration> = tail_pairs.iter().map(|(latency, _)| *latency).collect();
    tail.sort();
    let per_stream_mib = (peak_kib.saturating_sub(idle_kib)) as f64 / 1024.0 / streams as f64;
    let in_flight_mib = (KEY_FRAME_BYTES + (FRAMES_PER_FRAGMENT - 1) * DELTA_FRAME_BYTES) as f64 / (1024.0 * 1024.0);
    println!(
        "fleet: {streams} streams x {fragments} fragments in {:.1} s; {} errors{}; server RSS idle {:.0} MiB, peak {:.0} MiB \
         = {per_stream_mib:.2} MiB/stream ({:.2} MiB beyond the {in_flight_mib:.2} MiB fragment in flight); \
         {} tail samples, {} of them at the reader no later than the PERSISTED ack at the producer",
        elapsed.as_secs_f64(),
        errors.len(),
        errors.first().map(|e| format!(" (first: {e})")).unwrap_or_default(),
        idle_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0,
        per_stream_mib - in_flight_mib,
        tail.len(),
        before_ack,
    );
    let mib = *bytes_sent as f64 / (1024.0 * 1024.0);
    // Server CPU per camera: ms of CPU per second of one camera's video.
    let cpu_ms_per_camera_second = cpu.as_secs_f64() * 1000.0 / (streams as f64 * elapsed.as_secs_f64());
    println!(
        "fleet ({subject}): server CPU {:.1} s over {:.1} s = {cpu_ms_per_camera_second:.2} ms per camera-second",
        cpu.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    Ok(vec![
        Row {
            name: format!("PutMedia fleet {streams} x 0.5 MB/s, server CPU ms per camera-second"),
            subject: subject.into(),
            records_per_sec: cpu_ms_per_camera_second,
            mib_per_sec: 0.0,
            p50_ms: None,
            p99_ms: None,
            ratio_to_baseline: None,
        },
        Row {
            name: format!("PutMedia fleet {streams} x 0.5 MB/s, last byte -> PERSISTED"),
            subject: subject.into(),
            records_per_sec: ack_latencies.len() as f64 / elapsed.as_secs_f64(),
            mib_per_sec: mib / elapsed.as_secs_f64(),
            p50_ms: Some(percentile_ms(ack_latencies, 50.0)),
            p99_ms: Some(percentile_ms(ack_latencies, 99.0)),
            ratio_to_baseline: None,
        },
        Row {
            name: format!("GetMedia NOW tail, last byte -> reader ({} streams)", TAILED_STREAMS.min(streams)),
            subject: subject.into(),
            records_per_sec: tail.len() as f64 / elapsed.as_secs_f64(),
            mib_per_sec: 0.0,
            p50_ms: Some(percentile_ms(&tail, 50.0)),
            p99_ms: Some(percentile_ms(&tail, 99.0)),
            ratio_to_baseline: None,
        },
    ])
}
