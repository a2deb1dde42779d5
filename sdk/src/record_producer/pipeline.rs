//! The producer's one task: routes queued records to shard queues, seals aggregated records when
//! full or after the linger, collects them into PutRecords calls (up to 500 records and 5 MiB),
//! keeps up to `max_in_flight_calls` calls running, answers each user record, and retries what a
//! call did not store. A record stored on another shard than the map predicted means the stream
//! was resharded: the map is read again.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::aggregator::{Aggregator, KinesisRecord};
use super::shard_map::ShardMap;
use super::{Command, Counters, Pending, PutReceipt, RecordProducerConfig, ShardRate};
use crate::Client;
use crate::data_stream::{ShardInfo, StoredRecord};
use crate::error::{Error, Result};
use crate::records::{MAX_BATCH_RECORDS, RecordRefusal};
use std::sync::Arc;

const MAX_CALL_BYTES: usize = 5 * 1024 * 1024;
/// The queue of records the map has no shard for (a gap while a reshard is read): sent one by
/// one, for the service to route.
const UNROUTED: &str = "";
const FIRST_BACKOFF_MS: u64 = 100;
const MAX_BACKOFF_MS: u64 = 3_000;

/// One call's records, each with the shard it was routed to, and what the call answered.
struct CallOutcome {
    records: Vec<(String, KinesisRecord)>,
    result: Result<Vec<Result<StoredRecord, RecordRefusal>>>,
}

pub(super) struct Pipeline {
    client: Client,
    stream: String,
    config: RecordProducerConfig,
    map: ShardMap,
    queues: HashMap<String, ShardQueue>,
    calls: JoinSet<CallOutcome>,
    refresh: Option<JoinHandle<Result<Vec<ShardInfo>>>>,
    map_stale: bool,
    flush_waiters: Vec<oneshot::Sender<()>>,
    counters: Arc<Counters>,
}

/// One shard's records: being packed, and sealed waiting for a call.
struct ShardQueue {
    packing: Aggregator,
    /// When the oldest record being packed arrived.
    oldest: Option<Instant>,
    ready: VecDeque<KinesisRecord>,
    /// After a failure the shard waits, keeping its records' order.
    not_before: Option<Instant>,
    pace: Option<Pace>,
}

