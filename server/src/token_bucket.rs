//! A token bucket holding one second of its rate: a client may burst to a second's worth and
//! then runs at the rate. Tokens may go negative (a read larger than what was left is repaid
//! before the next one). KDS's shard quotas and Firehose's Direct PUT quotas use it.

#[derive(Debug, Clone)]
pub struct Bucket {
    pub per_sec: f64,
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
