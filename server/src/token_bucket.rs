//! A token bucket holding one second of its rate: a client may burst to a second's worth and
//! then runs at the rate. Tokens may go negative (a read larger than what was left is repaid
//! before the next one). KDS's shard quotas and Firehose's Direct PUT quotas use it.

#[derive(Debug, Clone)]
pub struct Bucket {
    per_sec: f64,
    pub tokens: f64,
    at_ms: u64,
}

impl Bucket {
    pub fn new(per_sec: f64, now_ms: u64) -> Self {
        Bucket { per_sec, tokens: per_sec, at_ms: now_ms }
    }

    pub fn refill(&mut self, now_ms: u64) {
        let elapsed_s = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed_s * self.per_sec).min(self.per_sec);
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// How long until the bucket is out of debt, in ms.
    pub fn debt_ms(&self) -> u64 {
        if self.tokens >= 0.0 { 0 } else { (-self.tokens / self.per_sec * 1000.0).ceil() as u64 }
    }
}

/// A write quota in records and in bytes a second, as KDS's shards and Firehose's delivery
/// streams have one.
#[derive(Debug, Clone)]
pub struct RecordQuota {
    records: Bucket,
    bytes: Bucket,
}

impl RecordQuota {
    pub fn new(records_per_sec: f64, bytes_per_sec: f64, now_ms: u64) -> Self {
        RecordQuota { records: Bucket::new(records_per_sec, now_ms), bytes: Bucket::new(bytes_per_sec, now_ms) }
    }

    pub fn refill(&mut self, now_ms: u64) {
        self.records.refill(now_ms);
        self.bytes.refill(now_ms);
    }

    /// Whether one record of `bytes` fits now. A full byte bucket takes any one record (going
    /// into debt), so a record larger than a second's bytes is slowed, never refused forever.
    pub fn fits(&self, bytes: u64) -> bool {
        self.records.tokens >= 1.0 && self.bytes.tokens >= (bytes as f64).min(self.bytes.per_sec)
    }

    /// Charges one record of `bytes`.
    pub fn take(&mut self, bytes: u64) {
        self.records.tokens -= 1.0;
        self.bytes.tokens -= bytes as f64;
    }
}
