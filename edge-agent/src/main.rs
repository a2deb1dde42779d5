//! `framelog-edge`: records cameras into a durable, bounded local buffer and uploads it to a
//! Framelog (or KVS) server over PutMedia, exactly once, whenever the server is reachable.
//!
//! ```text
//! framelog-edge --config edge.toml          run the agent
//! framelog-edge status [--watch]            print the running agent's status
//! ```

mod buffer;
mod config;
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

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::buffer::{Budget, StreamBuffer};
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "framelog-edge", about = "Record cameras, buffer on local disk, upload to Framelog exactly once")]
struct Args {
    /// The agent's TOML configuration (see docs/edge-agent.md).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
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
            let path = args.config.context("--config edge.toml is required to run the agent")?;
            let config = Config::load(&path)?;
            runtime.block_on(run(config))
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

async fn run(config: Config) -> anyhow::Result<()> {
    let agent_id = buffer::agent_id(&config.buffer_dir)?;
    let budget = Budget::new(config.max_local_media_mb.saturating_mul(1 << 20));
    let stop = Arc::new(AtomicBool::new(false));
    let client = framelog_sdk::Client::new(client_config(&config)?);
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
    let streams: status::Streams = Arc::new(streams);
    tracing::info!(agent = %agent_id, streams = streams.len(), server = %config.server, "framelog-edge running");
    let status_server = tokio::spawn(status::serve(config.status_listen, streams.clone()));
    let housekeeping = tokio::spawn(housekeeping(streams.clone(), config.edge_retention_hours * 3_600_000));
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("stopping: the buffer keeps what is not uploaded"),
        result = status_server => { result??; }
    }
    stop.store(true, Ordering::Relaxed);
    housekeeping.abort();
    for uploader in uploaders {
        let _ = tokio::time::timeout(Duration::from_secs(5), uploader).await;
    }
    for recorder in recorders {
        let _ = tokio::task::spawn_blocking(move || recorder.join()).await;
    }
    Ok(())
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
        if tick % 60 == 0 {
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
