//! The edge agent's upload side: how fast a buffered backlog drains to the server over loopback
//! (against the same bytes pushed straight over PutMedia in the same run), and how soon after the
//! server becomes reachable the first PERSISTED ack lands.
//!
//! The backlog is written in the agent's documented buffer format (docs/edge-agent.md): 2-second
//! 1080p-shaped fragments (about 2 MB each), as a camera recording through an outage leaves them.
//! The agent's recording is kept off by a record schedule that never opens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use framelog_sdk::{EncodedFrame, TrackSpec};
use serde_json::Value;

use crate::http_get::get;
use crate::stats::{Row, percentile_ms};
use crate::target::Target;

const KEY_FRAME_BYTES: usize = 200_000;
const DELTA_FRAME_BYTES: usize = 30_000;
const FRAMES_PER_FRAGMENT: u64 = 60;
const FRAGMENT_MS: u64 = 2_000;
const START_MS: u64 = 1_795_000_000_000;
const RESTORES: usize = 5;

/// Writes `fragments` fragments of stream `stream` into an agent buffer; returns their bytes.
fn write_backlog(buffer_dir: &Path, stream: &str, fragments: u64) -> anyhow::Result<u64> {
    let dir = buffer_dir.join(stream);
    std::fs::create_dir_all(dir.join("headers"))?;
    std::fs::create_dir_all(dir.join("fragments"))?;
    let header =
        framelog_sdk::mkv::stream_header(&[TrackSpec::h264(1, vec![1, 0x64, 0, 0x28, 0xFF, 0xE1, 0, 0], 1920, 1080)]);
    let header_id = 1u64;
    std::fs::write(dir.join("headers").join(format!("{header_id:016x}.mkvh")), header)?;
    let mut total = 0;
    for seq in 0..fragments {
        let start_ms = START_MS + seq * FRAGMENT_MS;
        let frames: Vec<EncodedFrame> = (0..FRAMES_PER_FRAGMENT)
            .map(|i| EncodedFrame {
                track: 1,
                pts_ms: start_ms + i * 33,
                keyframe: i == 0,
                data: Bytes::from(vec![(seq ^ i) as u8; if i == 0 { KEY_FRAME_BYTES } else { DELTA_FRAME_BYTES }]),
            })
            .collect();
        let mut bytes =
            framelog_sdk::mkv::tags(&[(framelog_media::FRAGMENT_ID_TAG.to_string(), format!("bench/{stream}/{seq}"))]);
        bytes.extend(framelog_sdk::mkv::cluster(start_ms, &frames)?);
        total += bytes.len() as u64;
        let name = format!("{seq:020}_{start_ms}_{FRAGMENT_MS}_{header_id:016x}.frag");
        std::fs::write(dir.join("fragments").join(name), bytes)?;
    }
    Ok(total)
}

/// A running agent that uploads `stream`'s buffer to `server` and records nothing.
struct Agent {
    child: Child,
    status: SocketAddr,
}

impl Agent {
    fn start(edge_bin: &Path, dir: &Path, server: SocketAddr, stream: &str) -> anyhow::Result<Agent> {
        let status = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let config = format!(
            "server = \"http://{server}\"\nbuffer_dir = \"{}\"\nstatus_listen = \"{status}\"\nmax_local_media_mb = 100000\n\
             [[stream]]\nname = \"{stream}\"\nsource = \"testsrc:\"\nrecord_schedule = {{ cron = \"0 0 0 1 1 * 2099\", duration_s = 1 }}\n",
            dir.join("buffer").display()
        );
        let path = dir.join(format!("{stream}.toml"));
        std::fs::write(&path, config)?;
        let child = Command::new(edge_bin)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Agent { child, status })
    }

    async fn status(&self, http: &crate::api_bench::Http) -> Option<Value> {
        let fetched = get(http, &format!("http://{}/status", self.status)).await.ok()?;
        serde_json::from_slice::<Value>(&fetched.body).ok()?.get(0).cloned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn drain(edge_bin: &Path, fragments: u64) -> anyhow::Result<(u64, Duration)> {
    let dir = tempfile::tempdir_in(".")?;
    let bytes = write_backlog(&dir.path().join("buffer"), "backlog", fragments)?;
    let server = Target::framelog(&framelog_bin_of(edge_bin))?;
    let http = crate::api_bench::client();
    let started = Instant::now();
    let agent = Agent::start(edge_bin, dir.path(), server.address, "backlog")?;
    loop {
        if let Some(status) = agent.status(&http).await
            && status["uploaded_fragments"].as_u64() == Some(fragments)
        {
            return Ok((bytes, started.elapsed()));
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "the backlog did not drain in 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Agent first, server later: the time from the server accepting connections to the first
/// PERSISTED fragment (seen in the agent's status, polled every 5 ms).
async fn restore(edge_bin: &Path) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir_in(".")?;
    write_backlog(&dir.path().join("buffer"), "restore", 3)?;
    let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let http = crate::api_bench::client();
    let agent = Agent::start(edge_bin, dir.path(), address, "restore")?;
    // Let the agent fail for a while and back off fully.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = Target::framelog_at(&framelog_bin_of(edge_bin), address)?;
    let reachable = Instant::now();
    loop {
        if let Some(status) = agent.status(&http).await
            && status["uploaded_fragments"].as_u64() >= Some(1)
        {
            drop(server);
            return Ok(reachable.elapsed());
        }
        anyhow::ensure!(
            reachable.elapsed() < Duration::from_secs(60),
            "no PERSISTED a minute after the server came up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn framelog_bin_of(edge_bin: &Path) -> PathBuf {
    edge_bin.with_file_name("framelog")
}

pub fn run(edge_bin: &Path, runtime: &tokio::runtime::Runtime, fragments: u64) -> anyhow::Result<Vec<Row>> {
    let (bytes, agent_elapsed) = runtime.block_on(drain(edge_bin, fragments))?;
    // The baseline: the same number of 2 MB fragments on one PutMedia connection, no agent.
    let direct = Target::framelog(&framelog_bin_of(edge_bin))?;
    let upload = Bytes::from(crate::video_bench::upload_bytes(fragments as usize));
    let direct_elapsed = runtime.block_on(crate::video_bench::put_media(&direct, upload, fragments as usize))?;
    drop(direct);
    let mib = bytes as f64 / (1024.0 * 1024.0);
    let mut restores = Vec::new();
    for _ in 0..RESTORES {
        restores.push(runtime.block_on(restore(edge_bin))?);
    }
    restores.sort();
    let name = format!("edge backlog drain, {fragments} x 2 MB");
    let row =
        |subject: &str, elapsed: Duration, ratio| Row::timed(&name, subject, fragments as f64, mib, elapsed, ratio);
    Ok(vec![
        row("PutMedia direct (baseline)", direct_elapsed, None),
        row("framelog-edge", agent_elapsed, Some(direct_elapsed.as_secs_f64() / agent_elapsed.as_secs_f64())),
        Row {
            name: "edge link restore -> first PERSISTED".into(),
            subject: "framelog-edge".into(),
            records_per_sec: 0.0,
            mib_per_sec: 0.0,
            p50_ms: Some(percentile_ms(&restores, 50.0)),
            p99_ms: Some(percentile_ms(&restores, 100.0)),
            ratio_to_baseline: None,
        },
    ])
}
