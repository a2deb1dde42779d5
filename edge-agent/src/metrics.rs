//! Per-stream counters and gauges, shared by the recorder, the buffer and the uploader, and read
//! by the status endpoint.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::file_flows::FlowStatus;

#[derive(Debug, Default)]
pub struct StreamMetrics {
    pub recording: AtomicBool,
    pub uploading: AtomicBool,
    pub recorded_fragments: AtomicU64,
    pub recorded_bytes: AtomicU64,
    /// Unuploaded fragments deleted to make room (`delete_oldest_media`).
    pub dropped_fragments: AtomicU64,
    /// New fragments not stored because the buffer was full (`deny_new_media`).
    pub refused_fragments: AtomicU64,
    /// Unuploaded fragments deleted by `edge_retention_hours`.
    pub expired_fragments: AtomicU64,
    /// Fragments the server refused for their content (kept aside, not retried).
    pub rejected_fragments: AtomicU64,
    pub uploaded_fragments: AtomicU64,
    pub uploaded_bytes: AtomicU64,
    pub buffered_bytes: AtomicU64,
    pub buffered_fragments: AtomicU64,
    /// Producer time of the oldest fragment not yet uploaded (0: none).
    pub oldest_unuploaded_ms: AtomicU64,
    /// Upload rate over the last few seconds.
    pub upload_bytes_per_sec: AtomicU64,
    /// The last error and when it happened (ms since the epoch).
    pub last_error: Mutex<Option<(u64, String)>>,
}

impl StreamMetrics {
    pub fn set_error(&self, error: impl ToString) {
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some((now_ms, error.to_string()));
        }
    }

    pub fn snapshot(&self, name: &str) -> StreamStatus {
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        StreamStatus {
            name: name.to_string(),
            recording: self.recording.load(Ordering::Relaxed),
            uploading: self.uploading.load(Ordering::Relaxed),
            recorded_fragments: get(&self.recorded_fragments),
            recorded_bytes: get(&self.recorded_bytes),
            dropped_fragments: get(&self.dropped_fragments),
            refused_fragments: get(&self.refused_fragments),
            expired_fragments: get(&self.expired_fragments),
            rejected_fragments: get(&self.rejected_fragments),
            uploaded_fragments: get(&self.uploaded_fragments),
            uploaded_bytes: get(&self.uploaded_bytes),
            buffered_bytes: get(&self.buffered_bytes),
            buffered_fragments: get(&self.buffered_fragments),
            oldest_unuploaded_ms: Some(get(&self.oldest_unuploaded_ms)).filter(|&ms| ms > 0),
            upload_bytes_per_sec: get(&self.upload_bytes_per_sec),
            last_error: self.last_error.lock().ok().and_then(|e| e.as_ref().map(|(_, text)| text.clone())),
            last_error_ms: self.last_error.lock().ok().and_then(|e| e.as_ref().map(|(ms, _)| *ms)),
        }
    }
}

/// One stream's status as `/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StreamStatus {
    pub name: String,
    pub recording: bool,
    pub uploading: bool,
    pub recorded_fragments: u64,
    pub recorded_bytes: u64,
    pub dropped_fragments: u64,
    pub refused_fragments: u64,
    pub expired_fragments: u64,
    pub rejected_fragments: u64,
    pub uploaded_fragments: u64,
    pub uploaded_bytes: u64,
    pub buffered_bytes: u64,
    pub buffered_fragments: u64,
    pub oldest_unuploaded_ms: Option<u64>,
    pub upload_bytes_per_sec: u64,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
}

/// Whether a series only grows (a counter, `<name>_total` on the wire) or goes up and down.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// (metric name, kind, help, value of a stream's status).
type Series = (&'static str, Kind, &'static str, fn(&StreamStatus) -> u64);

