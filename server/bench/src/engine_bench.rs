//! Engine append throughput against raw RocksDB `WriteBatch` writes and against plain file
//! appends of the same bytes, each synced per batch, in the same run on the same disk; the engine
//! runs with segment files (the default) and without (every payload through RocksDB). Each
//! subject runs three times, alternating, and the best run of each is compared.

use std::sync::Arc;
use std::time::{Duration, Instant};

use framelog_store::{Engine, EngineOptions, NewEntry, StreamKind, SystemClock, new_stream_meta};

use crate::stats::Row;

/// A workload: `batches` appends of `per_batch` values of `value_bytes` each.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    pub value_bytes: usize,
    pub per_batch: usize,
    pub batches: usize,
    /// What the engine's ratio is taken against.
    pub baseline: Baseline,
    /// The engine's segment threshold for its main row (`None`: the default), to measure where
    /// segment files start to pay.
    pub segment_min_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    RawRocksdb,
    PlainFile,
}

fn value(seed: usize, len: usize) -> Vec<u8> {
    // Not constant, so nothing downstream can shortcut on repeated bytes.
    (0..len).map(|i| (i.wrapping_mul(31) ^ seed) as u8).collect()
}

/// Best times of one workload's subjects.
struct Best {
    raw: Duration,
    file: Duration,
    engine: Duration,
    engine_without_segments: Duration,
}

fn rows(workload: Workload, best: &Best) -> Vec<Row> {
    let records = (workload.per_batch * workload.batches) as f64;
    let mib = records * workload.value_bytes as f64 / (1024.0 * 1024.0);
    let row =
        |subject: &str, elapsed: Duration, ratio| Row::timed(workload.name, subject, records, mib, elapsed, ratio);
    let (baseline, baseline_name, other, other_name) = match workload.baseline {
        Baseline::RawRocksdb => (best.raw, "raw rocksdb (baseline)", best.file, "plain file appends, fdatasync"),
        Baseline::PlainFile => (best.file, "plain file appends, fdatasync (baseline)", best.raw, "raw rocksdb"),
    };
    let ratio = |elapsed: Duration| Some(baseline.as_secs_f64() / elapsed.as_secs_f64());
    vec![
        row(baseline_name, baseline, None),
        row(other_name, other, ratio(other)),
        row("framelog engine, no segment files", best.engine_without_segments, ratio(best.engine_without_segments)),
        row("framelog engine", best.engine, ratio(best.engine)),
    ]
}

/// The same values appended to one file, `fdatasync` after each batch: the floor any durable
/// log pays.
fn run_file(dir: &std::path::Path, workload: Workload) -> anyhow::Result<Duration> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(dir.join("appends"))?;
    let batches: Vec<Vec<u8>> = (0..workload.batches)
        .map(|b| {
            (0..workload.per_batch).flat_map(|i| value(b * workload.per_batch + i, workload.value_bytes)).collect()
        })
        .collect();
    let started = Instant::now();
    for batch in batches {
        file.write_all(&batch)?;
        file.sync_data()?;
    }
    Ok(started.elapsed())
}

fn run_engine(dir: &std::path::Path, workload: Workload, segments: bool) -> anyhow::Result<Duration> {
    let segment_min_bytes = match (segments, workload.segment_min_bytes) {
        (false, _) => u64::MAX,
        (true, Some(bytes)) => bytes,
        (true, None) => EngineOptions::default().segment_min_bytes,
    };
    let options = EngineOptions { segment_min_bytes, ..EngineOptions::default() };
    let engine = Engine::open(dir, Arc::new(SystemClock), options)?;
    let stream = engine.create_stream(new_stream_meta("bench", StreamKind::Data, "arn", 1, 24, engine.now_ms()))?;
    let batches: Vec<Vec<NewEntry>> = (0..workload.batches)
        .map(|b| {
            (0..workload.per_batch)
                .map(|i| NewEntry {
                    shard: 0,
                    producer_ts_ms: None,
                    attrs: b"pk".to_vec(),
                    payload: value(b * workload.per_batch + i, workload.value_bytes),
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    for batch in batches {
        engine.append_blocking(&stream, batch)?;
    }
    let elapsed = started.elapsed();
    engine.close()?;
    Ok(elapsed)
}

fn run_raw(dir: &std::path::Path, workload: Workload) -> anyhow::Result<Duration> {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    // The same value placement as the engine's payload column family.
    options.set_enable_blob_files(true);
    options.set_min_blob_size(4096);
    options.set_write_buffer_size(64 << 20);
    let db = rocksdb::DB::open(&options, dir)?;
    let mut write_options = rocksdb::WriteOptions::default();
    write_options.set_sync(true);
    let batches: Vec<Vec<(Vec<u8>, Vec<u8>)>> = (0..workload.batches)
        .map(|b| {
            (0..workload.per_batch)
                .map(|i| {
                    let n = b * workload.per_batch + i;
                    ((n as u64).to_be_bytes().to_vec(), value(n, workload.value_bytes))
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    for batch in batches {
        let mut write = rocksdb::WriteBatch::default();
        for (key, value) in batch {
            write.put(key, value);
        }
        db.write_opt(write, &write_options)?;
    }
    Ok(started.elapsed())
}

/// Rounds per subject; runs alternate raw/engine so that disk noise hits both alike.
const ROUNDS: usize = 3;

pub fn run(workloads: &[Workload]) -> anyhow::Result<Vec<Row>> {
    let mut out = Vec::new();
    for &workload in workloads {
        let mut best = Best {
            raw: Duration::MAX,
            file: Duration::MAX,
            engine: Duration::MAX,
            engine_without_segments: Duration::MAX,
        };
        for _ in 0..ROUNDS {
            // Each run gets a fresh directory, so no run reads or compacts another's data.
            let fresh = || tempfile::tempdir_in(".");
            best.raw = best.raw.min(run_raw(fresh()?.path(), workload)?);
            best.file = best.file.min(run_file(fresh()?.path(), workload)?);
            best.engine_without_segments =
                best.engine_without_segments.min(run_engine(fresh()?.path(), workload, false)?);
            best.engine = best.engine.min(run_engine(fresh()?.path(), workload, true)?);
        }
        out.extend(rows(workload, &best));
    }
    Ok(out)
}
