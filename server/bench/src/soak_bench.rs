//! The server soak: cameras paced in real time and a steady PutRecords rate with consumers
//! attached, for many minutes, sampling the server once a minute: RSS, open file descriptors,
//! threads, and the p99 of the minute's PERSISTED acks and PutRecords calls. The report judges
//! the trends (RSS slope after the warm-up, fds and threads flat, p99 stable) and draws them
//! (soak.svg). `make soak-server` runs the plan; docs/benchmarks.md has the figures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::api_bench::{self, Http};
use crate::fleet_bench::{self, FRAMES_PER_FRAGMENT, PacedUpload};
use crate::soak_plot;
use crate::stats::{Row, percentile_ms};
use crate::target::Target;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakPlan {
    pub minutes: u64,
    pub cameras: usize,
    pub camera_bytes_per_sec: usize,
    pub records_per_sec: usize,
}

const RECORDS_PER_CALL: usize = 500;
const RECORD_BYTES: usize = 100;
const RECORD_SHARDS: u32 = 8;
const WARM_UP_MINUTES: usize = 5;
/// The targets after the warm-up: memory that does not creep, descriptors and threads that stay
/// put (a connection or a worker more or less), and no minute's p99 far above the usual one.
/// The memory target is 5 MB (10^6 bytes) per 10 minutes, in the MiB the samples are in.
const MAX_RSS_SLOPE_MIB_PER_10_MIN: f64 = 5.0e6 / (1u64 << 20) as f64;
const MAX_FD_SPREAD: u64 = 10;
const MAX_THREAD_SPREAD: u64 = 4;
const MAX_P99_WORST_TO_MEDIAN: f64 = 3.0;

/// One minute's sample of the server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub minute: f64,
    pub rss_mib: f64,
    /// Of `rss_mib`, anonymous memory (heap, stacks); the rest maps files.
    pub anon_mib: f64,
    /// The engine's parts, from `/metrics` (framelog_engine_memory_bytes).
    pub block_cache_mib: f64,
    pub memtables_mib: f64,
    pub table_readers_mib: f64,
    /// The allocator's figures, from `/metrics` (framelog_allocator_bytes): what is allocated,
    /// and what it holds resident (allocated, plus freed pages it keeps, plus its metadata).
    pub allocated_mib: f64,
    pub allocator_resident_mib: f64,
    pub open_fds: u64,
    /// Of `open_fds`, RocksDB's table and blob files (bounded by its `max_open_files`, growing
    /// with the data until then) and sockets.
    pub engine_file_fds: u64,
    pub socket_fds: u64,
    pub threads: u64,
    pub ack_p99_ms: f64,
    pub put_records_p99_ms: f64,
    pub acks: usize,
    pub records: u64,
}

/// Latencies noted by the load, with when they ended.
#[derive(Default)]
struct Latencies {
    acks: Mutex<Vec<(Instant, Duration)>>,
    put_records: Mutex<Vec<(Instant, Duration)>>,
    records: AtomicU64,
    errors: Mutex<Vec<String>>,
}

