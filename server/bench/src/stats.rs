//! Latency percentiles and throughput figures for the report.

use std::time::Duration;

/// Nearest-rank percentile of sorted samples, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], pct: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// One row of the results table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub name: String,
    pub subject: String,
    pub records_per_sec: f64,
    pub mib_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub ratio_to_baseline: Option<f64>,
}

impl Row {
    /// A throughput row (no latencies).
    pub fn rate(name: &str, subject: &str, records_per_sec: f64, ratio_to_baseline: Option<f64>) -> Row {
        Row {
            name: name.into(),
            subject: subject.into(),
            records_per_sec,
            mib_per_sec: 0.0,
            p50_ms: None,
            p99_ms: None,
            ratio_to_baseline,
        }
    }

    /// A throughput row: `items` and `mib` moved in `elapsed`.
    pub fn timed(
        name: &str,
        subject: &str,
        items: f64,
        mib: f64,
        elapsed: Duration,
        ratio_to_baseline: Option<f64>,
    ) -> Row {
        let seconds = elapsed.as_secs_f64();
        Row { mib_per_sec: mib / seconds, ..Row::rate(name, subject, items / seconds, ratio_to_baseline) }
    }

    /// A latency row from sorted samples.
    pub fn latency(name: &str, subject: &str, sorted: &[Duration], ratio_to_baseline: Option<f64>) -> Row {
        Row {
            name: name.into(),
            subject: subject.into(),
            records_per_sec: 0.0,
            mib_per_sec: 0.0,
            p50_ms: Some(percentile_ms(sorted, 50.0)),
            p99_ms: Some(percentile_ms(sorted, 99.0)),
            ratio_to_baseline,
        }
    }
}

pub fn print_table(rows: &[Row]) {
    println!(
        "{:<44} {:<22} {:>14} {:>10} {:>9} {:>9} {:>8}",
        "benchmark", "subject", "records/s", "MiB/s", "p50 ms", "p99 ms", "ratio"
    );
    for row in rows {
        let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        println!(
            "{:<44} {:<22} {:>14.0} {:>10.1} {:>9} {:>9} {:>8}",
            row.name,
            row.subject,
            row.records_per_sec,
            row.mib_per_sec,
            opt(row.p50_ms, 2),
            opt(row.p99_ms, 2),
            opt(row.ratio_to_baseline, 2)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&samples, 50.0), 50.0);
        assert_eq!(percentile_ms(&samples, 99.0), 99.0);
        assert_eq!(percentile_ms(&samples[..1], 99.0), 1.0);
    }
}
