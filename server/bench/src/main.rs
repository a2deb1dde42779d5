//! `framelog-bench`: engine and API benchmarks against named baselines, in one run.
//!
//! Prints a table and writes the rows as JSON. Baselines: raw RocksDB `WriteBatch` writes (for the
//! engine) and kinesalite (for the KDS API over HTTP). Run it with `make bench`.

mod api_bench;
mod clip_source;
mod cluster_bench;
mod consumer_bench;
mod edge_bench;
mod engine_bench;
mod firehose_bench;
mod fleet_bench;
mod http_get;
mod images_bench;
mod kds_bench;
mod live_bench;
mod ll_bench;
mod parquet_bench;
mod playlist_bench;
mod records_libraries_bench;
mod remux_bench;
mod seaweed;
mod security_bench;
mod soak_bench;
mod soak_plot;
mod stats;
mod target;
mod transcode_bench;
mod video_bench;
mod webhook_sink;
mod whep_bench;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use engine_bench::{Baseline, Workload};
use stats::Row;

#[derive(Debug, Parser)]
#[command(about = "Framelog benchmarks against raw RocksDB and kinesalite")]
struct Args {
    /// The `framelog` server binary to load over HTTP.
    #[arg(long)]
    framelog_bin: PathBuf,
    /// kinesalite's launcher (bench-baseline/node_modules/.bin/kinesalite); omit to skip the baseline.
    #[arg(long)]
    kinesalite: Option<PathBuf>,
    /// Seconds of PutRecords load per scenario and target.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent HTTP connections of the load generator.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-report.json")]
    json_out: PathBuf,
    /// Only the engine benchmarks.
    #[arg(long)]
    engine_only: bool,
    /// Fragments in the PutMedia throughput run (each ~2 MB); 0 skips it.
    #[arg(long, default_value_t = 150)]
    video_fragments: usize,
    /// Concurrent paced PutMedia streams in the fleet run; 0 skips it.
    #[arg(long, default_value_t = 200)]
    fleet_streams: usize,
    /// Seconds of media each fleet camera sends.
    #[arg(long, default_value_t = 30)]
    fleet_seconds: u64,
    /// Fragments in the week-long stream of the playlist benchmark (7 days of 2 s); 0 skips it.
    #[arg(long, default_value_t = 302_400)]
    week_fragments: usize,
    /// Skip the playback benchmarks (remux, live latency, GetImages against ffmpeg).
    #[arg(long)]
    skip_playback: bool,
    /// Only the playback benchmarks (and the week playlist): no engine, KDS or ingest runs.
    #[arg(long)]
    playback_only: bool,
    /// 2 MB fragments in the edge agent's backlog drain (next to --framelog-bin's
    /// `framelog-edge`); 0 skips the edge benchmarks.
    #[arg(long, default_value_t = 500)]
    edge_fragments: u64,
    /// Only the edge agent benchmarks.
    #[arg(long)]
    edge_only: bool,
    /// Skip the consumer benchmarks (frames to a webhook against ffmpeg, latency, ingest impact).
    #[arg(long)]
    skip_consumers: bool,
    /// Only the consumer benchmarks.
    #[arg(long)]
    consumers_only: bool,
    /// Only the security benchmarks (SigV4, TLS, encryption at rest, handshakes).
    #[arg(long)]
    security_only: bool,
    /// Skip the security benchmarks.
    #[arg(long)]
    skip_security: bool,
    /// Only GetImages against ffmpeg (with and without decode worker processes).
    #[arg(long)]
    images_only: bool,
    /// 0 skips the engine append benchmarks in --storage-only.
    #[arg(long, default_value_t = 1)]
    engine_rounds: usize,
    /// Only the storage benchmarks: engine appends, PutMedia and GetMedia, the fleet, remux over
    /// HTTP (each with and without segment files where it applies).
    #[arg(long)]
    storage_only: bool,
    /// Only the cluster against the embedded engine (docs/cluster.md): needs scripts/cluster.sh
    /// and its tools (scripts/setup.sh).
    #[arg(long)]
    cluster_only: bool,
    /// Only the KDS fan-out, resharding and quota benchmarks.
    #[arg(long)]
    kds_only: bool,
    /// Only live viewers under load: LL-HLS (100 viewers with blocking reloads on one camera) and
    /// WebRTC (20 WHEP viewers).
    #[arg(long)]
    ll_only: bool,
    /// Only the H.265 to H.264 transcode (1080p30 streams per core, against ffmpeg).
    #[arg(long)]
    transcode_only: bool,
    /// Only the server soak (`make soak-server`): cameras, records and consumers for many
    /// minutes, sampled each minute (soak-report.json and soak.svg in --soak-out).
    #[arg(long)]
    soak_only: bool,
    /// Only the Firehose benchmarks (`make bench-firehose`): delivery to SeaweedFS against a
    /// direct upload, freshness, and Parquet conversion against pyarrow.
    #[arg(long)]
    firehose_only: bool,
    /// Only Firehose's Parquet conversion against pyarrow (part of --firehose-only).
    #[arg(long)]
    parquet_only: bool,
    /// 5 MB buffers of records in the Firehose throughput run.
    #[arg(long, default_value_t = 20)]
    firehose_buffers: usize,
    #[arg(long, default_value_t = 30)]
    soak_minutes: u64,
    #[arg(long, default_value_t = 200)]
    soak_cameras: usize,
    #[arg(long, default_value_t = 500_000)]
    soak_camera_bytes_per_sec: usize,
    #[arg(long, default_value_t = 20_000)]
    soak_records_per_sec: usize,
    #[arg(long, default_value = "soak")]
    soak_out: PathBuf,
    /// Only the SDK's record producer and consumer groups (docs/consumer-groups.md).
    #[arg(long)]
    records_libraries_only: bool,
    /// Node kills in the cluster's failover measurement.
    #[arg(long, default_value_t = 10)]
    failover_kills: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.edge_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let rows = edge_bench::run(&args.framelog_bin.with_file_name("framelog-edge"), &runtime, args.edge_fragments)?;
        return report(&args, &rows);
    }
    if args.consumers_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let rows = consumer_bench::run(&args.framelog_bin, &runtime)?;
        return report(&args, &rows);
    }
    if args.cluster_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let bench = cluster_bench::ClusterBench {
            connections: args.connections,
            seconds: args.seconds,
            video_fragments: args.video_fragments,
            fleet_streams: args.fleet_streams,
            fleet_seconds: args.fleet_seconds,
            kills: args.failover_kills,
        };
        let script = std::env::current_dir()?.join("scripts/cluster.sh");
        return report(&args, &cluster_bench::run(&args.framelog_bin, &script, &runtime, bench)?);
    }
    if args.ll_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let mut rows = ll_bench::run(&args.framelog_bin, &runtime)?;
        rows.extend(whep_bench::run(&args.framelog_bin, &runtime)?);
        return report(&args, &rows);
    }
    if args.soak_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let plan = soak_bench::SoakPlan {
            minutes: args.soak_minutes,
            cameras: args.soak_cameras,
            camera_bytes_per_sec: args.soak_camera_bytes_per_sec,
            records_per_sec: args.soak_records_per_sec,
        };
        return report(&args, &soak_bench::run(&args.framelog_bin, &runtime, &plan, &args.soak_out)?);
    }
    if args.transcode_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return report(&args, &transcode_bench::run(&args.framelog_bin, &runtime)?);
    }
    if args.parquet_only {
        return report(&args, &parquet_bench::run(&std::env::current_dir()?)?);
    }
    if args.firehose_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let weed = std::env::current_dir()?.join(".venv/bin/weed");
        let mut rows = firehose_bench::run(&args.framelog_bin, &weed, &runtime, args.firehose_buffers)?;
        rows.extend(parquet_bench::run(&std::env::current_dir()?)?);
        return report(&args, &rows);
    }
    if args.records_libraries_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return report(&args, &records_libraries_bench::run(&args.framelog_bin, &runtime)?);
    }
    if args.kds_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return report(&args, &kds_bench::run(&args.framelog_bin, &runtime, args.seconds)?);
    }
    if args.storage_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return report(&args, &storage(&args, &runtime)?);
    }
    if args.images_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let rows = images_bench::run(&args.framelog_bin, &runtime)?;
        return report(&args, &rows);
    }
    if args.security_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let rows = security_bench::run(&args.framelog_bin, &runtime, args.seconds, args.video_fragments)?;
        return report(&args, &rows);
    }
    if args.playback_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let rows = playback(&args, &runtime)?;
        return report(&args, &rows);
    }
    let mut rows = engine_bench::run(&engine_workloads())?;
    if !args.engine_only {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let duration = Duration::from_secs(args.seconds);
        let framelog = target::Target::framelog(&args.framelog_bin)?;
        let ours = runtime.block_on(api_bench::run(&framelog, args.connections, duration))?;
        drop(framelog);
        match &args.kinesalite {
            Some(script) => {
                let kinesalite = target::Target::kinesalite(script)?;
                let theirs = runtime.block_on(api_bench::run(&kinesalite, args.connections, duration))?;
                for (mut ours, theirs) in ours.into_iter().zip(theirs) {
                    ours.ratio_to_baseline = Some(ours.records_per_sec / theirs.records_per_sec);
                    rows.push(Row { subject: "kinesalite (baseline)".into(), ..theirs });
                    rows.push(ours);
                }
            }
            None => rows.extend(ours),
        }
        if args.video_fragments > 0 {
            rows.extend(video_bench::run(&args.framelog_bin, &runtime, args.video_fragments)?);
        }
        if args.fleet_streams > 0 {
            for segments in [false, true] {
                rows.extend(fleet_bench::run(
                    &args.framelog_bin,
                    &runtime,
                    args.fleet_streams,
                    args.fleet_seconds,
                    segments,
                )?);
            }
        }
        rows.extend(kds_bench::run(&args.framelog_bin, &runtime, args.seconds)?);
        rows.extend(records_libraries_bench::run(&args.framelog_bin, &runtime)?);
        if !args.skip_playback {
            rows.extend(playback(&args, &runtime)?);
        }
        if !args.skip_consumers {
            rows.extend(consumer_bench::run(&args.framelog_bin, &runtime)?);
        }
        if !args.skip_security {
            rows.extend(security_bench::run(&args.framelog_bin, &runtime, args.seconds, args.video_fragments)?);
        }
        if args.edge_fragments > 0 {
            let edge_bin = args.framelog_bin.with_file_name("framelog-edge");
            rows.extend(edge_bench::run(&edge_bin, &runtime, args.edge_fragments)?);
        }
    }
    report(&args, &rows)
}