pub fn run(
    binary: &std::path::Path,
    runtime: &tokio::runtime::Runtime,
    plan: &SoakPlan,
    out: &std::path::Path,
) -> anyhow::Result<Vec<Row>> {
    check_disk_room(plan)?;
    let target = Target::framelog(binary)?;
    let pid = target.pid();
    let (samples, errors) = runtime.block_on(soak(&target, plan))?;
    std::fs::create_dir_all(out)?;
    let verdict = judge(&samples);
    let report = json!({"plan": format!("{plan:?}"), "verdict": verdict, "load_errors": errors, "samples": samples});
    std::fs::write(out.join("soak-report.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(out.join("soak.svg"), soak_plot::svg(&samples))?;
    println!("soak of server {pid}: {verdict:#}");
    anyhow::ensure!(errors.is_empty(), "{} load errors, first: {:?}", errors.len(), errors.first());
    anyhow::ensure!(verdict["targets_met"] == true, "the soak missed its targets: {verdict}");
    // The soak's figures are trends, not rows of the table: they live in its own report.
    Ok(Vec::new())
}

/// Room the soak leaves free beyond what it writes: the server's own free-space watermark, and
/// the builds and logs beside it.
const SPARE_DISK_BYTES: u64 = 8 << 30;

/// Refuses a soak the disk cannot hold before starting it. At the full rate (0.5 MB/s per
/// camera) the soak writes ~190 GB; on a smaller disk the server would refuse writes within
/// minutes and the run would measure refusals, and fill the disk the builds share.
fn check_disk_room(plan: &SoakPlan) -> anyhow::Result<()> {
    let per_sec_bytes = plan.cameras * plan.camera_bytes_per_sec + plan.records_per_sec * RECORD_BYTES;
    let written_bytes = per_sec_bytes as u64 * plan.minutes * 60;
    let stat = rustix::fs::statvfs(".")?;
    let free_bytes = stat.f_bavail.saturating_mul(stat.f_frsize);
    anyhow::ensure!(
        free_bytes >= written_bytes + SPARE_DISK_BYTES,
        "the soak would write {} GiB and the disk here has {} GiB free (keeping {} GiB spare): \
         lower --soak-camera-bytes-per-sec or --soak-minutes",
        written_bytes >> 30,
        free_bytes >> 30,
        SPARE_DISK_BYTES >> 30
    );
    Ok(())
}

/// Runs the load and samples the server; returns the samples and the load's errors (written to
/// the report before they fail the run).
async fn soak(target: &Target, plan: &SoakPlan) -> anyhow::Result<(Vec<Sample>, Vec<String>)> {
    let control = api_bench::client();
    api_bench::create_stream(&control, target, "soak-records", RECORD_SHARDS).await?;
    for camera in 0..plan.cameras {
        rest(
            &control,
            target,
            "createStream",
            json!({"StreamName": format!("fleet-{camera}"), "DataRetentionInHours": 24}),
        )
        .await?;
    }
    let sink = crate::webhook_sink::WebhookSink::start().await?;
    attach_consumers(&control, target, &sink.url).await?;

    let latencies = Arc::new(Latencies::default());
    let deadline = Instant::now() + Duration::from_secs(plan.minutes * 60);
    let mut load = cameras(target, plan, &latencies);
    load.extend(record_writers(&control, target, plan, deadline, &latencies));

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(60));
    for _ in 0..=plan.minutes {
        ticks.tick().await;
        let engine = engine_memory_mib(&control, target).await;
        samples.push(sample(target.pid(), started, &latencies, &engine));
        println!("{:?}", samples.last());
    }
    for task in load {
        task.abort();
    }
    let errors = std::mem::take(&mut *latencies.errors.lock().expect("lock"));
    Ok((samples, errors))
}

async fn rest(http: &Http, target: &Target, op: &str, document: Value) -> anyhow::Result<Value> {
    crate::video_bench::post_json(http, target.address, op, document).await
}

/// A record consumer on the record stream and a video consumer on the first camera.
async fn attach_consumers(http: &Http, target: &Target, url: &str) -> anyhow::Result<()> {
    rest(
        http,
        target,
        "createConsumer",
        json!({
        "DataStreamName": "soak-records", "ConsumerName": "ledger",
        "StartSelector": {"StartSelectorType": "LATEST"}, "Batching": {"MaxRecords": 1000, "MaxWaitMs": 500},
        "Webhook": {"Url": url}}),
    )
    .await?;
    rest(
        http,
        target,
        "createConsumer",
        json!({
        "StreamName": "fleet-0", "ConsumerName": "watcher", "StartSelector": {"StartSelectorType": "NOW"},
        "Selection": {"Type": "KEY_FRAMES"}, "Output": {"Format": "RAW"}, "Webhook": {"Url": url}}),
    )
    .await?;
    Ok(())
}

/// Each camera uploads for the whole soak on one connection, started a little apart.
fn cameras(target: &Target, plan: &SoakPlan, latencies: &Arc<Latencies>) -> Vec<tokio::task::JoinHandle<()>> {
    let per_fragment_bytes = plan.camera_bytes_per_sec * 2;
    let key_bytes = per_fragment_bytes / 5;
    let delta_bytes = (per_fragment_bytes - key_bytes) / (FRAMES_PER_FRAGMENT - 1);
    let blocks = Arc::new(fleet_bench::fragment_blocks_sized(key_bytes.max(64), delta_bytes.max(16)));
    let fragments = plan.minutes * 30 + 1;
    let http = fleet_bench::streaming_client();
    let cameras_total = plan.cameras.max(1);
    (0..plan.cameras)
        .map(|camera| {
            let (http, blocks, latencies) = (http.clone(), blocks.clone(), latencies.clone());
            let address = target.address;
            tokio::spawn(async move {
                // Spread over one fragment, as a real fleet's cameras are.
                tokio::time::sleep(Duration::from_millis((camera as u64 * 2_000) / cameras_total as u64)).await;
                let name = format!("fleet-{camera}");
                let uploaded = async {
                    let (mut upload, _sending) =
                        PacedUpload::open(&http, address, &name, fragments, blocks, |_| {}).await?;
                    upload
                        .read_persisted(fragments, |_, sent, now| {
                            latencies.acks.lock().expect("lock").push((now, now.saturating_duration_since(sent)));
                        })
                        .await
                };
                if let Err(error) = uploaded.await {
                    latencies.errors.lock().expect("lock").push(format!("{name}: {error}"));
                }
            })
        })
        .collect()
}

/// PutRecords calls of 500 records, spread over a few connections to make the planned rate.
fn record_writers(
    http: &Http,
    target: &Target,
    plan: &SoakPlan,
    deadline: Instant,
    latencies: &Arc<Latencies>,
) -> Vec<tokio::task::JoinHandle<()>> {
    const WRITERS: usize = 4;
    let calls_per_sec = (plan.records_per_sec as f64 / RECORDS_PER_CALL as f64).max(0.001);
    let every = Duration::from_secs_f64(WRITERS as f64 / calls_per_sec);
    (0..WRITERS)
        .map(|writer| {
            let (http, latencies, address) = (http.clone(), latencies.clone(), target.address);
            tokio::spawn(async move {
                let body = records_body(writer);
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while Instant::now() < deadline {
                    ticks.tick().await;
                    let sent = Instant::now();
                    match api_bench::call(&http, address, "PutRecords", body.clone()).await {
                        Ok(answer) if answer["FailedRecordCount"] == 0 => {
                            let now = Instant::now();
                            latencies.put_records.lock().expect("lock").push((now, now - sent));
                            latencies.records.fetch_add(RECORDS_PER_CALL as u64, Ordering::Relaxed);
                        }
                        Ok(answer) => latencies
                            .errors
                            .lock()
                            .expect("lock")
                            .push(format!("PutRecords: {}", answer["FailedRecordCount"])),
                        Err(error) => latencies.errors.lock().expect("lock").push(format!("PutRecords: {error}")),
                    }
                }
            })
        })
        .collect()
}

fn records_body(writer: usize) -> Bytes {
    use base64::Engine as _;
    let records: Vec<Value> = (0..RECORDS_PER_CALL)
        .map(|i| {
            let data: Vec<u8> = (0..RECORD_BYTES).map(|b| (b ^ i ^ writer) as u8).collect();
            json!({"Data": base64::engine::general_purpose::STANDARD.encode(data), "PartitionKey": format!("pk-{writer}-{i}")})
        })
        .collect();
    json!({"StreamName": "soak-records", "Records": records}).to_string().into()
}

/// The server now, and the p99s of what finished in the last minute.
fn sample(pid: u32, started: Instant, latencies: &Latencies, engine: &BTreeMap<String, f64>) -> Sample {
    let minute_ago = Instant::now() - Duration::from_secs(60);
    let recent = |list: &Mutex<Vec<(Instant, Duration)>>| -> Vec<Duration> {
        let mut list = list.lock().expect("lock");
        let mut recent: Vec<Duration> = list.iter().filter(|(at, _)| *at >= minute_ago).map(|(_, d)| *d).collect();
        list.retain(|(at, _)| *at >= minute_ago);
        recent.sort();
        recent
    };
    let acks = recent(&latencies.acks);
    let calls = recent(&latencies.put_records);
    let (engine_file_fds, socket_fds) = fd_kinds(pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let threads = status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok());
    Sample {
        minute: started.elapsed().as_secs_f64() / 60.0,
        rss_mib: fleet_bench::rss_kib(pid).unwrap_or(0) as f64 / 1024.0,
        anon_mib: anonymous_kib(pid).unwrap_or(0) as f64 / 1024.0,
        block_cache_mib: engine.get("block_cache").copied().unwrap_or(0.0),
        memtables_mib: engine.get("memtables").copied().unwrap_or(0.0),
        table_readers_mib: engine.get("table_readers").copied().unwrap_or(0.0),
        allocated_mib: engine.get("allocated").copied().unwrap_or(0.0),
        allocator_resident_mib: engine.get("resident").copied().unwrap_or(0.0),
        open_fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0),
        engine_file_fds,
        socket_fds,
        threads: threads.unwrap_or(0),
        ack_p99_ms: percentile_ms(&acks, 99.0),
        put_records_p99_ms: percentile_ms(&calls, 99.0),
        acks: acks.len(),
        records: latencies.records.swap(0, Ordering::Relaxed),
    }
}

