//! The record producer (the Kinesis Producer Library's role, docs/consumer-groups.md): user
//! records in, one receipt per record out (shard, sequence number and, when aggregated, the
//! sub-sequence number). Records are routed to shards from the stream's shard map, packed per
//! shard in the KPL's aggregation format, collected into PutRecords calls, rate-limited per
//! shard, and retried with backoff when throttled or failed. Memory is bounded: `send` waits
//! while `max_buffered_bytes` of records are unanswered.

mod aggregator;
mod pipeline;
mod shard_map;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::Client;
use crate::data_stream::partition_hash_key;
use crate::error::{Error, Result};

/// Kinesis's limits on one record.
const MAX_PARTITION_KEY_CHARS: usize = 256;
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// One user record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    pub partition_key: String,
    /// Routes the record instead of its partition key's hash (a decimal 128-bit number).
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

impl ProducerRecord {
    pub fn new(partition_key: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self { partition_key: partition_key.into(), explicit_hash_key: None, data: data.into() }
    }
}

/// Where a user record was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReceipt {
    pub shard_id: String,
    pub sequence_number: String,
    /// The record's place in its aggregated record; None when it was sent alone.
    pub sub_sequence_number: Option<u64>,
    /// PutRecords calls it took (1 when the first one stored it).
    pub attempts: u32,
}

/// How the producer packs, paces and retries.
#[derive(Debug, Clone)]
pub struct RecordProducerConfig {
    /// Pack user records into KPL aggregated records.
    pub aggregate: bool,
    /// Largest aggregated record (the KPL's default, 50 KiB).
    pub max_aggregated_bytes: usize,
    /// How long a record may wait for others to share its aggregated record and call.
    pub linger: Duration,
    /// PutRecords calls in flight at once.
    pub max_in_flight_calls: usize,
    /// Unanswered user records (data and keys) before `send` waits.
    pub max_buffered_bytes: usize,
    /// Per-shard pace (bytes and records a second); None sends as fast as the service takes.
    pub shard_rate: Option<ShardRate>,
    /// How long a record is retried before its receipt reports the last failure.
    pub record_ttl: Duration,
}

/// A shard's write pace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardRate {
    pub bytes_per_sec: f64,
    pub records_per_sec: f64,
}

impl ShardRate {
    /// AWS's per-shard write quota (1 MiB and 1,000 records a second), as the KPL paces.
    pub const AWS_QUOTA: ShardRate = ShardRate { bytes_per_sec: 1_048_576.0, records_per_sec: 1_000.0 };
}

impl Default for RecordProducerConfig {
    fn default() -> Self {
        Self {
            aggregate: true,
            max_aggregated_bytes: 51_200,
            linger: Duration::from_millis(100),
            max_in_flight_calls: 24,
            max_buffered_bytes: 64 * 1024 * 1024,
            shard_rate: None,
            record_ttl: Duration::from_secs(30),
        }
    }
}

/// A user record on its way, with its routing and its answer.
#[derive(Debug)]
pub(crate) struct Pending {
    record: ProducerRecord,
    hash_key: u128,
    reply: Option<oneshot::Sender<Result<PutReceipt>>>,
    /// Returned to the budget when the record is answered.
    _budget: Option<OwnedSemaphorePermit>,
    enqueued: Instant,
}

impl Pending {
    #[cfg(test)]
    pub(crate) fn detached(record: ProducerRecord, hash_key: u128) -> Self {
        Self { record, hash_key, reply: None, _budget: None, enqueued: Instant::now() }
    }

    fn answer(self, result: Result<PutReceipt>) {
        if let Some(reply) = self.reply {
            // A receipt nobody waits for is fine: the record was still stored (or not).
            let _ = reply.send(result);
        }
    }
}

/// What the producer has sent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// User records stored.
    pub user_records: u64,
    /// Kinesis records stored (aggregated records count once).
    pub kinesis_records: u64,
    /// Bytes of the stored Kinesis records' data and partition keys: what the shard's write
    /// quota counts.
    pub kinesis_bytes: u64,
    pub put_calls: u64,
    /// Kinesis records sent again after a failure.
    pub retries: u64,
}