impl Pipeline {
    pub fn new(
        client: Client,
        stream: &str,
        config: RecordProducerConfig,
        shards: &[ShardInfo],
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            client,
            stream: stream.to_string(),
            map: ShardMap::new(shards),
            config,
            queues: HashMap::new(),
            calls: JoinSet::new(),
            refresh: None,
            map_stale: false,
            flush_waiters: Vec::new(),
            counters,
        }
    }

    pub async fn run(mut self, mut inbox: mpsc::Receiver<Command>) {
        let mut open = true;
        let mut tick =
            tokio::time::interval((self.config.linger / 2).clamp(Duration::from_millis(1), Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = inbox.recv(), if open => {
                    open = self.command(command);
                    // Take what else is queued before sending: fuller calls under load.
                    while open {
                        match inbox.try_recv() {
                            Ok(command) => open = self.command(Some(command)),
                            Err(_) => break,
                        }
                    }
                }
                Some(done) = self.calls.join_next(), if !self.calls.is_empty() => {
                    if let Ok(outcome) = done {
                        self.settle(outcome);
                    }
                }
                shards = refreshed(&mut self.refresh), if self.refresh.is_some() => {
                    if let Some(shards) = shards {
                        self.map = ShardMap::new(&shards);
                    }
                }
                _ = tick.tick() => self.seal_lingering(),
            }
            self.dispatch();
            if self.is_idle() {
                for waiter in self.flush_waiters.drain(..) {
                    // A flush nobody waits for any more needs no answer.
                    let _ = waiter.send(());
                }
                if !open {
                    return;
                }
            }
        }
    }

    /// Takes one command; returns whether the inbox is still open.
    fn command(&mut self, command: Option<Command>) -> bool {
        match command {
            Some(Command::Record(pending)) => self.route(pending),
            Some(Command::Flush(done)) => {
                self.seal_all();
                self.flush_waiters.push(done);
            }
            None => {
                self.seal_all();
                return false;
            }
        }
        true
    }

    fn route(&mut self, pending: Pending) {
        let shard = self.map.shard_for(pending.hash_key).map(str::to_string);
        self.map_stale |= shard.is_none();
        let aggregate = self.config.aggregate && shard.is_some();
        let limit_bytes = queue_limit(&self.config);
        let queue = self.queue(shard.as_deref().unwrap_or(UNROUTED));
        let now = Instant::now();
        if let Some(sealed) = queue.packing.add(pending, limit_bytes, aggregate) {
            queue.ready.push_back(sealed);
            queue.oldest = None;
        }
        if !queue.packing.is_empty() {
            queue.oldest.get_or_insert(now);
        }
    }

    fn queue(&mut self, shard: &str) -> &mut ShardQueue {
        let rate = self.config.shard_rate;
        self.queues.entry(shard.to_string()).or_insert_with(|| ShardQueue {
            packing: Aggregator::default(),
            oldest: None,
            ready: VecDeque::new(),
            not_before: None,
            pace: rate.map(Pace::new),
        })
    }

    fn seal_lingering(&mut self) {
        let linger = self.config.linger;
        for queue in self.queues.values_mut() {
            if queue.oldest.is_some_and(|at| at.elapsed() >= linger) {
                queue.seal();
            }
        }
    }

    fn seal_all(&mut self) {
        self.queues.values_mut().for_each(ShardQueue::seal);
    }

    /// Starts calls while fewer than the limit run and records are ready.
    fn dispatch(&mut self) {
        if self.map_stale && self.refresh.is_none() {
            self.map_stale = false;
            let (client, stream) = (self.client.clone(), self.stream.clone());
            self.refresh = Some(tokio::spawn(async move { client.list_shards(&stream).await }));
        }
        while self.calls.len() < self.config.max_in_flight_calls.max(1) {
            let records = self.collect_call();
            if records.is_empty() {
                return;
            }
            let (client, stream) = (self.client.clone(), self.stream.clone());
            self.calls.spawn(async move {
                let entries: Vec<_> = records
                    .iter()
                    .map(|(_, r)| (r.partition_key.as_str(), Some(r.explicit_hash_key.as_str()), r.data.as_slice()))
                    .collect();
                let result = client.put_raw_records(&stream, &entries).await;
                CallOutcome { records, result }
            });
        }
    }

    /// Ready records for one call: shard by shard, within the call's limits and each shard's
    /// pace and backoff.
    fn collect_call(&mut self) -> Vec<(String, KinesisRecord)> {
        let now = Instant::now();
        let (mut records, mut bytes) = (Vec::new(), 0);
        for (shard, queue) in &mut self.queues {
            if queue.not_before.is_some_and(|at| at > now) {
                continue;
            }
            while let Some(front) = queue.ready.front() {
                let size = front.size_bytes();
                if records.len() == MAX_BATCH_RECORDS || (bytes + size > MAX_CALL_BYTES && !records.is_empty()) {
                    return records;
                }
                if !queue.pace.as_mut().is_none_or(|pace| pace.take(size, now)) {
                    break;
                }
                bytes += size;
                records.extend(queue.ready.pop_front().map(|r| (shard.clone(), r)));
            }
        }
        records
    }

    fn settle(&mut self, outcome: CallOutcome) {
        Counters::add(&self.counters.put_calls, 1);
        let results = match outcome.result {
            Ok(results) => results,
            Err(error) => {
                let refusal = RecordRefusal {
                    error_code: error.error_type().unwrap_or("Transport").to_string(),
                    message: error.to_string(),
                };
                let retry = retryable_call(&error);
                for (shard, record) in outcome.records {
                    if retry { self.retry(&shard, record, refusal.clone()) } else { fail(record, &refusal) }
                }
                return;
            }
        };
        for ((shard, record), result) in outcome.records.into_iter().zip(results) {
            match result {
                Ok(stored) => {
                    self.map_stale |= stored.shard_id != shard;
                    Counters::add(&self.counters.kinesis_records, 1);
                    Counters::add(&self.counters.kinesis_bytes, record.size_bytes() as u64);
                    Counters::add(&self.counters.user_records, record.members.len() as u64);
                    answer(record, &stored);
                }
                Err(refusal) => self.retry(&shard, record, refusal),
            }
        }
    }

    /// Puts `record` back at the front of its shard's queue after a backoff, unless its oldest
    /// user record has waited longer than the records' time to live.
    fn retry(&mut self, shard: &str, mut record: KinesisRecord, refusal: RecordRefusal) {
        record.attempts += 1;
        let ttl = self.config.record_ttl;
        if record.members.iter().any(|m| m.enqueued.elapsed() > ttl) {
            return fail(record, &refusal);
        }
        Counters::add(&self.counters.retries, 1);
        let backoff_ms = FIRST_BACKOFF_MS.saturating_mul(1 << record.attempts.min(16)).min(MAX_BACKOFF_MS);
        let queue = self.queue(shard);
        queue.ready.push_front(record);
        queue.not_before = Some(Instant::now() + Duration::from_millis(backoff_ms));
    }

    fn is_idle(&self) -> bool {
        self.calls.is_empty() && self.queues.values().all(|q| q.packing.is_empty() && q.ready.is_empty())
    }
}

