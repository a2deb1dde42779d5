//! Per-shard throughput: AWS's quotas as token buckets, enforced when `[kds] quotas = true`, and
//! the write meter ON_DEMAND streams scale on (always kept).
//!
//! Quotas (https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html): writes
//! 1 MiB/s or 1,000 records/s per shard; GetRecords 5 calls/s and 2 MiB/s per shard; enhanced
//! fan-out 2 MiB/s per consumer per shard. Each bucket holds one second of its rate
//! (token_bucket.rs). Buckets live in this process: in a cluster each node enforces them for the
//! requests it serves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::token_bucket::{Bucket, RecordQuota};

pub const WRITE_BYTES_PER_SEC: f64 = 1_048_576.0;
pub const WRITE_RECORDS_PER_SEC: f64 = 1_000.0;
pub const READ_CALLS_PER_SEC: f64 = 5.0;
pub const READ_BYTES_PER_SEC: f64 = 2_097_152.0;
pub const FAN_OUT_BYTES_PER_SEC: f64 = 2_097_152.0;
/// How long the write meter averages over when deciding whether a shard runs hot.
const METER_WINDOW_MS: u64 = 10_000;

/// The buckets and meter of one shard.
#[derive(Debug, Clone)]
struct ShardUse {
    writes: RecordQuota,
    read_calls: Bucket,
    read_bytes: Bucket,
    /// Bytes and records written in the current meter window, and when it started.
    window_start_ms: u64,
    window_bytes: u64,
    window_records: u64,
    /// The last full window's rates as fractions of the write quota (the larger of the two).
    last_window_load: f64,
}

impl ShardUse {
    fn new(now_ms: u64) -> Self {
        ShardUse {
            writes: RecordQuota::new(WRITE_RECORDS_PER_SEC, WRITE_BYTES_PER_SEC, now_ms),
            read_calls: Bucket::new(READ_CALLS_PER_SEC, now_ms),
            read_bytes: Bucket::new(READ_BYTES_PER_SEC, now_ms),
            window_start_ms: now_ms,
            window_bytes: 0,
            window_records: 0,
            last_window_load: 0.0,
        }
    }

    fn meter(&mut self, bytes: u64, now_ms: u64) {
        if now_ms.saturating_sub(self.window_start_ms) >= METER_WINDOW_MS {
            let window_s = now_ms.saturating_sub(self.window_start_ms) as f64 / 1000.0;
            let bytes_load = self.window_bytes as f64 / window_s / WRITE_BYTES_PER_SEC;
            let records_load = self.window_records as f64 / window_s / WRITE_RECORDS_PER_SEC;
            self.last_window_load = bytes_load.max(records_load);
            self.window_start_ms = now_ms;
            self.window_bytes = 0;
            self.window_records = 0;
        }
        self.window_bytes += bytes;
        self.window_records += 1;
    }
}

/// Throughput state of every shard this process served, keyed by (stream id, shard).
#[derive(Debug, Clone, Default)]
pub struct Quotas {
    enforce: bool,
    shards: Arc<Mutex<HashMap<(u64, u32), ShardUse>>>,
}

impl Quotas {
    pub fn new(enforce: bool) -> Self {
        Quotas { enforce, shards: Arc::default() }
    }

    pub fn enforced(&self) -> bool {
        self.enforce
    }

    fn with_shard<T>(&self, stream_id: u64, shard: u32, now_ms: u64, f: impl FnOnce(&mut ShardUse) -> T) -> T {
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        f(shards.entry((stream_id, shard)).or_insert_with(|| ShardUse::new(now_ms)))
    }

    /// Admits (or not) each record of a put, in order: a record is refused when its shard has
    /// used its second of bytes or records. Admitted records are metered. One lock per put.
    pub fn admit_writes(&self, stream_id: u64, records: &[(u32, u64)], now_ms: u64) -> Vec<bool> {
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        records
            .iter()
            .map(|&(shard, bytes)| {
                let use_ = shards.entry((stream_id, shard)).or_insert_with(|| ShardUse::new(now_ms));
                use_.writes.refill(now_ms);
                // A record over 1 MiB, which UpdateMaxRecordSize allows, still fits a full
                // bucket (RecordQuota::fits).
                let admitted = !self.enforce || use_.writes.fits(bytes);
                if admitted {
                    use_.writes.take(bytes);
                    use_.meter(bytes, now_ms);
                }
                admitted
            })
            .collect()
    }

