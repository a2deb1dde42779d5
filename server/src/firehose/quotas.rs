//! Direct PUT throughput quotas per delivery stream, enforced when `[firehose] quotas = true`:
//! PutRecord and PutRecordBatch together may make so many calls, and put so many records and
//! bytes, per second (<https://docs.aws.amazon.com/firehose/latest/dev/limits.html>; the defaults
//! are the largest regions', 2,000 calls, 500,000 records and 5 MiB a second). Off by default,
//! as a self-hosted stream is limited by its disk. A call over the call rate is refused whole; in
//! a batch, the records past the record or byte rate are refused one by one, as AWS answers
//! them (`ServiceUnavailableException`, "Slow down."), and counted as ThrottledRecords.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::token_bucket::{Bucket, RecordQuota};

/// The `[firehose]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirehoseConfig {
    #[serde(default)]
    pub quotas: bool,
    #[serde(default = "default_calls_per_sec")]
    pub calls_per_sec: u64,
    #[serde(default = "default_records_per_sec")]
    pub records_per_sec: u64,
    #[serde(default = "default_bytes_per_sec")]
    pub bytes_per_sec: u64,
}

fn default_calls_per_sec() -> u64 {
    2_000
}

fn default_records_per_sec() -> u64 {
    500_000
}

fn default_bytes_per_sec() -> u64 {
    5 << 20
}

impl Default for FirehoseConfig {
    fn default() -> Self {
        FirehoseConfig {
            quotas: false,
            calls_per_sec: default_calls_per_sec(),
            records_per_sec: default_records_per_sec(),
            bytes_per_sec: default_bytes_per_sec(),
        }
    }
}

/// One delivery stream's buckets.
#[derive(Debug)]
struct StreamUse {
    calls: Bucket,
    records: RecordQuota,
}

/// The buckets of every delivery stream put to, by stream id (a recreated stream starts full).
#[derive(Debug, Clone, Default)]
pub struct PutQuotas {
    config: Option<FirehoseConfig>,
    streams: Arc<Mutex<HashMap<u64, StreamUse>>>,
}

impl PutQuotas {
    pub fn new(config: &FirehoseConfig) -> Self {
        PutQuotas { config: config.quotas.then(|| config.clone()), streams: Arc::default() }
    }

    /// Which records of a call of `record_bytes` may go in; `None` when the call itself is over
    /// the call rate. Without quotas every record goes in.
    pub fn admit(&self, stream_id: u64, record_bytes: &[u64], now_ms: u64) -> Option<Vec<bool>> {
        let Some(config) = &self.config else { return Some(vec![true; record_bytes.len()]) };
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let use_ = streams.entry(stream_id).or_insert_with(|| StreamUse {
            calls: Bucket::new(config.calls_per_sec as f64, now_ms),
            records: RecordQuota::new(config.records_per_sec as f64, config.bytes_per_sec as f64, now_ms),
        });
        use_.calls.refill(now_ms);
        use_.records.refill(now_ms);
        if use_.calls.tokens < 1.0 {
            return None;
        }
        use_.calls.tokens -= 1.0;
        let admitted = record_bytes
            .iter()
            .map(|&bytes| {
                let fits = use_.records.fits(bytes);
                if fits {
                    use_.records.take(bytes);
                }
                fits
            })
            .collect();
        Some(admitted)
    }

    /// Drops a deleted stream's buckets (ids are never reused, so they would only linger).
    pub fn forget(&self, stream_id: u64) {
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).remove(&stream_id);
    }

    /// How many streams have buckets.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(calls: u64, records: u64, bytes: u64) -> PutQuotas {
        PutQuotas::new(&FirehoseConfig {
            quotas: true,
            calls_per_sec: calls,
            records_per_sec: records,
            bytes_per_sec: bytes,
        })
    }

    #[test]
    fn records_past_a_second_of_records_are_refused_until_the_bucket_refills() {
        let quotas = limited(100, 3, 1 << 30);
        assert_eq!(quotas.admit(1, &[10, 10], 0), Some(vec![true, true]));
        assert_eq!(quotas.admit(1, &[10, 10], 0), Some(vec![true, false]));
        // Another stream has its own buckets.
        assert_eq!(quotas.admit(2, &[10], 0), Some(vec![true]));
        assert_eq!(quotas.admit(1, &[10, 10, 10, 10], 1000), Some(vec![true, true, true, false]));
    }

    #[test]
    fn bytes_past_a_seconds_worth_are_refused_but_a_full_bucket_takes_any_record() {
        let quotas = limited(100, 1_000_000, 100);
        assert_eq!(quotas.admit(1, &[60, 60], 0), Some(vec![true, false]));
        assert_eq!(quotas.admit(1, &[500], 1000), Some(vec![true]));
        assert_eq!(quotas.admit(1, &[1], 1000), Some(vec![false]));
    }

    #[test]
    fn calls_past_the_call_rate_are_refused_whole() {
        let quotas = limited(2, 1_000_000, 1 << 30);
        assert!(quotas.admit(1, &[1], 0).is_some());
        assert!(quotas.admit(1, &[1], 0).is_some());
        assert_eq!(quotas.admit(1, &[1], 0), None);
        assert!(quotas.admit(1, &[1], 500).is_some());
    }

    #[test]
    fn a_forgotten_stream_keeps_no_buckets() {
        let quotas = limited(1, 1_000_000, 1 << 30);
        assert!(quotas.admit(7, &[1], 0).is_some());
        assert_eq!((quotas.admit(7, &[1], 0), quotas.tracked()), (None, 1));
        quotas.forget(7);
        assert_eq!(quotas.tracked(), 0);
    }

    #[test]
    fn without_quotas_everything_goes_in() {
        let open = PutQuotas::new(&FirehoseConfig::default());
        for _ in 0..10_000 {
            assert_eq!(open.admit(1, &[1 << 20; 3], 0), Some(vec![true; 3]));
        }
    }
}
