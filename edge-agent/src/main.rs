//! `framelog-edge`: records cameras into a durable, bounded local buffer and uploads it to a
//! Framelog (or KVS) server over PutMedia, exactly once, whenever the server is reachable.
//!
//! ```text
//! framelog-edge --config edge.toml          run the agent
//! framelog-edge status [--watch]            print the running agent's status
//! ```

mod buffer;
mod config;
mod file_flows;
mod metrics;
mod recorder;
mod schedule;
mod source;
mod source_url;
mod status;
mod uploader;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::buffer::{Budget, StreamBuffer};
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "framelog-edge", about = "Record cameras, buffer on local disk, upload to Framelog exactly once")]
struct Args {
    /// The agent's TOML configuration (see docs/edge-agent.md).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// A Kinesis Agent configuration (`agent.json`): its file flows run too, or alone.
    #[arg(long)]
    agent_config: Option<PathBuf>,
    /// The local status endpoint (default: `status_listen` of --config, else 127.0.0.1:4570).
    #[arg(long)]
    status_listen: Option<std::net::SocketAddr>,
    /// How log lines are written to stderr: `text`, or `json` (one object a line) for log
    /// collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the running agent's status (from its status endpoint).
    Status {
        /// The status endpoint; default: `status_listen` of --config, else 127.0.0.1:4570.
        #[arg(long)]
        url: Option<String>,
        /// Refresh every second and show upload progress until the backlog is empty.
        #[arg(long)]
        watch: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Filtered by `RUST_LOG` (default `info`), to stderr.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.command {
        Some(Command::Status { url, watch }) => {
            let url = match (url, &args.config) {
                (Some(url), _) => url,
                (None, Some(path)) => format!("http://{}", Config::load(path)?.status_listen),
                (None, None) => "http://127.0.0.1:4570".to_string(),
            };
            runtime.block_on(status::print(&url, watch))
        }
        None => {
            let config = args.config.as_deref().map(Config::load).transpose()?;
            let agent = args.agent_config.as_deref().map(file_flows::AgentConfig::load).transpose()?;
            if config.is_none() && agent.is_none() {
                anyhow::bail!("--config edge.toml or --agent-config agent.json is required to run the agent");
            }
            runtime.block_on(run(config, agent, args.status_listen))
        }
    }
}

/// The server connection: the configured keys, else AWS's standard places; the CA file if any.
fn client_config(config: &Config) -> anyhow::Result<framelog_sdk::ClientConfig> {
    let mut client_config = framelog_sdk::ClientConfig::new(&config.server);
    client_config = match &config.credentials {
        Some(credentials) => client_config
            .with_credentials(framelog_sdk::Credentials {
                access_key_id: credentials.access_key_id.clone(),
                secret_access_key: credentials.secret_access_key.clone(),
                session_token: None,
            })
            .with_region(&credentials.region),
        None => client_config.with_default_credentials()?,
    };
    if let Some(path) = &config.ca_file {
        client_config = client_config.with_ca_file(path)?;
    }
    Ok(client_config)
}

/// The agent: cameras from edge.toml, file flows from agent.json (or edge.toml's `[agent]`).
async fn run(
    config: Option<Config>,
    agent: Option<file_flows::AgentConfig>,
    status_listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let agent = agent.or_else(|| config.as_ref().and_then(|c| c.agent.clone()));
    let (flows, flow_threads) = match &agent {
        Some(agent) => file_flows::start(agent, stop.clone())?,
        None => (Arc::default(), Vec::new()),
    };
    let status_listen = status_listen
        .unwrap_or_else(|| config.as_ref().map_or_else(config::default_status_listen, |c| c.status_listen));
    let cameras = match &config {
        Some(config) if !config.streams.is_empty() => Some(start_cameras(config, stop.clone())?),
        _ => None,
    };
    let streams = cameras.as_ref().map(|c| c.streams.clone()).unwrap_or_default();
    tracing::info!(streams = streams.len(), flows = flows.len(), "framelog-edge running");
    let status_server = tokio::spawn(status::serve(status_listen, streams.clone(), flows));
    let retention_ms = config.as_ref().map_or(0, |c| c.edge_retention_hours * 3_600_000);
    let housekeeping = tokio::spawn(housekeeping(streams, retention_ms));
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("stopping: the buffer keeps what is not uploaded"),
        result = status_server => { result??; }
    }
    stop.store(true, Ordering::Relaxed);
    housekeeping.abort();
    if let Some(cameras) = cameras {
        cameras.stop().await;
    }
    for thread in flow_threads {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    Ok(())
}

/// The cameras' recorders and uploaders.
struct Cameras {
    streams: status::Streams,
    recorders: Vec<std::thread::JoinHandle<()>>,
    uploaders: Vec<tokio::task::JoinHandle<()>>,
}

impl Cameras {
    async fn stop(self) {
        for uploader in self.uploaders {
            let _ = tokio::time::timeout(Duration::from_secs(5), uploader).await;
        }
        for recorder in self.recorders {
            let _ = tokio::task::spawn_blocking(move || recorder.join()).await;
        }
    }
}

fn start_cameras(config: &Config, stop: Arc<AtomicBool>) -> anyhow::Result<Cameras> {
    let agent_id = buffer::agent_id(&config.buffer_dir)?;
    let budget = Budget::new(config.max_local_media_mb.saturating_mul(1 << 20));
    let client = framelog_sdk::Client::new(client_config(config)?);
    let mut streams = Vec::new();
    let mut recorders = Vec::new();
    let mut uploaders = Vec::new();
    for stream in &config.streams {
        let buffer = Arc::new(StreamBuffer::open(
            &config.buffer_dir,
            &agent_id,
            &stream.name,
            config.strategy_on_full,
            budget.clone(),
        )?);
        streams.push((stream.name.clone(), buffer.clone()));
        let record_window = stream.record_schedule.as_ref().map(schedule::parse).transpose()?;
        let (recording, recording_buffer, recording_stop) = (stream.clone(), buffer.clone(), stop.clone());
        recorders.push(
            std::thread::Builder::new()
                .name(format!("record-{}", stream.name))
                .spawn(move || recorder::run(recording, recording_buffer, record_window, recording_stop))?,
        );
        let uploader = uploader::Uploader::new(
            client.clone(),
            stream,
            buffer,
            config.delete_after_upload,
            Duration::from_millis(config.max_backoff_ms),
            stop.clone(),
        )?;
        uploaders.push(tokio::spawn(uploader.run()));
    }
    tracing::info!(agent = %agent_id, server = %config.server, "recording cameras");
    Ok(Cameras { streams: Arc::new(streams), recorders, uploaders })
}

/// Every second: upload rates; every minute: edge retention.
async fn housekeeping(streams: status::Streams, retention_ms: u64) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut previous: Vec<u64> = vec![0; streams.len()];
    for tick in 0u64.. {
        ticks.tick().await;
        for ((_, buffer), previous) in streams.iter().zip(previous.iter_mut()) {
            let uploaded = buffer.metrics.uploaded_bytes.load(Ordering::Relaxed);
            let rate = uploaded.saturating_sub(*previous);
            *previous = uploaded;
            // Smoothed over a few seconds: 3/4 of the old rate, 1/4 of the last second.
            let old = buffer.metrics.upload_bytes_per_sec.load(Ordering::Relaxed);
            buffer.metrics.upload_bytes_per_sec.store((old * 3 + rate) / 4, Ordering::Relaxed);
        }
        if tick % 60 == 0 && retention_ms > 0 {
            let now_ms =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            for (name, buffer) in streams.iter() {
                let buffer = buffer.clone();
                match tokio::task::spawn_blocking(move || buffer.expire(now_ms, retention_ms)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(expired)) => tracing::warn!(stream = %name, expired, "fragments passed edge_retention_hours"),
                    Ok(Err(error)) => {
                        tracing::error!(stream = %name, error = %format!("{error:#}"), "retention failed")
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
