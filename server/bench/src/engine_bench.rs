//! Engine append throughput against raw RocksDB `WriteBatch` writes of the same bytes, with the
//! same sync setting (WAL synced per batch), in the same run on the same disk. Each side runs
//! three times, alternating, and the best run of each is compared.

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
}

fn value(seed: usize, len: usize) -> Vec<u8> {
    // Not constant, so nothing downstream can shortcut on repeated bytes.
    (0..len).map(|i| (i.wrapping_mul(31) ^ seed) as u8).collect()
}

fn rows(workload: Workload, engine_elapsed: Duration, raw_elapsed: Duration) -> Vec<Row> {
    let records = (workload.per_batch * workload.batches) as f64;
    let mib = records * workload.value_bytes as f64 / (1024.0 * 1024.0);
    let row =
        |subject: &str, elapsed: Duration, ratio| Row::timed(workload.name, subject, records, mib, elapsed, ratio);
    vec![
        row("raw rocksdb (baseline)", raw_elapsed, None),
        row("framelog engine", engine_elapsed, Some(raw_elapsed.as_secs_f64() / engine_elapsed.as_secs_f64())),
    ]
}

fn run_engine(dir: &std::path::Path, workload: Workload) -> anyhow::Result<Duration> {
    let engine = Engine::open(dir, Arc::new(SystemClock), EngineOptions::default())?;
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
        let mut raw_best = Duration::MAX;
        let mut engine_best = Duration::MAX;
        for _ in 0..ROUNDS {
            // Each run gets a fresh directory, so no run reads or compacts another's data.
            raw_best = raw_best.min(run_raw(tempfile::tempdir_in(".")?.path(), workload)?);
            engine_best = engine_best.min(run_engine(tempfile::tempdir_in(".")?.path(), workload)?);
        }
        out.extend(rows(workload, engine_best, raw_best));
    }
    Ok(out)
}
