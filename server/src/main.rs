//! `framelog`: the server binary. Thin glue: parse flags and config, then run the app.

mod app;
mod body;
mod civil_date;
mod config;
mod console;
mod consumers;
mod error;
mod kds;
mod kvs;
mod request_id;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "framelog",
    version,
    about = "Self-hosted video ingest and shard log server, wire-compatible with AWS Kinesis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the server on the embedded RocksDB store.
    Serve {
        /// Address to listen on [default: 127.0.0.1:4566].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where the store lives [default: ./data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A TOML file with the same keys (listen, data_dir, region, account_id, shard_limit, trim_interval_secs,
        /// video_retention_hours, public_url).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let Command::Serve { listen, data_dir, config } = Cli::parse().command;
    let mut settings = config::Config::default();
    if let Some(path) = config {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        settings = settings.merge(toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?);
    }
    settings.listen = listen.unwrap_or(settings.listen);
    settings.data_dir = data_dir.unwrap_or(settings.data_dir);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(app::serve(settings))
}