/// The server's anonymous memory in KiB (smaps_rollup sums every mapping's).
fn anonymous_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = rollup.lines().find_map(|l| l.strip_prefix("Anonymous:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The engine's memory by part and the allocator's figures in MiB, scraped from `/metrics`; empty if the scrape fails (the
/// sample then shows zeros rather than stopping the soak).
async fn engine_memory_mib(http: &Http, target: &Target) -> BTreeMap<String, f64> {
    api_bench::metrics(http, target.address).await.map(|text| parse_engine_memory(&text)).unwrap_or_default()
}

/// The engine's parts (framelog_engine_memory_bytes) and the allocator's figures
/// (framelog_allocator_bytes) by their label's value, in MiB.
fn parse_engine_memory(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter_map(|line| {
            line.strip_prefix("framelog_engine_memory_bytes{part=\"")
                .or_else(|| line.strip_prefix("framelog_allocator_bytes{kind=\""))
        })
        .filter_map(|rest| rest.split_once("\"} "))
        .filter_map(|(part, value)| Some((part.to_string(), value.trim().parse::<f64>().ok()? / (1 << 20) as f64)))
        .collect()
}

/// How many of the process's descriptors are RocksDB table or blob files, and how many sockets.
fn fd_kinds(pid: u32) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return (0, 0) };
    let targets: Vec<String> = entries
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    let engine = targets.iter().filter(|t| t.ends_with(".sst") || t.ends_with(".blob")).count();
    let sockets = targets.iter().filter(|t| t.starts_with("socket:")).count();
    (engine as u64, sockets as u64)
}

