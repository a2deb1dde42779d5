//! WebRTC under load: viewers of one camera over WHEP, each a str0m peer in this process (as a
//! browser's would be), receiving the camera's H.264 while it sends 4 Mbit/s of frames in real
//! time. Server CPU with the viewers against the camera alone (the baseline), and the time from
//! the camera sending a frame to a viewer holding it (its RTP time is the producer clock, which
//! the camera sets to the wall clock as it sends).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;

use crate::fleet_bench::FRAMES_PER_FRAGMENT;
use crate::ll_bench::{FRAGMENTS, SentAt, camera_run, cpu_rows};
use crate::stats::Row;
use crate::target::Target;
use crate::video_bench::post_json;

const VIEWERS: usize = 20;
/// The RTP clock (90 kHz, 32 bits) wraps every this many ms.
const RTP_WRAP_MS: f64 = 4_294_967_296.0 / 90.0;

/// What the viewers measured.
#[derive(Debug, Default)]
struct Received {
    frames: usize,
    latencies: Vec<Duration>,
}

/// Posts the peer's offer to the WHEP URL and applies the answer.
async fn connect(rtc: &mut Rtc, whep_url: &str) -> anyhow::Result<()> {
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().context("no offer to make")?;
    let request = hyper::Request::post(whep_url)
        .header("content-type", "application/sdp")
        .body(Full::new(Bytes::from(offer.to_sdp_string())))?;
    let response = crate::api_bench::client().request(request).await?;
    let status = response.status();
    let answer = String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes()).into_owned();
    anyhow::ensure!(status == hyper::StatusCode::CREATED, "the WHEP offer answered {status}: {answer}");
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer)?)?;
    Ok(())
}

/// How long ago (wall clock) the producer time in a frame's RTP timestamp was.
fn age(rtp_time: u64) -> Duration {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0;
    let mut frame_ms = (now_ms / RTP_WRAP_MS).floor() * RTP_WRAP_MS + (rtp_time % (1 << 32)) as f64 / 90.0;
    if frame_ms > now_ms + RTP_WRAP_MS / 2.0 {
        frame_ms -= RTP_WRAP_MS;
    }
    Duration::from_secs_f64((now_ms - frame_ms).max(0.0) / 1000.0)
}

/// One viewer until `until`: its frames and their ages as they arrive.
async fn viewer(whep_url: String, until: Instant, received: Arc<Mutex<Received>>) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let local = socket.local_addr()?;
    let mut rtc = RtcConfig::new().clear_codecs().enable_h264(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    connect(&mut rtc, &whep_url).await?;
    let mut buffer = vec![0u8; 2048];
    while Instant::now() < until {
        let wake = loop {
            match rtc.poll_output()? {
                Output::Timeout(at) => break at,
                Output::Transmit(datagram) => {
                    let _ = socket.send_to(&datagram.contents, datagram.destination).await;
                }
                Output::Event(Event::MediaData(data)) => {
                    let mut received = received.lock().expect("lock");
                    received.frames += 1;
                    received.latencies.push(age(data.time.numer()));
                }
                Output::Event(_) => {}
            }
        };
        let wake = wake.min(Instant::now() + Duration::from_millis(100)).min(until);
        let input = tokio::select! {
            got = socket.recv_from(&mut buffer) => {
                let (length, from) = got?;
                Receive::new(Protocol::Udp, from, local, &buffer[..length]).ok().map(|d| Input::Receive(Instant::now(), d))
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => Some(Input::Timeout(Instant::now())),
        };
        if let Some(input) = input {
            rtc.handle_input(input)?;
        }
    }
    Ok(())
}

/// One camera on a new stream and `viewers` viewers: what they received, the server's CPU time
/// and how long the upload took.
async fn phase(target: &Target, stream: &str, viewers: usize) -> anyhow::Result<(Received, Duration, Duration)> {
    let address = target.address;
    let watch = |_sent: SentAt, until: Instant| async move {
        let received: Arc<Mutex<Received>> = Arc::default();
        if viewers == 0 {
            return Ok(Received::default());
        }
        let answer =
            post_json(&crate::api_bench::client(), address, "getWHEPSessionURL", json!({"StreamName": stream})).await?;
        let url = answer["WHEPSessionURL"].as_str().unwrap_or_default().to_string();
        let tasks: Vec<_> = (0..viewers).map(|_| tokio::spawn(viewer(url.clone(), until, received.clone()))).collect();
        for task in tasks {
            task.await??;
        }
        let mut received = std::mem::take(&mut *received.lock().expect("lock"));
        received.latencies.sort();
        Ok(received)
    };
    camera_run(target, stream, watch).await
}

pub fn run(framelog_bin: &Path, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let target = Target::framelog(framelog_bin)?;
    let (_, alone_cpu, alone_elapsed) = runtime.block_on(phase(&target, "whep-camera-alone", 0))?;
    let (one, _, _) = runtime.block_on(phase(&target, "whep-one-viewer", 1))?;
    let (received, viewed_cpu, viewed_elapsed) = runtime.block_on(phase(&target, "whep-viewed", VIEWERS))?;
    // Each viewer starts at a key frame within the first fragment, and all must get the rest.
    let least = VIEWERS * (FRAGMENTS as usize - 1) * FRAMES_PER_FRAGMENT * 9 / 10;
    anyhow::ensure!(received.frames >= least, "the viewers received {} frames, fewer than {least}", received.frames);
    let mut rows = vec![
        Row::latency("camera -> WHEP viewer holding the frame, 1 viewer", "framelog", &one.latencies, None),
        Row::latency(
            &format!("camera -> WHEP viewer holding the frame, {VIEWERS} viewers"),
            "framelog",
            &received.latencies,
            None,
        ),
    ];
    let detail = format!("{} frames received", received.frames);
    rows.extend(cpu_rows("WHEP", VIEWERS, (alone_cpu, alone_elapsed), (viewed_cpu, viewed_elapsed), &detail));
    Ok(rows)
}