    /// Whether a GetRecords call on the shard may run now (a call token, and no byte debt).
    pub fn admit_read(&self, stream_id: u64, shard: u32, now_ms: u64) -> bool {
        if !self.enforce {
            return true;
        }
        self.with_shard(stream_id, shard, now_ms, |use_| {
            use_.read_calls.refill(now_ms);
            use_.read_bytes.refill(now_ms);
            let fits = use_.read_calls.tokens >= 1.0 && use_.read_bytes.tokens > 0.0;
            if fits {
                use_.read_calls.tokens -= 1.0;
            }
            fits
        })
    }

    /// Charges a GetRecords call's bytes; a large read leaves the shard in debt.
    pub fn charge_read(&self, stream_id: u64, shard: u32, bytes: u64, now_ms: u64) {
        if self.enforce {
            self.with_shard(stream_id, shard, now_ms, |use_| use_.read_bytes.tokens -= bytes as f64);
        }
    }

    /// The shards of a stream whose last meter window ran over `load` of their write quota, if
    /// that window just ended (a shard that went quiet is not hot).
    pub fn hot_shards(&self, stream_id: u64, load: f64, now_ms: u64) -> Vec<u32> {
        let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        let recent = |use_: &ShardUse| now_ms.saturating_sub(use_.window_start_ms) < 2 * METER_WINDOW_MS;
        let mut hot: Vec<u32> = shards
            .iter()
            .filter(|((id, _), use_)| *id == stream_id && use_.last_window_load > load && recent(use_))
            .map(|((_, shard), _)| *shard)
            .collect();
        hot.sort_unstable();
        hot
    }
}

/// A per-subscription bucket for enhanced fan-out: how long to pause after sending `bytes`.
#[derive(Debug)]
pub struct FanOutPace {
    bucket: Option<Bucket>,
}

impl FanOutPace {
    pub fn new(enforce: bool, now_ms: u64) -> Self {
        FanOutPace { bucket: enforce.then(|| Bucket::new(FAN_OUT_BYTES_PER_SEC, now_ms)) }
    }

    /// Charges `bytes` sent; returns how long to wait before the next event, in ms.
    pub fn charge(&mut self, bytes: u64, now_ms: u64) -> u64 {
        let Some(bucket) = self.bucket.as_mut() else { return 0 };
        bucket.refill(now_ms);
        bucket.tokens -= bytes as f64;
        bucket.debt_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_past_a_second_of_records_are_refused_until_the_bucket_refills() {
        let quotas = Quotas::new(true);
        let records: Vec<(u32, u64)> = (0..1_500).map(|_| (0, 10)).collect();
        let admitted = quotas.admit_writes(1, &records, 0);
        assert_eq!(admitted.iter().filter(|a| **a).count(), 1_000);
        assert!(admitted[..1_000].iter().all(|a| *a), "in order: the first thousand fit");
        assert_eq!(quotas.admit_writes(1, &records[..600], 500).iter().filter(|a| **a).count(), 500);
        assert!(quotas.admit_writes(2, &records[..10], 500).iter().all(|a| *a), "another stream has its own");
    }

    #[test]
    fn bytes_are_limited_per_shard_and_unenforced_quotas_only_meter() {
        let quotas = Quotas::new(true);
        let big = [(0u32, 600_000u64), (0, 600_000), (1, 600_000)];
        assert_eq!(quotas.admit_writes(1, &big, 0), vec![true, false, true]);
        let open = Quotas::new(false);
        assert!(open.admit_writes(1, &[(0, 5_000_000); 3], 0).iter().all(|a| *a));
        open.admit_writes(1, &[(0, 1)], 10_000);
        assert_eq!(open.hot_shards(1, 1.0, 10_000), vec![0], "15 MB in 10 s is over the write quota");
        assert!(open.hot_shards(1, 1.0, 40_000).is_empty(), "a shard that went quiet is not hot");
    }

    #[test]
    fn reads_get_five_calls_a_second_and_pay_back_large_reads() {
        let quotas = Quotas::new(true);
        assert_eq!((0..7).filter(|_| quotas.admit_read(1, 0, 0)).count(), 5);
        assert!(quotas.admit_read(1, 0, 200), "a fifth of a second later, one more call");
        quotas.charge_read(1, 0, 6 * 1_048_576, 200);
        assert!(!quotas.admit_read(1, 0, 1_000), "in debt for 4 MiB: about two seconds");
        assert!(quotas.admit_read(1, 0, 3_300));
    }

    #[test]
    fn fan_out_pauses_after_more_than_two_mebibytes() {
        let mut pace = FanOutPace::new(true, 0);
        assert_eq!(pace.charge(1_048_576, 0), 0);
        assert_eq!(pace.charge(2_097_152, 0), 500);
        assert_eq!(FanOutPace::new(false, 0).charge(u64::MAX, 0), 0);
    }
}
