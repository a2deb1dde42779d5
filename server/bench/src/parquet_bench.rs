//! Firehose's Parquet conversion against pyarrow in the same run (docs/benchmarks.md): the same
//! JSON lines, cut into buffers of the same number of rows, each buffer converted to one SNAPPY
//! Parquet file in memory with the same six-column table. Framelog's side is the server's own
//! conversion (`framelog_server::firehose_parquet`), as delivery runs it (parsing on a thread
//! per core); pyarrow's is `pyarrow.json.read_json` with the table's schema plus
//! `pyarrow.parquet.write_table`, with its default threads, also one per core
//! (scripts/pyarrow_parquet.py). Only the conversions are timed; each side's median of 5
//! alternating rounds is reported.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use framelog_server::firehose_parquet::{ConversionPlan, GlueTables};
use serde_json::{Value, json};

use crate::stats::Row;

/// Rows per buffer: about 5 MB of these records, a 5 MB buffer's worth.
const BATCH_ROWS: usize = 30_000;
const BATCHES: usize = 10;
const ROUNDS: usize = 5;

/// `repo`: the checkout it runs in, with the project's `.venv` (scripts/setup.sh makes it).
pub fn run(repo: &Path) -> anyhow::Result<Vec<Row>> {
    let lines: Vec<String> = (0..BATCH_ROWS * BATCHES).map(record).collect();
    let bytes: usize = lines.iter().map(|line| line.len() + 1).sum();
    let plan = plan()?;
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all((lines.join("\n") + "\n").as_bytes())?;
    file.flush()?;
    // The two take turns, ROUNDS times each, and each side's median round counts: on a shared
    // machine one round of either can be a third off.
    let (mut ours, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(convert_all(&plan, &lines)?);
        baseline.push(pyarrow(repo, file.path(), lines.len())?);
    }
    let (ours, baseline) = (median(ours), median(baseline));
    let name = format!("Parquet conversion (SNAPPY), {} JSON rows in buffers of {BATCH_ROWS}", lines.len());
    let mib = bytes as f64 / (1 << 20) as f64;
    let ratio = baseline.as_secs_f64() / ours.as_secs_f64();
    Ok(vec![
        Row::timed(&name, "pyarrow read_json + write_table (baseline)", lines.len() as f64, mib, baseline, None),
        Row::timed(&name, "framelog (threads: one per core)", lines.len() as f64, mib, ours, Some(ratio)),
    ])
}

/// A telemetry event of about 170 bytes, its values varying with `n`.
fn record(n: usize) -> String {
    json!({
        "device_id": format!("cam-{:05}", n % 10_000),
        "event_time": format!("2026-12-06 {:02}:{:02}:{:02}.{:03}", n / 3_600_000 % 24, n / 60_000 % 60, n / 1000 % 60, n % 1000),
        "temperature": 15.0 + (n % 2000) as f64 / 100.0,
        "count": n * 7,
        "ok": !n.is_multiple_of(3),
        "message": format!("frame {n} processed in the north wing"),
    })
    .to_string()
}

fn plan() -> anyhow::Result<ConversionPlan> {
    let columns = [
        ("device_id", "string"),
        ("event_time", "timestamp"),
        ("temperature", "double"),
        ("count", "bigint"),
        ("ok", "boolean"),
        ("message", "string"),
    ];
    let columns: Vec<Value> = columns.iter().map(|(name, kind)| json!({"name": name, "type": kind})).collect();
    let tables: GlueTables = serde_json::from_value(json!({"bench": {"events": {"columns": columns}}}))?;
    let destination = json!({"DataFormatConversionConfiguration": {
        "SchemaConfiguration": {"DatabaseName": "bench", "TableName": "events"},
        "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
        "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "SNAPPY"}}}}});
    ConversionPlan::from_destination(&destination, &tables)
        .map_err(anyhow::Error::msg)?
        .ok_or_else(|| anyhow::anyhow!("the conversion is off"))
}

/// Every buffer through the server's conversion; every row must convert.
fn convert_all(plan: &ConversionPlan, lines: &[String]) -> anyhow::Result<Duration> {
    let mut elapsed = Duration::ZERO;
    for batch in lines.chunks(BATCH_ROWS) {
        let records: Vec<&[u8]> = batch.iter().map(|line| line.as_bytes()).collect();
        let started = Instant::now();
        let (file, failed) = plan.convert(&records);
        elapsed += started.elapsed();
        anyhow::ensure!(
            failed.is_empty() && file.is_some(),
            "{} rows failed conversion: {:?}",
            failed.len(),
            failed.first()
        );
    }
    Ok(elapsed)
}

/// pyarrow's time for the same rows; it must read them all.
fn pyarrow(repo: &Path, lines: &Path, rows: usize) -> anyhow::Result<Duration> {
    // From the checkout, not the build's: a binary built in another tree still finds it.
    let script = repo.join("server/bench/scripts/pyarrow_parquet.py");
    let output =
        Command::new(repo.join(".venv/bin/python")).arg(script).arg(lines).arg(BATCH_ROWS.to_string()).output()?;
    anyhow::ensure!(output.status.success(), "pyarrow failed: {}", String::from_utf8_lossy(&output.stderr));
    let answer: Value = serde_json::from_slice(&output.stdout)?;
    anyhow::ensure!(answer["rows"] == rows, "pyarrow read {} of {rows} rows", answer["rows"]);
    let seconds = answer["seconds"].as_f64().ok_or_else(|| anyhow::anyhow!("no seconds in {answer}"))?;
    Ok(Duration::from_secs_f64(seconds))
}

fn median(mut rounds: Vec<Duration>) -> Duration {
    rounds.sort();
    rounds[rounds.len() / 2]
}