/// The playback benchmarks: playlist generation over a week, remux, live latency, GetImages.
fn playback(args: &Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    if args.week_fragments > 0 {
        rows.extend(playlist_bench::run(&args.framelog_bin, runtime, args.week_fragments)?);
    }
    rows.extend(remux_bench::run(&args.framelog_bin, runtime)?);
    rows.extend(live_bench::run(&args.framelog_bin, runtime)?);
    rows.extend(ll_bench::run(&args.framelog_bin, runtime)?);
    rows.extend(whep_bench::run(&args.framelog_bin, runtime)?);
    rows.extend(images_bench::run(&args.framelog_bin, runtime)?);
    rows.extend(transcode_bench::run(&args.framelog_bin, runtime)?);
    Ok(rows)
}

/// The storage benchmarks; `--engine-rounds 0`, `--video-fragments 0` and `--fleet-streams 0`
/// skip parts.
fn storage(args: &Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let mut rows = if args.engine_rounds > 0 { engine_bench::run(&engine_workloads())? } else { Vec::new() };
    if args.video_fragments > 0 {
        rows.extend(video_bench::run(&args.framelog_bin, runtime, args.video_fragments)?);
    }
    for segments in [false, true] {
        if args.fleet_streams > 0 {
            rows.extend(fleet_bench::run(
                &args.framelog_bin,
                runtime,
                args.fleet_streams,
                args.fleet_seconds,
                segments,
            )?);
        }
    }
    rows.extend(remux_bench::run(&args.framelog_bin, runtime)?);
    Ok(rows)
}