const SERIES: [Series; 13] = [
    ("recording", Kind::Gauge, "1 while the source is recording", |s| u64::from(s.recording)),
    ("recorded_fragments", Kind::Counter, "Fragments recorded to the buffer", |s| s.recorded_fragments),
    ("recorded_bytes", Kind::Counter, "Bytes recorded to the buffer", |s| s.recorded_bytes),
    ("dropped_fragments", Kind::Counter, "Unuploaded fragments deleted for space", |s| s.dropped_fragments),
    ("refused_fragments", Kind::Counter, "New fragments refused by a full buffer", |s| s.refused_fragments),
    ("expired_fragments", Kind::Counter, "Unuploaded fragments past edge retention", |s| s.expired_fragments),
    ("rejected_fragments", Kind::Counter, "Fragments the server refused", |s| s.rejected_fragments),
    ("uploaded_fragments", Kind::Counter, "Fragments PERSISTED by the server", |s| s.uploaded_fragments),
    ("uploaded_bytes", Kind::Counter, "Bytes PERSISTED by the server", |s| s.uploaded_bytes),
    ("buffered_bytes", Kind::Gauge, "Bytes waiting for upload", |s| s.buffered_bytes),
    ("buffered_fragments", Kind::Gauge, "Fragments waiting for upload", |s| s.buffered_fragments),
    ("oldest_unuploaded_ms", Kind::Gauge, "Producer time of the oldest fragment waiting", |s| {
        s.oldest_unuploaded_ms.unwrap_or(0)
    }),
    ("upload_bytes_per_second", Kind::Gauge, "Recent upload rate", |s| s.upload_bytes_per_sec),
];

type Labels = Vec<(&'static str, String)>;

/// (metric name, kind, help, value of a flow's status).
type FlowSeries = (&'static str, Kind, &'static str, fn(&FlowStatus) -> u64);

const FLOW_SERIES: [FlowSeries; 6] = [
    ("records_parsed", Kind::Counter, "Records cut from the flow's files", |f| f.records_parsed),
    ("records_sent", Kind::Counter, "Records the service acknowledged", |f| f.records_sent),
    ("records_refused", Kind::Counter, "Refusals of a record by the service (sent again)", |f| f.records_refused),
    ("records_unconverted", Kind::Counter, "Records a converter could not read (not sent)", |f| f.records_unconverted),
    ("bytes_behind", Kind::Gauge, "Bytes of the files not acknowledged yet", |f| f.bytes_behind),
    ("files", Kind::Gauge, "Files followed", |f| f.files),
];

/// The OpenMetrics text exposition of every stream's and flow's status (what Prometheus scrapes).
pub fn prometheus(streams: &[StreamStatus], flows: &[FlowStatus]) -> String {
    let mut registry = Registry::with_prefix("framelog_edge");
    let flow_registry = registry.sub_registry_with_prefix("flow");
    for (name, kind, help, value) in FLOW_SERIES {
        register(flow_registry, name, kind, help, flows.iter().map(|f| (vec![("flow", f.name.clone())], value(f))));
    }
    for (name, kind, help, value) in SERIES {
        register(&mut registry, name, kind, help, streams.iter().map(|s| (vec![("stream", s.name.clone())], value(s))));
    }
    let mut text = String::new();
    if let Err(error) = encode(&mut text, &registry) {
        tracing::error!(%error, "the metrics could not be encoded");
    }
    text
}

/// One family of `samples` (labels and value) as a counter or a gauge.
fn register(registry: &mut Registry, name: &str, kind: Kind, help: &str, samples: impl Iterator<Item = (Labels, u64)>) {
    match kind {
        Kind::Counter => {
            let family = Family::<Labels, Counter>::default();
            for (labels, value) in samples {
                family.get_or_create(&labels).inc_by(value);
            }
            registry.register(name, help, family);
        }
        Kind::Gauge => {
            let family = Family::<Labels, Gauge>::default();
            for (labels, value) in samples {
                family.get_or_create(&labels).set(i64::try_from(value).unwrap_or(i64::MAX));
            }
            registry.register(name, help, family);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_one_sample_per_stream_and_series() {
        let metrics = StreamMetrics::default();
        metrics.buffered_bytes.store(4096, Ordering::Relaxed);
        let flow = crate::file_flows::FlowMetrics::default();
        flow.records_sent.store(7, Ordering::Relaxed);
        let flows = [flow.snapshot("/var/log/app.log")];
        let text = prometheus(&[metrics.snapshot("front-door"), StreamMetrics::default().snapshot("back")], &flows);
        assert!(text.contains("framelog_edge_flow_records_sent_total{flow=\"/var/log/app.log\"} 7\n"), "{text}");
        assert!(text.contains("framelog_edge_buffered_bytes{stream=\"front-door\"} 4096\n"), "{text}");
        assert!(text.contains("# TYPE framelog_edge_uploaded_fragments counter\n"), "{text}");
        assert!(text.contains("framelog_edge_uploaded_fragments_total{stream=\"back\"} 0\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("framelog_edge_recording{")).count(), 2);
    }
}
