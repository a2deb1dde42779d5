//! A consumer-group worker that appends each record it processes to a file, then checkpoints.
//!
//! kcl_worker --endpoint URL --stream NAME --app NAME --out FILE [--worker-id ID]
//!            [--lease-ms N] [--renew-ms N] [--initial-position TRIM_HORIZON|LATEST]
//!
//! Each line is `shard_id sequence_number [sub_sequence_number] partition_key`. Several
//! workers may share one FILE: it is opened for appending and each batch is one write, so lines
//! never interleave. SIGTERM or Ctrl-C shuts the worker down gracefully (checkpoint, hand the
//! leases over).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use framelog_sdk::{
    Checkpointer, Client, ClientConfig, ConsumedRecord, InitialPosition, RecordProcessor, Worker, WorkerConfig,
};
use tokio::signal::unix::{SignalKind, signal};

/// A consumer-group worker appending each record it processes to a file.
#[derive(Parser)]
struct Args {
    #[arg(long)]
    endpoint: String,
    #[arg(long)]
    stream: String,
    /// The application: workers of one application share the stream's shards.
    #[arg(long)]
    app: String,
    #[arg(long)]
    out: PathBuf,
    /// Unique among the application's workers (default: worker-<pid>).
    #[arg(long)]
    worker_id: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    lease_ms: u64,
    #[arg(long, default_value_t = 3_000)]
    renew_ms: u64,
    #[arg(long, value_enum, default_value_t = Start::TrimHorizon)]
    initial_position: Start,
}

/// Where a shard without a checkpoint is read from.
#[derive(Clone, Copy, ValueEnum)]
enum Start {
    #[value(name = "TRIM_HORIZON")]
    TrimHorizon,
    #[value(name = "LATEST")]
    Latest,
}

/// Appends each batch to the shared file, then checkpoints it.
struct LineWriter {
    out: Arc<File>,
}

impl RecordProcessor for LineWriter {
    async fn process_records(&mut self, records: Vec<ConsumedRecord>, checkpointer: &Checkpointer) {
        let mut batch = String::new();
        for record in &records {
            let sub = record.sub_sequence_number.map(|s| format!(" {s}")).unwrap_or_default();
            batch.push_str(&format!("{} {}{sub} {}\n", record.shard_id, record.sequence_number, record.partition_key));
        }
        // One write: lines from several workers never interleave in an appended file.
        if let Err(error) = (&*self.out).write_all(batch.as_bytes()) {
            eprintln!("writing records: {error}");
            return;
        }
        if let Err(error) = checkpointer.checkpoint().await {
            eprintln!("checkpoint of {}: {error}", checkpointer.shard_id());
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter("framelog_sdk=info").init();
    let args = Args::parse();
    let worker_id = args.worker_id.clone().unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let out = Arc::new(OpenOptions::new().create(true).append(true).open(&args.out).context("opening --out")?);
    let client = Client::new(ClientConfig::new(&args.endpoint).with_default_credentials()?);
    let mut config = WorkerConfig::new(&args.app, &args.stream, &worker_id);
    config.lease_duration = Duration::from_millis(args.lease_ms);
    config.renew_interval = Duration::from_millis(args.renew_ms);
    config.initial_position = match args.initial_position {
        Start::TrimHorizon => InitialPosition::TrimHorizon,
        Start::Latest => InitialPosition::Latest,
    };
    let worker = Worker::spawn(client, config, move |_shard| LineWriter { out: Arc::clone(&out) });
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    worker.shutdown().await?;
    eprintln!("worker {worker_id} shut down");
    Ok(())
}