fn engine_workloads() -> [Workload; 4] {
    [
        // Where segment files start to pay (EngineOptions::segment_min_bytes): 64 and 256 KiB.
        Workload {
            name: "engine append 256KiB values, all to segment files",
            value_bytes: 256 << 10,
            per_batch: 1,
            batches: 600,
            baseline: Baseline::PlainFile,
            segment_min_bytes: Some(0),
        },
        Workload {
            name: "engine append 64KiB values, all to segment files",
            value_bytes: 64 << 10,
            per_batch: 1,
            batches: 1000,
            baseline: Baseline::PlainFile,
            segment_min_bytes: Some(0),
        },
        Workload {
            name: "engine append 500x1KiB per batch",
            value_bytes: 1024,
            per_batch: 500,
            batches: 400,
            baseline: Baseline::RawRocksdb,
            segment_min_bytes: None,
        },
        Workload {
            name: "engine append 1MiB values",
            value_bytes: 1 << 20,
            per_batch: 1,
            batches: 300,
            baseline: Baseline::PlainFile,
            segment_min_bytes: None,
        },
    ]
}

fn report(args: &Args, rows: &[Row]) -> anyhow::Result<()> {
    stats::print_table(rows);
    std::fs::write(&args.json_out, serde_json::to_vec_pretty(rows)?)?;
    println!("\nwrote {}", args.json_out.display());
    Ok(())
}
