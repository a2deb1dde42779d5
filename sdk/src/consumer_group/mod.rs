//! Consumer groups (the Kinesis Client Library's role, docs/consumer-groups.md): workers of one
//! application share a stream's shards through leases kept by the server. Each worker, every
//! renewal interval, reads the lease table, renews its own leases (stopping the consumers of
//! those it lost), and takes its share of free, expired or (for balance) stolen leases; a shard
//! consumer per held lease reads the shard and calls the application's processor. Children of a
//! resharded shard are taken only after the parent's SHARD_END checkpoint.

mod balance;
mod lease_api;
mod processor;
mod shard_consumer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

pub use lease_api::{LeaseInfo, SHARD_END};
pub use processor::{Checkpointer, ConsumedRecord, RecordProcessor};

use crate::Client;
use crate::data_stream::IteratorStart;
use crate::error::Result;
use lease_api::{LeaseScope, is_lease_lost};
use shard_consumer::{End, Reading, ShardConsumer, Signal};

/// Where a shard without a checkpoint is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialPosition {
    TrimHorizon,
    Latest,
    AtTimestamp { epoch_ms: u64 },
}

impl InitialPosition {
    fn iterator_start(self) -> IteratorStart {
        match self {
            InitialPosition::TrimHorizon => IteratorStart::TrimHorizon,
            InitialPosition::Latest => IteratorStart::Latest,
            InitialPosition::AtTimestamp { epoch_ms } => IteratorStart::AtTimestamp { epoch_ms },
        }
    }
}

/// A worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub application: String,
    pub stream: String,
    /// Unique among the application's workers (a host name and process id will do).
    pub worker_id: String,
    pub initial_position: InitialPosition,
    /// How long a lease stays held without renewal: a dead worker's shards wait this long.
    pub lease_duration: Duration,
    /// How often leases are renewed and balanced (well under the lease duration).
    pub renew_interval: Duration,
    /// Records one GetRecords call asks for.
    pub max_records: usize,
    /// Wait after an empty GetRecords.
    pub idle_wait: Duration,
}

impl WorkerConfig {
    pub fn new(application: impl Into<String>, stream: impl Into<String>, worker_id: impl Into<String>) -> Self {
        Self {
            application: application.into(),
            stream: stream.into(),
            worker_id: worker_id.into(),
            initial_position: InitialPosition::TrimHorizon,
            lease_duration: Duration::from_secs(10),
            renew_interval: Duration::from_secs(3),
            max_records: 10_000,
            idle_wait: Duration::from_millis(200),
        }
    }
}

/// A running worker; `shutdown` stops it gracefully.
#[derive(Debug)]
pub struct Worker {
    id: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Starts a worker that processes each shard it holds with a processor from `new_processor`.
    pub fn spawn<P, F>(client: Client, config: WorkerConfig, new_processor: F) -> Worker
    where
        P: RecordProcessor,
        F: Fn(&str) -> P + Send + Sync + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        let coordinator = Coordinator {
            scope: Arc::new(LeaseScope {
                stream: config.stream.clone(),
                application: config.application.clone(),
                worker_id: config.worker_id.clone(),
                lease_duration_ms: config.lease_duration.as_millis().try_into().unwrap_or(u64::MAX),
            }),
            reading: Reading {
                initial_position: config.initial_position,
                max_records: config.max_records,
                idle_wait: config.idle_wait,
            },
            renew_interval: config.renew_interval,
            client,
            new_processor,
            running: HashMap::new(),
            consumers: JoinSet::new(),
            generation: 0,
        };
        Worker { id: config.worker_id, stop, task: tokio::spawn(coordinator.run(stopped)) }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops at once, as a crash would: no checkpoint, no release; the leases expire.
    pub fn abort(self) {
        self.task.abort();
    }

    /// Each processor checkpoints (`shutdown_requested`), the leases are released for other
    /// workers to take at once, and the worker ends.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|e| crate::Error::ProducerStopped(e.to_string()))
    }
}

/// The worker's task: lease bookkeeping and the shard consumers it runs.
struct Coordinator<F> {
    client: Client,
    scope: Arc<LeaseScope>,
    reading: Reading,
    renew_interval: Duration,
    new_processor: F,
    /// Each held lease's consumer: its generation and its signal. A consumer that ends late
    /// (after its lease was lost and taken again) must not remove its successor.
    running: HashMap<String, (u64, watch::Sender<Signal>)>,
    consumers: JoinSet<(String, u64, End)>,
    generation: u64,
}

impl<P, F> Coordinator<F>
where
    P: RecordProcessor,
    F: Fn(&str) -> P + Send + Sync + 'static,
{
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.renew_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.round().await,
                Some(Ok((shard, generation, end))) = self.consumers.join_next(), if !self.consumers.is_empty() => {
                    if self.running.get(&shard).is_some_and(|(current, _)| *current == generation) {
                        self.running.remove(&shard);
                    }
                    tracing::info!(%shard, ?end, "shard consumer ended");
                    if end == End::ShardEnded {
                        // The children may be ready now.
                        self.round().await;
                    }
                }
                _ = stopped.changed() => break,
            }
        }
        for (_, signal) in self.running.values() {
            let _ = signal.send(Signal::Shutdown);
        }
        while self.consumers.join_next().await.is_some() {}
    }

    /// One round: renew what is held (stopping what was lost), then take a fair share.
    async fn round(&mut self) {
        self.renew_held().await;
        let leases = match self.client.describe_leases(&self.scope.stream, &self.scope.application).await {
            Ok(leases) => leases,
            Err(error) => return tracing::warn!(%error, "DescribeLeases failed"),
        };
        for choice in balance::choose(&leases, &self.scope.worker_id) {
            if self.running.contains_key(&choice.lease.shard_id) {
                continue;
            }
            match self.client.acquire_lease(&self.scope, &choice.lease, choice.steal).await {
                Ok(lease) => self.start_consumer(lease),
                Err(error) => tracing::debug!(%error, shard = %choice.lease.shard_id, "lease not taken"),
            }
        }
    }

    /// Renews each held lease; a consumer whose lease is gone is told to stop at once.
    async fn renew_held(&mut self) {
        let shards: Vec<String> = self.running.keys().cloned().collect();
        for shard in shards {
            match self.client.renew_lease(&self.scope, &shard).await {
                Ok(_) => {}
                Err(error) if is_lease_lost(&error) || error.error_type() == Some("ResourceNotFoundException") => {
                    tracing::info!(%shard, %error, "lease lost");
                    if let Some((_, signal)) = self.running.remove(&shard) {
                        let _ = signal.send(Signal::Lost);
                    }
                }
                Err(error) => tracing::warn!(%shard, %error, "lease renewal failed; retried next round"),
            }
        }
    }

    fn start_consumer(&mut self, lease: LeaseInfo) {
        let shard = lease.shard_id.clone();
        let (signal, signals) = watch::channel(Signal::Run);
        let consumer = ShardConsumer {
            client: self.client.clone(),
            scope: Arc::clone(&self.scope),
            processor: (self.new_processor)(&shard),
            reading: self.reading.clone(),
            lease,
        };
        tracing::info!(%shard, worker = %self.scope.worker_id, "lease taken");
        self.generation += 1;
        let generation = self.generation;
        self.running.insert(shard.clone(), (generation, signal));
        self.consumers.spawn(async move { (shard.clone(), generation, consumer.run(signals).await) });
    }
}
