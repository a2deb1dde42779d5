//! What KDS's operations report to CloudWatch (AWS/Kinesis): stream-level metrics under
//! `StreamName`, and the shard-level ones (which AWS calls enhanced) under `StreamName` and
//! `ShardId` as well.

use crate::cloudwatch::{Recorder, kinesis};

use super::context::shard_id;

/// Records that were stored: each record's shard and size in bytes (data and key).
pub fn stored(recorder: &Recorder, stream: &str, records: &[(u32, u64)]) {
    let total_bytes: u64 = records.iter().map(|(_, bytes)| bytes).sum();
    let dimensions = [("StreamName", stream)];
    recorder.record(&kinesis::INCOMING_BYTES, &dimensions, total_bytes as f64);
    recorder.record(&kinesis::INCOMING_RECORDS, &dimensions, records.len() as f64);
    for (shard, bytes, count) in per_shard(records) {
        let shard = shard_id(shard);
        let dimensions = [("StreamName", stream), ("ShardId", shard.as_str())];
        recorder.record(&kinesis::INCOMING_BYTES, &dimensions, bytes as f64);
        recorder.record(&kinesis::INCOMING_RECORDS, &dimensions, count as f64);
    }
}

/// A PutRecord that stored its record.
pub fn put_record(recorder: &Recorder, stream: &str, shard: u32, bytes: u64) {
    recorder.record(&kinesis::PUT_RECORD_BYTES, &[("StreamName", stream)], bytes as f64);
    stored(recorder, stream, &[(shard, bytes)]);
}

/// What one PutRecords did with its records.
#[derive(Debug, Default)]
pub struct PutRecordsOutcome {
    pub stored: Vec<(u32, u64)>,
    pub throttled: u64,
    pub failed: u64,
}

pub fn put_records(recorder: &Recorder, stream: &str, outcome: &PutRecordsOutcome) {
    let dimensions = [("StreamName", stream)];
    let stored_bytes: u64 = outcome.stored.iter().map(|(_, bytes)| bytes).sum();
    let stored_count = outcome.stored.len() as u64;
    let total = stored_count + outcome.throttled + outcome.failed;
    recorder.record(&kinesis::PUT_RECORDS_BYTES, &dimensions, stored_bytes as f64);
    recorder.record(&kinesis::PUT_RECORDS_TOTAL_RECORDS, &dimensions, total as f64);
    recorder.record(&kinesis::PUT_RECORDS_SUCCESSFUL_RECORDS, &dimensions, stored_count as f64);
    recorder.record(&kinesis::PUT_RECORDS_THROTTLED_RECORDS, &dimensions, outcome.throttled as f64);
    recorder.record(&kinesis::PUT_RECORDS_FAILED_RECORDS, &dimensions, outcome.failed as f64);
    recorder.record(&kinesis::WRITE_THROTTLED, &dimensions, outcome.throttled as f64);
    stored(recorder, stream, &outcome.stored);
}

/// A write refused by the shard quotas.
pub fn write_throttled(recorder: &Recorder, stream: &str, records: u64) {
    recorder.record(&kinesis::WRITE_THROTTLED, &[("StreamName", stream)], records as f64);
}

/// A read refused by the shard quotas.
pub fn read_throttled(recorder: &Recorder, stream: &str, shard: u32) {
    recorder.record(&kinesis::READ_THROTTLED, &[("StreamName", stream)], 1.0);
    let shard = shard_id(shard);
    recorder.record(&kinesis::READ_THROTTLED, &[("StreamName", stream), ("ShardId", shard.as_str())], 1.0);
}

/// Records read from a shard, by GetRecords or a SubscribeToShard event.
#[derive(Debug, Clone, Copy)]
pub struct Read<'a> {
    pub stream: &'a str,
    pub shard: u32,
    pub records: u64,
    pub bytes: u64,
    /// How far behind the shard's newest record the reader is.
    pub age_ms: u64,
}

pub fn got_records(recorder: &Recorder, read: Read<'_>) {
    let dimensions = [("StreamName", read.stream)];
    recorder.record(&kinesis::GET_RECORDS_BYTES, &dimensions, read.bytes as f64);
    recorder.record(&kinesis::GET_RECORDS_RECORDS, &dimensions, read.records as f64);
    recorder.record(&kinesis::GET_RECORDS_ITERATOR_AGE, &dimensions, read.age_ms as f64);
    outgoing(recorder, read);
}

pub fn subscription_event(recorder: &Recorder, read: Read<'_>) {
    let dimensions = [("StreamName", read.stream)];
    recorder.record(&kinesis::SUBSCRIBE_EVENT_BYTES, &dimensions, read.bytes as f64);
    recorder.record(&kinesis::SUBSCRIBE_EVENT_RECORDS, &dimensions, read.records as f64);
    recorder.record(&kinesis::SUBSCRIBE_EVENT_MILLIS_BEHIND, &dimensions, read.age_ms as f64);
    recorder.record(&kinesis::SUBSCRIBE_EVENT_SUCCESS, &dimensions, 1.0);
    outgoing(recorder, read);
}

/// Whether a SubscribeToShard call started its subscription.
pub fn subscribed(recorder: &Recorder, stream: &str, succeeded: bool) {
    let value = if succeeded { 1.0 } else { 0.0 };
    recorder.record(&kinesis::SUBSCRIBE_TO_SHARD_SUCCESS, &[("StreamName", stream)], value);
}

/// The shard-level side of a read: OutgoingBytes, OutgoingRecords and IteratorAgeMilliseconds.
fn outgoing(recorder: &Recorder, read: Read<'_>) {
    let shard = shard_id(read.shard);
    let dimensions = [("StreamName", read.stream), ("ShardId", shard.as_str())];
    recorder.record(&kinesis::OUTGOING_BYTES, &dimensions, read.bytes as f64);
    recorder.record(&kinesis::OUTGOING_RECORDS, &dimensions, read.records as f64);
    recorder.record(&kinesis::ITERATOR_AGE, &dimensions, read.age_ms as f64);
}

/// Bytes and record counts per shard, in shard order.
fn per_shard(records: &[(u32, u64)]) -> Vec<(u32, u64, u64)> {
    let mut shards: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
    for &(shard, bytes) in records {
        let totals = shards.entry(shard).or_default();
        totals.0 += bytes;
        totals.1 += 1;
    }
    shards.into_iter().map(|(shard, (bytes, count))| (shard, bytes, count)).collect()
}