impl ShardQueue {
    fn seal(&mut self) {
        if let Some(record) = self.packing.seal() {
            self.ready.push_back(record);
        }
        self.oldest = None;
    }
}

/// The largest aggregated record, never above a Kinesis record's 1 MiB.
fn queue_limit(config: &RecordProducerConfig) -> usize {
    config.max_aggregated_bytes.clamp(1, super::MAX_RECORD_BYTES)
}

async fn refreshed(refresh: &mut Option<JoinHandle<Result<Vec<ShardInfo>>>>) -> Option<Vec<ShardInfo>> {
    let handle = refresh.as_mut()?;
    let result = handle.await;
    *refresh = None;
    result.ok()?.ok()
}

fn answer(record: KinesisRecord, stored: &StoredRecord) {
    let attempts = record.attempts + 1;
    let aggregated = record.aggregated;
    for (index, member) in record.members.into_iter().enumerate() {
        member.answer(Ok(PutReceipt {
            shard_id: stored.shard_id.clone(),
            sequence_number: stored.sequence_number.clone(),
            sub_sequence_number: aggregated.then_some(index as u64),
            attempts,
        }));
    }
}

fn fail(record: KinesisRecord, refusal: &RecordRefusal) {
    for member in record.members {
        member.answer(Err(Error::RecordFailed {
            error_code: refusal.error_code.clone(),
            message: refusal.message.clone(),
        }));
    }
}

/// Whether a whole call's failure is worth another try: throttling, faults on the service's
/// side, and broken connections; not a missing stream or a refused request.
fn retryable_call(error: &Error) -> bool {
    match error {
        Error::Transport(_) => true,
        Error::Service { status, error_type, .. } => {
            *status >= 500
                || matches!(
                    error_type.as_str(),
                    "ProvisionedThroughputExceededException" | "LimitExceededException" | "KMSThrottlingException"
                )
        }
        _ => false,
    }
}

/// A shard's token buckets for bytes and records, holding at most one second of each.
#[derive(Debug)]
struct Pace {
    rate: ShardRate,
    bytes: f64,
    records: f64,
    at: Instant,
}

impl Pace {
    fn new(rate: ShardRate) -> Self {
        Self { rate, bytes: rate.bytes_per_sec, records: rate.records_per_sec, at: Instant::now() }
    }

    /// Whether a record of `size` bytes may go now; takes its share if so.
    fn take(&mut self, size: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.bytes = (self.bytes + elapsed * self.rate.bytes_per_sec).min(self.rate.bytes_per_sec);
        self.records = (self.records + elapsed * self.rate.records_per_sec).min(self.rate.records_per_sec);
        // A record larger than a second's bytes goes once the bucket is full.
        let needed = (size as f64).min(self.rate.bytes_per_sec);
        if self.records < 1.0 || self.bytes < needed {
            return false;
        }
        self.records -= 1.0;
        self.bytes -= needed;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pace_lets_a_second_of_records_through_then_refills() {
        let start = Instant::now();
        let mut pace = Pace::new(ShardRate { bytes_per_sec: 1_000.0, records_per_sec: 3.0 });
        assert!((0..3).all(|_| pace.take(10, start)));
        assert!(!pace.take(10, start), "the fourth record in the same instant waits");
        assert!(pace.take(10, start + Duration::from_millis(400)), "a third of a second refills one");
        let mut bytes = Pace::new(ShardRate { bytes_per_sec: 100.0, records_per_sec: 100.0 });
        assert!(bytes.take(5_000, start), "an oversized record goes on a full bucket");
        assert!(!bytes.take(1, start));
    }

    #[test]
    fn throttling_and_faults_are_retried_refusals_are_not() {
        let service =
            |status, error_type: &str| Error::Service { status, error_type: error_type.into(), message: String::new() };
        assert!(retryable_call(&service(400, "ProvisionedThroughputExceededException")));
        assert!(retryable_call(&service(503, "ServiceUnavailableException")));
        assert!(retryable_call(&Error::Transport("reset".into())));
        assert!(!retryable_call(&service(400, "ResourceNotFoundException")));
        assert!(!retryable_call(&service(400, "AccessDeniedException")));
    }
}