/// The least-squares slope of `value` against minutes, per minute.
fn slope(samples: &[&Sample], value: fn(&Sample) -> f64) -> f64 {
    if samples.len() < 2 {
        return 0.0;
    }
    let n = samples.len() as f64;
    let mean_x = samples.iter().map(|s| s.minute).sum::<f64>() / n;
    let mean_y = samples.iter().map(|s| value(s)).sum::<f64>() / n;
    let covariance: f64 = samples.iter().map(|s| (s.minute - mean_x) * (value(s) - mean_y)).sum();
    let variance: f64 = samples.iter().map(|s| (s.minute - mean_x).powi(2)).sum();
    if variance > 0.0 { covariance / variance } else { 0.0 }
}

/// The trends after the warm-up: RSS slope (least squares, MiB per 10 minutes), the spread of
/// fds and threads, the worst and median minute p99s.
pub fn judge(samples: &[Sample]) -> Value {
    let settled: Vec<&Sample> = samples.iter().filter(|s| s.minute >= WARM_UP_MINUTES as f64).collect();
    let slope_per_minute = slope(&settled, |s| s.rss_mib);
    let spread = |f: fn(&Sample) -> u64| {
        let values: Vec<u64> = settled.iter().map(|s| f(s)).collect();
        values.iter().max().unwrap_or(&0) - values.iter().min().unwrap_or(&0)
    };
    let mut p99s: Vec<f64> = settled.iter().map(|s| s.ack_p99_ms).collect();
    p99s.sort_by(f64::total_cmp);
    let worst_ms = p99s.last().copied().unwrap_or(0.0);
    let median_ms = p99s.get(p99s.len() / 2).copied().unwrap_or(0.0);
    // RocksDB keeps each table file open until `max_open_files`: those grow with the data by
    // design; every other descriptor must stay put.
    let (fds, threads) = (spread(|s| s.open_fds.saturating_sub(s.engine_file_fds)), spread(|s| s.threads));
    let targets_met = settled.len() >= 2
        && slope_per_minute * 10.0 < MAX_RSS_SLOPE_MIB_PER_10_MIN
        && fds <= MAX_FD_SPREAD
        && threads <= MAX_THREAD_SPREAD
        && worst_ms <= median_ms * MAX_P99_WORST_TO_MEDIAN;
    json!({
        "rss_slope_mib_per_10_min": slope_per_minute * 10.0,
        // Where the slope comes from: the cache's fill is bounded by its size, the rest is not.
        "block_cache_slope_mib_per_10_min": slope(&settled, |s| s.block_cache_mib) * 10.0,
        "memtables_slope_mib_per_10_min": slope(&settled, |s| s.memtables_mib) * 10.0,
        "table_readers_slope_mib_per_10_min": slope(&settled, |s| s.table_readers_mib) * 10.0,
        "rss_besides_block_cache_slope_mib_per_10_min": slope(&settled, |s| s.rss_mib - s.block_cache_mib) * 10.0,
        "allocated_slope_mib_per_10_min": slope(&settled, |s| s.allocated_mib) * 10.0,
        "allocator_kept_slope_mib_per_10_min": slope(&settled, |s| s.allocator_resident_mib - s.allocated_mib) * 10.0,
        "fd_spread_besides_engine_files": fds,
        "engine_file_fds_last": settled.last().map_or(0, |s| s.engine_file_fds),
        "thread_spread": threads,
        "ack_p99_worst_ms": worst_ms,
        "ack_p99_median_ms": median_ms,
        "minutes_judged": settled.len(),
        "targets_met": targets_met,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_memory_is_read_from_the_exposition_in_mib() {
        let text = "# HELP framelog_engine_memory_bytes x\n\
                    framelog_engine_memory_bytes{part=\"block_cache\"} 2097152\n\
                    framelog_engine_memory_bytes{part=\"memtables\"} 1048576\n\
                    framelog_allocator_bytes{kind=\"allocated\"} 3145728\n\
                    framelog_firehose_incoming_records_total{delivery_stream=\"d\"} 5\n";
        let parts = parse_engine_memory(text);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts["allocated"], 3.0);
        assert_eq!(parts["block_cache"], 2.0);
        assert_eq!(parts["memtables"], 1.0);
    }
}
