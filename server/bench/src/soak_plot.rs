//! The soak's samples drawn as an SVG: one small chart per measure against minutes, written by
//! hand (a polyline per chart) rather than pulling a plotting crate into the bench.

use std::fmt::Write as _;

use crate::soak_bench::Sample;

const CHART_WIDTH: f64 = 560.0;
const CHART_HEIGHT: f64 = 150.0;
const MARGIN: f64 = 50.0;

type Measure = (&'static str, fn(&Sample) -> f64);

const MEASURES: [Measure; 10] = [
    ("RSS (MiB)", |s| s.rss_mib),
    ("RocksDB block cache (MiB)", |s| s.block_cache_mib),
    ("RSS besides the block cache (MiB)", |s| s.rss_mib - s.block_cache_mib),
    ("allocated, by the allocator's count (MiB)", |s| s.allocated_mib),
    ("freed but kept by the allocator, and its metadata (MiB)", |s| s.allocator_resident_mib - s.allocated_mib),
    ("open file descriptors besides RocksDB's table and blob files", |s| {
        s.open_fds.saturating_sub(s.engine_file_fds) as f64
    }),
    ("RocksDB table and blob files open", |s| s.engine_file_fds as f64),
    ("threads", |s| s.threads as f64),
    ("PERSISTED ack p99 (ms)", |s| s.ack_p99_ms),
    ("PutRecords p99 (ms)", |s| s.put_records_p99_ms),
];

pub fn svg(samples: &[Sample]) -> String {
    let height = MEASURES.len() as f64 * (CHART_HEIGHT + MARGIN) + MARGIN;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n",
        w = CHART_WIDTH + 2.0 * MARGIN
    );
    let last_minute = samples.last().map_or(1.0, |s| s.minute.max(1.0));
    for (index, (title, value)) in MEASURES.iter().enumerate() {
        let top = MARGIN + index as f64 * (CHART_HEIGHT + MARGIN);
        chart(&mut out, samples, top, last_minute, title, *value);
    }
    out.push_str("</svg>\n");
    out
}

fn chart(out: &mut String, samples: &[Sample], top: f64, last_minute: f64, title: &str, value: fn(&Sample) -> f64) {
    let highest = samples.iter().map(value).fold(0.0_f64, f64::max).max(1e-9) * 1.1;
    let x = |minute: f64| MARGIN + minute / last_minute * CHART_WIDTH;
    let y = |v: f64| top + CHART_HEIGHT - v / highest * CHART_HEIGHT;
    let points: Vec<String> = samples.iter().map(|s| format!("{:.1},{:.1}", x(s.minute), y(value(s)))).collect();
    let bottom = top + CHART_HEIGHT;
    let _ = writeln!(out, "<text x=\"{MARGIN}\" y=\"{:.1}\" font-weight=\"bold\">{title}</text>", top - 8.0);
    let _ = writeln!(
        out,
        "<rect x=\"{MARGIN}\" y=\"{top:.1}\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" fill=\"none\" stroke=\"#999\"/>"
    );
    let _ = writeln!(out, "<text x=\"4\" y=\"{:.1}\">{highest:.1}</text>", top + 12.0);
    let _ = writeln!(out, "<text x=\"4\" y=\"{bottom:.1}\">0</text>");
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\">{last_minute:.0} min</text>",
        MARGIN + CHART_WIDTH - 40.0,
        bottom + 14.0
    );
    let _ = writeln!(
        out,
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>",
        points.join(" ")
    );
}