/// The counters behind `ProducerStats`, shared with the pipeline.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    user_records: AtomicU64,
    kinesis_records: AtomicU64,
    kinesis_bytes: AtomicU64,
    put_calls: AtomicU64,
    retries: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ProducerStats {
        ProducerStats {
            user_records: self.user_records.load(Ordering::Relaxed),
            kinesis_records: self.kinesis_records.load(Ordering::Relaxed),
            kinesis_bytes: self.kinesis_bytes.load(Ordering::Relaxed),
            put_calls: self.put_calls.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

enum Command {
    Record(Pending),
    Flush(oneshot::Sender<()>),
}

/// The producer. Cheap to share by reference; dropping it sends what it holds and stops.
#[derive(Debug)]
pub struct RecordProducer {
    commands: mpsc::Sender<Command>,
    budget: Arc<Semaphore>,
    max_buffered_bytes: usize,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

/// A record's answer: awaits where it was stored.
#[derive(Debug)]
pub struct RecordReceipt(oneshot::Receiver<Result<PutReceipt>>);

impl Future for RecordReceipt {
    type Output = Result<PutReceipt>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or_else(|_| Err(Error::ProducerStopped("the producer ended first".into()))))
    }
}

impl RecordProducer {
    /// Reads `stream`'s shard map and starts producing into it.
    pub async fn start(client: Client, stream: &str, config: RecordProducerConfig) -> Result<Self> {
        let shards = client.list_shards(stream).await?;
        let (commands, inbox) = mpsc::channel(4096);
        let max_buffered_bytes = config.max_buffered_bytes.max(1);
        let budget = Arc::new(Semaphore::new(max_buffered_bytes));
        let counters = Arc::new(Counters::default());
        let pipeline = pipeline::Pipeline::new(client, stream, config, &shards, Arc::clone(&counters));
        let task = tokio::spawn(pipeline.run(inbox));
        Ok(Self { commands, budget, max_buffered_bytes, counters, task })
    }

    /// Queues `record`, waiting while the buffer is full; the receipt answers once it is stored
    /// or has failed for good.
    pub async fn send(&self, record: ProducerRecord) -> Result<RecordReceipt> {
        let hash_key = routing_key(&record)?;
        let size = (record.data.len() + record.partition_key.len()).clamp(1, self.max_buffered_bytes);
        let budget = Arc::clone(&self.budget)
            .acquire_many_owned(u32::try_from(size).unwrap_or(u32::MAX))
            .await
            .map_err(|_| stopped())?;
        let (reply, answer) = oneshot::channel();
        let pending = Pending { record, hash_key, reply: Some(reply), _budget: Some(budget), enqueued: Instant::now() };
        self.commands.send(Command::Record(pending)).await.map_err(|_| stopped())?;
        Ok(RecordReceipt(answer))
    }

    /// Sends everything queued so far now, and waits until all of it is answered.
    pub async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.commands.send(Command::Flush(done)).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())
    }

    /// What has been sent so far.
    pub fn stats(&self) -> ProducerStats {
        self.counters.snapshot()
    }

    /// Flushes, then stops.
    pub async fn shutdown(self) -> Result<()> {
        self.flush().await?;
        drop(self.commands);
        self.task.await.map_err(|e| Error::ProducerStopped(e.to_string()))
    }
}

fn stopped() -> Error {
    Error::ProducerStopped("the record producer's task has ended".into())
}

/// The hash key a record is routed by, after Kinesis's checks on the record.
fn routing_key(record: &ProducerRecord) -> Result<u128> {
    let key_chars = record.partition_key.chars().count();
    if !(1..=MAX_PARTITION_KEY_CHARS).contains(&key_chars) {
        return Err(Error::InvalidInput(format!("a partition key has 1 to {MAX_PARTITION_KEY_CHARS} characters")));
    }
    if record.data.len() > MAX_RECORD_BYTES {
        return Err(Error::InvalidInput(format!("a record holds at most {MAX_RECORD_BYTES} bytes")));
    }
    match &record.explicit_hash_key {
        None => Ok(partition_hash_key(&record.partition_key)),
        Some(key) => key
            .parse::<u128>()
            .ok()
            .filter(|_| key.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| Error::InvalidInput(format!("explicit hash key {key} is not a 128-bit decimal number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_kinesis_would_refuse_are_refused_before_queueing() {
        assert!(routing_key(&ProducerRecord::new("", b"x".to_vec())).is_err());
        assert!(routing_key(&ProducerRecord::new("k".repeat(257), b"x".to_vec())).is_err());
        assert!(routing_key(&ProducerRecord::new("k", vec![0; MAX_RECORD_BYTES + 1])).is_err());
        let explicit =
            |key: &str| ProducerRecord { explicit_hash_key: Some(key.into()), ..ProducerRecord::new("k", vec![]) };
        assert_eq!(routing_key(&explicit("42")).ok(), Some(42));
        assert!(routing_key(&explicit("+42")).is_err());
        assert!(routing_key(&explicit("340282366920938463463374607431768211456")).is_err(), "2^128");
        assert_eq!(routing_key(&ProducerRecord::new("a", vec![])).ok(), Some(partition_hash_key("a")));
    }
}
