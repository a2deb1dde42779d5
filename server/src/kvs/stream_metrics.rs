//! What PutMedia and GetMedia report to CloudWatch (AWS/KinesisVideo) for one stream.

use crate::cloudwatch::{OpenGuard, Recorder, video};

/// One stream's metrics, for a connection that reports many samples.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    recorder: Recorder,
    stream: String,
}

impl StreamMetrics {
    pub fn new(recorder: &Recorder, stream: String) -> StreamMetrics {
        StreamMetrics { recorder: recorder.clone(), stream }
    }

    fn record(&self, metric: &crate::cloudwatch::Metric, value: f64) {
        self.recorder.record(metric, &[("StreamName", self.stream.as_str())], value);
    }

    /// A PutMedia connection, counted in PutMedia.ActiveConnections while the guard lives.
    pub fn connected(&self) -> OpenGuard {
        self.recorder.open(&video::PUT_MEDIA_ACTIVE_CONNECTIONS, &[("StreamName", self.stream.as_str())])
    }

    /// A whole fragment received: its bytes and frames, and how long it took from its first
    /// bytes to its last.
    pub fn fragment_received(&self, bytes: u64, frames: u64, ingestion_ms: u64) {
        self.record(&video::PUT_MEDIA_INCOMING_BYTES, bytes as f64);
        self.record(&video::PUT_MEDIA_INCOMING_FRAGMENTS, 1.0);
        self.record(&video::PUT_MEDIA_INCOMING_FRAMES, frames as f64);
        self.record(&video::PUT_MEDIA_INGESTION_LATENCY, ingestion_ms as f64);
    }

    /// A fragment durable `persist_ms` after it was received whole.
    pub fn fragment_persisted(&self, persist_ms: f64) {
        self.record(&video::PUT_MEDIA_PERSIST_LATENCY, persist_ms);
    }

    pub fn error_ack(&self) {
        self.record(&video::PUT_MEDIA_ERROR_ACKS, 1.0);
    }

    /// The producer's connection broke mid-upload.
    pub fn connection_error(&self) {
        self.record(&video::PUT_MEDIA_CONNECTION_ERRORS, 1.0);
    }

    /// A fragment GetMedia sent, and how far behind now its producer time was.
    pub fn fragment_sent(&self, bytes: u64, millis_behind_now: u64) {
        self.record(&video::GET_MEDIA_OUTGOING_BYTES, bytes as f64);
        self.record(&video::GET_MEDIA_OUTGOING_FRAGMENTS, 1.0);
        self.record(&video::GET_MEDIA_MILLIS_BEHIND_NOW, millis_behind_now as f64);
    }
}
