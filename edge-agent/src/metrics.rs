//! Per-stream counters and gauges, shared by the recorder, the buffer and the uploader, and read
//! by the status endpoint.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

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

/// (metric name, type, help, value of a stream's status).
type Series = (&'static str, &'static str, &'static str, fn(&StreamStatus) -> u64);

/// The Prometheus text exposition of every stream's status.
pub fn prometheus(streams: &[StreamStatus]) -> String {
    let mut out = String::new();
    let series: [Series; 13] = [
        ("framelog_edge_recording", "gauge", "1 while the source is recording", |s| u64::from(s.recording)),
        ("framelog_edge_recorded_fragments_total", "counter", "Fragments recorded to the buffer", |s| {
            s.recorded_fragments
        }),
        ("framelog_edge_recorded_bytes_total", "counter", "Bytes recorded to the buffer", |s| s.recorded_bytes),
        ("framelog_edge_dropped_fragments_total", "counter", "Unuploaded fragments deleted for space", |s| {
            s.dropped_fragments
        }),
        ("framelog_edge_refused_fragments_total", "counter", "New fragments refused by a full buffer", |s| {
            s.refused_fragments
        }),
        ("framelog_edge_expired_fragments_total", "counter", "Unuploaded fragments past edge retention", |s| {
            s.expired_fragments
        }),
        ("framelog_edge_rejected_fragments_total", "counter", "Fragments the server refused", |s| s.rejected_fragments),
        ("framelog_edge_uploaded_fragments_total", "counter", "Fragments PERSISTED by the server", |s| {
            s.uploaded_fragments
        }),
        ("framelog_edge_uploaded_bytes_total", "counter", "Bytes PERSISTED by the server", |s| s.uploaded_bytes),
        ("framelog_edge_buffered_bytes", "gauge", "Bytes waiting for upload", |s| s.buffered_bytes),
        ("framelog_edge_buffered_fragments", "gauge", "Fragments waiting for upload", |s| s.buffered_fragments),
        ("framelog_edge_oldest_unuploaded_ms", "gauge", "Producer time of the oldest fragment waiting", |s| {
            s.oldest_unuploaded_ms.unwrap_or(0)
        }),
        ("framelog_edge_upload_bytes_per_second", "gauge", "Recent upload rate", |s| s.upload_bytes_per_sec),
    ];
    for (name, kind, help, value) in series {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for stream in streams {
            out.push_str(&format!("{name}{{stream=\"{}\"}} {}\n", stream.name.replace('"', "'"), value(stream)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_one_sample_per_stream_and_series() {
        let metrics = StreamMetrics::default();
        metrics.buffered_bytes.store(4096, Ordering::Relaxed);
        let text = prometheus(&[metrics.snapshot("front-door"), StreamMetrics::default().snapshot("back")]);
        assert!(text.contains("framelog_edge_buffered_bytes{stream=\"front-door\"} 4096\n"), "{text}");
        assert!(text.contains("# TYPE framelog_edge_uploaded_fragments_total counter\n"));
        assert_eq!(text.lines().filter(|l| l.starts_with("framelog_edge_recording{")).count(), 2);
    }
}
